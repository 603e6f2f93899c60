"""Batched prediction against a hosted model: bounded concurrency, retries and a per-run request cap.

A request that still fails counts as an empty (unparseable) answer; 401/403/404 stop everything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tuneloop.config import check_number, setting
from tuneloop.examples import Example
from tuneloop.providers.base import ProviderError
from tuneloop.providers.hosted.retry import Log, RetryPolicy, _status, call

# Prediction stops at once on these: every other request would fail the same way.
FATAL_PREDICT_STATUSES = (401, 403, 404)


class RequestCapReached(ProviderError):
    """Prediction would send more requests than this run allows."""


@dataclass(frozen=True)
class PredictPolicy:
    """How evaluation asks a hosted model (the ``eval_options`` pipeline parameter)."""

    concurrency: int = setting(4, help="requests in flight at once", job_key=False)
    max_requests: int = setting(
        5000, help="most requests (retries included) one model is sent; a prediction that cannot fit is "
        "refused before its first request", job_key=False,
    )
    max_output_tokens: int = setting(32, help="answer length cap (labels are short; chat replies need more)",
                                     job_key=False)
    retry: RetryPolicy = setting(default_factory=RetryPolicy, help="per-request retries", job_key=False)

    def __post_init__(self) -> None:
        check_number("concurrency", self.concurrency, 1, 256, integer=True)
        check_number("max_requests", self.max_requests, 1, integer=True)
        check_number("max_output_tokens", self.max_output_tokens, 1, integer=True)


class RequestCounter:
    """Thread-safe count of requests sent, against a cap."""

    def __init__(self, cap: int):
        self.cap, self.sent = cap, 0
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        """Requests still allowed."""
        return self.cap - self.sent

    def take(self) -> None:
        """Count one request; raise RequestCapReached when the cap is spent."""
        with self._lock:
            if self.sent >= self.cap:
                raise RequestCapReached(
                    f"request cap reached: {self.sent} requests sent, max_requests={self.cap}; "
                    "raise max_requests in the provider's predict options or shrink the eval split"
                )
            self.sent += 1


@dataclass
class PredictStats:
    """What one :func:`predict_all` did (logged, and kept on the provider as ``last_predict``)."""

    answers: int = 0
    failed: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)


def predict_all(
    ask: Callable[[Example], str],
    examples: Sequence[Example],
    *,
    policy: PredictPolicy,
    counter: RequestCounter,
    what: str,
    log: Log = print,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[str], PredictStats]:
    """One raw answer per example, asked with bounded concurrency, retries and the request cap.

    A request that fails for good (retries exhausted, or a 4xx such as a content filter) becomes an
    empty answer, which the evaluator counts as unparseable; 401/403/404 stop everything at once
    (every other request would fail the same way), and so does a run where every request failed.

    Raises:
        RequestCapReached: ``examples`` cannot fit in what is left of the cap (checked before
            anything is sent), or retries exhausted it midway.
        ProviderError: credentials/model problems (401/403/404), or no request succeeded.
    """
    stats = PredictStats()
    if not examples:
        return [], stats
    if len(examples) > counter.remaining:
        raise RequestCapReached(
            f"{what}: {len(examples)} examples to predict but only {counter.remaining} of max_requests="
            f"{counter.cap} requests left; raise max_requests or shrink the eval split (nothing was sent)"
        )
    start = counter.sent
    answers: list[str] = [""] * len(examples)
    stop = threading.Event()
    fatal: list[BaseException] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        if stop.is_set():
            return

        def attempt() -> str:
            if stop.is_set():
                raise ProviderError("stopped")
            counter.take()
            return ask(examples[i])

        try:
            answers[i] = call(attempt, what=f"{what} [{i}]", policy=policy.retry, log=log, sleep=sleep) or ""
        except RequestCapReached as exc:
            stop.set()
            fatal.append(exc)
        except ProviderError as exc:
            cause = exc.__cause__
            status = _status(cause) if cause is not None else None
            with lock:
                stats.failed += 1
                if len(stats.errors) < 5:
                    stats.errors.append(str(exc))
            if status in FATAL_PREDICT_STATUSES:
                stop.set()
                fatal.append(exc)

    with ThreadPoolExecutor(max_workers=min(policy.concurrency, len(examples))) as pool:
        list(pool.map(one, range(len(examples))))
    stats.requests = counter.sent - start
    stats.answers = len(examples) - stats.failed
    log(
        f"{what}: {stats.answers}/{len(examples)} answered, {stats.failed} failed, {stats.requests} requests "
        f"(concurrency {policy.concurrency}, {counter.sent}/{counter.cap} of the request cap used)"
    )
    if fatal:
        raise fatal[0]
    if stats.failed == len(examples):
        raise ProviderError(f"{what}: every one of {len(examples)} requests failed; first error: {stats.errors[0]}")
    return answers, stats


# The user turn put before a conversation whose first turn is the assistant's, for APIs that need a user first.
OPENING_TURN = "(The conversation starts.)"


def alternating(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Non-system turns as the Anthropic/Bedrock/Gemini chat APIs take them: roles alternating, user first.

    Consecutive turns of one role are merged (joined by a blank line) and a conversation that opens with
    the assistant gets :data:`OPENING_TURN` before it. A prompt that already alternates is returned as is
    (a classification prompt, a game conversation whose other players' lines were merged).
    """
    out: list[dict[str, str]] = []
    for m in messages:
        if m["role"] == "system":
            continue
        if out and out[-1]["role"] == m["role"]:
            out[-1] = {"role": m["role"], "content": f"{out[-1]['content']}\n\n{m['content']}"}
        else:
            out.append({"role": m["role"], "content": m["content"]})
    if out and out[0]["role"] == "assistant":
        out.insert(0, {"role": "user", "content": OPENING_TURN})
    return out


def prompt_messages(example: Example) -> list[dict[str, str]]:
    """The conversation up to the answer: the example's turns minus a final assistant turn."""
    msgs = [{"role": m.role, "content": m.content} for m in example.messages]
    if msgs and msgs[-1]["role"] == "assistant":
        msgs = msgs[:-1]
    return msgs
