"""The warehouse: where interactions land and where each run extracts what is new.

- :mod:`.base` — the interaction table's schema (column constants), the :class:`Warehouse` interface,
  :func:`open_warehouse` and the buffered :class:`Ingestor`.
- :mod:`.sql` — BigQuery Standard SQL templates: ``@name`` values, validated ``{{table}}`` identifiers,
  transpilation (cached) for other engines, :func:`load_query` for the packaged ``queries/*.sql``.
- :mod:`.duckdb` — the embedded default backend (``duckdb:///path.duckdb``).
- :mod:`.extract` — :func:`extract_new`: rows newer than a watermark -> canonical examples + quarantine;
  :func:`extract_to_files` streams the same to Parquet + JSONL a record batch at a time.
- :mod:`.games` — the game table (``game_results``): columns, DDL, typed row, Firestore-document mapping.
- :mod:`.extract_query` — your own extract query (a packaged name or a ``.sql`` file) and ``query_params``:
  refused before it runs unless it is one read-only SELECT over declared parameters returning the canonical
  columns; run inside the watermark window, rows -> examples + quarantine.
- :mod:`.game_chat` — the packaged ``ai_survived_games`` query's rows -> one chat conversation per surviving seat.
- :mod:`.views` — per-model-version-per-day views (games / AI survival; rows / corrections / accuracy).

Importing this package does not import duckdb, sqlglot or pyarrow; the backends import them when used.
"""

from tuneloop.warehouse.base import (
    COLUMN_TYPES,
    TABLE_COLUMNS,
    WATERMARK_COLUMN,
    IngestError,
    Ingestor,
    InsertError,
    Warehouse,
    WarehouseError,
    coerce_row,
    duckdb_uri,
    example_to_row,
    open_warehouse,
)
from tuneloop.warehouse.extract import (
    ExtractBatch,
    ExtractResult,
    ExtractSummary,
    extract_new,
    extract_to_files,
    iter_extract,
    row_to_example,
)
from tuneloop.warehouse.sql import load_query, validate_identifier

__all__ = [
    "COLUMN_TYPES",
    "TABLE_COLUMNS",
    "WATERMARK_COLUMN",
    "ExtractBatch",
    "ExtractResult",
    "ExtractSummary",
    "IngestError",
    "Ingestor",
    "InsertError",
    "Warehouse",
    "WarehouseError",
    "coerce_row",
    "duckdb_uri",
    "example_to_row",
    "extract_new",
    "extract_to_files",
    "iter_extract",
    "load_query",
    "open_warehouse",
    "row_to_example",
    "validate_identifier",
]
