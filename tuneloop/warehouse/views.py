"""Model performance over time: packaged SQL views a dashboard reads, and the same table in the terminal.

Two views, BigQuery Standard SQL (``queries/view_*.sql``; DuckDB runs them transpiled):

``game_models_daily`` (game loop, from the game table)
    day, provider, model_id, model_version, games, ai_seats, survived, survival_rate
    (per AI model version per day: games it played, seats, seats that survived, survived / seats)

``support_models_daily`` (support loop, from the interaction table as :mod:`tuneloop.ingest` writes it)
    day, model_version, live_rows, reviewed, corrected, correction_rate, accuracy
    (live rows answered by that version; rows a human labelled (a correction, or a confirmation with the
    same label); rows corrected to another label; corrected / live_rows; agreed / reviewed, the accuracy
    against the human labels, NULL when nobody reviewed anything that day. If reviewers send only fixes,
    every reviewed row is a correction and ``correction_rate`` is the number to watch.)

:func:`create_views` creates them in the warehouse (``CREATE OR REPLACE VIEW``), so Looker Studio (or
any BI tool) reads them straight from BigQuery; :func:`model_report` runs the same SELECTs for
``tuneloop report models``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuneloop.warehouse.sql import load_query, validate_identifier


@dataclass(frozen=True)
class View:
    """A packaged view: its name, its query file, the table slot it reads and the columns it returns."""

    name: str
    query: str
    slot: str
    columns: tuple[str, ...]
    order: str


GAME_VIEW = View(
    "game_models_daily", "view_game_models_daily", "games",
    ("day", "provider", "model_id", "model_version", "games", "ai_seats", "survived", "survival_rate"),
    "day DESC, provider, model_id, model_version",
)
SUPPORT_VIEW = View(
    "support_models_daily", "view_support_models_daily", "interactions",
    ("day", "model_version", "live_rows", "reviewed", "corrected", "correction_rate", "accuracy"),
    "day DESC, model_version",
)
VIEWS = (GAME_VIEW, SUPPORT_VIEW)


def _tables(games_table: str | None, interactions_table: str | None) -> dict[str, str | None]:
    out = {GAME_VIEW.name: games_table, SUPPORT_VIEW.name: interactions_table}
    for name, table in out.items():
        if table is not None:
            validate_identifier(table, param=f"{name} table")
    return out


def create_views(warehouse: Any, *, games_table: str | None = "game_results",
                 interactions_table: str | None = "interactions", prefix: str = "tuneloop_") -> list[str]:
    """``CREATE OR REPLACE VIEW <prefix><view>`` for each view whose table exists; returns the views made.

    Args:
        warehouse: An open warehouse.
        games_table: The game table (None: skip the game view).
        interactions_table: The interaction table (None: skip the support view).
        prefix: Prepended to the view names (``tuneloop_game_models_daily``); may name a dataset
            (``reporting.``) on BigQuery.
    """
    made = []
    for view, table in zip(VIEWS, _tables(games_table, interactions_table).values(), strict=True):
        if table is None or not warehouse.has_table(table):
            continue
        name = f"{prefix}{view.name}"
        validate_identifier(name, param="prefix")
        ensure_schema = getattr(warehouse, "ensure_schema", None)
        if ensure_schema is not None:
            ensure_schema(name)
        warehouse.query(f"CREATE OR REPLACE VIEW {{{{view}}}} AS\n{load_query(view.query)}", {},
                        identifiers={"view": name, view.slot: table})
        made.append(name)
    return made


def model_report(warehouse: Any, *, games_table: str | None = "game_results",
                 interactions_table: str | None = "interactions", days: int | None = 30,
                 today: dt.date | None = None) -> dict[str, list[dict[str, Any]]]:
    """The views' rows for the last ``days`` days (None: all), newest first; a missing table is skipped.

    Returns:
        ``{view name: rows}`` for each view whose table exists.

    Raises:
        ValueError: a bad table name or ``days``.
    """
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
        raise ValueError(f"days={days!r} must be an integer >= 1 (or None for everything)")
    since = (today or dt.datetime.now(dt.UTC).date()) - dt.timedelta(days=days - 1) if days else dt.date(1970, 1, 1)
    out: dict[str, list[dict[str, Any]]] = {}
    for view, table in zip(VIEWS, _tables(games_table, interactions_table).values(), strict=True):
        if table is None or not warehouse.has_table(table):
            continue
        sql = f"SELECT * FROM (\n{load_query(view.query)}\n) AS v WHERE v.day >= @since ORDER BY {view.order}"
        rows = warehouse.query(sql, {"since": since}, identifiers={view.slot: table}).to_pylist()
        out[view.name] = [{c: r.get(c) for c in view.columns} for r in rows]
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.3f}"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Rows as an aligned text table (numbers right-aligned)."""
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(r.get(c), int | float) or r.get(c) is None for r in rows) and rows for c in columns]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True))

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(row) for row in cells)]).rstrip()


def format_report(report: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """The report as text: one titled table per view (``no rows`` when a view is empty)."""
    parts = []
    for view in VIEWS:
        if view.name not in report:
            continue
        rows = report[view.name]
        body = format_table(rows, view.columns) if rows else "no rows"
        parts.append(f"{view.name}\n{body}")
    return "\n\n".join(parts) if parts else "no game or interaction table in this warehouse"
