"""What ``tuneloop run`` shows: a line per task as it starts and ends, progress bars, the summary, the failure.

:class:`RunView` receives the run's events (a task started, wrote a line, ended) from the local runner
and writes a short, readable account: the task logs themselves go to the run's log file (and to the
terminal with ``--verbose``). When a task fails, :func:`task_error` finds that task's own error
message (the last exception of its traceback, which carries the fix in tuneloop's messages), so the
last lines of the output name the cause. :func:`summary_table` is the table ``make demo`` prints.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneloop import progress

_TRACEBACK = "Traceback (most recent call last):"
_CHAINED = (
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
)
_EXC_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|[A-Z]\w*)): ?(?P<msg>.*)$")
# Errors whose fix is not in their message (they come from libraries): the fix to print under them.
FIXES: Mapping[str, str] = {
    "DefaultCredentialsError": "run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS)",
    "RefreshError": "your Google login expired: run `gcloud auth application-default login`",
    "NoCredentialsError": "give AWS credentials (aws configure, AWS_PROFILE or AWS_ACCESS_KEY_ID/_SECRET_ACCESS_KEY)",
}
_KEEP_LINES = 600


@dataclass
class TaskRecord:
    """One task of the run as the view saw it."""

    name: str
    started: float
    ended: float | None = None
    status: str = "RUNNING"
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=_KEEP_LINES))

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


def task_error(lines: Sequence[str]) -> str:
    """The error a failed task reported: the final exception of its last traceback, without the module path.

    ``lines`` are the task's output lines. With no traceback (a killed process, an out-of-memory
    kill), the last few non-empty lines are returned instead.
    """
    text = [line.rstrip("\n") for line in lines]
    starts = [i for i, line in enumerate(text) if line.strip() == _TRACEBACK]
    if not starts:
        tail = [line.strip() for line in text if line.strip()]
        return "\n".join(tail[-8:]) if tail else "the task ended without output"
    block = text[starts[-1] + 1 :]
    indent = len(text[starts[-1]]) - len(text[starts[-1]].lstrip())
    body = [line[indent:] if line[:indent].isspace() else line.lstrip() for line in block]
    # skip the frames ("  File ...", their source lines and carets), then the exception and its message
    i = 0
    while i < len(body) and (body[i].startswith(" ") or not body[i].strip()):
        i += 1
    message = []
    for line in body[i:]:
        if line.strip() in _CHAINED or line.startswith("[KFP Executor") or re.match(r"^\d\d:\d\d:\d\d", line):
            break
        message.append(line)
    while message and not message[-1].strip():
        message.pop()
    if not message:
        return "the task failed (no error message)"
    first = _EXC_LINE.match(message[0])
    if first:
        kind = first.group("type").rsplit(".", 1)[-1]
        message[0] = f"{kind}: {first.group('msg')}" if first.group("msg") else kind
        fix = FIXES.get(kind)
        if fix and fix not in "\n".join(message):
            message.append(f"fix: {fix}")
    return "\n".join(message)


class RunView:
    """Renders a run's events for a person (see the module docstring).

    Args:
        write: Writes one line of output (the CLI's echo).
        verbose: The task logs reach the terminal as they come (the runner echoes them): no bars.
        tty: Redraw progress bars in place (a terminal) instead of printing a line at each quarter.
    """

    def __init__(self, write: Callable[[str], None], *, verbose: bool = False, tty: bool = False,
                 overwrite: Callable[[str], None] | None = None) -> None:
        self._write, self.verbose, self.tty = write, verbose, tty
        self._overwrite = overwrite
        self.tasks: dict[str, TaskRecord] = {}
        self.order: list[str] = []
        self._bars: dict[tuple[str, str], int] = {}
        self._bar_open = False

    # -- events -----------------------------------------------------------------------------------------
    def task_started(self, name: str) -> None:
        self._close_bar()
        self.tasks[name] = TaskRecord(name, time.monotonic())
        self.order.append(name)
        self._write(f"  started  {name}")

    def task_output(self, name: str | None, line: str) -> None:
        record = self.tasks.get(name) if name else None
        if record is not None:
            record.lines.append(line)
        if self.verbose:  # the runner copies every log line to the terminal itself
            return
        event = progress.parse(line)
        if event is not None:
            self._progress(name or "", event)

    def task_finished(self, name: str, status: str, *, cached: bool = False) -> None:
        self._close_bar()
        record = self.tasks.get(name)
        if record is None:
            record = self.tasks[name] = TaskRecord(name, time.monotonic())
            self.order.append(name)
        record.ended, record.status = time.monotonic(), status
        label = {"SUCCESS": "done", "FAILURE": "FAILED"}.get(status, status.lower())
        note = " (cached)" if cached else ""
        self._write(f"  {label:<7}  {name}  {_duration(record.seconds)}{note}")

    # -- progress -----------------------------------------------------------------------------------------
    def _progress(self, task: str, event: progress.ProgressEvent) -> None:
        key = (task, event.label)
        bar = f"    {progress.render_bar(event)}"
        if self.tty and self._overwrite is not None:
            self._overwrite(bar)
            self._bar_open = True
            return
        quarter = int(event.fraction * 4)
        if key not in self._bars or quarter > self._bars[key]:
            self._bars[key] = quarter
            self._write(bar)

    def _close_bar(self) -> None:
        if self._bar_open and self._overwrite is not None:
            self._overwrite(None)
        self._bar_open = False

    # -- the end ------------------------------------------------------------------------------------------
    def failed_task(self) -> TaskRecord | None:
        failed = [self.tasks[n] for n in self.order if self.tasks[n].status == "FAILURE"]
        return failed[-1] if failed else None

    def failure_lines(self, log_path: str | None = None) -> list[str]:
        """The closing lines of a failed run: where the full log is, then the task and its error (last)."""
        record = self.failed_task()
        lines = []
        if log_path:
            lines.append(f"full log: {log_path}" + ("" if self.verbose else " (or rerun with --verbose)"))
        if record is None:
            lines.append("the run failed before any task ran")
            return lines
        lines.append(f"task {record.name} failed after {_duration(record.seconds)}:")
        lines += [f"  {line}" for line in task_error(list(record.lines)).splitlines()]
        return lines


# -- the summary --------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _rows_table(title: str, rows: Sequence[tuple[str, str]]) -> str:
    width = max((len(k) for k, _ in rows), default=0)
    lines = [f"== {title} " + "=" * 40]
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)


def summary_table(summary: Mapping[str, Any], manifest: Mapping[str, Any] | None = None, *, title: str = "") -> str:
    """The run's summary as a table: data, metrics of candidate and champion, the decision (``make demo``)."""
    cand = summary.get("candidate_metrics") or {}
    champ = summary.get("champion_metrics") or {}
    rows: list[tuple[str, str]] = []
    if manifest is not None or summary.get("dataset_uri"):
        m = manifest or {}
        rows += [
            ("rows extracted (new, valid)", _fmt(m.get("new_examples"))),
            ("rows quarantined", _fmt(m.get("quarantined_at_extract"))),
            ("dataset (train/validation/eval)",
             "/".join(str(m.get("counts", {}).get(s, "-")) for s in ("train", "validation", "eval"))),
        ]
    if summary.get("gauntlet"):
        ts = summary.get("training_set") or {}
        rows.append(("training set (games/positions)", f"{_fmt(ts.get('num_games'))}/{_fmt(ts.get('num_positions'))}"))
        for k, v in sorted(summary["gauntlet"].items()):
            if isinstance(v, int | float) and not isinstance(v, bool):
                rows.append((f"gauntlet {k}", _fmt(v)))
    if not summary.get("skipped"):
        rows.append(("champion evaluated",
                     _fmt(summary.get("champion_evaluated")) if (champ or summary.get("champion_evaluated"))
                     else "none (first run)"))
    metrics = [m for m in ("accuracy", "macro_f1", "macro_precision", "macro_recall") if m in cand or m in champ]
    if not metrics:  # a chat model: the reference metrics, the judge's win rate, the replies left empty
        metrics = [m for m in ("chrf", "rouge_l", "win_rate", "empty") if m in cand or m in champ]
    if not metrics:
        metrics = [k for k, v in cand.items() if isinstance(v, int | float) and not isinstance(v, bool)][:6]
    for metric in metrics:
        rows.append((f"{metric}  candidate | champion", f"{_fmt(cand.get(metric))} | {_fmt(champ.get(metric))}"))
    attempts = [a for a in summary.get("attempts") or [] if isinstance(a, Mapping)]
    if len(attempts) > 1:  # an iterated run: each attempt's changed hyperparameters and outcome
        for a in attempts:
            hp = ", ".join(f"{k}={v}" for k, v in (a.get("hyperparameters") or {}).items() if k != "budget_usd")
            outcome = "blessed" if a.get("blessed") else "not blessed"
            rows.append((f"attempt {_fmt(a.get('attempt'))}", f"{hp or 'defaults'}: {outcome}; {a.get('decision', '-')}"))
    decision = summary.get("decision") or {}
    rows += [
        ("decision", "SKIPPED" if summary.get("skipped") else ("BLESSED" if decision.get("blessed") else "NOT BLESSED")),
        ("reason", str(decision.get("reason", "-"))),
        ("promoted version", _fmt(summary.get("promoted_version"))),
        ("champion after", _fmt(summary.get("champion_after"))),
    ]
    return _rows_table(title or f"{summary.get('run') or 'run'} ({summary.get('provider')})", rows)


def outputs_table(title: str, outputs: Mapping[str, Any]) -> str:
    """A pipeline's outputs (export-dataset's status, dataset_uri, reason) as a table."""
    return _rows_table(title, [(k, _fmt(v)) for k, v in outputs.items()])
