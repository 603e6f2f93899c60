"""Run a compiled-in pipeline on this machine with ``kfp.local`` (the embedded default) or compile it.

Used by ``tuneloop run`` / ``tuneloop compile`` / ``tuneloop submit`` and the demo; tests call it too.

A local run's output (kfp.local's own log lines and every task's streamed output) goes to the run's
log file, ``<pipeline_root>/<run>.log``, and line by line to a listener (:class:`RunListener`, e.g.
:class:`tuneloop.runview.RunView`), which hears when a task starts, what it prints and how it ends;
``echo=True`` copies everything to the terminal as well (``tuneloop run --verbose``).
"""

from __future__ import annotations

import builtins
import contextlib
import io
import re
import sys
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kfp import compiler, local


def get_pipeline(name: str):
    from tuneloop.pipelines import PIPELINES

    from tuneloop.config import close_match

    try:
        return PIPELINES[name]
    except KeyError:
        near = close_match(name, PIPELINES)
        hint = f" (did you mean {near!r}?)" if near else ""
        raise ValueError(f"pipeline {name!r} is not one of {sorted(PIPELINES)}{hint}") from None


def pipeline_parameters(name: str):
    """``{name: tuneloop.compiled.Parameter}``: the pipeline's parameters, as its compiled spec declares them."""
    from google.protobuf import json_format

    from tuneloop.compiled import interface

    spec = json_format.MessageToDict(get_pipeline(name).pipeline_spec)
    return interface(spec)


def compile_pipeline(name: str, path: str | Path, *, images=None, gpu=None) -> Path:
    """Compile pipeline ``name`` to ``path``; ``images`` (a tuneloop.images.ImageSet) retargets its images
    and ``gpu`` (a tuneloop.gpu.GpuSettings or a partial mapping) compiles the GPU settings as constants."""
    from tuneloop.compiled import canonical_component_names

    compiler.Compiler().compile(pipeline_func=get_pipeline(name), package_path=str(path))
    p = Path(path)
    p.write_text(canonical_component_names(p.read_text()))  # the same YAML whatever the hash seed
    if images is not None or gpu:
        from tuneloop.compiled import rewrite

        p = Path(path)
        p.write_text(rewrite(p.read_text(), images=images, gpu=gpu, where=str(p)))
    return Path(path)


def compile_all(out_dir: str | Path, *, images=None, gpu=None, names=None) -> list[Path]:
    """Compile every pipeline (or ``names``) to ``<out_dir>/<name>.yaml``; GPU constants go only into
    the pipelines that have GPU tasks. Returns the paths written."""
    from tuneloop.pipelines import PIPELINES

    from tuneloop.gpu import PARAMETERS

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(names or PIPELINES):
        has_gpu = set(PARAMETERS) <= set(pipeline_parameters(name))
        written.append(compile_pipeline(name, out / f"{name}.yaml", images=images, gpu=gpu if has_gpu else None))
    return written


# -- local runs -------------------------------------------------------------------------------------------


class RunListener(Protocol):
    def task_started(self, name: str) -> None: ...
    def task_output(self, name: str | None, line: str) -> None: ...
    def task_finished(self, name: str, status: str, *, cached: bool = False) -> None: ...


class LocalRunFailed(RuntimeError):
    """A local run failed; ``task`` is the failed task ('' before any ran), ``error`` its own message."""

    def __init__(self, message: str, *, task: str, error: str, log_path: Path, run_dir: Path | None) -> None:
        super().__init__(message)
        self.task, self.error, self.log_path, self.run_dir = task, error, log_path, run_dir


@dataclass
class LocalRun:
    """A finished local run: its directory, log, the pipeline's outputs and the task lines it had."""

    run_dir: Path
    log_path: Path
    outputs: dict[str, Any] = field(default_factory=dict)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp.local's log lines (kfp 2.17: kfp/local/task_dispatcher.py, orchestrator/task_executor.py)
_STARTED = re.compile(r" - INFO - Executing task '(?P<name>[^']+)'")
_FINISHED = re.compile(r" - (?:INFO|ERROR) - Task '(?P<name>[^']+)' finished with status (?P<status>[A-Z]+)")
_CACHED = re.compile(r" - INFO - Task (?P<name>\S+) cache hit")


class _Tap(io.TextIOBase):
    """A stream that splits what is written into lines for the log file, the listener and the terminal."""

    def __init__(self, log, listener: RunListener | None, echo) -> None:
        self._log, self._listener, self._echo = log, listener, echo
        self._buf = ""
        self.current: str | None = None
        self.failed: str = ""
        self.lines: dict[str, list[str]] = {}

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._log.write(text)
        if self._echo is not None:
            self._echo.write(text)
            self._echo.flush()
        self._buf += text
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            self._line(line)
        return len(text)

    def flush(self) -> None:
        self._log.flush()

    def close_out(self) -> None:
        if self._buf:
            self._line(self._buf)
            self._buf = ""
        self._log.flush()

    def _line(self, raw: str) -> None:
        line = _ANSI.sub("", raw)
        if m := _STARTED.search(line):
            self.current = m.group("name")
            self.lines[self.current] = []
            if self._listener:
                self._listener.task_started(self.current)
            return
        if m := _FINISHED.search(line):
            name, status = m.group("name"), m.group("status")
            if status == "FAILURE":
                self.failed = name
            if self._listener:
                self._listener.task_finished(name, status)
            self.current = None
            return
        if m := _CACHED.search(line):
            if self._listener:
                self._listener.task_finished(m.group("name").strip("'"), "SUCCESS", cached=True)
            return
        if self.current is not None:
            self.lines[self.current].append(line)
            if self._listener:
                self._listener.task_output(self.current, line)


def run_local(
    name: str,
    params: Mapping[str, Any],
    *,
    pipeline_root: str | Path,
    quiet: bool = False,
    listener: RunListener | None = None,
    echo: bool | None = None,
) -> Path:
    """Run pipeline ``name`` under kfp.local (SubprocessRunner, this environment); returns the run dir.

    Every line goes to ``<pipeline_root>/<run>.log``; ``listener`` hears the tasks start, print and end;
    the terminal gets everything unless ``quiet`` (``echo`` overrides: False = nothing, True = all).

    Raises:
        LocalRunFailed: a task failed; the message names the task and its own error (then the log tail).
    """
    return run_local_pipeline(name, params, pipeline_root=pipeline_root, quiet=quiet, listener=listener,
                              echo=echo).run_dir


def run_local_pipeline(
    name: str,
    params: Mapping[str, Any],
    *,
    pipeline_root: str | Path,
    quiet: bool = False,
    listener: RunListener | None = None,
    echo: bool | None = None,
) -> LocalRun:
    """:func:`run_local`, returning the run's directory, log and the pipeline's outputs."""
    from tuneloop.runview import task_error

    pipeline = get_pipeline(name)
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    show = (not quiet) if echo is None else echo
    error: BaseException | None = None
    outputs: dict[str, Any] = {}
    terminal = sys.stdout  # before the redirect: the terminal (or a test's capture)
    with tempfile.NamedTemporaryFile("w", dir=root, prefix=".run-", suffix=".log", delete=False) as log:
        tap = _Tap(log, listener, terminal if show else None)
        # kfp.local indents a task's prints by swapping builtins.print; two ParallelFor tasks in threads
        # restore each other's swap, so a run can leave print indented for the rest of the process.
        original_print = builtins.print
        try:
            # kfp.local logs through a handler on sys.stdout that it installs per run and task: the tap
            with contextlib.redirect_stdout(tap), contextlib.redirect_stderr(tap):
                task = pipeline(**params)
            outputs = _outputs(task)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the log is saved
            error = exc
        finally:
            builtins.print = original_print
            tap.close_out()
    new = sorted((p for p in set(root.iterdir()) - before if p.is_dir()), key=lambda p: p.stat().st_mtime)
    run_dir = new[-1] if new else None
    log_path = root / f"{run_dir.name if run_dir else Path(log.name).stem}.log"
    Path(log.name).replace(log_path)
    if error is not None:
        if isinstance(error, KeyboardInterrupt):
            raise error
        failed = tap.failed
        message = task_error(tap.lines.get(failed, [])) if failed else f"{type(error).__name__}: {error}"
        tail = log_path.read_text()[-4000:]
        raise LocalRunFailed(
            f"task {failed!r} failed: {message}\n--- task log tail ({log_path}) ---\n{tail}" if failed
            else f"pipeline {name!r} failed before any task ran: {message}",
            task=failed, error=message, log_path=log_path, run_dir=run_dir,
        ) from error
    return LocalRun(run_dir or root, log_path, outputs)


def _outputs(task: Any) -> dict[str, Any]:
    try:
        outs = task.outputs
    except Exception:  # noqa: BLE001 - a pipeline without outputs
        return {}
    if not isinstance(outs, Mapping):
        return {"output": outs} if outs is not None else {}
    return {k: v for k, v in outs.items() if isinstance(v, str | int | float | bool | dict | list)}
