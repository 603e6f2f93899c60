"""Your own extract query: a read-only BigQuery SELECT that returns examples, checked before it runs.

``extract_query`` (a pipeline parameter of ``export-dataset`` and ``continuous-tuning``) names either

* a **packaged** query under ``tuneloop/warehouse/queries/`` (:data:`PACKAGED`; today
  ``ai_survived_games``, the game loop), whose parameters are a typed settings class, or
* a **``.sql`` file**, a local path or ``gs://bucket/path.sql`` (read through :mod:`tuneloop.storage`),

and ``query_params`` gives a value for every ``@name`` the query uses. "" (the default) keeps the
interaction-table extract (``queries/extract_examples.sql``), unchanged.

The query is BigQuery Standard SQL; it runs as written on BigQuery and transpiled (sqlglot) on DuckDB.
Before anything runs (in the first task, ``check_config``, and again in the extract task) it is parsed
and **refused**, with the problem and the fix named, unless:

1. it is exactly one statement, a query: ``SELECT``, ``WITH ... SELECT``, or a ``UNION``/``INTERSECT``/
   ``EXCEPT`` of them. Anything that writes or changes state is refused wherever it hides (a CTE, a
   subquery, after a comment): ``INSERT``, ``UPDATE``, ``DELETE``, ``MERGE``, ``CREATE``, ``DROP``,
   ``ALTER``, ``TRUNCATE``, ``SELECT ... INTO``, ``COPY``, ``EXPORT DATA``, ``LOAD DATA``, ``ATTACH``,
   ``PRAGMA``, ``SET``, ``CALL``, ``EXECUTE IMMEDIATE``, ``DECLARE``, transactions, ``FOR UPDATE``;
2. it reads only tables, named by plain identifiers (``t``, ``dataset.t``, ``project.dataset.t``, or the
   ``{{table}}`` slot, filled with the pipeline's ``table`` parameter), its own CTEs, subqueries and
   ``UNNEST``: no table functions, no file paths as table names;
3. it calls no function that reads files, reaches another system, spends money or changes state:
   DuckDB's ``read_csv``/``read_parquet``/``read_json``/``glob``/``*_scan``/``query``/``getenv``/
   ``nextval``/..., BigQuery's ``EXTERNAL_QUERY``, ``ML.*``, ``AI.*``, ``VECTOR_SEARCH``, and no
   user-defined function called through a dataset (a remote function can call out); the built-in
   namespaces ``SAFE.`` and ``NET.`` are fine (on BigQuery: sqlglot does not transpile ``SAFE.`` to DuckDB);
4. its ``@parameters`` are exactly the ones declared in ``query_params`` plus the reserved ones below
   (an undeclared ``@name``, a declared one the query never uses, ``@@system`` variables and ``?``
   placeholders are refused); values are only ever bound as query parameters, never put into the SQL;
5. its output columns (named: no ``*``) hold the canonical example columns plus the watermark column,
   ``ingested_at`` (a TIMESTAMP): ``messages`` (a chat example: JSON text or an array of
   ``{role, content}``) or ``text`` + ``label`` (a classification example), and optionally ``label``,
   ``id``, ``source``, ``weight``, ``created_at``, ``meta``. Any other column is kept in the example's
   ``meta`` under its name (a name one typo away from a canonical column is refused instead).

Where the engine can enforce it too, it does: the extract opens a DuckDB warehouse read-only with
external access disabled (no file, no network, no extension), and on BigQuery it dry-runs the
statement first and refuses anything whose ``statement_type`` is not ``SELECT``.

**Reserved parameters**, bound by tuneloop (never put them in ``query_params``): ``@watermark``
(TIMESTAMP: the newest ``ingested_at`` the last published dataset read), ``@read_until`` (TIMESTAMP: now
minus ``settle_seconds``) and ``@max_rows`` (INT64: the ``max_rows`` parameter, 2**62 for "no bound").
Tuneloop applies all three around your query (``ingested_at > @watermark AND ingested_at <= @read_until``,
about ``max_rows`` rows, never splitting rows that share the last ``ingested_at``), so the watermark works
as for the interaction table whether or not the query uses them; use ``@watermark`` inside the query as
well to let BigQuery prune partitions.

KFP hands ``query_params`` numbers over as floats (6 -> 6.0): a whole float is bound as INT64 (write
``CAST(@x AS FLOAT64)`` where the query needs a float).

Rows that do not make a valid example are quarantined with a reason (the extract's quarantine file), and
they advance the watermark like the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import inspect
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.config import ConfigError, check_number, close_match, from_mapping, setting, to_mapping
from tuneloop.examples import Example, ExampleError
from tuneloop.warehouse.base import (
    WATERMARK_COLUMN,
    Warehouse,
    WarehouseError,
    iso,
    open_warehouse,
    to_utc,
    utc_datetime,
)
from tuneloop.warehouse.extract import (
    EPOCH,
    NO_LIMIT,
    ExtractBatch,
    ExtractSummary,
    row_to_example,
    write_batches,
)
from tuneloop.warehouse.sql import IDENTIFIER_RULE, load_query, validate_identifier

RESERVED_PARAMS = {
    "watermark": "TIMESTAMP, the newest ingested_at the last published dataset read (rows after it are new)",
    "read_until": "TIMESTAMP, now minus settle_seconds (rows at or before it are read)",
    "max_rows": "INT64, the max_rows parameter (2**62 when it is 0: no bound)",
}
TABLE_SLOT = "table"
CANONICAL_COLUMNS = ("id", "messages", "text", "label", "source", "weight", "created_at", "meta", WATERMARK_COLUMN)
MAX_QUERY_BYTES = 1_000_000
TASKS = ("classification", "chat")


class QueryRefused(ConfigError):
    """The extract query was refused before it ran; the message names the problem and the fix."""


# -- packaged queries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GameQueryParams:
    """``query_params`` of ``ai_survived_games``."""

    min_messages: int = setting(6, help="games with fewer chat lines than this are skipped")
    persona_prompt: str = setting(
        "", help="the system turn of every conversation ('' = the game's persona_prompt, else the packaged default)"
    )

    def __post_init__(self) -> None:
        check_number("min_messages", self.min_messages, 0, integer=True)
        if not isinstance(self.persona_prompt, str):
            raise ValueError(f"persona_prompt={self.persona_prompt!r} must be a string ('' = the game's own)")


@dataclass(frozen=True)
class PackagedQuery:
    """A packaged extract query: its SQL file, typed parameters, the columns it returns and the Python step
    that turns one of its rows into an example (None: the rows are canonical examples)."""

    name: str
    params: type
    task: str
    columns: tuple[str, ...]
    to_example: Callable[[Mapping[str, Any]], Example] | None
    order_by: tuple[str, ...] = ()
    table_columns: tuple[str, ...] = ()  # what {{table}} must hold
    help: str = ""


def _game_example(row: Mapping[str, Any]) -> Example:
    from tuneloop.warehouse.game_chat import conversation_from_row

    return conversation_from_row(row)


def _packaged() -> dict[str, PackagedQuery]:
    from tuneloop.warehouse import game_chat, games

    return {
        game_chat.QUERY_NAME: PackagedQuery(
            name=game_chat.QUERY_NAME,
            params=GameQueryParams,
            task="chat",
            columns=game_chat.ROW_COLUMNS,
            to_example=_game_example,
            order_by=("document_path", "seat_player"),
            table_columns=games.GAME_COLUMN_NAMES,
            help="games that landed after the watermark in which an AI seat survived: one conversation per "
                 "surviving seat (pass table=game_results)",
        ),
    }


def packaged_names() -> list[str]:
    """The packaged extract queries, by name."""
    return sorted(_packaged())


# -- the resolved query -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractQuery:
    """A checked extract query: where it came from, its SQL, its parameter values and its output columns."""

    source: str
    sql: str
    params: Mapping[str, Any]
    columns: tuple[str, ...]
    uses_table: bool
    packaged: PackagedQuery | None = None

    @property
    def task(self) -> str | None:
        """``chat`` or ``classification`` when the columns say so (``messages`` without ``label``: chat)."""
        if self.packaged is not None:
            return self.packaged.task
        if "label" in self.columns:
            return "classification"
        return "chat"

    def to_example(self, row: Mapping[str, Any]) -> Example:
        """One result row as an example; ExampleError (naming the field) when it is not one."""
        if self.packaged is not None and self.packaged.to_example is not None:
            return self.packaged.to_example(row)
        return canonical_example(row)

    def statement(self) -> str:
        """The SQL that runs: the query inside tuneloop's watermark / settle / max_rows window, parsed and
        checked once more as a whole (the query text is embedded as written)."""
        statement = wrap(self.sql, self.order_by)
        text, _ = _placeholder_sql(statement, self.source)
        check_tree(_parse(text, self.source), self.source)
        return statement

    @property
    def order_by(self) -> tuple[str, ...]:
        if self.packaged is not None:
            return self.packaged.order_by
        return ("id",) if "id" in self.columns else ()

    def summary(self) -> dict[str, Any]:
        return {"extract_query": self.source, "query_params": dict(self.params), "columns": list(self.columns),
                "task": self.task}


def resolve(extract_query: str, query_params: Mapping[str, Any] | None = None, *, task: str | None = None
            ) -> ExtractQuery | None:
    """Read and check an extract query; None for "" (the interaction-table extract).

    Args:
        extract_query: A packaged name (:data:`PACKAGED_NAMES`), a local ``.sql`` path or a ``gs://`` URI.
        query_params: ``{name: value}`` for the query's ``@name`` parameters (str, number, bool, None or a
            list of those; a whole float is bound as INT64). For a packaged query, its settings class.
        task: ``chat`` or ``classification`` to also check that the columns make that kind of example.

    Raises:
        QueryRefused: naming the problem (a write, an undeclared parameter, a missing column...) and the fix.
    """
    if not isinstance(extract_query, str):
        raise QueryRefused(f"extract_query={extract_query!r} must be a string: a packaged query name, a .sql path "
                           "or a gs:// URI ('' = the interaction table)")
    name = extract_query.strip()
    if not name:
        if query_params:
            raise QueryRefused(
                f"query_params={dict(query_params)!r} is set but extract_query is empty (the interaction-table "
                "extract takes no parameters); set extract_query or clear query_params"
            )
        return None
    if task is not None and task not in TASKS:
        raise QueryRefused(f"task={task!r} must be one of {list(TASKS)}")
    if query_params is None:
        query_params = {}
    if not isinstance(query_params, Mapping):
        raise QueryRefused(f"query_params must be an object {{name: value}}, got {type(query_params).__name__}")
    packaged = None
    if _is_file(name):
        text = _read_file(name)
        params = _free_params(query_params)
    else:
        packaged = _packaged_query(name)
        text = load_query(packaged.name)
        try:
            params = to_mapping(from_mapping(packaged.params, query_params, what="query_params",
                                             owner=f"the {packaged.name} query"))
        except ConfigError as exc:
            raise QueryRefused(str(exc)) from exc
    columns, uses_table = check_sql(text, params, where=name)
    _check_columns(columns, name, packaged, task)
    return ExtractQuery(source=name, sql=text, params=params, columns=columns, uses_table=uses_table,
                        packaged=packaged)


def check_extract_query(extract_query: str, query_params: Mapping[str, Any] | None = None, *,
                        task: str | None = None) -> dict[str, Any]:
    """:func:`resolve` for the first task: ``{}`` for "" else what was checked (source, params, columns, task).

    Raises:
        QueryRefused: as :func:`resolve`.
    """
    query = resolve(extract_query, query_params, task=task)
    return {} if query is None else query.summary()


def _is_file(name: str) -> bool:
    return name.endswith(".sql") or "/" in name or "\\" in name or "://" in name


def _packaged_query(name: str) -> PackagedQuery:
    packaged = _packaged()
    if name in packaged:
        return packaged[name]
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        near = close_match(name, packaged)
        hint = f" (did you mean {near!r}?)" if near else ""
        raise QueryRefused(
            f"extract_query={name!r} is not a packaged extract query{hint}; packaged: {sorted(packaged)}, or pass "
            "the path of a .sql file (local or gs://)"
        )
    raise QueryRefused(
        f"extract_query={name[:80]!r} is neither a packaged query name nor a .sql file; SQL is not accepted inline: "
        "write it to a .sql file (local or gs://) and pass its path"
    )


def _read_file(name: str) -> str:
    from tuneloop import storage

    try:
        blob = storage.read(name)
    except (storage.StorageError, OSError) as exc:
        raise QueryRefused(f"extract_query={name!r} cannot be read: {exc}") from exc
    if blob is None:
        where = "" if "://" in name else f" (looked at {Path(name).resolve()})"
        raise QueryRefused(f"extract_query={name!r}: no such file{where}; pass an absolute path or a gs:// URI")
    if len(blob.data) > MAX_QUERY_BYTES:
        raise QueryRefused(f"extract_query={name!r} is {len(blob.data)} bytes; a query file holds at most "
                           f"{MAX_QUERY_BYTES} bytes")
    try:
        return blob.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QueryRefused(f"extract_query={name!r} is not UTF-8 text ({exc}); save the .sql file as UTF-8") from exc


_SCALARS = (str, int, float, bool, type(None))


def _free_params(query_params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in query_params.items():
        if not isinstance(key, str) or not re.fullmatch(IDENTIFIER_RULE, key):
            raise QueryRefused(f"query_params: {key!r} is not a parameter name; write names matching {IDENTIFIER_RULE}")
        if key in RESERVED_PARAMS:
            raise QueryRefused(
                f"query_params.{key}: @{key} is reserved and bound by tuneloop ({RESERVED_PARAMS[key]}); drop it from "
                "query_params"
            )
        out[key] = _bind_value(key, value)
    return out


def _bind_value(key: str, value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # KFP turned the JSON number 6 into 6.0
    if isinstance(value, float) and value != value:
        raise QueryRefused(f"query_params.{key}={value!r} is not a number; pass a finite value")
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, _SCALARS) for v in value):
        return [_bind_value(key, v) for v in value]
    raise QueryRefused(
        f"query_params.{key}={value!r} is a {type(value).__name__}; a query value is a string, number, bool, null "
        "or a list of those"
    )


# -- the SQL checks ---------------------------------------------------------------------------------------

# Statements and clauses that write, change state or leave the query; refused wherever they appear.
_DENIED_NODES = (
    "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "AlterSession", "TruncateTable", "Into",
    "Copy", "Export", "LoadData", "Attach", "Detach", "Install", "Pragma", "Set", "Use", "Command", "Transaction",
    "Commit", "Rollback", "Declare", "Execute", "ExecuteSql", "StoredProcedure", "Lock", "LockingStatement",
    "Returning", "Grant", "Revoke", "Cache", "Uncache", "Refresh", "Analyze", "Kill", "Put", "Summarize", "Show",
    "Describe", "NextValueFor", "ReadCSV", "ReadParquet", "Predict", "MLForecast", "MLTranslate",
    "GenerateEmbedding", "GenerateText", "GenerateTable", "GenerateBool", "GenerateDouble", "GenerateInt",
    "AIAgg", "AIClassify", "AIEmbed", "AIForecast", "AIGenerate", "AISimilarity", "AISummarizeAgg", "VectorSearch",
    "FeaturesAtTime", "ObjectTransform", "SemanticView", "Placeholder",
)
# Functions (by name, lower case) that read files, reach other systems, spend money or change state.
_DENIED_FUNCTIONS = re.compile(
    r"^(read_.*|.*_scan|glob|sniff_csv|parquet_.*|iceberg_.*|delta_.*|query|query_table|getenv|current_setting|"
    r"nextval|currval|setval|setseed|pragma_.*|duckdb_.*|load_extension|install_extension|http.*|"
    r"external_query|external_object_transform|vector_search|ml\..*|ai\..*|obj\..*)$"
)
_ALLOWED_ROOTS = ("Select", "Union", "Intersect", "Except", "Subquery", "SetOperation")


@contextlib.contextmanager
def _quiet_sqlglot():
    log = logging.getLogger("sqlglot")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _node_label(node: Any) -> str:
    name = type(node).__name__
    labels = {"Into": "SELECT ... INTO", "Lock": "FOR UPDATE / FOR SHARE", "Command": "a statement sqlglot cannot "
              "parse as a query", "Placeholder": "a ? placeholder (use a named @parameter)",
              "Returning": "RETURNING"}
    if name in labels:
        return labels[name]
    try:
        text = node.sql("bigquery")
    except Exception:  # pragma: no cover - a node sqlglot cannot print
        text = ""
    head = " ".join(text.split()[:3]) if text else name
    return f"{name.upper()} ({head[:60]})"


def _parse(sql: str, where: str):
    import sqlglot
    from sqlglot.errors import SqlglotError

    with _quiet_sqlglot():
        try:
            # a comment after the last ';' parses as an empty Semicolon statement: not a statement
            trees = [t for t in sqlglot.parse(sql, read="bigquery")
                     if t is not None and type(t).__name__ != "Semicolon"]
        except SqlglotError as exc:
            first = str(exc).splitlines()[0][:300]
            raise QueryRefused(f"extract_query={where!r} is not valid BigQuery Standard SQL: {first}; fix the SQL "
                               "(one read-only SELECT)") from exc
    if len(trees) != 1:
        kinds = ", ".join(type(t).__name__.upper() for t in trees) or "none"
        raise QueryRefused(
            f"extract_query={where!r} holds {len(trees)} statements ({kinds}); it must be exactly one read-only SELECT: "
            "remove the others"
        )
    return trees[0]


def _denied_types():
    from sqlglot import exp

    return tuple(c for c in (getattr(exp, n, None) for n in _DENIED_NODES) if isinstance(c, type))


def _function_name(node: Any) -> str:
    from sqlglot import exp

    if isinstance(node, exp.Anonymous):
        return str(node.name)
    try:
        return node.sql_name()
    except Exception:  # pragma: no cover
        return type(node).__name__


def check_tree(tree: Any, where: str) -> None:
    """Refuse a parsed statement unless it is one read-only query (rules 1-3 of the module docstring).

    Raises:
        QueryRefused: naming what was found and the fix.
    """
    from sqlglot import exp

    if type(tree).__name__ not in _ALLOWED_ROOTS:
        raise QueryRefused(
            f"extract_query={where!r} is {_node_label(tree)}, not a query; an extract query is one read-only SELECT "
            "(WITH and UNION allowed): nothing that writes or changes state"
        )
    denied = _denied_types()
    for node in tree.walk():
        if isinstance(node, denied):
            raise QueryRefused(
                f"extract_query={where!r} contains {_node_label(node)}; an extract query only reads: remove it (write "
                "the result of your query with a tool of your own, not through tuneloop)"
            )
        if isinstance(node, exp.Parameter) and (
            isinstance(node.this, exp.Parameter) or isinstance(node.parent, exp.Parameter)
        ):
            raise QueryRefused(
                f"extract_query={where!r} uses the system variable {node.sql('bigquery')}; @@ variables are "
                "BigQuery-only session state: pass the value in query_params and write @name"
            )
        if isinstance(node, exp.Table):
            _check_table(node, where)
        if isinstance(node, exp.Func) and not isinstance(node, exp.Column):
            name = _function_name(node).lower()
            qualified = isinstance(node.parent, exp.Dot) and node.parent.expression is node
            if "." in name or qualified:
                raise QueryRefused(
                    f"extract_query={where!r} calls {node.parent.sql('bigquery') if qualified else name}: a function "
                    "called through a dataset (a UDF, a remote function, ML./AI./OBJ.) may call out or spend; use "
                    "built-in functions only"
                )
            if _DENIED_FUNCTIONS.match(name):
                raise QueryRefused(
                    f"extract_query={where!r} calls {name}(): it reads files, reaches another system or changes state; "
                    "an extract query reads warehouse tables only: load the data into a table first"
                )


def _check_table(node: Any, where: str) -> None:
    from sqlglot import exp

    if not isinstance(node.this, exp.Identifier):
        what = node.this.sql("bigquery") if isinstance(node.this, exp.Expression) else repr(node.this)
        raise QueryRefused(
            f"extract_query={where!r} reads from {what[:80]}: table functions are refused (they can read files or "
            "other systems); read warehouse tables, CTEs, subqueries or UNNEST(...)"
        )
    parts = [p for p in (node.args.get("catalog"), node.args.get("db"), node.this) if p is not None]
    names = [p.name if isinstance(p, exp.Identifier) else None for p in parts]
    if any(n is None for n in names):
        raise QueryRefused(f"extract_query={where!r}: table {node.sql('bigquery')[:80]} is not a plain table name")
    try:
        validate_identifier(".".join(names), param="extract_query table")
    except ValueError as exc:
        raise QueryRefused(
            f"extract_query={where!r} reads {'.'.join(names)!r}, which is not a table name ({exc}); a file path or URL "
            "is no table: load the data into a table first"
        ) from exc


def _placeholder_sql(sql: str, where: str) -> tuple[str, bool]:
    """The SQL with its ``{{table}}`` slot filled by a placeholder name (for parsing), and whether it had one."""
    from tuneloop.warehouse.sql import _SLOT

    slots = set(_SLOT.findall(sql))
    other = sorted(slots - {TABLE_SLOT})
    if other:
        raise QueryRefused(
            f"extract_query={where!r} has the slot(s) {['{{' + s + '}}' for s in other]}; the only slot is "
            "{{table}} (filled with the pipeline's table parameter): name other tables directly"
        )
    return _SLOT.sub("tuneloop_table_slot", sql), bool(slots)


def check_sql(sql: str, params: Mapping[str, Any], *, where: str = "query") -> tuple[tuple[str, ...], bool]:
    """Check one extract query's SQL; returns its output column names and whether it uses ``{{table}}``.

    Raises:
        QueryRefused: rules 1-5 of the module docstring (columns: only that they are named and distinct).
    """
    from sqlglot import exp

    text, uses_table = _placeholder_sql(sql, where)
    tree = _parse(text, where)
    check_tree(tree, where)
    used = {n.name for n in tree.find_all(exp.Parameter) if not isinstance(n.this, exp.Parameter)}
    declared = set(params)
    undeclared = sorted(used - declared - set(RESERVED_PARAMS))
    if undeclared:
        raise QueryRefused(
            f"extract_query={where!r} uses @{undeclared[0]} (undeclared: {['@' + u for u in undeclared]}), which "
            f"query_params does not declare; add query_params={{'{undeclared[0]}': VALUE}} (reserved, bound by "
            f"tuneloop: {['@' + r for r in RESERVED_PARAMS]})"
        )
    unused = sorted(declared - used)
    if unused:
        raise QueryRefused(
            f"query_params declares {unused} but extract_query={where!r} never uses "
            f"{'it' if len(unused) == 1 else 'them'} (it uses {sorted('@' + u for u in used) or 'no parameters'}); "
            "drop them or fix the name"
        )
    columns = _output_columns(tree, where)
    return columns, uses_table


def _output_columns(tree: Any, where: str) -> tuple[str, ...]:
    from sqlglot import exp

    query = tree
    while isinstance(query, exp.Subquery):
        query = query.this
    while isinstance(query, exp.SetOperation):
        query = query.this
    selects = query.expressions if isinstance(query, exp.Select) else []
    names: list[str] = []
    for i, sel in enumerate(selects):
        if isinstance(sel, exp.Star) or (isinstance(sel, exp.Column) and isinstance(sel.this, exp.Star)):
            raise QueryRefused(
                f"extract_query={where!r} selects *: name the output columns (messages or text/label, ingested_at, ...) "
                "so they can be checked before the query runs"
            )
        name = sel.alias_or_name if isinstance(sel, exp.Alias | exp.Column) else ""
        if not name:
            raise QueryRefused(
                f"extract_query={where!r}: output column {i + 1} ({sel.sql('bigquery')[:60]}) has no name; give it one "
                "with AS"
            )
        names.append(name)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise QueryRefused(f"extract_query={where!r} returns the column(s) {dupes} twice; alias them apart")
    return tuple(names)


def _check_columns(columns: tuple[str, ...], where: str, packaged: PackagedQuery | None, task: str | None) -> None:
    have = set(columns)
    if packaged is not None:
        missing = [c for c in packaged.columns if c not in have]
        if missing:  # pragma: no cover - a packaged query out of step with its Python step
            raise QueryRefused(f"packaged query {packaged.name} lacks the columns {missing} its Python step reads")
        if task is not None and task != packaged.task:
            raise QueryRefused(f"extract_query={where!r} makes {packaged.task} examples, but task={task!r}; set "
                               f"task={packaged.task!r} or choose another query")
        return
    problems = []
    if WATERMARK_COLUMN not in have:
        problems.append(f"the watermark column {WATERMARK_COLUMN!r} (a TIMESTAMP: when the row landed; alias yours, "
                        f"e.g. `landed_at AS {WATERMARK_COLUMN}`)")
    if "messages" not in have and "text" not in have:
        problems.append("'messages' (a chat example: JSON text or ARRAY<STRUCT<role, content>>) or 'text' + 'label' "
                        "(a classification example)")
    if "text" in have and "messages" in have:
        raise QueryRefused(f"extract_query={where!r} returns both 'text' and 'messages'; return one of them")
    if "text" in have and "label" not in have:
        problems.append("'label' (a 'text' row is a classification example: text and its label)")
    if task == "classification" and "label" not in have:
        problems.append("'label' (task='classification')")
    if task == "chat" and "messages" not in have:
        problems.append("'messages' (task='chat': a conversation whose target is its last assistant turn)")
    if problems:
        raise QueryRefused(
            f"extract_query={where!r} returns {list(columns)}, which lacks " + "; and ".join(problems)
            + f". Canonical columns: {list(CANONICAL_COLUMNS)}"
        )
    for c in columns:
        if c in CANONICAL_COLUMNS:
            continue
        near = close_match(c, CANONICAL_COLUMNS)
        if near and near not in have:
            raise QueryRefused(
                f"extract_query={where!r} returns {c!r}: did you mean the canonical column {near!r}? Rename it (other "
                "columns are kept in the example's meta, so a typo would be silently lost)"
            )


# -- running it ---------------------------------------------------------------------------------------------


def wrap(sql: str, order_by: Iterable[str] = ()) -> str:
    """The statement that runs: ``sql`` as a subquery inside the watermark / settle / max_rows window.

    The query text is kept as written (a trailing ``;`` removed); it was checked to be one balanced query,
    and the wrapped statement is parsed and checked again before it runs.
    """
    body = _strip_semicolon(sql)
    keys = "".join(f", tuneloop_fresh.{validate_identifier(k, param='order_by', max_parts=1)[0]}" for k in order_by)
    return (
        "WITH tuneloop_fresh AS (\n"
        "  SELECT * FROM (\n" + body + "\n  ) AS tuneloop_q\n"
        f"  WHERE tuneloop_q.{WATERMARK_COLUMN} > @watermark AND tuneloop_q.{WATERMARK_COLUMN} <= @read_until\n"
        "),\n"
        "tuneloop_cutoff AS (\n"
        f"  SELECT MAX(head.{WATERMARK_COLUMN}) AS upto\n"
        f"  FROM (SELECT {WATERMARK_COLUMN} FROM tuneloop_fresh ORDER BY {WATERMARK_COLUMN} LIMIT @max_rows) AS head\n"
        ")\n"
        "SELECT tuneloop_fresh.* FROM tuneloop_fresh CROSS JOIN tuneloop_cutoff\n"
        f"WHERE tuneloop_fresh.{WATERMARK_COLUMN} <= tuneloop_cutoff.upto\n"
        f"ORDER BY tuneloop_fresh.{WATERMARK_COLUMN}{keys}"
    )


def _strip_semicolon(sql: str) -> str:
    from sqlglot.tokens import Tokenizer, TokenType

    with _quiet_sqlglot():
        tokens = Tokenizer(dialect="bigquery").tokenize(sql)
    while tokens and tokens[-1].token_type == TokenType.SEMICOLON:
        sql = sql[: tokens[-1].start]
        tokens.pop()
    return sql.rstrip()


def _open(uri: str) -> Warehouse:
    """Open a warehouse for an extract query: a DuckDB file read-only with external access disabled (an
    in-memory DuckDB, or a warehouse passed in already open, is used as it is: the SQL checks still hold)."""
    if uri.startswith("duckdb://"):
        from tuneloop.warehouse.base import _duckdb_path
        from tuneloop.warehouse.duckdb import DuckDBWarehouse

        path = _duckdb_path(uri, uri.split("://", 1)[1])
        if path != ":memory:":
            if not Path(path).is_file():
                raise WarehouseError(f"warehouse={uri!r}: {Path(path).resolve()} does not exist; load data first")
            return DuckDBWarehouse(path, read_only=True)
    return open_warehouse(uri)


def iter_query_extract(
    warehouse_uri: str | Warehouse,
    query: ExtractQuery,
    watermark: str | None,
    *,
    table: str = "",
    max_rows: int | None = None,
    settle_seconds: float = 0.0,
    batch_rows: int | None = None,
) -> Iterator[ExtractBatch]:
    """Run a checked extract query after ``watermark`` and yield its rows as examples + quarantine, a batch
    at a time (as :func:`tuneloop.warehouse.extract.iter_extract` does for the interaction table).

    Raises:
        QueryRefused: the engine refused the statement type (BigQuery dry run) or ``ingested_at`` is no TIMESTAMP.
        WarehouseError: the table is missing or the query failed.
    """
    from tuneloop.warehouse.extract import _check_args

    since = _check_args(table or "t", watermark, max_rows, settle_seconds)
    statement = query.statement()
    identifiers = {TABLE_SLOT: table} if query.uses_table else {}
    if query.uses_table and not table:
        raise QueryRefused(f"extract_query={query.source!r} reads {{{{table}}}}; pass the table parameter")
    wh = _open(warehouse_uri) if isinstance(warehouse_uri, str) else warehouse_uri
    try:
        if query.uses_table:
            _check_table_exists(wh, table, query)
        params = {
            **query.params,
            "watermark": since,
            "read_until": utc_datetime() - dt.timedelta(seconds=settle_seconds),
            "max_rows": NO_LIMIT if max_rows is None else max_rows,
        }
        dry_run = getattr(wh, "statement_type", None)
        if dry_run is not None:
            kind = dry_run(statement, params, identifiers=identifiers)
            if kind != "SELECT":
                raise QueryRefused(f"extract_query={query.source!r}: BigQuery reads it as a {kind} statement, not a "
                                   "SELECT; an extract query only reads")
        run = getattr(wh, "query_batches", None)
        if run is None:  # a backend without streaming: one batch
            batches: Iterable[Any] = wh.query(statement, params, identifiers=identifiers).to_batches()
        elif batch_rows and "batch_rows" in inspect.signature(run).parameters:
            batches = run(statement, params, identifiers=identifiers, batch_rows=batch_rows)
        else:
            batches = run(statement, params, identifiers=identifiers)
        for batch in batches:
            if batch.num_rows:
                yield _convert(batch, query)
    finally:
        if isinstance(warehouse_uri, str):
            wh.close()


def _check_table_exists(wh: Warehouse, table: str, query: ExtractQuery) -> None:
    if not wh.has_table(table):
        raise WarehouseError(f"table={table!r} does not exist in {wh.uri}; extract_query={query.source!r} reads it "
                             "through {{table}}: pass the table that holds the data")
    needed = query.packaged.table_columns if query.packaged is not None else ()
    columns = getattr(wh, "columns", None)
    if needed and columns is not None:
        missing = [c for c in needed if c not in columns(table)]
        if missing:
            raise WarehouseError(
                f"table={table!r} in {wh.uri} lacks {missing}; extract_query={query.source!r} reads the game table "
                f"(tuneloop.warehouse.games): pass table=game_results (or the table your game backend writes)"
            )


def _convert(batch: Any, query: ExtractQuery) -> ExtractBatch:
    import pyarrow as pa
    import pyarrow.compute as pc

    column = batch.column(WATERMARK_COLUMN)
    if not pa.types.is_timestamp(column.type):
        raise QueryRefused(
            f"extract_query={query.source!r} returns {WATERMARK_COLUMN} as {column.type}, not a TIMESTAMP; "
            f"write CAST(... AS TIMESTAMP) AS {WATERMARK_COLUMN}"
        )
    newest = pc.max(column).as_py()
    if newest is not None and newest.tzinfo is None:
        newest = newest.replace(tzinfo=dt.UTC)
    examples: list[Example] = []
    quarantined: list[dict[str, Any]] = []
    recomputed = 0
    rows = batch.to_pylist()
    for row in rows:
        try:
            ex = query.to_example(row)
        except (ExampleError, ValueError, TypeError) as exc:
            quarantined.append({"row": plain(row), "reason": str(exc)})
            continue
        stored = row.get("id")
        recomputed += bool(query.packaged is None and stored not in (None, "") and stored != ex.id)
        examples.append(ex)
    return ExtractBatch(examples, quarantined, len(rows), newest, recomputed)


def canonical_example(row: Mapping[str, Any]) -> Example:
    """A row of canonical columns (``messages`` or ``text`` + ``label``, ...) as an example; other columns
    go to ``meta``. Raises ExampleError naming the field."""
    import json

    extra = {k: plain(v) for k, v in row.items() if k not in CANONICAL_COLUMNS}
    if "text" in row:
        text, label = row.get("text"), row.get("label")
        if not isinstance(text, str) or not text.strip():
            raise ExampleError("text", f"{text!r}: a classification row needs the text a person wrote")
        if not isinstance(label, str) or not label.strip():
            raise ExampleError("label", f"{label!r}: a classification row needs its label (a non-empty string)")
        messages: Any = [{"role": "user", "content": text}, {"role": "assistant", "content": label.strip()}]
    else:
        messages = row.get("messages")
        if isinstance(messages, list):
            messages = [{k: v for k, v in m.items() if v is not None} if isinstance(m, Mapping) else m
                        for m in messages]
    meta = row.get("meta")
    if extra:
        if isinstance(meta, str) and meta.strip():
            try:
                meta = json.loads(meta)
            except json.JSONDecodeError as exc:
                raise ExampleError("meta", f"not valid JSON ({exc.msg})") from exc
        if meta is not None and not isinstance(meta, Mapping):
            raise ExampleError("meta", f"must be an object, got {type(meta).__name__}")
        meta = {**extra, **(meta or {})}
    ex, _ = row_to_example({
        "id": row.get("id"), "messages": messages, "label": row.get("label"), "source": row.get("source"),
        "weight": row.get("weight"), "created_at": row.get("created_at"), "meta": meta,
        "ingested_at": row.get(WATERMARK_COLUMN),
    })
    return ex


def plain(value: Any) -> Any:
    """A result value as JSON-able data (timestamps ISO-8601, nested lists and structs too)."""
    if isinstance(value, dt.datetime):
        return iso(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def query_extract_to_files(
    warehouse_uri: str | Warehouse,
    extract_query: str | ExtractQuery,
    query_params: Mapping[str, Any] | None,
    watermark: str | None,
    examples_path: str | Path,
    quarantine_path: str | Path,
    *,
    table: str = "",
    max_rows: int | None = None,
    settle_seconds: float = 0.0,
    batch_rows: int | None = None,
) -> ExtractSummary:
    """Check and run an extract query after ``watermark``: examples to Parquet, quarantine to JSONL, a batch
    at a time; returns the counts and the new watermark (as :func:`tuneloop.warehouse.extract_to_files`).

    Raises:
        QueryRefused: the query was refused (nothing ran; the files are not written).
        WarehouseError: the table is missing or the query failed.
    """

    query = extract_query if isinstance(extract_query, ExtractQuery) else resolve(extract_query, query_params)
    if query is None:
        raise QueryRefused("extract_query is empty; call tuneloop.warehouse.extract_to_files for the interaction table")
    since = EPOCH if watermark is None else to_utc(watermark, "watermark")
    watermark_from = None if watermark is None else iso(since)
    batches = iter_query_extract(warehouse_uri, query, watermark, table=table, max_rows=max_rows,
                                 settle_seconds=settle_seconds, batch_rows=batch_rows)
    first = next(batches, None)  # a refusal or a missing table raises before any file is written
    return write_batches(_chain(first, batches), examples_path, quarantine_path, watermark_from)


def _chain(first: ExtractBatch | None, rest: Iterator[ExtractBatch]) -> Iterator[ExtractBatch]:
    if first is not None:
        yield first
    yield from rest
