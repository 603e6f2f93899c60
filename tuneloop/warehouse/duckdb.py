"""The embedded warehouse: a DuckDB file running the same BigQuery templates, transpiled by sqlglot.

Values are bound as DuckDB prepared-statement parameters (``@name`` becomes ``$name``), so a value
is never SQL; identifiers are validated and quoted before the template is transpiled. The session
time zone is UTC, so TIMESTAMP columns (DuckDB ``TIMESTAMPTZ``) come back as UTC Arrow timestamps.

``dataset.table`` maps to a DuckDB schema (created by :meth:`DuckDBWarehouse.ensure_table`);
``project.dataset.table`` names a BigQuery table and is refused here.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tuneloop.warehouse import sql
from tuneloop.warehouse.base import (
    COL_CREATED_AT,
    COL_INGESTED_AT,
    COL_WEIGHT,
    TABLE_COLUMNS,
    InsertError,
    WarehouseError,
    coerce_row,
    duckdb_uri,
    utc_datetime,
)

MAX_PARTS = 2  # table or schema.table
BATCH_ROWS = 20_000  # rows per Arrow record batch a query streams
# DuckDB spills sorts and joins to disk beyond this, so a large table does not grow the process.
MEMORY_LIMIT = "512MB"
_SCALARS = (str, int, float, bool, dt.datetime, dt.date, decimal.Decimal, type(None))


class DuckDBWarehouse:
    """A :class:`tuneloop.warehouse.base.Warehouse` over one DuckDB file (or ``:memory:``).

    DuckDB lets one process open a file for writing; close the warehouse (or use ``with``) when done.

    Args:
        path: The database file (created if missing, parent folders too) or ``":memory:"``.
        read_only: Open the file read-only with external access disabled: the engine then refuses every
            write, and every file, network or extension access (``read_csv``, ``ATTACH``, ``COPY``...), whatever
            the SQL says. The file must exist. Extract queries run this way (:mod:`.extract_query`).
    """

    def __init__(self, path: str | Path, *, read_only: bool = False):
        import duckdb

        self.path = str(path)
        self.uri = duckdb_uri(self.path)
        self.read_only = bool(read_only) and self.path != ":memory:"
        if self.path != ":memory:" and not self.read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.read_only:
                self._con = duckdb.connect(self.path, read_only=True, config={
                    "enable_external_access": False,  # no files, network, extensions, ATTACH
                    "python_enable_replacements": False,  # no Python objects of this process as tables
                })
            else:
                self._con = duckdb.connect(self.path)
        except duckdb.Error as exc:
            raise WarehouseError(
                f"warehouse={self.uri!r}: cannot open {Path(self.path).resolve()}: {exc}. If another process "
                "holds it (DuckDB allows one writer), close that process and retry"
            ) from exc
        self._con.execute("SET TimeZone = 'UTC'").fetchall()
        self._con.execute("SET enable_progress_bar = false").fetchall()  # long queries would draw on stdout
        self._con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'").fetchall()

    # -- Warehouse ---------------------------------------------------------------------------
    def query(
        self,
        template: str,
        params: Mapping[str, Any] | None = None,
        *,
        identifiers: Mapping[str, str] | None = None,
    ):
        """Run one BigQuery-SQL statement on DuckDB; see :meth:`tuneloop.warehouse.base.Warehouse.query`."""
        import pyarrow as pa

        batches = list(self.query_batches(template, params, identifiers=identifiers))
        if not batches:
            return pa.table({})
        return pa.Table.from_batches(batches)

    def query_batches(
        self,
        template: str,
        params: Mapping[str, Any] | None = None,
        *,
        identifiers: Mapping[str, str] | None = None,
        batch_rows: int | None = None,
    ) -> Iterator[Any]:
        """Run one statement and yield its result as Arrow record batches of ``batch_rows`` (default
        :data:`BATCH_ROWS`), streamed: iterate to the end (a statement runs when iterated)."""
        import duckdb

        params = {k: list(v) if isinstance(v, tuple) else v for k, v in (params or {}).items()}
        bq = sql.render(template, identifiers or {}, max_parts=MAX_PARTS)
        sql.check_params(bq, params)
        for name, value in params.items():
            _check_value(name, value)
        duck = sql.transpile(bq, "duckdb")
        try:
            rel = self._con.sql(duck, params=params or None)
            if rel is None:  # a statement without a result set
                return
            reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_record_batch
            yield from reader(batch_rows or BATCH_ROWS)
        except duckdb.CatalogException as exc:
            raise WarehouseError(
                f"{exc} (warehouse {self.uri}); create the table with `tuneloop load FILE --warehouse "
                f"{self.uri} --table NAME` or Warehouse.ensure_table"
            ) from exc
        except duckdb.Error as exc:
            first = " ".join(duck.split())[:200]
            raise WarehouseError(f"query failed on {self.uri}: {exc} (SQL: {first})") from exc

    def has_table(self, table: str) -> bool:
        """Whether ``table`` (or ``schema.table``) exists."""
        parts = sql.validate_identifier(table, max_parts=MAX_PARTS)
        schema, name = (("main",) + parts)[-2:]
        n = self._con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $s AND table_name = $t",
            {"s": schema, "t": name},
        ).fetchall()[0][0]
        return n > 0

    def columns(self, table: str) -> dict[str, str]:
        """Column name -> DuckDB type of an existing table."""
        parts = sql.validate_identifier(table, max_parts=MAX_PARTS)
        schema, name = (("main",) + parts)[-2:]
        rows = self._con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = $s AND table_name = $t ORDER BY ordinal_position",
            {"s": schema, "t": name},
        ).fetchall()
        return dict(rows)

    def ensure_schema(self, table: str) -> None:
        """Create the schema of a ``schema.table`` name if missing (a one-part name lives in ``main``)."""
        parts = sql.validate_identifier(table, max_parts=MAX_PARTS)
        if len(parts) == 2:
            schema = sql.quote_identifier(parts[0], dialect="duckdb")
            self._con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}").fetchall()

    def ensure_table(self, table: str) -> None:
        """Create the interaction table (and its schema) if missing; check the columns if present.

        Raises:
            WarehouseError: the table exists without the interaction columns.
        """
        parts = sql.validate_identifier(table, max_parts=MAX_PARTS)
        if len(parts) == 2:
            schema = sql.quote_identifier(parts[0], dialect="duckdb")
            self._con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}").fetchall()
        self.query(sql.load_query("create_table"), {}, identifiers={"table": table})
        missing = [c for c in TABLE_COLUMNS if c not in self.columns(table)]
        if missing:
            raise WarehouseError(
                f"table={table!r} exists in {self.uri} but lacks columns {missing}; it is not an interaction "
                "table. Pick another --table name or migrate it to tuneloop.warehouse.base.TABLE_COLUMNS"
            )

    def insert_rows(
        self, table: str, rows: Sequence[Mapping[str, Any]], *, row_ids: Sequence[str] | None = None
    ) -> int:
        """Append rows in one transaction (all land or none); see :func:`.base.coerce_row` for values.

        ``row_ids`` (BigQuery's ``insertId``) is not needed here: a failed insert landed nothing.

        Raises:
            ValueError: a row that cannot be stored (nothing inserted), naming the row index.
            InsertError: DuckDB refused the insert (nothing inserted).
        """
        import duckdb
        import pyarrow as pa

        del row_ids
        target = sql.quote_identifier(table, dialect="duckdb", max_parts=MAX_PARTS)
        now = utc_datetime()
        coerced = []
        for i, r in enumerate(rows):
            try:
                coerced.append(coerce_row(r, now=now))
            except ValueError as exc:
                raise ValueError(f"rows[{i}]: {exc}") from exc
        if not coerced:
            return 0
        ts = pa.timestamp("us", tz="UTC")
        schema = pa.schema(
            [
                (
                    c,
                    ts
                    if c in (COL_CREATED_AT, COL_INGESTED_AT)
                    else pa.float64()
                    if c == COL_WEIGHT
                    else pa.string(),
                )
                for c in TABLE_COLUMNS
            ]
        )
        data = pa.Table.from_pylist(coerced, schema=schema)
        view = f"_tuneloop_rows_{uuid.uuid4().hex}"
        cols = ", ".join(f'"{c}"' for c in TABLE_COLUMNS)
        self._con.register(view, data)
        try:
            self._con.execute(f'INSERT INTO {target} ({cols}) SELECT {cols} FROM "{view}"').fetchall()
        except duckdb.Error as exc:
            raise InsertError(
                f"insert of {len(coerced)} row(s) into {table} on {self.uri} failed: {exc}"
            ) from exc
        finally:
            self._con.unregister(view)
        return len(coerced)

    def insert_records(
        self, table: str, records: Sequence[Mapping[str, Any]], *, row_ids: Sequence[str] | None = None
    ) -> int:
        """Append rows of any table (the game table, a dead-letter table) in one transaction.

        Values are Python values (lists, dicts for STRUCTs, aware datetimes); they are converted with the
        table's own Arrow schema, so a missing key is NULL and a nested value must fit the column's type.
        ``row_ids`` is accepted for symmetry with BigQuery's ``insertId`` and not needed here: an insert
        is one transaction, so it landed whole or not at all.

        Raises:
            InsertError: DuckDB refused the rows or they do not fit the columns (nothing inserted).
        """
        import duckdb
        import pyarrow as pa

        del row_ids
        target = sql.quote_identifier(table, dialect="duckdb", max_parts=MAX_PARTS)
        if not records:
            return 0
        try:
            schema = self._con.sql(f"SELECT * FROM {target} LIMIT 0").to_arrow_table().schema
        except duckdb.Error as exc:
            raise InsertError(f"insert into {table} on {self.uri} failed: {exc}") from exc
        unknown = sorted({k for r in records for k in r} - set(schema.names))
        if unknown:
            raise ValueError(f"records: unknown column(s) {unknown} for {table}; it has {schema.names}")
        try:
            data = pa.Table.from_pylist([dict(r) for r in records], schema=schema)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise InsertError(f"rows do not fit the columns of {table} on {self.uri}: {exc}") from exc
        view = f"_tuneloop_rows_{uuid.uuid4().hex}"
        self._con.register(view, data)
        try:
            self._con.execute(f'INSERT INTO {target} BY NAME SELECT * FROM "{view}"').fetchall()
        except duckdb.Error as exc:
            raise InsertError(f"insert of {len(records)} row(s) into {table} on {self.uri} failed: {exc}") from exc
        finally:
            self._con.unregister(view)
        return len(records)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._con.close()

    def __enter__(self) -> DuckDBWarehouse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DuckDBWarehouse({self.uri!r})"


def _check_value(name: str, value: Any) -> None:
    ok = isinstance(value, _SCALARS) or (
        isinstance(value, list | tuple) and all(isinstance(v, _SCALARS) for v in value)
    )
    if not ok:
        raise ValueError(
            f"params[{name!r}]: {type(value).__name__} is not a query value; pass a str, number, bool, "
            "None, datetime, date or a list of those"
        )
