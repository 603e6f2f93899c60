"""SQL templates: BigQuery Standard SQL with ``@name`` values and ``{{slot}}`` identifiers.

A template is BigQuery Standard SQL. Values are never formatted into it: they are named query
parameters (``@watermark``) that each backend binds its own way (BigQuery query parameters, DuckDB
prepared-statement ``$name`` parameters). The only text ever spliced in is an *identifier* (a table
name) in a ``{{table}}`` slot, and only after :func:`validate_identifier` accepted it and
:func:`quote_identifier` quoted every part of it.

Templates live in ``tuneloop/warehouse/queries/*.sql`` and are read with :func:`load_query`.
This module imports only the standard library; sqlglot is imported inside the functions that parse.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from importlib import resources

# One part of a table name: a letter or underscore, then letters, digits, underscores.
IDENTIFIER_RULE = "[A-Za-z_][A-Za-z0-9_]*"
_PART = re.compile(rf"^{IDENTIFIER_RULE}$")
# A Google Cloud project id (only the first part of a three-part name): lowercase, digits, hyphens.
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_SLOT = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_QUERY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

QUOTES = {"bigquery": "`", "duckdb": '"'}


def validate_identifier(name: str, *, param: str = "table", max_parts: int = 3) -> tuple[str, ...]:
    """Check a table name and return its parts.

    Accepted: ``table``, ``dataset.table`` and (``max_parts=3``) ``project.dataset.table``, each part
    matching ``[A-Za-z_][A-Za-z0-9_]*`` (a project id may also hold hyphens, as GCP project ids do).

    Args:
        name: The table name as the user wrote it.
        param: The parameter name to put in the error message.
        max_parts: 1 to 3; how many dotted parts the backend understands.

    Returns:
        The parts, e.g. ``("dataset", "table")``.

    Raises:
        ValueError: naming ``param``, the value and the rule.
    """
    rule = f"each part matching {IDENTIFIER_RULE}"
    forms = ["table", "dataset.table", "project.dataset.table"][:max_parts]
    if not isinstance(name, str) or not name:
        raise ValueError(f"{param}={name!r} is not a table name; write {' or '.join(forms)} ({rule})")
    parts = tuple(name.split("."))
    if len(parts) > max_parts:
        raise ValueError(
            f"{param}={name!r} has {len(parts)} dotted parts; this warehouse takes {' or '.join(forms)}"
        )
    for i, part in enumerate(parts):
        is_project = len(parts) == 3 and i == 0
        if _PART.match(part) or (is_project and _PROJECT.match(part)):
            continue
        raise ValueError(
            f"{param}={name!r}: part {part!r} is not an identifier; write {' or '.join(forms)}, {rule}"
            " (no spaces, quotes, dashes or semicolons)"
        )
    return parts


def quote_identifier(
    name: str, *, dialect: str = "bigquery", param: str = "table", max_parts: int = 3
) -> str:
    """Validate ``name`` and quote each part for ``dialect`` (``bigquery``: backticks, ``duckdb``: double quotes)."""
    q = QUOTES[dialect]
    return ".".join(f"{q}{p}{q}" for p in validate_identifier(name, param=param, max_parts=max_parts))


def render(template: str, identifiers: Mapping[str, str], *, max_parts: int = 3) -> str:
    """Fill the ``{{slot}}`` identifier slots of a BigQuery template with quoted identifiers.

    Every slot must be given and every given identifier must have a slot (a typo fails loudly).

    Raises:
        ValueError: a missing or unused slot, or an identifier that breaks the rule.
    """
    slots = set(_SLOT.findall(template))
    for slot in slots:
        if not _PART.match(slot):
            raise ValueError(f"template slot {{{{{slot}}}}} is not a slot name; write e.g. {{{{table}}}}")
    missing = sorted(slots - set(identifiers))
    if missing:
        raise ValueError(
            f"identifiers: the template needs {missing}; pass identifiers={{'{missing[0]}': ...}}"
        )
    unused = sorted(set(identifiers) - slots)
    if unused:
        raise ValueError(
            f"identifiers: {unused} have no {{{{slot}}}} in the template; drop them or fix the name"
        )
    quoted = {k: quote_identifier(v, param=k, max_parts=max_parts) for k, v in identifiers.items()}
    return _SLOT.sub(lambda m: quoted[m.group(1)], template)


@functools.lru_cache(maxsize=256)
def parameter_names(sql: str) -> frozenset[str]:
    """The ``@name`` query parameters a BigQuery statement uses (parsed, so ``'a@b.com'`` is no parameter).

    Raises:
        ValueError: the SQL does not parse as BigQuery, or uses an ``@@system`` variable.
    """
    from sqlglot import exp

    tree = _parse_one(sql)
    names = set()
    for node in tree.find_all(exp.Parameter):
        if isinstance(node.this, exp.Parameter) or isinstance(node.parent, exp.Parameter):
            raise ValueError(
                f"{node.sql('bigquery')}: @@ system variables are BigQuery-only; pass the value as an @parameter"
            )
        names.add(node.name)
    return frozenset(names)


def _parse_one(sql: str):
    import sqlglot
    from sqlglot.errors import SqlglotError

    try:
        trees = [t for t in sqlglot.parse(sql, read="bigquery") if t is not None]
    except SqlglotError as exc:
        raise ValueError(f"template is not valid BigQuery SQL: {exc}") from exc
    if len(trees) != 1:
        raise ValueError(f"template must hold exactly one SQL statement, found {len(trees)}")
    return trees[0]


@functools.lru_cache(maxsize=256)
def transpile(sql: str, dialect: str) -> str:
    """Translate one BigQuery statement to ``dialect`` (cached; the SQL text is the key).

    Constructs the target cannot express raise instead of being dropped silently.

    Raises:
        ValueError: a parse error, more than one statement, or an unsupported construct.
    """
    from sqlglot.errors import ErrorLevel, SqlglotError

    tree = _parse_one(sql)
    if dialect == "bigquery":
        return sql
    try:
        return tree.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as exc:
        raise ValueError(f"template cannot run on {dialect}: {exc}; rewrite that part of the SQL") from exc


def check_params(sql: str, params: Mapping[str, object]) -> None:
    """Every ``@name`` in ``sql`` has a value in ``params`` and every value is used.

    Raises:
        ValueError: naming the missing or unused parameter.
    """
    needed = parameter_names(sql)
    missing = sorted(needed - set(params))
    if missing:
        raise ValueError(f"params: the query needs @{missing[0]} (all missing: {missing}); pass it in params")
    unused = sorted(set(params) - needed)
    if unused:
        raise ValueError(
            f"params: {unused} are not used by the query (it uses {sorted(needed)}); fix the name"
        )


def load_query(name: str) -> str:
    """Read a packaged template: ``load_query("extract_examples")`` -> the text of ``queries/extract_examples.sql``.

    Raises:
        ValueError: an unknown name; the message lists the packaged ones.
    """
    root = resources.files("tuneloop.warehouse").joinpath("queries")
    stem = name[:-4] if name.endswith(".sql") else name
    available = sorted(p.name[:-4] for p in root.iterdir() if p.name.endswith(".sql"))
    if not _QUERY_NAME.match(stem) or stem not in available:
        raise ValueError(f"query={name!r} is not a packaged query; choose one of {available}")
    return root.joinpath(f"{stem}.sql").read_text(encoding="utf-8")
