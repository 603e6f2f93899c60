"""Polling a remote job: spaced status reads (backoff + jitter) under a deadline, events logged once."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tuneloop.config import check_number, setting
from tuneloop.providers.hosted.retry import DeadlineExceeded, Log


@dataclass(frozen=True)
class PollPolicy:
    """How often a job's status is read."""

    initial_s: float = setting(15.0, help="first delay between polls, seconds", job_key=False)
    max_s: float = setting(300.0, help="longest delay between polls, seconds", job_key=False)
    multiplier: float = setting(1.5, help="growth of the delay per poll", job_key=False)
    jitter: float = setting(0.2, help="fraction of each delay drawn at random", job_key=False)

    def __post_init__(self) -> None:
        check_number("poll_initial_s", self.initial_s, 0)
        check_number("poll_max_s", self.max_s, self.initial_s)
        check_number("poll_multiplier", self.multiplier, 1)
        check_number("poll_jitter", self.jitter, 0, 1)


class Poller:
    """Sleeps between polls of one job: backoff with jitter, never past the deadline.

    Args:
        policy: the poll delays.
        deadline_s: seconds from now after which :meth:`pause` raises DeadlineExceeded.
        what: the job, for the error message.
    """

    def __init__(
        self,
        policy: PollPolicy,
        deadline_s: float,
        what: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self.policy, self.what, self._sleep = policy, what, sleep
        self.deadline = time.monotonic() + deadline_s
        self.deadline_s = deadline_s
        self._rng = rng or random.Random()
        self._delay = policy.initial_s
        self.polls = 0

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def pause(self, state: str) -> None:
        """Wait before the next poll; raise DeadlineExceeded once the deadline has passed."""
        self.polls += 1
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(
                f"{self.what} is still {state!r} after the {self.deadline_s:g}s deadline; "
                "rerun the task to keep waiting for the same job, or raise deadline_s"
            )
        delay = self._delay * (1 - self.policy.jitter * self._rng.random())
        self._delay = min(self.policy.max_s, self._delay * self.policy.multiplier)
        self._sleep(min(delay, left))


class EventLog:
    """Remembers which provider events were logged, so each is logged once, oldest first."""

    def __init__(self, log: Log, prefix: str):
        self.log, self.prefix = log, prefix
        self.seen: set[str] = set()
        self.last_state: str | None = None

    def events(self, items: Sequence[tuple[str, str]]) -> int:
        """Log ``(id, text)`` items not seen before (``items`` oldest first); returns how many."""
        new = [(i, t) for i, t in items if i not in self.seen]
        for i, text in new:
            self.seen.add(i)
            self.log(f"{self.prefix} {text}")
        return len(new)

    def state(self, state: str, extra: str = "") -> None:
        """Log a state change (once per change)."""
        if state != self.last_state:
            self.last_state = state
            self.log(f"{self.prefix} state {state}{(' — ' + extra) if extra else ''}")
