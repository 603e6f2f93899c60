"""``tuneloop report``: reports in the terminal (and, from the HTML reports, in a browser).

The ``report`` command group lives here as its own Typer app so that every report can add a command to
it without touching the others: ``tuneloop.cli`` mounts :data:`report_app` once, and a module adds its
command with ``@report_app.command("NAME")`` (this one: ``models`` and ``views``).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

report_app = typer.Typer(help="Reports: model performance over time.", no_args_is_help=True)

_Warehouse = Annotated[str, typer.Option(help="Warehouse URI: duckdb:///path.duckdb or bigquery://PROJECT/DATASET.")]
_Games = Annotated[str, typer.Option(help="The game table ('' to skip).")]
_Interactions = Annotated[str, typer.Option(help="The interaction table ('' to skip).")]


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@report_app.command("models")
def report_models(
    warehouse: _Warehouse,
    games_table: _Games = "game_results",
    table: _Interactions = "interactions",
    days: Annotated[int, typer.Option(help="The last N days (0 = everything).")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Per model version per day: games and AI survival rate; live rows, correction rate, accuracy.

    The same SELECTs as the packaged views (``tuneloop report views`` creates them for dashboards).
    """
    from tuneloop.warehouse import WarehouseError, open_warehouse
    from tuneloop.warehouse.views import format_report, model_report

    try:
        wh = open_warehouse(warehouse)
    except (ValueError, WarehouseError) as exc:
        _fail(str(exc), 2)
    try:
        report = model_report(wh, games_table=games_table or None, interactions_table=table or None,
                              days=days or None)
    except (ValueError, WarehouseError) as exc:
        _fail(str(exc))
    finally:
        wh.close()
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True, default=str))
    else:
        typer.echo(format_report(report))


@report_app.command("views")
def report_views(
    warehouse: _Warehouse,
    games_table: _Games = "game_results",
    table: _Interactions = "interactions",
    prefix: Annotated[str, typer.Option(help="View name prefix (may name a dataset: reporting.tuneloop_).")] = "tuneloop_",
) -> None:
    """Create (or replace) the packaged views in the warehouse, for Looker Studio and other dashboards."""
    from tuneloop.warehouse import WarehouseError, open_warehouse
    from tuneloop.warehouse.views import create_views

    try:
        wh = open_warehouse(warehouse)
    except (ValueError, WarehouseError) as exc:
        _fail(str(exc), 2)
    try:
        made = create_views(wh, games_table=games_table or None, interactions_table=table or None, prefix=prefix)
    except (ValueError, WarehouseError) as exc:
        _fail(str(exc))
    finally:
        wh.close()
    if not made:
        _fail(f"no view created: neither {games_table!r} nor {table!r} exists in {warehouse}")
    for name in made:
        typer.echo(f"view {name}")
