"""The ``tuneloop`` command line: load data, validate files, run and compile pipelines, the registry.

Commands that run or compile pipelines import ``tuneloop.pipelines`` (kfp) lazily; the engine
commands work without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tuneloop.selfplay.cli import npz_app

app = typer.Typer(help="tuneloop: keep models improving on their own data.", no_args_is_help=True)
registry_app = typer.Typer(
    help="Inspect the model registry and roll the champion back.", no_args_is_help=True
)
app.add_typer(registry_app, name="registry")
app.add_typer(npz_app, name="npz")


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _parse_params(items: list[str]) -> dict:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(
                f"--param {item!r}: write KEY=VALUE (VALUE may be JSON, e.g. thresholds='{{\"min_values\":{{}}}}')",
                2,
            )
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _load_help() -> str:
    from tuneloop.loading import CSV_COLUMNS

    columns = "\n".join(f"{name}: {what}" for name, what in CSV_COLUMNS.items())
    return (
        "Load your own examples into the warehouse table the pipelines read.\n\n"
        "FILE is canonical JSONL (one example per line: messages, label, source, weight, created_at, meta) "
        "or a CSV whose header names these columns:\n\n\b\n"
        f"{columns}\n\n"
        "Good rows are inserted; a row whose example (same text and label, or same JSONL content) is already "
        "in the table is counted as a duplicate and not inserted again; bad rows are listed with their line "
        "number and reason (exit code 1). --report FILE writes all of it as JSON."
    )


@app.command(help=_load_help())
def load(
    file: Annotated[
        Path, typer.Argument(help="Canonical JSONL, or CSV with columns text,label[,corrected,created_at].")
    ],
    warehouse: Annotated[str, typer.Option(help="Warehouse URI, e.g. duckdb:///data/warehouse.duckdb.")],
    table: Annotated[str, typer.Option(help="Table to append to (created if missing).")] = "interactions",
    source: Annotated[str, typer.Option(help="Source for rows that give none: imported, live, synthetic.")] = "",
    report: Annotated[
        Path | None, typer.Option(help="Write the JSON report (inserted, duplicates, every rejected line) here.")
    ] = None,
) -> None:
    from tuneloop.loading import format_report, load_file, report_json
    from tuneloop.warehouse import WarehouseError

    if not file.exists():
        _fail(f"FILE {file} does not exist", 2)
    try:
        result = load_file(str(file), warehouse, table, source=source or None)
    except (ValueError, WarehouseError) as exc:  # bad header, URI or table name: nothing was loaded
        _fail(str(exc), 2)
    typer.echo(format_report(result))
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(report_json(result) + "\n", encoding="utf-8")
        typer.echo(f"report: {report}")
    if result.rejected:
        raise typer.Exit(1)


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="A provider training file (JSONL).")],
    provider: Annotated[
        str, typer.Option(help="openai, gemini, claude (bedrock), oss-lora (hf), or a format name.")
    ],
    model: Annotated[str, typer.Option(help="Base model whose limits apply.")] = "",
) -> None:
    """Check a training file against the provider's rules, with the same validator the pipeline runs."""
    from tuneloop.formats import FORMAT_NAMES, format_for_provider, validate_file

    fmt = provider if provider in FORMAT_NAMES else format_for_provider(provider)
    if not fmt:
        _fail(f"--provider {provider!r} has no training file format; use one of {list(FORMAT_NAMES)}", 2)
    report = validate_file(str(file), fmt, model=model or None)
    typer.echo(report.summary() if hasattr(report, "summary") else str(report))
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def run(
    pipeline: Annotated[str, typer.Argument(help="export-dataset, tune-and-promote, continuous-tuning or selfplay-training.")],
    param: Annotated[list[str], typer.Option("--param", "-p", help="KEY=VALUE (JSON values allowed).")] = [],  # noqa: B006
    pipeline_root: Annotated[Path, typer.Option(help="Where local runs keep their artifacts.")] = Path(
        ".tuneloop/runs"
    ),
) -> None:
    """Run a pipeline on this machine with kfp.local (no cloud account needed)."""
    from tuneloop.pipelines.local_runner import run_local

    run_dir = run_local(pipeline, _parse_params(param), pipeline_root=pipeline_root)
    typer.echo(f"run finished: {run_dir}")


@app.command("compile")
def compile_cmd(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("compile"),
) -> None:
    """Compile every pipeline to deterministic YAML (what you submit to Vertex AI Pipelines)."""
    from tuneloop.pipelines import PIPELINES
    from tuneloop.pipelines.local_runner import compile_pipeline

    out.mkdir(parents=True, exist_ok=True)
    for name in sorted(PIPELINES):
        typer.echo(f"wrote {compile_pipeline(name, out / f'{name}.yaml')}")


@registry_app.command("show")
def registry_show(
    registry: Annotated[str, typer.Option(help="Registry: a directory, a gs:// prefix, or vertex://PROJECT/REGION?artifact_root=gs://...")],
    model: Annotated[str, typer.Option(help="Model name.")] = "support-intent",
) -> None:
    """List versions with their metrics and the champion alias history."""
    from tuneloop.registry import open_registry

    typer.echo(json.dumps(open_registry(registry, model).show(), indent=2, sort_keys=True, default=str))


@registry_app.command("rollback")
def registry_rollback(
    registry: Annotated[str, typer.Option(help="Registry: a directory, a gs:// prefix, or vertex://PROJECT/REGION?artifact_root=gs://...")],
    model: Annotated[str, typer.Option(help="Model name.")] = "support-intent",
    reason: Annotated[str, typer.Option(help="Why, recorded in the alias history.")] = "manual rollback",
) -> None:
    """Make the previous champion current again."""
    from tuneloop.registry import open_registry

    try:
        record = open_registry(registry, model).rollback(reason=reason)
    except (LookupError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
    typer.echo(f"champion is now {record.version}")


# -- Google Cloud: submit and schedule (docs/google-cloud.md) -----------------------------------------

schedule_app = typer.Typer(
    help="Vertex AI pipeline schedules: create, list, pause, resume, delete.", no_args_is_help=True
)
app.add_typer(schedule_app, name="schedule")


def _template(pipeline: str) -> str:
    """A compiled pipeline: a YAML/JSON path or URL as given, or a pipeline name compiled now."""
    if "://" in pipeline or pipeline.endswith((".yaml", ".yml", ".json")):
        if "://" not in pipeline and not Path(pipeline).is_file():
            _fail(f"PIPELINE {pipeline!r}: no such file; give a compiled YAML or a pipeline name", 2)
        return pipeline
    import tempfile

    from tuneloop.pipelines.local_runner import compile_pipeline

    try:
        return str(compile_pipeline(pipeline, Path(tempfile.mkdtemp(prefix="tuneloop-")) / f"{pipeline}.yaml"))
    except ValueError as exc:
        _fail(f"PIPELINE: {exc}; or give the path of a compiled YAML", 2)


def _labels(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--label {item!r}: write KEY=VALUE (lowercase)", 2)
        out[key] = value
    return out


def _target(project: str, region: str, pipeline_root: str, service_account: str, labels: list[str]):
    from tuneloop.cloud import VertexTarget

    try:
        return VertexTarget(
            project=project,
            region=region,
            pipeline_root=pipeline_root,
            service_account=service_account or None,
            labels=_labels(labels),
        )
    except ValueError as exc:
        _fail(str(exc), 2)


_Project = Annotated[str, typer.Option(help="Google Cloud project id.")]
_Region = Annotated[str, typer.Option(help="Vertex AI region.")]
_PipelineRoot = Annotated[str, typer.Option(help="gs://BUCKET/PREFIX for run artifacts.")]
_ServiceAccount = Annotated[str, typer.Option(help="Service account the run acts as (NAME@PROJECT.iam...).")]
_Params = Annotated[list[str], typer.Option("--param", "-p", help="KEY=VALUE (JSON values allowed).")]
_Labels = Annotated[list[str], typer.Option("--label", help="KEY=VALUE label on the job (lowercase).")]


@app.command()
def submit(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name (compiled now) or a compiled YAML path/URL.")],
    project: _Project,
    pipeline_root: _PipelineRoot,
    region: _Region = "us-central1",
    param: _Params = [],  # noqa: B006
    service_account: _ServiceAccount = "",
    job_id: Annotated[str, typer.Option(help="Run id; the same id twice starts one run.")] = "",
    label: _Labels = [],  # noqa: B006
    cache: Annotated[
        bool | None, typer.Option("--cache/--no-cache", help="Default: off for tuneloop pipelines.")
    ] = None,
) -> None:
    """Submit one run to Vertex AI Pipelines (credentials: gcloud auth application-default login)."""
    from tuneloop.cloud import CloudError, submit_pipeline

    target = _target(project, region, pipeline_root, service_account, [])
    template = _template(pipeline)
    try:
        result = submit_pipeline(
            template, target, _parse_params(param), job_id=job_id or None,
            enable_caching=cache, labels=_labels(label),
        )
    except (ValueError, CloudError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))


@schedule_app.command("create")
def schedule_create(
    project: _Project,
    pipeline_root: _PipelineRoot,
    pipeline: Annotated[str, typer.Argument(help="Pipeline name or compiled YAML.")] = "export-dataset",
    region: _Region = "us-central1",
    name: Annotated[str, typer.Option(help="Schedule display name (unique).")] = "tuneloop-export",
    cron: Annotated[str, typer.Option(help="Five cron fields, e.g. '0 3 * * *'.")] = "0 3 * * *",
    time_zone: Annotated[str, typer.Option(help="IANA time zone of the cron.")] = "UTC",
    param: _Params = [],  # noqa: B006
    service_account: _ServiceAccount = "",
    label: _Labels = [],  # noqa: B006
) -> None:
    """Run a pipeline on a cron (one run at a time, no catch-up after a pause)."""
    from tuneloop.cloud import CloudError
    from tuneloop.triggers.schedule import ExportSchedule, schedule_export

    try:
        when = ExportSchedule(display_name=name, cron=cron, time_zone=time_zone)
        target = _target(project, region, pipeline_root, service_account, label)
        info = schedule_export(when, target, _template(pipeline), _parse_params(param))
    except (ValueError, CloudError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(info.to_dict(), indent=2, sort_keys=True))


@schedule_app.command("list")
def schedule_list(project: _Project, region: _Region = "us-central1") -> None:
    """List the pipeline schedules in a project and region."""
    from tuneloop.cloud import list_schedules, schedules_as_dicts

    typer.echo(json.dumps(schedules_as_dicts(list_schedules(project, region)), indent=2, sort_keys=True))


def _schedule_action(action: str, project: str, region: str, schedule: str) -> None:
    from google.api_core import exceptions as gexc

    from tuneloop import cloud

    fn = {"pause": cloud.pause_schedule, "resume": cloud.resume_schedule, "delete": cloud.delete_schedule}[action]
    try:
        out = fn(project, region, schedule)
    except (ValueError, gexc.GoogleAPICallError) as exc:
        _fail(f"schedule {action} {schedule!r}: {exc}")
    typer.echo(json.dumps(out.to_dict() if hasattr(out, "to_dict") else {"deleted": out}, indent=2, sort_keys=True))


_Schedule = Annotated[str, typer.Argument(help="Schedule display name, id or resource name.")]


@schedule_app.command("pause")
def schedule_pause(schedule: _Schedule, project: _Project, region: _Region = "us-central1") -> None:
    """Pause a schedule."""
    _schedule_action("pause", project, region, schedule)


@schedule_app.command("resume")
def schedule_resume(schedule: _Schedule, project: _Project, region: _Region = "us-central1") -> None:
    """Resume a paused schedule (missed runs are not caught up)."""
    _schedule_action("resume", project, region, schedule)


@schedule_app.command("delete")
def schedule_delete(schedule: _Schedule, project: _Project, region: _Region = "us-central1") -> None:
    """Delete a schedule (runs it started keep running)."""
    _schedule_action("delete", project, region, schedule)


if __name__ == "__main__":
    app()
