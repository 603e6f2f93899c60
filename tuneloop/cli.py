"""The ``tuneloop`` command line: load data, validate files, run and compile pipelines, the registry.

Commands that run or compile pipelines import ``tuneloop.pipelines`` (kfp) lazily; the engine
commands work without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="tuneloop: keep models improving on their own data.", no_args_is_help=True)
registry_app = typer.Typer(
    help="Inspect the model registry and roll the champion back.", no_args_is_help=True
)
app.add_typer(registry_app, name="registry")


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


@app.command()
def load(
    file: Annotated[
        Path, typer.Argument(help="Canonical JSONL, or CSV with columns text,label[,corrected].")
    ],
    warehouse: Annotated[str, typer.Option(help="Warehouse URI, e.g. duckdb:///data/warehouse.duckdb.")],
    table: Annotated[str, typer.Option(help="Table to append to (created if missing).")] = "interactions",
    source: Annotated[str, typer.Option(help="Source for rows that give none: imported, live, synthetic.")] = "",
) -> None:
    """Load your own examples into the warehouse table the pipelines read.

    Good rows are inserted; bad rows are listed with their line number and reason (exit code 1).
    """
    from tuneloop.loading import format_report, load_file
    from tuneloop.warehouse import WarehouseError

    if not file.exists():
        _fail(f"FILE {file} does not exist", 2)
    try:
        report = load_file(str(file), warehouse, table, source=source or None)
    except (ValueError, WarehouseError) as exc:  # bad header, URI or table name: nothing was loaded
        _fail(str(exc), 2)
    typer.echo(format_report(report))
    if report.rejected:
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
    pipeline: Annotated[str, typer.Argument(help="export-dataset, tune-and-promote or continuous-tuning.")],
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
    registry: Annotated[str, typer.Option(help="Registry root (directory or gs:// prefix).")],
    model: Annotated[str, typer.Option(help="Model name.")] = "support-intent",
) -> None:
    """List versions with their metrics and the champion alias history."""
    from tuneloop.registry import FileRegistry

    typer.echo(json.dumps(FileRegistry(registry, model).show(), indent=2, sort_keys=True, default=str))


@registry_app.command("rollback")
def registry_rollback(
    registry: Annotated[str, typer.Option(help="Registry root (directory or gs:// prefix).")],
    model: Annotated[str, typer.Option(help="Model name.")] = "support-intent",
    reason: Annotated[str, typer.Option(help="Why, recorded in the alias history.")] = "manual rollback",
) -> None:
    """Make the previous champion current again."""
    from tuneloop.registry import FileRegistry

    try:
        record = FileRegistry(registry, model).rollback(reason=reason)
    except (LookupError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
    typer.echo(f"champion is now {record.version}")


if __name__ == "__main__":
    app()
