"""``tuneloop npz ...``: check self-play exports against the schema.

Mounted by the main CLI as ``app.add_typer(npz_app, name="npz")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

npz_app = typer.Typer(help="Self-play NPZ exports: validate files against the schema.", no_args_is_help=True)


@npz_app.callback()
def _group() -> None:
    """Self-play NPZ exports: keys, dtypes, shapes (and the board config's), finite values, sparse policies."""


@npz_app.command("validate")
def validate(
    path: Annotated[
        Path, typer.Argument(help="An .npz export, a folder of them, or a combined training-set directory.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print every file's verdict (errors, warnings, positions) as JSON.")
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings (unknown keys) too.")] = False,
    max_bytes: Annotated[
        int | None,
        typer.Option("--max-bytes", help="Most array bytes one file may inflate to (default 1 GiB); bounds memory."),
    ] = None,
) -> None:
    """Validate self-play data; every file is reported, and the exit code is 1 when any is invalid."""
    from tuneloop.selfplay import exports, npz

    try:
        limits = exports.ValidatorLimits(**({"max_total_bytes": max_bytes} if max_bytes is not None else {}))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-bytes") from exc
    reports = exports.scan(path, limits)
    bad = [r for r in reports if not r.valid]
    warned = [r for r in reports if r.warnings]
    if as_json:
        typer.echo(exports.dumps(reports, limits))
    else:
        for r in reports:
            status = "INVALID" if not r.valid else "WARN   " if r.warnings else "ok     "
            typer.echo(f"{status} {r.path}")
            for reason in r.errors:
                typer.echo(f"  - {reason}")
            for note in r.warnings:
                typer.echo(f"  ~ {note}")
        typer.echo(
            f"{len(reports) - len(bad)} valid, {len(bad)} invalid, {len(warned)} with warnings "
            f"(schema v{npz.SCHEMA_VERSION})"
        )
    if bad or (strict and warned):
        raise typer.Exit(code=1)
