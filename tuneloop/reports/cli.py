"""``tuneloop report ...``: a registry's history page, the latest report of a local run, and model
performance over time from the warehouse (``models``, ``views``).

Mounted by the main CLI as ``app.add_typer(report_app, name="report")``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

report_app = typer.Typer(
    help="Reports: a registry's history and a local run's latest report (HTML); model performance over time.",
    no_args_is_help=True,
)

# Output names of the components that write a report (KFP names the artifact file after its output).
ARTIFACT_NAMES = ("report",)
REPORT_FILE = "report.html"
DEFAULT_PIPELINE_ROOT = Path(".tuneloop/runs")


@report_app.callback()
def _group() -> None:
    """Reports: HTML pages (self-contained: open them anywhere, they fetch nothing) and warehouse tables."""


def _is_report(path: Path) -> bool:
    if not path.is_file() or not (path.name == REPORT_FILE or path.name in ARTIFACT_NAMES):
        return False
    with path.open("rb") as f:
        return f.read(15).lower() == b"<!doctype html>"


def reports_under(folder: Path) -> list[Path]:
    """Every report file under ``folder`` (``report.html`` copies and KFP ``report`` artifacts), newest last."""
    found = [p for name in (REPORT_FILE, *ARTIFACT_NAMES) for p in folder.rglob(name) if _is_report(p)]
    return sorted(set(found), key=lambda p: (p.stat().st_mtime, str(p)))


def find_report(run: str, pipeline_root: Path = DEFAULT_PIPELINE_ROOT) -> Path:
    """The latest report of ``run``: a report file, a folder holding runs or reports, or a run name.

    A name is looked up under ``pipeline_root`` (where ``tuneloop run`` keeps local runs); ``latest``
    is the newest run there.

    Raises:
        FileNotFoundError: nothing matches; the message lists the runs under ``pipeline_root``.
    """
    candidates = [Path(run)]
    if run == "latest" and pipeline_root.is_dir():
        runs = sorted((p for p in pipeline_root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        candidates = runs[-1:] or candidates
    elif not Path(run).exists():
        candidates.append(pipeline_root / run)
    for c in candidates:
        if c.is_file():
            if not _is_report(c) and c.suffix != ".html":
                raise FileNotFoundError(f"RUN {run!r}: {c} is not an HTML report")
            return c
        if c.is_dir():
            found = reports_under(c)
            if found:
                return found[-1]
            raise FileNotFoundError(
                f"RUN {run!r}: no report under {c} (evaluations and self-play gauntlets write one; a run that "
                "skipped training has none)"
            )
    known = sorted(p.name for p in pipeline_root.iterdir() if p.is_dir())[-5:] if pipeline_root.is_dir() else []
    raise FileNotFoundError(
        f"RUN {run!r} is not a report file, a folder, or a run under --pipeline-root {pipeline_root}"
        + (f"; latest runs there: {known}" if known else " (no runs there)")
        + "; pass a run folder, demo-output, or 'latest'"
    )


def _browser_copy(path: Path) -> Path:
    """A KFP artifact has no ``.html`` suffix; browsers need one to render it, so open a copy."""
    if path.suffix == ".html":
        return path
    folder = Path(tempfile.gettempdir()) / "tuneloop-reports"
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / ("-".join(path.parts[-3:]) + ".html")
    shutil.copyfile(path, copy)
    return copy


@report_app.command("open")
def open_report(
    run: Annotated[str, typer.Argument(help="A run folder (kfp.local run, demo-output), a run name under "
                                            "--pipeline-root, 'latest', or a report file.")],
    pipeline_root: Annotated[Path, typer.Option(help="Where local runs keep their artifacts.")] = DEFAULT_PIPELINE_ROOT,
    browser: Annotated[bool, typer.Option("--browser/--no-browser", help="Open it in a browser (else print the path).")] = True,
) -> None:
    """Find the latest report of a local run and open it in a browser (the path is printed too)."""
    import webbrowser

    try:
        path = find_report(run, pipeline_root)
    except FileNotFoundError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    target = _browser_copy(path.resolve())
    typer.echo(str(target))
    if not browser:
        return
    try:
        opened = webbrowser.get().open(target.as_uri())
    except webbrowser.Error:
        opened = False
    if not opened:
        typer.echo(f"no browser could be opened here; open {target} in a browser")


@report_app.command("history")
def history(
    registry: Annotated[str, typer.Option(help="Registry: a directory, a gs:// prefix, or vertex://PROJECT/REGION?artifact_root=gs://...")],
    model: Annotated[str, typer.Option(help="Model name.")] = "support-intent",
    out: Annotated[Path | None, typer.Option(help="HTML file to write (default: <model>-history.html).")] = None,
) -> None:
    """Draw the champion's metrics across versions, promotions and rollbacks marked, as one HTML file."""
    from tuneloop.registry import open_registry
    from tuneloop.reports.history import history_record, render_history

    try:
        record = history_record(open_registry(registry, model))
    except (LookupError, ValueError) as exc:
        typer.secho(f"--registry {registry!r} --model {model!r}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    dest = out or Path(f"{model}-history.html")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(render_history(record), encoding="utf-8")
    typer.echo(f"wrote {dest} ({len(record['versions'])} versions, champion {record['champion'] or 'none'})")


# -- model performance over time (the packaged warehouse views) --------------------------------------

def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


_Warehouse = Annotated[str, typer.Option(help="Warehouse URI: duckdb:///path.duckdb or bigquery://PROJECT/DATASET.")]
_Games = Annotated[str, typer.Option(help="The game table ('' to skip).")]
_Interactions = Annotated[str, typer.Option(help="The interaction table ('' to skip).")]


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
