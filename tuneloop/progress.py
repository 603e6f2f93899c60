"""Progress of long steps: one line format that task logs show and ``tuneloop run`` turns into bars.

A long step (LoRA training, self-play, the gauntlet) calls :func:`tick` as it goes::

    progress.tick("lora", step, total_steps, loss=1.2345, tokens_per_s=812)

and, at most every few seconds (and always for the first and the last unit), a line goes to stdout::

    tuneloop-progress lora 40/200 loss=1.2345 tokens_per_s=812 eta_s=95

The line is readable as it is in Vertex's task logs (Cloud Logging), and :func:`parse` reads it back:
``tuneloop run`` draws a bar per label from it. ``eta_s`` is computed here from the rate since the
label's first tick. Format: the prefix, a label without spaces, ``DONE/TOTAL``, then ``key=value``
pairs (numbers, or words without spaces).
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PREFIX = "tuneloop-progress"
INTERVAL_ENV = "TUNELOOP_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 5.0
_LINE = re.compile(
    rf"^\s*{PREFIX} (?P<label>\S+) (?P<done>\d+)/(?P<total>\d+)(?P<rest>(?: [A-Za-z_][A-Za-z0-9_]*=\S+)*)\s*$"
)
_LABEL = re.compile(r"[^A-Za-z0-9_./:-]+")


@dataclass(frozen=True)
class ProgressEvent:
    """One parsed progress line."""

    label: str
    done: int
    total: int
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0

    @property
    def finished(self) -> bool:
        return self.total > 0 and self.done >= self.total


def format_line(label: str, done: int, total: int, **values: Any) -> str:
    """The progress line for these numbers (see the module docstring)."""
    parts = [PREFIX, _LABEL.sub("_", str(label)) or "step", f"{int(done)}/{int(total)}"]
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, float):
            if not math.isfinite(value):
                text = str(value)
            elif abs(value) >= 100:
                text = f"{value:.0f}"
            else:
                text = f"{value:.4g}"
        else:
            text = re.sub(r"\s+", "_", str(value))
        parts.append(f"{key}={text}")
    return " ".join(parts)


def parse(line: str) -> ProgressEvent | None:
    """The event a progress line carries (leading indentation and a trailing newline are fine), else None."""
    m = _LINE.match(line.rstrip("\n"))
    if not m:
        return None
    values: dict[str, Any] = {}
    for pair in m.group("rest").split():
        key, _, text = pair.partition("=")
        try:
            values[key] = int(text) if re.fullmatch(r"-?\d+", text) else float(text)
        except ValueError:
            values[key] = text
    return ProgressEvent(m.group("label"), int(m.group("done")), int(m.group("total")), values)


class Progress:
    """A throttled reporter for one long step (see :func:`tick` for the one-line form).

    Args:
        label: What is progressing (no spaces), e.g. ``lora`` or ``gauntlet/heuristic``.
        total: Units of work (steps, games).
        interval_s: Least seconds between two lines (the first and the last unit always print);
            default ``$TUNELOOP_PROGRESS_INTERVAL`` or 5.
        write: Where lines go (default: stdout, flushed: a task's log).
        clock: Seconds, monotonic.
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        interval_s: float | None = None,
        write: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total = label, int(total)
        if interval_s is None:
            try:
                interval_s = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S))
            except ValueError:
                interval_s = DEFAULT_INTERVAL_S
        self.interval_s = max(0.0, interval_s)
        self._write = write or _stdout
        self._clock = clock
        self._start: tuple[float, int] | None = None
        self._last_emit: float | None = None
        self.last_done = -1

    def update(self, done: int, **values: Any) -> str | None:
        """Record ``done`` units; returns the line written, or None when throttled."""
        now = self._clock()
        done = int(done)
        if self._start is None or done < self.last_done:
            self._start, self._last_emit = (now, done), None
        self.last_done = done
        first = self._last_emit is None
        last = self.total > 0 and done >= self.total
        if not (first or last or now - (self._last_emit or 0.0) >= self.interval_s):
            return None
        t0, d0 = self._start
        if "eta_s" not in values and done > d0 and now > t0 and self.total > done:
            values["eta_s"] = round((self.total - done) * (now - t0) / (done - d0))
        elif last and "eta_s" not in values:
            values["eta_s"] = 0
        line = format_line(self.label, done, self.total, **values)
        self._last_emit = now
        self._write(line)
        return line


_reporters: dict[str, Progress] = {}
_lock = threading.Lock()


def tick(label: str, done: int, total: int, **values: Any) -> str | None:
    """Report progress in one line of code: keeps a :class:`Progress` per label (restarted when
    ``done`` goes back, e.g. the next shard or pairing); returns the line written, or None."""
    with _lock:
        reporter = _reporters.get(label)
        if reporter is None or reporter.total != int(total) or int(done) < reporter.last_done:
            reporter = _reporters[label] = Progress(label, total)
        line = reporter.update(done, **values)
        if reporter.total > 0 and int(done) >= reporter.total:
            _reporters.pop(label, None)
        return line


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# -- drawing (the CLI) ------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


_SHOWN = (
    ("loss", "loss {:.4g}"),
    ("win_rate", "win rate {:.0%}"),
    ("tokens_per_s", "{:.0f} tok/s"),
    ("games_per_s", "{:.2f} games/s"),
)


def render_bar(event: ProgressEvent, width: int = 24) -> str:
    """``lora [#########...............] 40/200 loss 1.234 812 tok/s ETA 1m35s`` for one event."""
    filled = int(round(event.fraction * width))
    parts = [f"{event.label} [{'#' * filled}{'.' * (width - filled)}] {event.done}/{event.total}"]
    for key, fmt in _SHOWN:
        value = event.values.get(key)
        if isinstance(value, int | float):
            parts.append(fmt.format(value))
    shown = {k for k, _ in _SHOWN} | {"eta_s"}
    parts += [f"{k} {v}" for k, v in event.values.items() if k not in shown]
    eta = event.values.get("eta_s")
    if isinstance(eta, int | float) and not event.finished:
        parts.append(f"ETA {_duration(eta)}")
    return " ".join(parts)
