"""Checking a user's provider JSONL file line by line (``tuneloop validate``, the hosted preflight).

:func:`validate_file` streams the file: each line is parsed, counted and checked with the same rules
:func:`tuneloop.formats.format_dataset` applies, and only the problems are kept, so a file of any
size is checked in bounded memory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloop.examples import SPLITS
from tuneloop.formats.base import Format, Limits
from tuneloop.formats.jsonl import paused_gc
from tuneloop.formats.registry import resolve
from tuneloop.formats.reports import RowProblem, ValidationReport

if TYPE_CHECKING:  # pragma: no cover
    from tuneloop.catalog import Catalog

BATCH_ROWS = 4096  # rows parsed, counted and checked together


def _parse(raw: bytes) -> tuple[Any, list[str] | None]:
    try:
        return json.loads(raw.rstrip(b"\r\n")), None
    except UnicodeDecodeError as exc:
        return None, [f"line: not UTF-8 ({exc.reason} at byte {exc.start}); save the file as UTF-8"]
    except json.JSONDecodeError as exc:
        what = exc.msg.removesuffix(" at")
        return None, [f"line: invalid JSON: {what} at column {exc.colno}; fix or remove the line"]


def validate_file(
    path: str | os.PathLike[str],
    fmt: str | Format,
    *,
    model: str | None = None,
    limits: Limits | None = None,
    split: str = "train",
    epochs: int | None = None,
    catalog: Catalog | None = None,
) -> ValidationReport:
    """Check a provider JSONL file against that provider's rules, line by line.

    Lines that are not valid JSON are reported with their line number and the parser's message;
    nothing raises on bad content.

    Args:
        path: the JSONL file.
        fmt: one of FORMAT_NAMES or a Format.
        model: whose limits apply (default: the catalog's default for the format's provider).
        limits: override the catalog limits.
        split: ``train`` applies the row-count and file-size rules; ``validation`` its own cap.
        epochs: epochs to price (default: the model's default, else the auto rule).
        catalog: another catalog.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unknown format, split or model.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {', '.join(SPLITS)}")
    f, info = resolve(fmt, model, catalog)
    limits = limits or Limits.from_model(info)
    p = Path(path)
    problems: list[RowProblem] = []
    rows_total = total = biggest = 0

    def check(batch: list[tuple[int, Any]]) -> None:
        nonlocal total, biggest
        tokens = f.count_tokens([row for _, row in batch])
        for (lineno, row), t in zip(batch, tokens, strict=True):
            reasons = f.validate(row, limits, tokens=t)
            if reasons:
                problems.append(RowProblem(lineno, tuple(reasons)))
            else:
                total += t
                biggest = max(biggest, t)

    with paused_gc(), p.open("rb") as fh:  # many small acyclic objects; see paused_gc
        batch: list[tuple[int, Any]] = []
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            rows_total += 1
            row, broken = _parse(raw)
            if broken:
                check(batch)  # keep the problems in line order
                batch = []
                problems.append(RowProblem(lineno, tuple(broken)))
                continue
            batch.append((lineno, row))
            if len(batch) >= BATCH_ROWS:
                check(batch)
                batch = []
        check(batch)
    ok_rows = rows_total - len(problems)
    file_errors = f.file_issues(split, ok_rows, p.stat().st_size, limits)
    n_epochs = info.epochs_for(ok_rows, epochs)
    return ValidationReport(
        path=str(p),
        format=f.name,
        model=info.name,
        split=split,
        rows_total=rows_total,
        rows_ok=ok_rows,
        problems=tuple(problems),
        file_errors=tuple(file_errors),
        tokens_total=total,
        tokens_max=biggest,
        tokens_exact=f.tokens_exact,
        estimated_cost_usd=info.training_cost_usd(total, n_epochs),
        epochs=n_epochs,
    )
