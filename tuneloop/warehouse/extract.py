"""Incremental extract: the rows that landed since the last watermark, as validated canonical examples.

Each run reads rows with ``ingested_at > watermark`` (packaged template ``extract_examples.sql``) and
returns the new watermark (the newest ``ingested_at`` read). Rows that are not valid examples are
returned as quarantine entries with a reason; they still advance the watermark, because the caller
writes the quarantine: they are set aside, not lost, and not read again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuneloop.examples import Example, ExampleError, make_example
from tuneloop.warehouse.base import (
    COL_CREATED_AT,
    COL_ID,
    COL_INGESTED_AT,
    COL_LABEL,
    COL_MESSAGES,
    COL_META,
    COL_SOURCE,
    COL_WEIGHT,
    Warehouse,
    WarehouseError,
    iso,
    json_safe_row,
    open_warehouse,
    to_utc,
    utc_now,
)
from tuneloop.warehouse.sql import load_query, validate_identifier

EXTRACT_QUERY = "extract_examples"
# Before any watermark: the smallest BigQuery TIMESTAMP.
EPOCH = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
# "No limit" for the @max_rows parameter (an INT64).
NO_LIMIT = 2**62
# source of a row whose source is NULL (as Example.from_dict defaults a missing source).
DEFAULT_SOURCE = "live"
# meta key that keeps a stored id that disagreed with the content hash.
META_WAREHOUSE_ID = "warehouse_id"


@dataclass(frozen=True)
class ExtractResult:
    """What one extract read.

    Attributes:
        examples: Valid rows as canonical examples (ids recomputed from content), oldest landing first.
        quarantined: ``{"row": <raw row, JSON-safe>, "reason": "<field>: <why and fix>"}`` per bad row.
        rows_read: examples + quarantined.
        watermark_from: The watermark this run started after (None on the first run).
        watermark_to: The newest ``ingested_at`` read; equals ``watermark_from`` when nothing was new.
        ids_recomputed: Rows whose stored id disagreed with the content hash (the hash wins; the stored
            id is kept in ``meta["warehouse_id"]``).
    """

    examples: list[Example]
    quarantined: list[dict[str, Any]]
    rows_read: int
    watermark_from: str | None
    watermark_to: str | None
    ids_recomputed: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def advanced(self) -> bool:
        """Whether the watermark moved (something new was read, valid or not)."""
        return self.watermark_to != self.watermark_from

    def summary(self) -> dict[str, Any]:
        """Counts and watermarks, for logs and pipeline metadata."""
        return {
            "rows_read": self.rows_read,
            "examples": len(self.examples),
            "quarantined": len(self.quarantined),
            "ids_recomputed": self.ids_recomputed,
            "watermark_from": self.watermark_from,
            "watermark_to": self.watermark_to,
        }


def row_to_example(row: Mapping[str, Any]) -> tuple[Example, bool]:
    """Validate one table row into an Example.

    The id is recomputed from the content; a stored id that disagrees is not an error (it is kept in
    ``meta["warehouse_id"]`` and the second value returned is True). NULL columns take the canonical
    defaults: source ``live``, weight by source (2.0 for corrections, else 1.0), ``created_at`` =
    ``ingested_at``, meta ``{}``.

    Raises:
        ExampleError: naming the bad field and the fix.
    """
    created = row.get(COL_CREATED_AT) or row.get(COL_INGESTED_AT)
    ex = make_example(
        row.get(COL_MESSAGES),
        label=row.get(COL_LABEL),
        source=DEFAULT_SOURCE if row.get(COL_SOURCE) is None else row[COL_SOURCE],
        weight=row.get(COL_WEIGHT),
        created_at=created,
        meta=row.get(COL_META),
    )
    stored = row.get(COL_ID)
    if stored not in (None, "") and stored != ex.id:
        return dataclasses.replace(ex, meta={**ex.meta, META_WAREHOUSE_ID: stored}), True
    return ex, False


def extract_new(
    warehouse_uri: str | Warehouse,
    table: str,
    watermark: str | None,
    *,
    max_rows: int | None = None,
    settle_seconds: float = 0.0,
) -> ExtractResult:
    """Read the rows that landed after ``watermark`` and validate them into examples.

    Args:
        warehouse_uri: A warehouse URI (opened and closed here) or an open :class:`Warehouse`.
        table: The interaction table, ``table`` or ``dataset.table``.
        watermark: The previous run's ``watermark_to`` (ISO-8601), or None to read everything.
        max_rows: Read about this many rows (None: all). Rows sharing the last ``ingested_at`` are
            read together, so a single load larger than ``max_rows`` is read whole.
        settle_seconds: Leave rows that landed in the last N seconds for the next run (streaming
            inserts on BigQuery become visible with a delay; 0 reads everything up to now).

    Returns:
        An :class:`ExtractResult`; write its ``quarantined`` rows and keep ``watermark_to`` for the next run.

    Raises:
        ValueError: a bad ``table``, ``watermark``, ``max_rows`` or ``settle_seconds``.
        WarehouseError: the table does not exist or the query failed.
    """
    validate_identifier(table)
    since = EPOCH if watermark is None else to_utc(watermark, "watermark")
    watermark_from = None if watermark is None else iso(since)
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1):
        raise ValueError(f"max_rows={max_rows!r} must be an integer >= 1 or None (no limit)")
    if isinstance(settle_seconds, bool) or not isinstance(settle_seconds, int | float) or settle_seconds < 0:
        raise ValueError(f"settle_seconds={settle_seconds!r} must be a number >= 0")

    wh = open_warehouse(warehouse_uri) if isinstance(warehouse_uri, str) else warehouse_uri
    try:
        if not wh.has_table(table):
            raise WarehouseError(
                f"table={table!r} does not exist in {wh.uri}; load data first: "
                f"tuneloop load FILE --warehouse {wh.uri} --table {table}"
            )
        result = wh.query(
            load_query(EXTRACT_QUERY),
            {
                "watermark": since,
                "read_until": utc_now() - dt.timedelta(seconds=settle_seconds),
                "max_rows": NO_LIMIT if max_rows is None else max_rows,
            },
            identifiers={"table": table},
        )
    finally:
        if isinstance(warehouse_uri, str):
            wh.close()

    examples: list[Example] = []
    quarantined: list[dict[str, Any]] = []
    recomputed = 0
    newest: dt.datetime | None = None
    for row in result.to_pylist():
        landed = row[COL_INGESTED_AT]
        if newest is None or landed > newest:
            newest = landed
        try:
            ex, changed = row_to_example(row)
        except ExampleError as exc:
            quarantined.append({"row": json_safe_row(row), "reason": str(exc)})
            continue
        recomputed += changed
        examples.append(ex)
    notes = ()
    if recomputed:
        notes = (f"{recomputed} stored id(s) disagreed with the content hash; the hash is the id",)
    return ExtractResult(
        examples=examples,
        quarantined=quarantined,
        rows_read=result.num_rows,
        watermark_from=watermark_from,
        watermark_to=iso(newest) if newest is not None else watermark_from,
        ids_recomputed=recomputed,
        notes=notes,
    )
