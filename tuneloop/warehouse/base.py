"""The warehouse interface, the interaction table's schema, and the buffered ingestor.

One table per loop holds the raw interactions. Its columns (BigQuery types) are the constants below:

==============  =========  ===================================================================
column          type       meaning
==============  =========  ===================================================================
id              STRING     content hash of messages + label (recomputed on extract)
messages        STRING     JSON list of ``{role, content, weight?}`` turns
label           STRING     the label, NULL for unlabelled traffic
source          STRING     live / imported / synthetic / corrected
weight          FLOAT64    training weight (corrections 2.0)
created_at      TIMESTAMP  when the interaction happened
meta            STRING     JSON object
ingested_at     TIMESTAMP  when the row landed in the warehouse: the watermark column
==============  =========  ===================================================================

``ingested_at`` (not ``created_at``) is the watermark, so a row that arrives late with an old
``created_at`` is still read by the next extract. The warehouse stores rows as they came; whether a
row is a valid example is decided on extract, where bad rows are quarantined with a reason.

Backends implement :class:`Warehouse`: ``duckdb://`` (embedded default, :mod:`.duckdb`) and
``bigquery://project/dataset`` (production, :mod:`.bigquery`), behind the same methods.
:class:`Ingestor` appends rows in buffered batches through ``insert_rows`` on either backend
(a streaming insert on BigQuery, a transactional INSERT on DuckDB).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tuneloop.examples import json_encoder

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from tuneloop.examples import Example

# -- schema: the one place the column names live ----------------------------------------------
COL_ID = "id"
COL_MESSAGES = "messages"
COL_LABEL = "label"
COL_SOURCE = "source"
COL_WEIGHT = "weight"
COL_CREATED_AT = "created_at"
COL_META = "meta"
COL_INGESTED_AT = "ingested_at"
WATERMARK_COLUMN = COL_INGESTED_AT

TABLE_COLUMNS = (
    COL_ID,
    COL_MESSAGES,
    COL_LABEL,
    COL_SOURCE,
    COL_WEIGHT,
    COL_CREATED_AT,
    COL_META,
    COL_INGESTED_AT,
)
# BigQuery Standard SQL types; queries/create_table.sql spells the same schema.
COLUMN_TYPES = MappingProxyType(
    {
        COL_ID: "STRING",
        COL_MESSAGES: "STRING",
        COL_LABEL: "STRING",
        COL_SOURCE: "STRING",
        COL_WEIGHT: "FLOAT64",
        COL_CREATED_AT: "TIMESTAMP",
        COL_META: "STRING",
        COL_INGESTED_AT: "TIMESTAMP",
    }
)
_STRING_COLS = (COL_ID, COL_LABEL, COL_SOURCE)
# json.dumps(..., ensure_ascii=False, separators=(",", ":")) [, sort_keys=True], each built once
_COMPACT = json_encoder()
_COMPACT_SORTED = json_encoder(sort_keys=True)
_JSON_COLS = (COL_MESSAGES, COL_META)
_TIME_COLS = (COL_CREATED_AT, COL_INGESTED_AT)

SCHEMES = ("duckdb", "bigquery")
URI_FORMS = (
    "duckdb:///relative/path.duckdb",
    "duckdb:////absolute/path.duckdb",
    "duckdb://:memory:",
    "bigquery://project/dataset",
)


class WarehouseError(RuntimeError):
    """The warehouse refused a statement (missing table, locked file, SQL error)."""


class InsertError(WarehouseError):
    """Rows did not land. ``failed_rows`` holds the indexes of the rows that did not; None means all.

    DuckDB inserts are one transaction, so a failure means none landed. A BigQuery streaming insert
    can fail part of a batch; that backend reports which rows, and :class:`Ingestor` retries only those.
    """

    def __init__(self, message: str, failed_rows: Sequence[int] | None = None):
        super().__init__(message)
        self.failed_rows = None if failed_rows is None else tuple(failed_rows)


@runtime_checkable
class Warehouse(Protocol):
    """What every warehouse backend offers. Templates are BigQuery Standard SQL (see :mod:`.sql`)."""

    uri: str

    def query(
        self,
        template: str,
        params: Mapping[str, Any] | None = None,
        *,
        identifiers: Mapping[str, str] | None = None,
    ) -> pa.Table:
        """Run one statement; ``@name`` values are bound as parameters, ``{{slot}}`` identifiers are quoted.

        Args:
            template: BigQuery Standard SQL with ``@name`` parameters and ``{{slot}}`` identifier slots.
            params: A value for every ``@name``: str, int, float, bool, None, datetime or date.
            identifiers: A table name for every ``{{slot}}``; validated by :func:`.sql.validate_identifier`.

        Returns:
            The result as an Arrow table (empty for statements that return nothing).
        """
        ...

    def has_table(self, table: str) -> bool:
        """Whether the table exists."""
        ...

    def ensure_table(self, table: str) -> None:
        """Create the interaction table if missing; raise WarehouseError if it exists with other columns."""
        ...

    def insert_rows(
        self, table: str, rows: Sequence[Mapping[str, Any]], *, row_ids: Sequence[str] | None = None
    ) -> int:
        """Append rows (keys from TABLE_COLUMNS, values per :func:`coerce_row`); returns the count.

        ``row_ids``: a stable id per row (BigQuery's streaming ``insertId``), for callers that retry.

        Raises:
            InsertError: rows did not land; ``failed_rows`` says which.
        """
        ...

    def insert_records(
        self, table: str, records: Sequence[Mapping[str, Any]], *, row_ids: Sequence[str] | None = None
    ) -> int:
        """Append rows of any table (the game table, a dead-letter table); values are Python values.

        Raises:
            InsertError: rows did not land; ``failed_rows`` says which (None: the whole request).
        """
        ...

    def close(self) -> None:
        """Release the connection; idempotent."""
        ...


# -- rows ----------------------------------------------------------------------------------------


def utc_datetime() -> dt.datetime:
    """The current time as an aware UTC datetime (microseconds)."""
    return dt.datetime.now(dt.UTC)


def to_utc(value: Any, field_name: str) -> dt.datetime:
    """An aware UTC datetime from a datetime (naive = UTC) or an ISO-8601 string.

    Raises:
        ValueError: naming ``field_name`` and the expected form.
    """
    if isinstance(value, dt.datetime):
        ts = value
    elif isinstance(value, str) and value.strip():
        try:
            ts = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(
                f"{field_name}: {value!r} is not an ISO-8601 timestamp; write e.g. 2026-01-31T12:00:00Z"
            ) from exc
    else:
        raise ValueError(
            f"{field_name}: {value!r} is not a timestamp; pass a datetime or e.g. 2026-01-31T12:00:00Z"
        )
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts.astimezone(dt.UTC)


def iso(ts: dt.datetime) -> str:
    """The canonical timestamp string (same form as :func:`tuneloop.examples.normalize_timestamp`)."""
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def coerce_row(row: Mapping[str, Any], *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Check one row against the table's storage types and return it with every column present.

    Only storage types are checked: a row whose messages are malformed JSON is still stored (the
    extract quarantines it with a reason), but a weight that is a string cannot be stored at all.
    Lists/dicts in ``messages``/``meta`` are serialized to JSON; a missing ``ingested_at`` is ``now``.

    Raises:
        ValueError: naming the column, the value and the fix.
    """
    if not isinstance(row, Mapping):
        raise ValueError(f"row: expected a mapping of column -> value, got {type(row).__name__}")
    unknown = sorted(set(row) - set(TABLE_COLUMNS))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown column(s) {unknown}; the table has {list(TABLE_COLUMNS)}")
    out: dict[str, Any] = {}
    for col in _STRING_COLS:
        v = row.get(col)
        if v is not None and not isinstance(v, str):
            raise ValueError(f"{col}: {v!r} is a {type(v).__name__}; store a string or null")
        out[col] = v
    for col in _JSON_COLS:
        v = row.get(col)
        if isinstance(v, list | tuple | dict):
            v = json.dumps(v, ensure_ascii=False, separators=(",", ":"), sort_keys=col == COL_META)
        elif v is not None and not isinstance(v, str):
            raise ValueError(f"{col}: {v!r} is a {type(v).__name__}; store JSON text, a list/dict, or null")
        out[col] = v
    w = row.get(COL_WEIGHT)
    if w is not None and (isinstance(w, bool) or not isinstance(w, int | float)):
        raise ValueError(f"{COL_WEIGHT}: {w!r} is a {type(w).__name__}; store a number or null")
    out[COL_WEIGHT] = None if w is None else float(w)
    for col in _TIME_COLS:
        v = row.get(col)
        out[col] = None if v is None else to_utc(v, col)
    if out[COL_INGESTED_AT] is None:
        out[COL_INGESTED_AT] = now or utc_datetime()
    return {c: out[c] for c in TABLE_COLUMNS}


def example_to_row(example: Example, *, ingested_at: dt.datetime | str | None = None) -> dict[str, Any]:
    """A canonical example as a table row (messages and meta as JSON text)."""
    return {
        COL_ID: example.id,
        COL_MESSAGES: _COMPACT([m.to_dict() for m in example.messages]),
        COL_LABEL: example.label,
        COL_SOURCE: example.source,
        COL_WEIGHT: example.weight,
        COL_CREATED_AT: example.created_at,
        COL_META: _COMPACT_SORTED(dict(example.meta)),
        COL_INGESTED_AT: ingested_at,
    }



def json_safe_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A result row with timestamps as ISO strings and non-finite floats as strings (for quarantine files)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, dt.datetime):
            v = iso(v)
        elif isinstance(v, float) and not math.isfinite(v):
            v = repr(v)
        out[k] = v
    return out


# -- URIs -----------------------------------------------------------------------------------------


def duckdb_uri(path: str) -> str:
    """The warehouse URI of a DuckDB file: ``duckdb_uri("/tmp/w.duckdb") == "duckdb:////tmp/w.duckdb"``."""
    return "duckdb://:memory:" if path == ":memory:" else f"duckdb:///{path}"


def open_warehouse(uri: str) -> Warehouse:
    """Open the warehouse a URI names.

    Args:
        uri: ``duckdb:///relative/path.duckdb``, ``duckdb:////absolute/path.duckdb`` (as SQLAlchemy
            writes them: the path follows ``duckdb:///``; see :func:`duckdb_uri`), ``duckdb://:memory:``;
            ``bigquery://project/dataset[?location=EU]`` (:mod:`.bigquery`; needs the gcp extra and
            credentials from the environment).

    Raises:
        ValueError: an unknown scheme (the message lists the valid forms) or a malformed path.
    """
    if not isinstance(uri, str) or "://" not in uri:
        raise ValueError(f"warehouse={uri!r} is not a warehouse URI; write one of {list(URI_FORMS)}")
    scheme, rest = uri.split("://", 1)
    if scheme == "duckdb":
        from tuneloop.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(_duckdb_path(uri, rest))
    if scheme == "bigquery":
        from tuneloop.warehouse.bigquery import BigQueryWarehouse, parse_bigquery_uri

        project, dataset, location = parse_bigquery_uri(uri)
        return BigQueryWarehouse(project, dataset, location=location)
    raise ValueError(
        f"warehouse={uri!r}: unknown scheme {scheme!r}; valid schemes {list(SCHEMES)}: {list(URI_FORMS)}"
    )


def _duckdb_path(uri: str, rest: str) -> str:
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    if not rest.startswith("/") or rest == "/":
        raise ValueError(
            f"warehouse={uri!r}: write duckdb:///relative/path.duckdb or duckdb:////absolute/path.duckdb "
            "(three slashes, then the path)"
        )
    return rest[1:]


# -- buffered ingest --------------------------------------------------------------------------------


class IngestError(WarehouseError):
    """A flush failed; the rows are still buffered (``Ingestor.pending``) and the next flush retries them."""


class Ingestor:
    """Append interaction records to a table in batches of ``flush_size``; a failed flush keeps them.

    ``add`` checks the row's storage types at once (a row that can never be stored is refused then,
    so it cannot block the buffer) and flushes when the buffer reaches ``flush_size``. ``flush``
    stamps ``ingested_at`` at the moment of the attempt (so a row buffered before an extract but
    landed after it is still newer than that extract's watermark) and removes only rows that landed.
    On BigQuery the insert is a streaming insert; on DuckDB a transactional INSERT. Thread-safe.
    Use as a context manager to flush on exit.

    Args:
        warehouse: An open :class:`Warehouse`.
        table: The interaction table (created by ``warehouse.ensure_table``).
        flush_size: Rows per batch, >= 1.
    """

    def __init__(self, warehouse: Warehouse, table: str, flush_size: int = 500):
        from tuneloop.warehouse.sql import validate_identifier

        validate_identifier(table)
        if isinstance(flush_size, bool) or not isinstance(flush_size, int) or flush_size < 1:
            raise ValueError(f"flush_size={flush_size!r} must be an integer >= 1")
        self.warehouse = warehouse
        self.table = table
        self.flush_size = flush_size
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.RLock()

    @property
    def pending(self) -> list[dict[str, Any]]:
        """A copy of the rows not yet in the warehouse."""
        with self._lock:
            return [dict(r) for r in self._buffer]

    def __len__(self) -> int:
        return len(self._buffer)

    def add(self, record: Example | Mapping[str, Any]) -> int:
        """Buffer one record (an Example or a row mapping); flush when the buffer is full.

        Returns:
            The number of rows flushed by this call (0 when it only buffered).

        Raises:
            ValueError: the record cannot be stored (nothing was buffered).
            IngestError: the automatic flush failed; the record is buffered and will be retried.
        """
        from tuneloop.examples import Example

        row = example_to_row(record) if isinstance(record, Example) else dict(record)
        row.pop(COL_INGESTED_AT, None)  # stamped at flush: the landing time is the watermark
        coerce_row(row)  # refuse now what could never be stored
        with self._lock:
            self._buffer.append(row)
            if len(self._buffer) >= self.flush_size:
                return self.flush()
        return 0

    def flush(self) -> int:
        """Insert every buffered row; returns how many landed.

        Raises:
            IngestError: some or all rows did not land; those stay buffered for the next flush.
        """
        with self._lock:
            if not self._buffer:
                return 0
            batch = self._buffer[:]
            stamp = utc_datetime()
            try:
                n = self.warehouse.insert_rows(self.table, [{**r, COL_INGESTED_AT: stamp} for r in batch])
            except Exception as exc:
                failed = getattr(exc, "failed_rows", None)
                keep = batch if failed is None else [batch[i] for i in failed]
                self._buffer[: len(batch)] = keep
                raise IngestError(
                    f"flush of {len(batch)} row(s) into {self.table} failed, {len(keep)} kept in the buffer "
                    f"(Ingestor.pending); fix the cause and call flush() again: {exc}"
                ) from exc
            del self._buffer[: len(batch)]
            return n

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.flush()
