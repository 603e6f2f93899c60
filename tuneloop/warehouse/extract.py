"""Incremental extract: the rows that landed since the last watermark, as validated canonical examples.

Each run reads rows with ``ingested_at > watermark`` (packaged template ``extract_examples.sql``) and
returns the new watermark (the newest ``ingested_at`` read). Rows that are not valid examples are
returned as quarantine entries with a reason; they still advance the watermark, because the caller
writes the quarantine: they are set aside, not lost, and not read again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.examples import Example, ExampleError, make_example
from tuneloop.parallel import Pool, default_workers
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
    utc_datetime,
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
# Rows validated together (one Arrow record batch from the warehouse).
BATCH_ROWS = 20_000
# Batches validated in this process before the rest go to worker processes (tuneloop.parallel); the
# workers start as soon as a batch's worth of rows shows the extract is large, and import meanwhile.
PARALLEL_AFTER_BATCHES = 1


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


def _check_args(table: str, watermark: str | None, max_rows: int | None, settle_seconds: float):
    validate_identifier(table)
    since = EPOCH if watermark is None else to_utc(watermark, "watermark")
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1):
        raise ValueError(f"max_rows={max_rows!r} must be an integer >= 1 or None (no limit)")
    if isinstance(settle_seconds, bool) or not isinstance(settle_seconds, int | float) or settle_seconds < 0:
        raise ValueError(f"settle_seconds={settle_seconds!r} must be a number >= 0")
    return since


def iter_extract(
    warehouse_uri: str | Warehouse,
    table: str,
    watermark: str | None,
    *,
    max_rows: int | None = None,
    settle_seconds: float = 0.0,
    batch_rows: int | None = None,
) -> Iterator[ExtractBatch]:
    """:func:`extract_new`, a batch at a time: the rows stream from the warehouse in Arrow record
    batches and each is validated into examples on its own, so no more than a batch is held.

    Arguments and errors as :func:`extract_new`; ``batch_rows`` bounds the rows per batch (default
    :data:`BATCH_ROWS`; DuckDB; BigQuery streams the pages its API returns). Batches come in landing order.
    """
    since = _check_args(table, watermark, max_rows, settle_seconds)
    batch_rows = batch_rows or BATCH_ROWS
    wh = open_warehouse(warehouse_uri) if isinstance(warehouse_uri, str) else warehouse_uri
    try:
        if not wh.has_table(table):
            raise WarehouseError(
                f"table={table!r} does not exist in {wh.uri}; load data first: "
                f"tuneloop load FILE --warehouse {wh.uri} --table {table}"
            )
        params = {
            "watermark": since,
            "read_until": utc_datetime() - dt.timedelta(seconds=settle_seconds),
            "max_rows": NO_LIMIT if max_rows is None else max_rows,
        }
        query = getattr(wh, "query_batches", None)
        if query is None:  # a backend without streaming: one batch
            batches: Iterable[Any] = wh.query(load_query(EXTRACT_QUERY), params, identifiers={"table": table}).to_batches()
        elif "batch_rows" in inspect.signature(query).parameters:
            batches = query(load_query(EXTRACT_QUERY), params, identifiers={"table": table}, batch_rows=batch_rows)
        else:
            batches = query(load_query(EXTRACT_QUERY), params, identifiers={"table": table})
        # Validation is Python per row: large extracts spread their batches over the machine's cores.
        yield from _validated(batches, batch_rows)
    finally:
        if isinstance(warehouse_uri, str):
            wh.close()


def _validated(batches: Iterable[Any], batch_rows: int) -> Iterator[ExtractBatch]:
    """:func:`_validate` of each non-empty batch, in order; once ``batch_rows`` rows have arrived (one
    full DuckDB batch, or several smaller BigQuery pages) the extract counts as large: worker processes
    start (importing while the first batches are validated here) and take the batches after the first
    :data:`PARALLEL_AFTER_BATCHES`."""
    it = (b for b in batches if b.num_rows)
    pool = None
    seen = 0
    try:
        for i, batch in enumerate(it):
            seen += batch.num_rows
            if pool is None and seen >= batch_rows and default_workers() > 1:
                pool = Pool(preload=(__name__,))
            yield _validate(batch)
            if i + 1 >= PARALLEL_AFTER_BATCHES and pool is not None:
                yield from pool.map(_validate, it)
                return
    finally:
        if pool is not None:
            pool.close()


@dataclass(frozen=True)
class ExtractBatch:
    """One batch of an extract: its valid examples, its quarantine entries, and its newest landing time.

    ``examples`` holds the valid rows as :class:`Example` objects, or ``table`` holds them as an Arrow
    table of the canonical schema (the streamed path builds no objects); :meth:`example_list` and
    :meth:`arrow` give either form.
    """

    examples: list[Example] | None
    quarantined: list[dict[str, Any]]
    rows_read: int
    newest: dt.datetime | None
    ids_recomputed: int
    table: Any = None

    @property
    def n_examples(self) -> int:
        return len(self.examples) if self.examples is not None else self.table.num_rows

    def example_list(self) -> list[Example]:
        from tuneloop.examples import from_arrow

        return self.examples if self.examples is not None else from_arrow(self.table)

    def arrow(self):
        from tuneloop.examples import to_arrow

        return self.table if self.table is not None else to_arrow(self.examples)


def _validate(batch: Any) -> ExtractBatch:
    """Validate one record batch of table rows into examples (an Arrow table) and quarantine entries.

    Rows in the common form take :func:`tuneloop.examples.checked_parts` (no objects built); any
    other row takes :func:`row_to_example`, which accepts it exactly as make_example does or names
    why not. Both give the same example for the same row.
    """
    import pyarrow.compute as pc

    from tuneloop.formats.jsonl import paused_gc

    newest = pc.max(batch.column(COL_INGESTED_AT)).as_py()
    with paused_gc():  # one batch of small acyclic objects (see paused_gc)
        return _validate_columns(_columns(batch), batch.num_rows, newest)


def _validate_columns(cols: dict[str, list[Any]], n: int, newest: dt.datetime | None) -> ExtractBatch:
    """:func:`_validate` on the batch's columns as Python lists (``n`` rows)."""
    from tuneloop.examples import _META_JSON, ArrowColumns, checked_parts

    names = list(cols)
    nones = [None] * n
    ids, msgs, labels, sources, weights, created, ingested, metas = (
        cols.get(c, nones) for c in (COL_ID, COL_MESSAGES, COL_LABEL, COL_SOURCE, COL_WEIGHT, COL_CREATED_AT,
                                     COL_INGESTED_AT, COL_META)
    )
    out = ArrowColumns()
    quarantined: list[dict[str, Any]] = []
    recomputed = 0
    meta_cache: dict[str, Any] = {}
    for i in range(n):
        source = sources[i]
        parts = checked_parts(msgs[i], labels[i], DEFAULT_SOURCE if source is None else source, weights[i],
                              created[i] or ingested[i], metas[i], meta_cache)
        if parts is not None:
            example_id, turns, label, src, weight, created_at, meta, meta_json = parts
            stored = ids[i]
            if stored not in (None, "") and stored != example_id:
                meta_json = _META_JSON({**meta, META_WAREHOUSE_ID: stored})
                recomputed += 1
            out.add_checked(example_id, turns, label, src, weight, created_at, meta_json)
            continue
        row = {name: cols[name][i] for name in names}
        try:
            ex, changed = row_to_example(row)
        except ExampleError as exc:
            quarantined.append({"row": json_safe_row(row), "reason": str(exc)})
            continue
        recomputed += changed
        out.add(ex)
    return ExtractBatch(None, quarantined, n, newest, recomputed, table=out.table())


def _columns(batch: Any) -> dict[str, list[Any]]:
    """The batch as Python lists by column; UTC microsecond timestamps become their canonical ISO strings
    in one vectorized step (what :func:`tuneloop.warehouse.base.iso` writes), the rest as Python values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name in (COL_CREATED_AT, COL_INGESTED_AT):
        i = batch.schema.get_field_index(name)
        typ = batch.schema.field(i).type if i >= 0 else None
        if pa.types.is_timestamp(typ) and typ.unit == "us" and typ.tz in (None, "UTC", "Etc/UTC", "+00:00"):
            # = strftime("%Y-%m-%dT%H:%M:%S.%fZ") of the UTC value (years 1-9999 zero-padded, 6 digits), about
            # 20x faster than pc.strftime: the tz-free cast prints the stored UTC value, no zone lookups
            text = batch.column(i).cast(pa.timestamp("us")).cast(pa.string())
            iso = pc.binary_join_element_wise(pc.replace_substring(text, " ", "T", max_replacements=1), "Z", "")
            batch = batch.set_column(i, name, iso)
    return {name: batch.column(j).to_pylist() for j, name in enumerate(batch.schema.names)}


def _notes(recomputed: int) -> tuple[str, ...]:
    if recomputed:
        return (f"{recomputed} stored id(s) disagreed with the content hash; the hash is the id",)
    return ()


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
        (:func:`extract_to_files` writes them as it reads, holding one batch at a time.)

    Raises:
        ValueError: a bad ``table``, ``watermark``, ``max_rows`` or ``settle_seconds``.
        WarehouseError: the table does not exist or the query failed.
    """
    watermark_from = None if watermark is None else iso(_check_args(table, watermark, max_rows, settle_seconds))
    examples: list[Example] = []
    quarantined: list[dict[str, Any]] = []
    rows = recomputed = 0
    newest: dt.datetime | None = None
    for batch in iter_extract(warehouse_uri, table, watermark, max_rows=max_rows, settle_seconds=settle_seconds):
        examples += batch.example_list()
        quarantined += batch.quarantined
        rows += batch.rows_read
        recomputed += batch.ids_recomputed
        if batch.newest is not None and (newest is None or batch.newest > newest):
            newest = batch.newest
    return ExtractResult(
        examples=examples,
        quarantined=quarantined,
        rows_read=rows,
        watermark_from=watermark_from,
        watermark_to=iso(newest) if newest is not None else watermark_from,
        ids_recomputed=recomputed,
        notes=_notes(recomputed),
    )


@dataclass(frozen=True)
class ExtractSummary:
    """What :func:`extract_to_files` read and wrote (counts, not rows).

    Attributes:
        rows_read: examples + quarantined.
        examples: valid rows written to the examples file.
        quarantined: bad rows written to the quarantine file, a reason each.
        watermark_from / watermark_to / ids_recomputed / notes: as in :class:`ExtractResult`.
    """

    rows_read: int
    examples: int
    quarantined: int
    watermark_from: str | None
    watermark_to: str | None
    ids_recomputed: int = 0
    notes: tuple[str, ...] = ()


def extract_to_files(
    warehouse_uri: str | Warehouse,
    table: str,
    watermark: str | None,
    examples_path: str | Path,
    quarantine_path: str | Path,
    *,
    max_rows: int | None = None,
    settle_seconds: float = 0.0,
    batch_rows: int | None = None,
) -> ExtractSummary:
    """:func:`extract_new` straight to disk: examples to Parquet, quarantine to JSONL, a batch at a time.

    Memory stays at about one batch however many rows are new. The files hold exactly what
    :func:`extract_new` returns (same rows, same order).
    """
    watermark_from = None if watermark is None else iso(_check_args(table, watermark, max_rows, settle_seconds))
    batches = iter_extract(
        warehouse_uri, table, watermark, max_rows=max_rows, settle_seconds=settle_seconds, batch_rows=batch_rows
    )
    return write_batches(batches, examples_path, quarantine_path, watermark_from)


def write_batches(
    batches: Iterable[ExtractBatch], examples_path: str | Path, quarantine_path: str | Path, watermark_from: str | None
) -> ExtractSummary:
    """Write extract batches as they come (examples to Parquet, quarantine to JSONL) and sum them up; the new
    watermark is the newest row read (``watermark_from`` when none was)."""
    from tuneloop.examples import ExamplesParquetWriter, JsonlWriter

    rows = n_examples = n_quarantined = recomputed = 0
    newest: dt.datetime | None = None
    with ExamplesParquetWriter(examples_path) as out, JsonlWriter(quarantine_path) as bad:
        for batch in batches:
            out.write_arrow(batch.arrow())
            bad.write(batch.quarantined)
            rows += batch.rows_read
            n_examples += batch.n_examples
            n_quarantined += len(batch.quarantined)
            recomputed += batch.ids_recomputed
            if batch.newest is not None and (newest is None or batch.newest > newest):
                newest = batch.newest
    return ExtractSummary(
        rows_read=rows,
        examples=n_examples,
        quarantined=n_quarantined,
        watermark_from=watermark_from,
        watermark_to=iso(newest) if newest is not None else watermark_from,
        ids_recomputed=recomputed,
        notes=_notes(recomputed),
    )
