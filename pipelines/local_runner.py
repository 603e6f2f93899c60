"""Run a compiled-in pipeline on this machine with ``kfp.local`` (the embedded default) or compile it.

Used by ``tuneloop run`` / ``tuneloop compile`` and the demo; tests call it too.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kfp import compiler, local


def get_pipeline(name: str):
    from tuneloop.pipelines import PIPELINES

    try:
        return PIPELINES[name]
    except KeyError:
        raise ValueError(f"pipeline {name!r} is not one of {sorted(PIPELINES)}") from None


def compile_pipeline(name: str, path: str | Path) -> Path:
    compiler.Compiler().compile(pipeline_func=get_pipeline(name), package_path=str(path))
    return Path(path)


def run_local(
    name: str,
    params: Mapping[str, Any],
    *,
    pipeline_root: str | Path,
    quiet: bool = False,
) -> Path:
    """Run pipeline ``name`` under kfp.local (SubprocessRunner, this environment); returns the run dir.

    Raises RuntimeError (from kfp.local) when a task fails; with ``quiet`` the task logs are kept in
    ``<run dir>/../<run>.log`` instead of the terminal.
    """
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    buf = io.StringIO()
    error: BaseException | None = None
    handler = logging.StreamHandler(buf)
    kfp_logger = logging.getLogger()
    if quiet:
        kfp_logger.addHandler(handler)
    try:
        with contextlib.ExitStack() as stack:
            if quiet:
                stack.enter_context(contextlib.redirect_stdout(buf))
                stack.enter_context(contextlib.redirect_stderr(buf))
            get_pipeline(name)(**params)
    except BaseException as exc:  # noqa: BLE001 - re-raised below, after the log is saved
        error = exc
    finally:
        kfp_logger.removeHandler(handler)
    new = sorted(set(root.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    run_dir = new[-1] if new else root
    if quiet:
        (root / f"{run_dir.name}.log").write_text(buf.getvalue())
    if error is not None:
        if quiet:
            raise RuntimeError(f"{error}\n--- task log tail ---\n{buf.getvalue()[-4000:]}") from error
        raise error
    return run_dir
