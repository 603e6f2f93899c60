"""The production warehouse: BigQuery, running the packaged templates as they are written.

The templates are BigQuery Standard SQL already, so nothing is transpiled: ``@name`` values become
BigQuery query parameters (never text in the SQL) and ``{{table}}`` slots take validated, backquoted
identifiers, qualified with the warehouse's ``project.dataset`` when the name has fewer parts.
Results come back as Arrow record batches, read through the BigQuery Storage Read API when the client
has a read client (the default on Google Cloud), else through the REST pages.
Rows are appended with streaming inserts (``tabledata.insertAll``) with an ``insertId`` per row, so a
retried insert of the same row is deduplicated by BigQuery on a best-effort basis; a row-level
failure is reported with the row indexes, and :class:`tuneloop.warehouse.base.Ingestor` keeps exactly
those rows for the next flush.

Connection settings come from the environment at run time, never from the URI or a pipeline
parameter: Application Default Credentials in production; ``BIGQUERY_EMULATOR_HOST``
(``http://host:port``, REST) and ``BIGQUERY_STORAGE_EMULATOR_HOST`` (``host:port``, gRPC Storage Read
API) point the clients at an emulator without credentials.

Streaming inserts land in BigQuery's streaming buffer and are queryable within seconds, but not always
at once; run the extract with ``settle_seconds`` of a minute or so when producers insert continuously.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tuneloop.warehouse import sql
from tuneloop.warehouse.base import TABLE_COLUMNS, InsertError, WarehouseError, coerce_row, iso, utc_datetime

EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"
STORAGE_EMULATOR_ENV = "BIGQUERY_STORAGE_EMULATOR_HOST"
# A Google Cloud project id and a BigQuery dataset id.
PROJECT_RULE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
DATASET_RULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")
JOB_LABELS = {"app": "tuneloop"}
INSERT_ROWS = 500  # rows per streaming-insert request
INSERT_BYTES = 5 * 2**20  # and about this many bytes of JSON


def bigquery_uri(project: str, dataset: str, location: str | None = None) -> str:
    """The warehouse URI of a BigQuery dataset: ``bigquery://project/dataset[?location=EU]``."""
    return f"bigquery://{project}/{dataset}" + (f"?location={location}" if location else "")


def parse_bigquery_uri(uri: str) -> tuple[str, str, str | None]:
    """``bigquery://project/dataset[?location=LOC]`` -> ``(project, dataset, location)``.

    Raises:
        ValueError: naming the URI and the form to write.
    """
    form = "bigquery://PROJECT/DATASET (optionally ?location=EU)"
    if not isinstance(uri, str) or not uri.startswith("bigquery://"):
        raise ValueError(f"warehouse={uri!r} is not a BigQuery URI; write {form}")
    rest, _, query = uri[len("bigquery://") :].partition("?")
    parts = rest.strip("/").split("/")
    if len(parts) != 2:
        raise ValueError(f"warehouse={uri!r}: write {form}")
    project, dataset = parts
    location = None
    if query:
        key, _, value = query.partition("=")
        if key != "location" or not re.fullmatch(r"[A-Za-z0-9-]+", value or ""):
            raise ValueError(f"warehouse={uri!r}: the only option is ?location=REGION, e.g. ?location=EU")
        location = value
    _check_names(project, dataset, uri)
    return project, dataset, location


def _check_names(project: str, dataset: str, where: str) -> None:
    if not PROJECT_RULE.match(project or ""):
        raise ValueError(
            f"warehouse={where!r}: project {project!r} is not a Google Cloud project id (6-30 lowercase "
            "letters, digits and hyphens, starting with a letter)"
        )
    if not DATASET_RULE.match(dataset or ""):
        raise ValueError(
            f"warehouse={where!r}: dataset {dataset!r} is not a BigQuery dataset id (letters, digits, "
            "underscores)"
        )


def query_parameter(name: str, value: Any):
    """A BigQuery query parameter for one Python value; the type follows the value.

    str -> STRING, bool -> BOOL, int -> INT64, float -> FLOAT64, Decimal -> NUMERIC, aware or naive
    datetime -> TIMESTAMP (naive = UTC), date -> DATE, None -> a NULL STRING, list/tuple -> ARRAY of
    one of those types.

    Raises:
        ValueError: naming the parameter and the value that has no BigQuery type.
    """
    from google.cloud import bigquery

    if isinstance(value, list | tuple):
        types = {_scalar_type(name, v) for v in value if v is not None}
        if len(types) > 1:
            raise ValueError(f"params[{name!r}]: an array mixes types {sorted(types)}; pass one type")
        return bigquery.ArrayQueryParameter(name, types.pop() if types else "STRING", list(value))
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return bigquery.ScalarQueryParameter(name, _scalar_type(name, value), value)


def _scalar_type(name: str, value: Any) -> str:
    if value is None or isinstance(value, str):
        return "STRING"
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, decimal.Decimal):
        return "NUMERIC"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP"
    if isinstance(value, dt.date):
        return "DATE"
    raise ValueError(
        f"params[{name!r}]: {type(value).__name__} is not a query value; pass a str, number, bool, None, "
        "datetime, date or a list of those"
    )


def strip_comment_lines(statement: str) -> str:
    """Drop whole-line ``--`` comments (template headers document ``@params``; some engines miscount those)."""
    return "\n".join(line for line in statement.splitlines() if not line.lstrip().startswith("--"))


def insert_id(row: Mapping[str, Any]) -> str:
    """The streaming-insert ``insertId`` of a coerced row: a hash of its content and landing time."""
    return hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()[:32]


class BigQueryWarehouse:
    """A :class:`tuneloop.warehouse.base.Warehouse` over one BigQuery dataset.

    Args:
        project: The Google Cloud project that holds the dataset (and is billed for the queries).
        dataset: The dataset of the interaction tables; a one-part table name lives here.
        location: The dataset's location (``EU``, ``us-central1``...); None lets BigQuery find it.
        client: A ``google.cloud.bigquery.Client`` (default: built from the environment, see the module).
        read_client: A ``BigQueryReadClient`` for the Storage Read API; ``"auto"`` (default) builds one on
            Google Cloud, and none against an emulator that only serves REST; None reads REST pages.
        retry_deadline_s: How long the client retries a transient failure (5xx, 429, a lost connection)
            before the call raises; None keeps the client's default (10 minutes). A live service or a
            Cloud Function sets it short and retries on its own terms.
    """

    def __init__(
        self,
        project: str,
        dataset: str,
        *,
        location: str | None = None,
        client: Any = None,
        read_client: Any = "auto",
        retry_deadline_s: float | None = None,
    ):
        _check_names(project, dataset, bigquery_uri(project, dataset))
        self.project = project
        self.dataset = dataset
        self.location = location
        self.uri = bigquery_uri(project, dataset, location)
        self._client = client if client is not None else _make_client(project, location)
        self._read_client = _make_read_client() if read_client == "auto" else read_client
        if retry_deadline_s is not None and (
            isinstance(retry_deadline_s, bool) or not isinstance(retry_deadline_s, int | float) or retry_deadline_s <= 0
        ):
            raise ValueError(f"retry_deadline_s={retry_deadline_s!r} must be a number of seconds > 0 (or None)")
        self.retry_deadline_s = retry_deadline_s

    def _retry_kwargs(self, *, job: bool = False) -> dict[str, Any]:
        """``retry``/``timeout`` (and ``job_retry``) for a client call, bounded by ``retry_deadline_s``."""
        if self.retry_deadline_s is None:
            return {}
        from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY, DEFAULT_RETRY

        d = float(self.retry_deadline_s)
        out: dict[str, Any] = {"retry": DEFAULT_RETRY.with_deadline(d), "timeout": d}
        if job:
            out["job_retry"] = DEFAULT_JOB_RETRY.with_deadline(d)
        return out

    # -- names ---------------------------------------------------------------------------------------
    def qualify(self, table: str, *, param: str = "table") -> str:
        """``table`` -> ``project.dataset.table`` (validated; ``dataset.table`` keeps its dataset)."""
        parts = sql.validate_identifier(table, param=param, max_parts=3)
        if len(parts) == 1:
            parts = (self.project, self.dataset, *parts)
        elif len(parts) == 2:
            parts = (self.project, *parts)
        return ".".join(parts)

    # -- Warehouse -------------------------------------------------------------------------------------
    def query(
        self,
        template: str,
        params: Mapping[str, Any] | None = None,
        *,
        identifiers: Mapping[str, str] | None = None,
    ):
        """Run one statement; see :meth:`tuneloop.warehouse.base.Warehouse.query`. Returns an Arrow table."""
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
    ) -> Iterator[Any]:
        """Run one statement and yield its result as Arrow record batches (streamed, not all in memory).

        Raises:
            ValueError: a bad identifier, a missing/unused ``@parameter`` or a value with no BigQuery type.
            WarehouseError: BigQuery refused the statement (missing table, SQL error, permissions).
        """
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        qualified = {k: self.qualify(v, param=k) for k, v in (identifiers or {}).items()}
        statement = sql.render(template, qualified, max_parts=3)
        params = dict(params or {})
        sql.check_params(statement, params)
        statement = strip_comment_lines(statement)
        config = bigquery.QueryJobConfig(
            query_parameters=[query_parameter(k, v) for k, v in sorted(params.items())],
            labels=dict(JOB_LABELS),
            default_dataset=f"{self.project}.{self.dataset}",
        )
        try:
            # job_retry=None at submission: the client would otherwise wrap the insert in its own retry
            # with a 10-minute deadline whatever retry says; result() below still retries a failed job.
            start = {**self._retry_kwargs(job=True), "job_retry": None} if self.retry_deadline_s else {}
            job = self._client.query(statement, job_config=config, location=self.location, **start)
            rows = job.result(**self._retry_kwargs(job=True))
            if not rows.schema:  # DDL / DML: no result set
                return
            yield from rows.to_arrow_iterable(bqstorage_client=self._read_client)
        except gexc.NotFound as exc:
            raise WarehouseError(
                f"{exc.message} (warehouse {self.uri}); create the table with `tuneloop load FILE "
                f"--warehouse {self.uri} --table NAME` or Warehouse.ensure_table"
            ) from exc
        except gexc.Forbidden as exc:
            raise WarehouseError(
                f"BigQuery refused the query on {self.uri}: {exc.message}; the account needs "
                "roles/bigquery.jobUser on the project and roles/bigquery.dataViewer on the dataset"
            ) from exc
        except gexc.GoogleAPICallError as exc:
            first = " ".join(statement.split())[:200]
            raise WarehouseError(f"query failed on {self.uri}: {exc.message} (SQL: {first})") from exc
        except (gexc.RetryError, OSError) as exc:  # retried until the deadline; a refused connection
            raise WarehouseError(f"query failed on {self.uri}: {exc}") from exc

    def statement_type(
        self,
        template: str,
        params: Mapping[str, Any] | None = None,
        *,
        identifiers: Mapping[str, str] | None = None,
    ) -> str:
        """What BigQuery reads the statement as (``SELECT``, ``INSERT``, ``CREATE_TABLE``...), by a dry run
        (free: nothing runs, nothing is billed). Extract queries refuse anything but ``SELECT``.

        Raises:
            WarehouseError: BigQuery refused the dry run (a SQL error, a missing table, permissions).
        """
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        qualified = {k: self.qualify(v, param=k) for k, v in (identifiers or {}).items()}
        statement = sql.render(template, qualified, max_parts=3)
        params = dict(params or {})
        sql.check_params(statement, params)
        config = bigquery.QueryJobConfig(
            query_parameters=[query_parameter(k, v) for k, v in sorted(params.items())],
            labels=dict(JOB_LABELS),
            default_dataset=f"{self.project}.{self.dataset}",
            dry_run=True,
            use_query_cache=False,
        )
        try:
            job = self._client.query(strip_comment_lines(statement), job_config=config, location=self.location,
                                     **self._retry_kwargs())
        except (gexc.GoogleAPICallError, gexc.RetryError, OSError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            raise WarehouseError(f"dry run failed on {self.uri}: {message}") from exc
        return str(job.statement_type or "")

    def query_to_parquet(
        self,
        template: str,
        path: str | Path,
        params: Mapping[str, Any] | None = None,
        *,
        identifiers: Mapping[str, str] | None = None,
    ) -> int:
        """Stream a query's result into one Parquet file batch by batch; returns the row count."""
        import pyarrow.parquet as pq

        writer = None
        n = 0
        try:
            for batch in self.query_batches(template, params, identifiers=identifiers):
                if writer is None:
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                    writer = pq.ParquetWriter(str(path), batch.schema)
                writer.write_batch(batch)
                n += batch.num_rows
        finally:
            if writer is not None:
                writer.close()
        return n

    def has_table(self, table: str) -> bool:
        """Whether the table exists."""
        from google.api_core import exceptions as gexc

        try:
            self._client.get_table(self.qualify(table), **self._retry_kwargs())
        except gexc.NotFound:
            return False
        except (gexc.GoogleAPICallError, gexc.RetryError, OSError) as exc:
            raise WarehouseError(f"cannot read table {table!r} on {self.uri}: {exc}") from exc
        return True

    def columns(self, table: str) -> dict[str, str]:
        """Column name -> BigQuery type of an existing table."""
        schema = self._client.get_table(self.qualify(table), **self._retry_kwargs()).schema
        return {f.name: f.field_type for f in schema}

    def ensure_schema(self, table: str) -> None:
        """Create the dataset a table name lives in if missing (no right to create it is fine if it exists)."""
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        project, dataset, _ = self.qualify(table).split(".")
        ds = bigquery.Dataset(f"{project}.{dataset}")
        if self.location:
            ds.location = self.location
        try:
            self._client.create_dataset(ds, exists_ok=True, **self._retry_kwargs())
        except gexc.Forbidden:
            pass  # the CREATE TABLE that follows says whether the dataset is there
        except (gexc.GoogleAPICallError, gexc.RetryError, OSError) as exc:
            raise WarehouseError(f"cannot create dataset {project}.{dataset} on {self.uri}: {exc}") from exc

    def ensure_table(self, table: str) -> None:
        """Create the dataset and the interaction table if missing; check the columns if present.

        Raises:
            WarehouseError: the table exists without the interaction columns.
        """
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        fq = self.qualify(table)
        project, dataset, _ = fq.split(".")
        ds = bigquery.Dataset(f"{project}.{dataset}")
        if self.location:
            ds.location = self.location
        try:
            self._client.create_dataset(ds, exists_ok=True)
        except gexc.Forbidden:
            pass  # no right to create datasets: fine when it exists; the CREATE TABLE below will say
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
        """Append rows with streaming inserts (requests of at most :data:`INSERT_ROWS` rows / about
        :data:`INSERT_BYTES`); see :func:`.base.coerce_row` for values.

        ``row_ids`` become the rows' ``insertId`` (default: a hash of each row's content and landing
        time); a caller that retries the same rows passes stable ids so BigQuery can drop the repeats.

        Raises:
            ValueError: a row that cannot be stored (nothing inserted), naming the row index.
            InsertError: BigQuery rejected rows; ``failed_rows`` lists them (None: the first request
                failed as a whole and none landed; a later request's failure lists its rows and the rest;
                when the connection was lost mid-request some rows of that request may have landed).
        """
        fq = self.qualify(table)
        now = utc_datetime()
        payload = []
        for i, r in enumerate(rows):
            try:
                row = coerce_row(r, now=now)
            except ValueError as exc:
                raise ValueError(f"rows[{i}]: {exc}") from exc
            payload.append({k: iso(v) if isinstance(v, dt.datetime) else v for k, v in row.items()})
        if not payload:
            return 0
        ids = [insert_id(r) for r in payload] if row_ids is None else [str(i) for i in row_ids]
        if len(ids) != len(payload):
            raise ValueError(f"row_ids: {len(ids)} ids for {len(payload)} rows; pass one id per row")
        return self._insert_json(fq, payload, ids)

    def insert_records(
        self, table: str, records: Sequence[Mapping[str, Any]], *, row_ids: Sequence[str] | None = None
    ) -> int:
        """Append rows of any table (the game table, a dead-letter table) with a streaming insert.

        Values are Python values (lists, dicts for STRUCTs, datetimes, which are sent as ISO-8601);
        ``row_ids`` become the ``insertId`` of each row.

        Raises:
            InsertError: as :meth:`insert_rows` (``failed_rows`` for row-level rejections).
        """
        payload = [{k: _json_value(v) for k, v in r.items()} for r in records]
        if not payload:
            return 0
        ids = [insert_id(r) for r in payload] if row_ids is None else [str(i) for i in row_ids]
        if len(ids) != len(payload):
            raise ValueError(f"row_ids: {len(ids)} ids for {len(payload)} rows; pass one id per row")
        return self._insert_json(self.qualify(table), payload, ids)

    def _insert_json(self, fq: str, payload: list[dict[str, Any]], ids: list[str]) -> int:
        from google.api_core import exceptions as gexc

        failed: list[int] = []
        first_error = None
        for start, end in _requests(payload):
            part = payload[start:end]
            try:
                errors = self._client.insert_rows_json(fq, part, row_ids=ids[start:end], **self._retry_kwargs())
            except (gexc.GoogleAPICallError, gexc.RetryError, OSError) as exc:
                # this request and the ones after it did not land (RetryError: retried until the deadline;
                # OSError: connection refused / reset)
                message = getattr(exc, "message", None) or str(exc)
                if not start and not failed:
                    raise InsertError(
                        f"streaming insert of {len(payload)} row(s) into {fq} failed: {message}"
                    ) from exc
                raise InsertError(
                    f"streaming insert into {fq} failed after {start - len(failed)} of {len(payload)} row(s) "
                    f"landed: {message}",
                    failed_rows=[*failed, *range(start, len(payload))],
                ) from exc
            if errors:
                failed += sorted({start + int(e["index"]) for e in errors})
                first_error = first_error or errors[0].get("errors")
        if failed:
            raise InsertError(
                f"BigQuery rejected {len(failed)} of {len(payload)} row(s) inserted into {fq}; first: {first_error}",
                failed_rows=failed,
            )
        return len(payload)

    def close(self) -> None:
        """Close the clients (idempotent)."""
        self._client.close()
        transport = getattr(self._read_client, "_transport", None)
        if transport is not None:
            transport.close()

    def __enter__(self) -> BigQueryWarehouse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BigQueryWarehouse({self.uri!r})"


def _json_value(value: Any) -> Any:
    """A Python value as streaming-insert JSON: datetimes ISO-8601 (UTC), nested lists/dicts converted."""
    if isinstance(value, dt.datetime):
        return iso(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


def _requests(payload: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """``(start, end)`` slices of at most :data:`INSERT_ROWS` rows and about :data:`INSERT_BYTES` each
    (the streaming API refuses requests over 10 MB and advises about 500 rows)."""
    out, start, size = [], 0, 0
    for i, row in enumerate(payload):
        n = len(json.dumps(row, default=str))
        if i > start and (i - start >= INSERT_ROWS or size + n > INSERT_BYTES):
            out.append((start, i))
            start, size = i, 0
        size += n
    out.append((start, len(payload)))
    return out


def _make_client(project: str, location: str | None):
    try:
        from google.cloud import bigquery
    except ImportError as exc:
        raise ImportError("bigquery:// warehouses need the cloud extra: pip install 'tuneloop[gcp]'") from exc
    endpoint = os.environ.get(EMULATOR_ENV)
    if endpoint:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        if "://" not in endpoint:
            endpoint = f"http://{endpoint}"
        return bigquery.Client(
            project=project,
            location=location,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=endpoint),
        )
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return bigquery.Client(project=project, location=location)
    except DefaultCredentialsError as exc:
        raise WarehouseError(
            "bigquery://: no Google Cloud credentials found; run `gcloud auth application-default login` "
            "or run as a service account with roles/bigquery.jobUser and roles/bigquery.dataEditor"
        ) from exc


def _make_read_client():
    """The Storage Read API client: real on Google Cloud, the emulator's gRPC port if set, else None."""
    storage_host = os.environ.get(STORAGE_EMULATOR_ENV)
    if os.environ.get(EMULATOR_ENV) and not storage_host:
        return None  # an emulator without a Storage Read endpoint: read REST pages
    try:
        from google.cloud.bigquery_storage_v1 import BigQueryReadClient
    except ImportError:
        return None  # google-cloud-bigquery-storage not installed: REST pages
    if storage_host:
        import grpc
        from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
            BigQueryReadGrpcTransport,
        )

        return BigQueryReadClient(
            transport=BigQueryReadGrpcTransport(channel=grpc.insecure_channel(storage_host))
        )
    return BigQueryReadClient()
