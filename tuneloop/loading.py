"""Bring your own data: load a canonical JSONL file or a ``text,label[,corrected]`` CSV into the warehouse.

``tuneloop load FILE --warehouse duckdb:///PATH --table NAME`` calls :func:`load_file`. Each line is
validated into a canonical example; lines that fail are reported with their line number and reason
and are not inserted, the good ones are (one transaction per chunk, so a row lands whole or not at all).
Loading the same file twice stores the rows twice; the extract keeps one example per content id.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.examples import SOURCES, Example, ExampleError, classification_example, iter_jsonl_dicts
from tuneloop.warehouse.base import InsertError, example_to_row, iso, open_warehouse, to_utc, utc_now
from tuneloop.warehouse.sql import validate_identifier

CSV_REQUIRED = ("text", "label")
CSV_OPTIONAL = ("corrected", "created_at")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv",)
TRUE_WORDS = ("1", "true", "yes", "y", "t", "x")
FALSE_WORDS = ("", "0", "false", "no", "n", "f")
DEFAULT_SOURCE = "imported"
CHUNK_ROWS = 50_000


class LoadError(ValueError):
    """The file as a whole cannot be loaded (unknown format, bad CSV header)."""


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_file` did.

    Attributes:
        inserted: Rows now in the table.
        rejected: ``{"line": n, "reason": "<field>: <why and fix>"}`` for each line not inserted.
        table: The table loaded into.
        path: The file read.
    """

    inserted: int
    rejected: list[dict[str, Any]] = field(default_factory=list)
    table: str = ""
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for the CLI's JSON output)."""
        return {
            "path": self.path,
            "table": self.table,
            "inserted": self.inserted,
            "rejected": list(self.rejected),
        }


def load_file(
    path: str | Path,
    warehouse_uri: str,
    table: str,
    *,
    source: str | None = None,
    ingested_at: dt.datetime | str | None = None,
) -> LoadReport:
    """Validate a file's rows into canonical examples and append the good ones to ``table``.

    Formats (by extension):

    - ``.jsonl`` / ``.ndjson`` / ``.json``: one canonical record per line (see ``tuneloop.examples``).
    - ``.csv`` with a header of ``text,label`` plus optional ``corrected`` and ``created_at`` columns.
      A row becomes ``[user: text, assistant: label]``; a truthy ``corrected`` (1/true/yes) makes it a
      human correction (source ``corrected``, weight 2.0); ``created_at`` defaults to ``ingested_at``.

    Args:
        path: The file.
        warehouse_uri: e.g. ``duckdb:///warehouse.duckdb``; the table is created if missing.
        table: Table name (``table`` or ``dataset.table``).
        source: Source of rows that do not say (JSONL records without ``source``; CSV rows not
            marked corrected). Default ``imported``.
        ingested_at: Landing time stamped on every row (default now); the extract's watermark column.

    Returns:
        A :class:`LoadReport`.

    Raises:
        LoadError: unknown extension, or a CSV header without the expected columns (nothing inserted).
        FileNotFoundError: no such file.
        InsertError: the warehouse refused a chunk; the message says how many rows landed before it.
        ValueError: a bad ``table``, ``source`` or ``ingested_at``.
    """
    p = Path(path)
    validate_identifier(table)
    if source is not None and source not in SOURCES:
        raise ValueError(f"source={source!r} is not one of {list(SOURCES)}")
    landed = utc_now() if ingested_at is None else to_utc(ingested_at, "ingested_at")
    if not p.is_file():
        raise FileNotFoundError(f"path={str(p)!r}: no such file")
    suffix = p.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        examples, rejected = _read_jsonl(p, source or DEFAULT_SOURCE, landed)
    elif suffix in CSV_SUFFIXES:
        examples, rejected = _read_csv(p, source or DEFAULT_SOURCE, landed)
    else:
        raise LoadError(
            f"path={str(p)!r}: unknown file type {suffix!r}; use canonical JSONL ({', '.join(JSONL_SUFFIXES)}) "
            f"or CSV ({', '.join(CSV_SUFFIXES)}) with columns text,label[,corrected]"
        )
    rows = [example_to_row(ex, ingested_at=landed) for ex in examples]
    inserted = 0
    wh = open_warehouse(warehouse_uri)
    try:
        wh.ensure_table(table)
        for start in range(0, len(rows), CHUNK_ROWS):
            try:
                inserted += wh.insert_rows(table, rows[start : start + CHUNK_ROWS])
            except InsertError as exc:
                raise InsertError(
                    f"{p}: {inserted} of {len(rows)} valid row(s) were inserted before this failure "
                    f"(the first {inserted} valid lines); load the rest after fixing the cause: {exc}"
                ) from exc
    finally:
        wh.close()
    return LoadReport(inserted=inserted, rejected=rejected, table=table, path=str(p))


def _read_jsonl(p: Path, source: str, landed: dt.datetime) -> tuple[list[Example], list[dict[str, Any]]]:
    examples, rejected = [], []
    # weight None: make_example's default by source (corrections 2.0), which from_dict's 1.0 would hide
    defaults = {"source": source, "created_at": iso(landed), "weight": None}
    for lineno, obj in iter_jsonl_dicts(p):
        try:
            if isinstance(obj, Exception):
                raise obj
            if isinstance(obj, dict):
                obj = {**defaults, **obj}
            examples.append(Example.from_dict(obj))
        except ExampleError as exc:
            rejected.append({"line": lineno, "reason": str(exc)})
    return examples, rejected


def _truthy(value: str | None) -> bool:
    v = (value or "").strip().lower()
    if v in TRUE_WORDS:
        return True
    if v in FALSE_WORDS:
        return False
    raise ExampleError(
        "corrected", f"{value!r} is not a yes/no; write 1/true/yes or 0/false/no (or leave it empty)"
    )


def _read_csv(p: Path, source: str, landed: dt.datetime) -> tuple[list[Example], list[dict[str, Any]]]:
    examples, rejected = [], []
    with p.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            header = []
        except csv.Error as exc:
            raise LoadError(f"{p}:1: the header is not CSV ({exc})") from exc
        cols = [h.strip().lower() for h in header]
        allowed = CSV_REQUIRED + CSV_OPTIONAL
        bad = [c for c in cols if c not in allowed]
        missing = [c for c in CSV_REQUIRED if c not in cols]
        if bad or missing or len(set(cols)) != len(cols):
            raise LoadError(
                f"{p}:1: header {header!r} is not a tuneloop CSV; expected columns text,label "
                f"(required) and optionally corrected,created_at, e.g. 'text,label,corrected'"
                + (f"; unknown: {bad}" if bad else "")
                + (f"; missing: {missing}" if missing else "")
            )
        prev_end = reader.line_num
        name = p.name
        while True:
            start = prev_end + 1
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                rejected.append({"line": start, "reason": f"line: not valid CSV ({exc}); fix the quoting"})
                prev_end = reader.line_num
                continue
            prev_end = reader.line_num
            if not values or all(not v.strip() for v in values):
                continue
            try:
                if len(values) != len(cols):
                    raise ExampleError(
                        "line",
                        f"has {len(values)} fields, the header has {len(cols)}; quote text that holds commas",
                    )
                rec = dict(zip(cols, values, strict=True))
                if not rec["text"].strip():
                    raise ExampleError("text", "is empty; fill it or drop the line")
                if not rec["label"].strip():
                    raise ExampleError(
                        "label", "is empty; a CSV import is labelled data, fill it or drop the line"
                    )
                corrected = _truthy(rec.get("corrected"))
                created = rec.get("created_at", "").strip() or landed
                examples.append(
                    classification_example(
                        rec["text"],
                        rec["label"],
                        source="corrected" if corrected else source,
                        created_at=created,
                        meta={"loaded_from": name, "line": start},
                    )
                )
            except ExampleError as exc:
                rejected.append({"line": start, "reason": str(exc)})
    return examples, rejected


def format_report(report: LoadReport, *, max_lines: int = 20) -> str:
    """A human summary of a load for the CLI: counts, then the first rejected lines."""
    out = [
        f"{report.path}: inserted {report.inserted} row(s) into {report.table}, rejected {len(report.rejected)}"
    ]
    for r in report.rejected[:max_lines]:
        out.append(f"  line {r['line']}: {r['reason']}")
    if len(report.rejected) > max_lines:
        out.append(f"  ... {len(report.rejected) - max_lines} more (see the JSON report)")
    return "\n".join(out)


def report_json(report: LoadReport) -> str:
    """The report as one JSON document."""
    return json.dumps(report.to_dict(), ensure_ascii=False, indent=2)
