"""Retries of one provider API call: transient failures (HTTP 408/429/5xx, connection errors) are
retried with exponential backoff and jitter, honouring the server's ``Retry-After`` (or
``retry-after-ms``). The SDKs' own retries are switched off, so :func:`call` is the one retry policy.

Nothing here imports a provider SDK: errors are classified by their attributes (``status_code`` /
``code`` / botocore's ``response``) and class names, so each provider module imports only its own.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from tuneloop.config import check_number, setting
from tuneloop.providers.base import ProviderError

T = TypeVar("T")
Log = Callable[[str], None]

# HTTP statuses worth retrying: timeout, rate limit, server errors, Anthropic's "overloaded" (529).
RETRY_STATUSES = (408, 429, 500, 502, 503, 504, 529)
# Exception class names (anywhere in the MRO) that mean "the connection failed", across SDKs.
_CONNECTION_ERRORS = frozenset(
    {
        "APIConnectionError",  # openai, anthropic (APITimeoutError subclasses it)
        "TransportError",  # httpx / httpx2 (ConnectError, ReadTimeout, RemoteProtocolError...)
        "ConnectionError",  # builtins, requests, botocore (EndpointConnectionError...)
        "TimeoutError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "RemoteDisconnected",
        "ServiceUnavailable",  # google.api_core
    }
)


class DeadlineExceeded(ProviderError):
    """A job did not finish before the run's deadline."""


@dataclass(frozen=True)
class RetryPolicy:
    """How one API call is retried (how a run goes, never what is trained: no field enters a job key)."""

    attempts: int = setting(6, help="tries in total (1 = no retry)", job_key=False)
    initial_s: float = setting(1.0, help="first backoff delay, seconds", job_key=False)
    max_s: float = setting(60.0, help="longest backoff delay, seconds", job_key=False)
    multiplier: float = setting(2.0, help="backoff growth per retry", job_key=False)
    jitter: float = setting(0.5, help="fraction of each delay drawn at random (0 = none, 1 = full jitter)",
                            job_key=False)
    max_retry_after_s: float = setting(
        600.0, help="a server asking to wait longer than this is not retried (the call fails)", job_key=False
    )

    def __post_init__(self) -> None:
        check_number("attempts", self.attempts, 1, 100, integer=True)
        check_number("initial_s", self.initial_s, 0)
        check_number("max_s", self.max_s, self.initial_s)
        check_number("multiplier", self.multiplier, 1)
        check_number("jitter", self.jitter, 0, 1)
        check_number("max_retry_after_s", self.max_retry_after_s, 0)

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The delay before retry number ``retry`` (1-based): exponential, capped, jittered."""
        base = min(self.max_s, self.initial_s * self.multiplier ** (retry - 1))
        return base * (1 - self.jitter * rng.random())


@dataclass(frozen=True)
class Failure:
    """What went wrong in a call, as far as retrying is concerned."""

    retryable: bool
    status: int | None
    retry_after: float | None
    message: str

    @property
    def kind(self) -> str:
        if self.status:
            return f"HTTP {self.status}"
        return "connection error" if self.retryable else "error"


def _status(exc: BaseException) -> int | None:
    for attr in ("status_code", "code"):
        v = getattr(exc, attr, None)
        if isinstance(v, int) and not isinstance(v, bool) and 100 <= v < 600:
            return v
    resp = getattr(exc, "response", None)
    if isinstance(resp, Mapping):  # botocore ClientError
        v = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(v, int):
            return v
    return None


def _headers(exc: BaseException) -> Mapping[str, str]:
    resp = getattr(exc, "response", None)
    if isinstance(resp, Mapping):
        return {k.lower(): v for k, v in resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).items()}
    headers = getattr(resp, "headers", None)
    if headers is None:
        return {}
    try:
        return {str(k).lower(): str(v) for k, v in headers.items()}
    except (AttributeError, TypeError):
        return {}


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks to wait: ``retry-after-ms``, else ``Retry-After`` (seconds or HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def describe(exc: BaseException) -> str:
    """The provider's own error message (and code) from an SDK exception, else ``str(exc)``."""
    resp = getattr(exc, "response", None)
    if isinstance(resp, Mapping) and "Error" in resp:  # botocore
        err = resp["Error"]
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}".strip()
    body = getattr(exc, "body", None)  # openai / anthropic
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping) and err.get("message"):
            code = err.get("code") or err.get("type")
            return f"{err['message']}" + (f" (code {code})" if code else "")
    msg = getattr(exc, "message", None)  # google-genai APIError
    if isinstance(msg, str) and msg:
        status = getattr(exc, "status", None)
        return f"{msg}" + (f" ({status})" if status else "")
    return f"{type(exc).__name__}: {exc}"


def classify(exc: BaseException) -> Failure:
    """Whether ``exc`` is worth retrying, with its HTTP status and the server's Retry-After."""
    status = _status(exc)
    if status is not None:
        after = parse_retry_after(_headers(exc))
        return Failure(status in RETRY_STATUSES, status, after, describe(exc))
    names = {c.__name__ for c in type(exc).__mro__}
    return Failure(bool(names & _CONNECTION_ERRORS), None, None, describe(exc))


def call(
    fn: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy,
    log: Log = print,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    deadline: float | None = None,
    before_retry: Callable[[], T | None] | None = None,
) -> T:
    """Call ``fn()``, retrying transient failures; raise ProviderError with the provider's message.

    Args:
        fn: the SDK call.
        what: what is being done, for logs and errors ("upload train file").
        policy: attempts and backoff.
        log: where retry lines go.
        sleep: the sleep function (time.sleep).
        rng: jitter source.
        deadline: a ``time.monotonic()`` instant after which no retry is started.
        before_retry: called before each retry; a non-None result is returned instead of retrying
            (e.g. a create whose 5xx hid a success: look the object up by its idempotency key).

    Raises:
        ProviderError: an API error that is not worth retrying, or retries exhausted; the message
            names ``what``, the HTTP status and the provider's message.
        DeadlineExceeded: no time left before ``deadline`` for the next retry.
        Exception: anything that is not an API answer (bad arguments, missing credentials), as is.
    """
    rng = rng or random.Random()
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except ProviderError:
            raise
        except Exception as exc:
            failure = classify(exc)
            if not failure.retryable and failure.status is None:
                raise  # not an API answer (bad arguments, missing credentials): as it is
            if not failure.retryable:
                raise ProviderError(f"{what}: {failure.kind}: {failure.message}") from exc
            if attempt == policy.attempts:
                raise ProviderError(
                    f"{what}: still failing after {policy.attempts} attempts ({failure.kind}: {failure.message}); "
                    "the service is overloaded or unreachable — rerun later (the job is resumed, not paid twice)"
                ) from exc
            delay = policy.backoff(attempt, rng)
            note = ""
            if failure.retry_after is not None:
                if failure.retry_after > policy.max_retry_after_s:
                    raise ProviderError(
                        f"{what}: {failure.kind}; the server asks to wait {failure.retry_after:.0f}s, longer than "
                        f"max_retry_after_s={policy.max_retry_after_s:.0f}; rerun later"
                    ) from exc
                delay = max(delay, failure.retry_after)
                note = f" (server's Retry-After {failure.retry_after:g}s)"
            if deadline is not None and time.monotonic() + delay > deadline:
                raise DeadlineExceeded(f"{what}: {failure.kind} and no time left before the deadline to retry") from exc
            log(f"{what}: {failure.kind}: {failure.message}; retry {attempt}/{policy.attempts - 1} in {delay:.2f}s{note}")
            sleep(delay)
            if before_retry is not None:
                found = before_retry()
                if found is not None:
                    log(f"{what}: the earlier attempt went through; using it instead of retrying")
                    return found
    raise AssertionError("unreachable")  # pragma: no cover
