"""``tuneloop npz ...``: check self-play exports against the schema.

Mounted by the main CLI as ``app.add_typer(npz_app, name="npz")``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

npz_app = typer.Typer(help="Self-play NPZ exports: validate files against the schema.", no_args_is_help=True)


@npz_app.callback()
def _group() -> None:
    """Self-play NPZ exports (schema v1): keys, dtypes, shapes, finite values, sparse policies."""


@npz_app.command("validate")
def validate(
    path: Annotated[
        Path, typer.Argument(help="An .npz export, a folder of them, or a combined training-set directory.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print {file: [reasons]} as JSON.")] = False,
) -> None:
    """Validate self-play data; exit 1 when any file is invalid, printing each file's reasons."""
    from tuneloop.selfplay import npz

    results = npz.validate_path(path)
    bad = {f: r for f, r in results.items() if r}
    if as_json:
        typer.echo(json.dumps(results, indent=2, sort_keys=True))
    else:
        for f, reasons in results.items():
            if reasons:
                typer.echo(f"INVALID {f}")
                for r in reasons:
                    typer.echo(f"  - {r}")
            else:
                typer.echo(f"ok      {f}")
        typer.echo(f"{len(results) - len(bad)} valid, {len(bad)} invalid (schema v{npz.SCHEMA_VERSION})")
    if bad:
        raise typer.Exit(code=1)
