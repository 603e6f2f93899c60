"""The ``tuneloop`` command line: load data, validate files, run and compile pipelines, the registry.

Commands that run or compile pipelines import ``tuneloop.pipelines`` (kfp) lazily; the engine
commands work without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tuneloop.reports.cli import report_app
from tuneloop.selfplay.cli import npz_app

app = typer.Typer(help="tuneloop: keep models improving on their own data.", no_args_is_help=True)
registry_app = typer.Typer(
    help="Inspect the model registry and roll the champion back.", no_args_is_help=True
)
app.add_typer(registry_app, name="registry")
app.add_typer(npz_app, name="npz")
app.add_typer(report_app, name="report")


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _raw_params(items: list[str]) -> dict[str, str]:
    raw: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(
                f"--param {item!r}: write KEY=VALUE (VALUE may be JSON, e.g. thresholds='{{\"min_values\":{{}}}}')",
                2,
            )
        if key in raw:
            _fail(f"--param {key}: given twice ({raw[key]!r} and {value!r}); keep one", 2)
        raw[key] = value
    return raw


def _parse_params(items: list[str]) -> dict:
    params = {}
    for key, value in _raw_params(items).items():
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _checked_params(items: list[str], parameters, pipeline: str) -> dict:
    """``-p`` values checked against the pipeline's parameters: unknown, missing and mistyped ones refused."""
    from tuneloop.compiled import TemplateError, check_parameters

    try:
        return check_parameters(_parse_params(items), parameters, pipeline=pipeline, raw=_raw_params(items))
    except TemplateError as exc:
        _fail(str(exc), 2)


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
    from tuneloop.formats import FORMAT_NAMES, validate_file
    from tuneloop.providers import format_of

    fmt = provider if provider in FORMAT_NAMES else format_of(provider)
    if not fmt:
        _fail(f"--provider {provider!r} has no training file format; use one of {list(FORMAT_NAMES)}", 2)
    report = validate_file(str(file), fmt, model=model or None)
    typer.echo(report.summary() if hasattr(report, "summary") else str(report))
    if not report.ok:
        raise typer.Exit(1)


class _StatusLine:
    """Redraws one terminal line in place (the progress bar of the running task)."""

    def __init__(self, stream) -> None:
        self.stream, self.width = stream, 0

    def __call__(self, text: str | None) -> None:
        if text is None:
            if self.width:
                self.stream.write("\n")
            self.width = 0
        else:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        self.stream.flush()


def _run_summary(run_dir: Path) -> tuple[dict, str] | None:
    """The run's summary (what promote or record-skip wrote) and where it is, or None."""
    found = sorted((p for p in run_dir.rglob("summary") if p.is_file()), key=lambda p: p.stat().st_mtime)
    for path in reversed(found):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(summary, dict) and "decision" in summary:
            return summary, str(summary.get("summary_uri") or path)
    return None


@app.command()
def providers(
    name: Annotated[str, typer.Argument(help="A provider (or family) name: list its hyperparameters.")] = "",
) -> None:
    """List the tuners (built in, and any a package registers), or one provider's hyperparameters."""
    from tuneloop.providers.registry import ProviderNotFound, settings_table, summary_table

    try:
        typer.echo(settings_table(name) if name else summary_table())
    except ProviderNotFound as exc:
        _fail(str(exc), 2)


@app.command()
def run(
    pipeline: Annotated[str, typer.Argument(help="export-dataset, tune-and-promote, continuous-tuning, label-examples, select-model or selfplay-training.")],
    param: Annotated[list[str], typer.Option("--param", "-p", help="KEY=VALUE (JSON values allowed).")] = [],  # noqa: B006
    pipeline_root: Annotated[Path, typer.Option(help="Where local runs keep their artifacts.")] = Path(
        ".tuneloop/runs"
    ),
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the KFP task logs as they come.")] = False,
) -> None:
    """Run a pipeline on this machine with kfp.local (no cloud account needed).

    Prints a line per task as it starts and ends, progress bars for long steps, then the run's
    summary and where it is. A failed run ends with the failed task's own error (exit code 1);
    `--verbose` shows every task's log. Parameters are checked first: unknown or missing ones are
    refused before anything runs (exit code 2).
    """
    from tuneloop import storage
    from tuneloop.pipelines.local_runner import LocalRunFailed, pipeline_parameters, run_local_pipeline
    from tuneloop.runview import RunView, outputs_table, summary_table

    try:
        parameters = pipeline_parameters(pipeline)
    except ValueError as exc:
        _fail(f"PIPELINE: {exc}", 2)
    params = _checked_params(param, parameters, pipeline)
    terminal = sys.stdout  # the run redirects sys.stdout into its log; the view writes here
    tty = terminal.isatty() and not verbose
    view = RunView(lambda line: typer.echo(line, file=terminal), verbose=verbose, tty=tty,
                   overwrite=_StatusLine(terminal) if tty else None)
    typer.echo(f"running {pipeline} under kfp.local" + ("" if verbose else " (task logs: --verbose)"))
    try:
        result = run_local_pipeline(pipeline, params, pipeline_root=pipeline_root, listener=view, echo=verbose)
    except LocalRunFailed as exc:
        *head, last = view.failure_lines(str(exc.log_path)) if exc.task else [
            f"full log: {exc.log_path}", f"the run failed before any task ran: {exc.error}"]
        for line in head:
            typer.echo(line, err=True)
        typer.secho(last, fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    found = _run_summary(result.run_dir)
    typer.echo("")
    if found is not None:
        summary, where = found
        manifest = None
        if summary.get("dataset_uri"):
            with contextlib.suppress(Exception):
                manifest, _ = storage.read_json(storage.join(summary["dataset_uri"], "manifest.json"))
        typer.echo(summary_table(summary, manifest, title=f"{pipeline} ({summary.get('provider')})"))
        typer.echo(f"run: {result.run_dir}")
        typer.echo(f"summary: {where}")
    else:
        if result.outputs:
            typer.echo(outputs_table(pipeline, result.outputs))
        typer.echo(f"run: {result.run_dir}")
        typer.echo(f"log: {result.log_path}")


_ImageRepository = Annotated[
    str,
    typer.Option(
        "--image-repository",
        help="Image repository of the three tuneloop images, e.g. europe-west4-docker.pkg.dev/PROJECT/REPO "
        "(default: $TUNELOOP_IMAGE_REPOSITORY). The tag is the package version.",
    ),
]
_ImageDigest = Annotated[
    list[str],
    typer.Option("--image-digest", help="KIND=sha256:... pins one image (base, trainer-gpu, selfplay-cpu) by digest."),
]
_ImageLock = Annotated[
    str,
    typer.Option("--image-lock", help="Lock file of pushed digests (make images writes build/images.lock.json; "
                 "default: $TUNELOOP_IMAGE_LOCK)."),
]


def _images(repository: str, digests: list[str], lock: str):
    from tuneloop.images import ImageError, resolve

    try:
        return resolve(repository or None, digests=digests, lock=lock or None, environ=os.environ)
    except ImageError as exc:
        _fail(str(exc), 2)


def _gpu_constants(gpu: str, cpu: str, memory: str) -> dict:
    from tuneloop.gpu import GpuSettingsError, check_cpu_limit, check_memory_limit, parse_gpu_option

    out: dict = {}
    try:
        if gpu:
            out["accelerator_type"], out["accelerator_count"] = parse_gpu_option(gpu)
        if cpu:
            out["cpu_limit"] = check_cpu_limit(cpu, "--cpu")
        if memory:
            out["memory_limit"] = check_memory_limit(memory, "--memory")
    except GpuSettingsError as exc:
        _fail(str(exc), 2)
    return out


@app.command("compile")
def compile_cmd(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("compile"),
    image_repository: _ImageRepository = "",
    image_digest: _ImageDigest = [],  # noqa: B006
    image_lock: _ImageLock = "",
    gpu: Annotated[str, typer.Option(help="TYPE[:COUNT], e.g. NVIDIA_L4:1: compile the GPU tasks' accelerator "
                                          "as a constant (default: the accelerator_type/_count parameters).")] = "",
    cpu: Annotated[str, typer.Option(help="vCPUs of the GPU tasks as a constant, e.g. 8 (default: cpu_limit).")] = "",
    memory: Annotated[str, typer.Option(help="Memory of the GPU tasks as a constant, e.g. 32G "
                                             "(default: memory_limit).")] = "",
    pipeline: Annotated[list[str], typer.Option(help="Compile only this pipeline (repeatable); default: all.")] = [],  # noqa: B006
) -> None:
    """Compile every pipeline to deterministic YAML (what you submit to Vertex AI Pipelines).

    The images are those of --image-repository / $TUNELOOP_IMAGE_REPOSITORY, pinned by --image-digest or
    --image-lock. With --gpu/--cpu/--memory, the GPU tasks' settings are compiled in as constants and
    their pipeline parameters leave the template.
    """
    from tuneloop.images import placeholder_message
    from tuneloop.pipelines.local_runner import compile_all, get_pipeline

    images = _images(image_repository, image_digest, image_lock)
    constants = _gpu_constants(gpu, cpu, memory)
    for name in pipeline:
        try:
            get_pipeline(name)
        except ValueError as exc:
            _fail(f"--pipeline: {exc}", 2)
    for path in compile_all(out, images=images, gpu=constants or None, names=pipeline or None):
        typer.echo(f"wrote {path}")
    typer.echo(f"images: {', '.join(images.refs().values())} ({images.source})")
    if constants:
        typer.echo(f"GPU task settings compiled as constants: {constants}")
    if images.is_default:
        typer.secho(f"note: {placeholder_message('this YAML')}", fg=typer.colors.YELLOW, err=True)


@registry_app.command("show")
def registry_show(
    registry: Annotated[str, typer.Option(help="Registry: a directory, a gs:// prefix, or vertex://PROJECT/REGION?artifact_root=gs://...")],
    model: Annotated[str, typer.Option(help="Model name.")] = "support-intent",
) -> None:
    """List versions with their metrics and the champion alias history."""
    from tuneloop.registry import open_registry

    typer.echo(json.dumps(open_registry(registry, model).show(), indent=2, sort_keys=True, default=str))


@registry_app.command("champion")
def registry_champion(
    registry: Annotated[str, typer.Option(help="Registry: a directory, a gs:// prefix, or vertex://PROJECT/REGION?artifact_root=gs://...")],
    model: Annotated[str, typer.Option(help="Model name.")] = "support-intent",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts and deploy configs).")] = False,
) -> None:
    """Print what an application needs to use the champion: version, provider, model id, artifact, endpoint."""
    from tuneloop.serving import NoChampion, champion_info

    try:
        info = champion_info(registry, model).to_dict()
    except (NoChampion, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    for key in ("model_name", "version", "provider", "kind", "model_id", "artifact_uri", "endpoint", "created_at"):
        typer.echo(f"{key:<9} {info[key] if info[key] is not None else '-'}")
    for name, value in sorted(info["metrics"].items()):
        typer.echo(f"{'metric':<9} {name} = {value:.4f}" if isinstance(value, float) else f"metric    {name} = {value}")


@registry_app.command("rollback")
def registry_rollback(
    registry: Annotated[str, typer.Option(help="Registry: a directory, a gs:// prefix, or vertex://PROJECT/REGION?artifact_root=gs://...")],
    model: Annotated[str, typer.Option(help="Model name.")] = "support-intent",
    reason: Annotated[str, typer.Option(help="Why, recorded in the alias history.")] = "manual rollback",
    endpoint: Annotated[str, typer.Option(help="Also move this endpoint's traffic back: vertex://PROJECT/REGION/NAME.")] = "",
) -> None:
    """Make the previous champion current again (and, with --endpoint, the one serving the endpoint)."""
    from tuneloop.registry import open_registry

    if endpoint:
        from tuneloop.deploy import DeployError, rollback_endpoint

        try:
            result = rollback_endpoint(registry, model, endpoint, reason=reason, log=typer.echo)
        except (LookupError, ValueError, RuntimeError, DeployError) as exc:
            _fail(str(exc))
        typer.echo(f"champion is now {result.version}; {endpoint}: {result.action}")
        return
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


def _template(pipeline: str, images) -> tuple[str, dict | None]:
    """A compiled pipeline with the chosen images: ``(path or URL, its spec or None for a URL)``.

    A pipeline name is compiled now; a local YAML is retargeted into a copy; a URL (gs://, Artifact
    Registry) is submitted as it is (compile it with --image-repository before uploading it).
    """
    import tempfile

    from tuneloop import compiled
    from tuneloop.images import DEFAULT_REPOSITORY, image_kind, placeholder_message

    tmp = Path(tempfile.mkdtemp(prefix="tuneloop-"))
    if "://" in pipeline:
        if not images.is_default or images.digests:
            _fail(
                f"PIPELINE {pipeline!r} is a remote template, which cannot be retargeted here: compile it with "
                "`tuneloop compile --image-repository ...`, upload it, and submit that", 2,
            )
        return pipeline, None
    if pipeline.endswith((".yaml", ".yml", ".json")):
        if not Path(pipeline).is_file():
            _fail(f"PIPELINE {pipeline!r}: no such file; give a compiled YAML or a pipeline name", 2)
        try:
            template = compiled.read(pipeline)
        except compiled.TemplateError as exc:
            _fail(f"PIPELINE: {exc}", 2)
        if not images.is_default or images.digests:
            compiled.retarget_images(template, images)
            path = tmp / Path(pipeline).name
            path.write_text(template.dump())
            pipeline = str(path)
    else:
        from tuneloop.pipelines.local_runner import compile_pipeline

        try:
            path = compile_pipeline(pipeline, tmp / f"{pipeline}.yaml", images=images)
        except ValueError as exc:
            _fail(f"PIPELINE: {exc}; or give the path of a compiled YAML", 2)
        template = compiled.read(path)
        pipeline = str(path)
    stale = [ref for ref in compiled.images(template.spec).values()
             if image_kind(ref) and ref.startswith(DEFAULT_REPOSITORY + "/")]
    if stale:
        _fail(placeholder_message(f"PIPELINE {template.name or pipeline!r}"), 2)
    return pipeline, template.spec


def _template_params(items: list[str], spec: dict | None, pipeline: str) -> dict:
    from tuneloop.compiled import interface

    if spec is None:  # a remote template: Vertex checks the names
        return _parse_params(items)
    return _checked_params(items, interface(spec), spec.get("pipelineInfo", {}).get("name") or pipeline)


@contextlib.contextmanager
def _google_login(what: str):
    """Missing or expired Google credentials as one line naming the command that logs in."""
    from google.auth import exceptions as aexc

    from tuneloop.cloud import LOGIN_HINT, CredentialsError

    try:
        yield
    except CredentialsError as exc:
        _fail(f"{what}: {exc}")
    except aexc.DefaultCredentialsError:
        _fail(f"{what}: no Google credentials on this machine: run `{LOGIN_HINT}`")
    except aexc.RefreshError as exc:
        _fail(f"{what}: your Google credentials could not be refreshed ({exc}): run `{LOGIN_HINT}`")


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
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run every task, even those the template lets Vertex cache.")
    ] = False,
    image_repository: _ImageRepository = "",
    image_digest: _ImageDigest = [],  # noqa: B006
    image_lock: _ImageLock = "",
) -> None:
    """Submit one run to Vertex AI Pipelines (credentials: gcloud auth application-default login).

    Caching follows the template: tasks that read the warehouse, the registry or the clock never
    come from cache; --no-cache runs every task.
    """
    from tuneloop.cloud import CloudError, submit_pipeline

    target = _target(project, region, pipeline_root, service_account, [])
    template, spec = _template(pipeline, _images(image_repository, image_digest, image_lock))
    params = _template_params(param, spec, pipeline)
    with _google_login("submit"):
        try:
            result = submit_pipeline(
                template, target, params, job_id=job_id or None,
                enable_caching=False if no_cache else None, labels=_labels(label),
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
    image_repository: _ImageRepository = "",
    image_digest: _ImageDigest = [],  # noqa: B006
    image_lock: _ImageLock = "",
) -> None:
    """Run a pipeline on a cron (one run at a time, no catch-up after a pause).

    Pin the images by digest (--image-lock / --image-digest) so that a push of the same tag never
    changes what the schedule runs.
    """
    from tuneloop.cloud import CloudError
    from tuneloop.triggers.schedule import ExportSchedule, schedule_export

    try:
        when = ExportSchedule(display_name=name, cron=cron, time_zone=time_zone)
    except ValueError as exc:
        _fail(str(exc), 2)
    target = _target(project, region, pipeline_root, service_account, label)
    template, spec = _template(pipeline, _images(image_repository, image_digest, image_lock))
    params = _template_params(param, spec, pipeline)
    with _google_login("schedule create"):
        try:
            info = schedule_export(when, target, template, params)
        except (ValueError, CloudError) as exc:
            _fail(str(exc))
    typer.echo(json.dumps(info.to_dict(), indent=2, sort_keys=True))


@schedule_app.command("list")
def schedule_list(project: _Project, region: _Region = "us-central1") -> None:
    """List the pipeline schedules in a project and region."""
    from tuneloop.cloud import list_schedules, schedules_as_dicts

    with _google_login("schedule list"):
        typer.echo(json.dumps(schedules_as_dicts(list_schedules(project, region)), indent=2, sort_keys=True))


def _schedule_action(action: str, project: str, region: str, schedule: str) -> None:
    from google.api_core import exceptions as gexc

    from tuneloop import cloud

    fn = {"pause": cloud.pause_schedule, "resume": cloud.resume_schedule, "delete": cloud.delete_schedule}[action]
    with _google_login(f"schedule {action}"):
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
