"""Bring your own data: load a canonical JSONL file or a ``text,label[,corrected,created_at]`` CSV into the warehouse.

``tuneloop load FILE --warehouse duckdb:///PATH --table NAME`` calls :func:`load_file`. The file is
read a chunk at a time (memory does not grow with the file). Each line is validated into a
canonical example; a line that fails is reported with its line number and a reason naming the
column, and is not inserted; the good ones are (one transaction per chunk on DuckDB, so a row lands
whole or not at all). An example whose id (the content hash of its messages and label) is already
in the table, or earlier in the file, is a *duplicate*: counted, not inserted again, so loading the
same file twice stores each row once.

CSV columns (:data:`CSV_COLUMNS`; the header names them, in any order):

* ``text`` (required): the message a person wrote; it becomes the user turn.
* ``label`` (required): the right answer for it (intent, category); it becomes the assistant turn
  and the example's label.
* ``corrected`` (optional): yes/no, whether a person corrected this label (1/true/yes/y/t/x or
  0/false/no/n/f, empty = no). A corrected row is a human correction: source ``corrected``, weight
  2.0, and it supersedes other answers to the same text. The corrected label itself goes in ``label``.
* ``created_at`` (optional): when the message was written, ISO-8601 (e.g. ``2025-05-01T10:00:00Z``);
  empty = the load time.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.examples import SOURCES, Example, ExampleError, classification_example, iter_jsonl_dicts
from tuneloop.warehouse.base import InsertError, example_to_row, iso, open_warehouse, to_utc, utc_datetime
from tuneloop.warehouse.sql import validate_identifier

CSV_COLUMNS: Mapping[str, str] = {
    "text": "required: the message a person wrote (the user turn)",
    "label": "required: the right answer for it, e.g. the intent (the assistant turn and the example's label)",
    "corrected": (
        "optional yes/no (1/true/yes or 0/false/no, empty = no): a person corrected this label; the row "
        "becomes a human correction (weight 2.0) that supersedes other answers to the same text. The "
        "corrected label itself goes in the label column"
    ),
    "created_at": "optional ISO-8601 time the message was written, e.g. 2025-05-01T10:00:00Z (empty = load time)",
}
CSV_REQUIRED = ("text", "label")
CSV_OPTIONAL = ("corrected", "created_at")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv",)
TRUE_WORDS = ("1", "true", "yes", "y", "t", "x")
FALSE_WORDS = ("", "0", "false", "no", "n", "f")
DEFAULT_SOURCE = "imported"
CHUNK_ROWS = 20_000  # lines validated, checked for duplicates and inserted together
DUPLICATE_LINES_KEPT = 100  # line numbers of duplicates listed in the report (all are counted)
_EXISTING_IDS = "SELECT DISTINCT t.id FROM {{table}} AS t INNER JOIN UNNEST(@ids) AS new_id ON t.id = new_id"


class LoadError(ValueError):
    """The file as a whole cannot be loaded (unknown format, bad CSV header)."""


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_file` did.

    Attributes:
        inserted: Rows now in the table.
        rejected: ``{"line": n, "reason": "<column>: <why and fix>"}`` for each line not inserted.
        table: The table loaded into.
        path: The file read.
        duplicates: Valid lines not inserted because their example (same id) was already in the table
            or earlier in the file.
        duplicate_lines: The first :data:`DUPLICATE_LINES_KEPT` of those line numbers.
    """

    inserted: int
    rejected: list[dict[str, Any]] = field(default_factory=list)
    table: str = ""
    path: str = ""
    duplicates: int = 0
    duplicate_lines: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what ``tuneloop load --report FILE`` writes)."""
        return {
            "path": self.path,
            "table": self.table,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "duplicate_lines": list(self.duplicate_lines),
            "rejected": list(self.rejected),
        }


def load_file(
    path: str | Path,
    warehouse_uri: str,
    table: str,
    *,
    source: str | None = None,
    ingested_at: dt.datetime | str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> LoadReport:
    """Validate a file's rows into canonical examples and append the new ones to ``table``.

    Formats (by extension):

    - ``.jsonl`` / ``.ndjson`` / ``.json``: one canonical record per line (see ``tuneloop.examples``).
    - ``.csv`` with a header of ``text,label`` plus optional ``corrected`` and ``created_at`` columns
      (:data:`CSV_COLUMNS` says what each holds). A row becomes ``[user: text, assistant: label]``.

    Args:
        path: The file.
        warehouse_uri: e.g. ``duckdb:///warehouse.duckdb``; the table is created if missing.
        table: Table name (``table`` or ``dataset.table``).
        source: Source of rows that do not say (JSONL records without ``source``; CSV rows not
            marked corrected). Default ``imported``.
        ingested_at: Landing time stamped on every row (default now); the extract's watermark column.
        chunk_rows: Lines read, checked and inserted together.

    Returns:
        A :class:`LoadReport`: inserted, duplicates (already in the table: not inserted again), rejected.

    Raises:
        LoadError: unknown extension, or a CSV header without the expected columns (nothing inserted).
        FileNotFoundError: no such file.
        InsertError: the warehouse refused a chunk; the message says how many rows landed before it.
        ValueError: a bad ``table``, ``source``, ``ingested_at`` or ``chunk_rows``.
    """
    p = Path(path)
    validate_identifier(table)
    if source is not None and source not in SOURCES:
        raise ValueError(f"source={source!r} is not one of {list(SOURCES)}")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows!r} must be an integer >= 1")
    landed = utc_datetime() if ingested_at is None else to_utc(ingested_at, "ingested_at")
    if not p.is_file():
        raise FileNotFoundError(f"path={str(p)!r}: no such file")
    suffix = p.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        lines = _read_jsonl(p, source or DEFAULT_SOURCE, landed)
    elif suffix in CSV_SUFFIXES:
        lines = _read_csv(p, source or DEFAULT_SOURCE, landed)
    else:
        raise LoadError(
            f"path={str(p)!r}: unknown file type {suffix!r}; use canonical JSONL ({', '.join(JSONL_SUFFIXES)}) "
            f"or CSV ({', '.join(CSV_SUFFIXES)}) with columns text,label[,corrected,created_at]"
        )
    chunks = _chunks(lines, chunk_rows)
    first = next(chunks, [])  # a bad header fails here, before the warehouse is touched
    rejected: list[dict[str, Any]] = []
    dup_lines: list[int] = []
    inserted = duplicates = 0
    wh = open_warehouse(warehouse_uri)
    try:
        wh.ensure_table(table)
        for chunk in _prepend(first, chunks):
            good: dict[str, tuple[int, Example]] = {}  # id -> its first line in this chunk
            repeats: list[int] = []
            for lineno, item in chunk:
                if isinstance(item, str):
                    rejected.append({"line": lineno, "reason": item})
                elif item.id in good:
                    repeats.append(lineno)
                else:
                    good[item.id] = (lineno, item)
            known = _existing_ids(wh, table, list(good))
            repeats += [good.pop(i)[0] for i in known]
            duplicates += len(repeats)
            dup_lines += sorted(repeats)[: max(0, DUPLICATE_LINES_KEPT - len(dup_lines))]
            rows = [example_to_row(e, ingested_at=landed) for _, e in sorted(good.values(), key=lambda t: t[0])]
            try:
                inserted += wh.insert_rows(table, rows)
            except InsertError as exc:
                raise InsertError(
                    f"{p}: {inserted} new row(s) were inserted before this failure (lines up to the chunk "
                    f"that failed; {duplicates} duplicate(s) skipped); load the file again after fixing the "
                    f"cause: rows already in the table are skipped as duplicates: {exc}"
                ) from exc
    finally:
        wh.close()
    return LoadReport(
        inserted=inserted,
        rejected=rejected,
        table=table,
        path=str(p),
        duplicates=duplicates,
        duplicate_lines=sorted(dup_lines)[:DUPLICATE_LINES_KEPT],
    )


def _existing_ids(wh, table: str, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    found = wh.query(_EXISTING_IDS, {"ids": ids}, identifiers={"table": table})
    return set(found.column("id").to_pylist()) if found.num_rows else set()


def _chunks(lines: Iterator[tuple[int, Example | str]], size: int) -> Iterator[list[tuple[int, Example | str]]]:
    chunk: list[tuple[int, Example | str]] = []
    for item in lines:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _prepend(first: list, rest: Iterator[list]) -> Iterator[list]:
    if first:
        yield first
    yield from rest


def _read_jsonl(p: Path, source: str, landed: dt.datetime) -> Iterator[tuple[int, Example | str]]:
    """``(line, example)`` for each valid record, ``(line, reason)`` for each bad one."""
    # weight None: make_example's default by source (corrections 2.0), which from_dict's 1.0 would hide
    defaults = {"source": source, "created_at": iso(landed), "weight": None}
    for lineno, obj in iter_jsonl_dicts(p):
        try:
            if isinstance(obj, Exception):
                raise obj
            if isinstance(obj, dict):
                obj = {**defaults, **obj}
            yield lineno, Example.from_dict(obj)
        except ExampleError as exc:
            yield lineno, str(exc)


def _truthy(value: str | None, label: str) -> bool:
    v = (value or "").strip().lower()
    if v in TRUE_WORDS:
        return True
    if v in FALSE_WORDS:
        return False
    given = (value or "").strip()
    if given == label.strip():
        hint = "; it repeats the label: write yes if a person corrected this label"
    else:
        hint = f"; if {given!r} is the corrected label, put it in the label column and write corrected=yes"
    raise ExampleError(
        "corrected",
        f"{value!r} is not yes/no; the column says whether a person corrected the label: write "
        f"1/true/yes or 0/false/no (or leave it empty){hint}",
    )


def _read_csv(p: Path, source: str, landed: dt.datetime) -> Iterator[tuple[int, Example | str]]:
    """``(line, example)`` for each valid row, ``(line, reason)`` for each bad one (first line of a row)."""
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
                + " (tuneloop load --help says what each column holds)"
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
                yield start, f"line: not valid CSV ({exc}); fix the quoting"
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
                corrected = _truthy(rec.get("corrected"), rec["label"])
                created = rec.get("created_at", "").strip() or landed
                yield start, classification_example(
                    rec["text"],
                    rec["label"],
                    source="corrected" if corrected else source,
                    created_at=created,
                    meta={"loaded_from": name, "line": start},
                )
            except ExampleError as exc:
                yield start, str(exc)


def format_report(report: LoadReport, *, max_lines: int = 20) -> str:
    """A human summary of a load for the CLI: counts, then the first rejected lines."""
    out = [
        f"{report.path}: inserted {report.inserted} row(s) into {report.table}, "
        f"{report.duplicates} duplicate(s) already loaded (not inserted again), rejected {len(report.rejected)}"
    ]
    for r in report.rejected[:max_lines]:
        out.append(f"  line {r['line']}: {r['reason']}")
    if len(report.rejected) > max_lines:
        out.append(f"  ... {len(report.rejected) - max_lines} more (write them all with --report FILE)")
    return "\n".join(out)


def report_json(report: LoadReport) -> str:
    """The report as one JSON document."""
    return json.dumps(report.to_dict(), ensure_ascii=False, indent=2)
