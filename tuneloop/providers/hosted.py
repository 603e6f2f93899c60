"""What the hosted (remote, paid) providers share: retries, polling, bounded prediction, preflight.

* :func:`call` runs one SDK call and retries transient failures (HTTP 408/429/5xx and connection
  errors) with exponential backoff and jitter, honouring the server's ``Retry-After`` (or
  ``retry-after-ms``). The SDKs' own retries are switched off, so this is the one retry policy.
* :class:`Poller` spaces the status polls of a job (backoff + jitter) under an overall deadline.
* :func:`predict_all` asks a model about many examples with bounded concurrency, retries and a
  per-run request cap; a request that still fails counts as an empty (unparseable) answer.
* :func:`check_model`, :func:`check_file` and :func:`check_budget` are the preflight: a retired,
  unknown or non-tunable model, an over-limit dataset or an estimate over the run's budget is
  refused before anything is uploaded.
* :class:`HostedConfig` holds the settings every hosted provider reads from ``hyperparameters``.

Nothing here imports a provider SDK: errors are classified by their attributes (``status_code`` /
``code`` / botocore's ``response``) and class names, so each provider module imports only its own.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from tuneloop.examples import Example
from tuneloop.providers.base import PreflightError, Provider, ProviderError

T = TypeVar("T")
Log = Callable[[str], None]

# HTTP statuses worth retrying: timeout, rate limit, server errors, Anthropic's "overloaded" (529).
RETRY_STATUSES = (408, 429, 500, 502, 503, 504, 529)
# Prediction stops at once on these: every other request would fail the same way.
FATAL_PREDICT_STATUSES = (401, 403, 404)
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


class RequestCapReached(ProviderError):
    """Prediction would send more requests than this run allows."""


# -- retry ---------------------------------------------------------------------------------------


def check_number(name: str, value: Any, lo: float, hi: float | None = None, *, integer: bool = False) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is a number (an integer if asked) in ``[lo, hi]``."""
    ok = not isinstance(value, bool) and isinstance(value, int if integer else int | float)
    if not ok or value < lo or (hi is not None and value > hi):
        kind = "an integer" if integer else "a number"
        rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name}={value!r} must be {kind} {rng}")


@dataclass(frozen=True)
class RetryPolicy:
    """How one API call is retried.

    Attributes:
        attempts: tries in total (1 = no retry).
        initial_s: first backoff delay.
        max_s: longest backoff delay.
        multiplier: backoff growth per retry.
        jitter: fraction of each delay drawn at random (0 = none, 1 = "full jitter").
        max_retry_after_s: a server asking to wait longer than this is not retried (the call fails).
    """

    attempts: int = 6
    initial_s: float = 1.0
    max_s: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_retry_after_s: float = 600.0

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


# -- polling -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PollPolicy:
    """How often a job's status is read.

    Attributes:
        initial_s: first delay between polls.
        max_s: longest delay between polls.
        multiplier: growth of the delay per poll.
        jitter: fraction of each delay drawn at random.
    """

    initial_s: float = 15.0
    max_s: float = 300.0
    multiplier: float = 1.5
    jitter: float = 0.2

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


# -- prediction ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictPolicy:
    """How evaluation asks a hosted model.

    Attributes:
        concurrency: requests in flight at once.
        max_requests: most requests (retries included) one provider object sends; the run refuses
            to start a prediction that cannot fit.
        max_output_tokens: answer length cap (labels are short).
        retry: per-request retries.
    """

    concurrency: int = 4
    max_requests: int = 5000
    max_output_tokens: int = 32
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        check_number("concurrency", self.concurrency, 1, 256, integer=True)
        check_number("max_requests", self.max_requests, 1, integer=True)
        check_number("max_output_tokens", self.max_output_tokens, 1, integer=True)

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> PredictPolicy:
        """Build from a plain mapping (``retry`` may itself be a mapping of RetryPolicy fields)."""
        opts = dict(options or {})
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(opts) - set(valid))
        if unknown:
            raise ValueError(f"predict options: unknown key(s) {unknown}; valid keys are {valid}")
        if isinstance(opts.get("retry"), Mapping):
            opts["retry"] = RetryPolicy(**opts["retry"])
        return cls(**opts)


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


def prompt_messages(example: Example) -> list[dict[str, str]]:
    """The conversation up to the answer: the example's turns minus a final assistant turn."""
    msgs = [{"role": m.role, "content": m.content} for m in example.messages]
    if msgs and msgs[-1]["role"] == "assistant":
        msgs = msgs[:-1]
    return msgs


# -- config --------------------------------------------------------------------------------------

# Settings that say how to run, not what to train: leaving them out of the job key (see the report)
# lets a rerun with a new budget or poll interval adopt the job it already paid for.
NOT_IN_JOB_KEY = (
    "budget_usd", "allow_unpriced", "catalog", "deadline_s", "cancel_on_deadline",
    "poll_initial_s", "poll_max_s", "retry_attempts", "retry_initial_s", "retry_max_s",
)


class HostedProvider(Provider):
    """The part every hosted provider shares: its evaluation policy, request cap, log and sleep."""

    def _init_common(self, output_dir: str | None, predict, log: Log, sleep) -> None:
        """Set what every hosted provider's constructor takes (``predict``: PredictPolicy or its fields)."""
        self.predict_policy = predict if isinstance(predict, PredictPolicy) else PredictPolicy.from_options(predict)
        self.counter = RequestCounter(self.predict_policy.max_requests)
        self.output_dir = output_dir or None
        self.log = log
        self.sleep = sleep or time.sleep
        self.last_predict: PredictStats | None = None


@dataclass(frozen=True)
class HostedConfig:
    """Settings every hosted provider reads from ``hyperparameters`` (subclasses add their own).

    Attributes:
        budget_usd: the most this run may spend on training; preflight refuses a larger estimate.
            Required (> 0) for a priced model: an unattended run never spends without a cap.
        allow_unpriced: let a model without a published price run (its cost cannot be checked).
        catalog: path of a model catalog to use instead of the packaged one (same schema).
        deadline_s: give up waiting for the job after this long (the job keeps running; a rerun
            resumes it), unless ``cancel_on_deadline``.
        cancel_on_deadline: cancel the remote job when the deadline passes.
        poll_initial_s / poll_max_s: delays between status polls (backoff with jitter).
        retry_attempts / retry_initial_s / retry_max_s: retries of each API call.
    """

    budget_usd: float | None = None
    allow_unpriced: bool = False
    catalog: str = ""
    deadline_s: float = 24 * 3600.0
    cancel_on_deadline: bool = False
    poll_initial_s: float = 15.0
    poll_max_s: float = 300.0
    retry_attempts: int = 6
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0

    def __post_init__(self) -> None:
        if self.budget_usd is not None:
            check_number("budget_usd", self.budget_usd, 0)
        for name in ("allow_unpriced", "cancel_on_deadline"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} must be true or false")
        if not isinstance(self.catalog, str):
            raise ValueError(f"catalog={self.catalog!r} must be a path to a catalog YAML, or empty")
        check_number("deadline_s", self.deadline_s, 0)
        self.poll_policy()  # validates the poll fields
        self.retry_policy()

    def poll_policy(self) -> PollPolicy:
        return PollPolicy(initial_s=self.poll_initial_s, max_s=max(self.poll_max_s, self.poll_initial_s))

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.retry_attempts, initial_s=self.retry_initial_s, max_s=max(self.retry_max_s, self.retry_initial_s)
        )

    @classmethod
    def from_hyperparameters(cls, hp: Mapping[str, Any] | None, provider: str) -> Any:
        """Build from a TuneRequest's ``hyperparameters``; unknown keys are an error naming the valid ones.

        Raises:
            PreflightError: an unknown key or a bad value (the message names it and the fix).
        """
        hp = dict(hp or {})
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(hp) - set(valid))
        if unknown:
            raise PreflightError(
                f"hyperparameters: unknown key(s) {unknown} for the {provider} provider; valid keys are {valid}"
            )
        try:
            return cls(**hp)
        except (TypeError, ValueError) as exc:
            raise PreflightError(f"hyperparameters for the {provider} provider: {exc}") from exc


# -- preflight -----------------------------------------------------------------------------------


def load_catalog_for(cfg: HostedConfig):
    """The catalog the config names (or the packaged one)."""
    from tuneloop.catalog import CatalogError, load_catalog

    try:
        return load_catalog(cfg.catalog or None)
    except (CatalogError, OSError) as exc:
        raise PreflightError(f"catalog={cfg.catalog!r}: {exc}") from exc


def check_model(
    catalog,
    provider: str,
    base_model: str,
    *,
    platform: str | None = None,
    kind: str = "fine-tune",
    today: dt.date | None = None,
    hint: str = "",
):
    """The catalog entry of ``base_model``, refused if unknown, retired, not tunable or the wrong kind.

    ``hint`` is appended to a refusal (e.g. another method that still works).

    Raises:
        PreflightError: naming the model, what is wrong and the models that would work.
    """
    from tuneloop.catalog import CatalogError

    today = today or dt.date.today()

    def usable() -> list[str]:
        return [
            m.name
            for m in catalog.models
            if m.provider == provider and not m.is_retired(today) and m.kind == kind
            and (platform is None or m.platform == platform) and (m.tunable or kind != "fine-tune")
        ]

    try:
        info = catalog.model(provider, base_model or None)
    except CatalogError as exc:
        raise PreflightError(f"base_model={base_model!r}: {exc}") from exc
    if info.is_retired(today):
        alternatives = usable()
        raise PreflightError(
            f"base_model={info.name!r} reached its end of life on {info.end_of_life.isoformat()} "
            f"(today is {today.isoformat()}); {provider} no longer tunes or serves it. Set base_model to a "
            f"current model: {alternatives or 'none listed — add one to the catalog'}{hint}"
        )
    if platform is not None and info.platform != platform:
        raise PreflightError(
            f"base_model={info.name!r} runs on {info.platform}, not {platform}; pick one of {usable()}"
        )
    if kind == "fine-tune" and (not info.tunable or info.kind != "fine-tune"):
        raise PreflightError(
            f"base_model={info.name!r} cannot be fine-tuned ({info.kind}); pick a tunable model: {usable()}{hint}"
        )
    if kind != "fine-tune" and info.kind != kind:
        raise PreflightError(f"base_model={info.name!r} is a {info.kind} model, not {kind}; pick one of {usable()}")
    return info


def resolve_file(files: Mapping[str, str], fmt: str, split: str) -> str | None:
    """The rendered ``fmt`` file of ``split``: ``files[split]``, or its sibling ``<fmt>/<split>.jsonl``.

    A dataset keeps one folder per format (``<dataset>/<format>/<split>.jsonl``); when ``files``
    points at another format's folder, the provider's own folder next to it is used. A dataset
    published to ``gs://`` is mirrored locally first (:func:`tuneloop.storage.download_dir`), so the
    path returned is always a local file that preflight validates and submit uploads.
    """
    from tuneloop import storage

    path = files.get(split)
    if not path:
        return None
    if storage.is_remote(path):
        return _local_copy(path, fmt, split)
    p = Path(path)
    if p.parent.name != fmt:
        sibling = p.parent.parent / fmt / p.name
        if sibling.exists():
            return str(sibling)
        raise PreflightError(
            f"files[{split!r}]={path!r} is not a {fmt!r} file and {sibling} does not exist; render the dataset "
            f"with the {fmt!r} format (prepare_dataset formats=[{fmt!r}])"
        )
    return path


def _local_copy(uri: str, fmt: str, split: str) -> str | None:
    """The local mirror of the remote ``fmt`` file of ``split`` (None when the dataset has no such file)."""
    from tuneloop import storage

    folder, _, name = uri.rstrip("/").rpartition("/")
    dataset, _, fmt_dir = folder.rpartition("/")
    wanted = storage.join(dataset, fmt)
    if name in storage.list_files(wanted):  # storage errors (credentials, permissions) propagate as they are
        return str(storage.download_dir(wanted) / name)
    if fmt_dir != fmt:
        raise PreflightError(
            f"files[{split!r}]={uri!r} is not a {fmt!r} file and {storage.join(wanted, name)} does not exist; "
            f"render the dataset with the {fmt!r} format (prepare_dataset formats=[{fmt!r}])"
        )
    return None


def check_file(path: str, fmt: str, info, *, split: str, epochs: int | None, catalog=None):
    """Validate a rendered file against the model's limits; raise PreflightError listing the problems."""
    from tuneloop.formats import validate_file

    if not Path(path).is_file():
        raise PreflightError(f"{split} file {path} does not exist; render the dataset with the {fmt!r} format first")
    report = validate_file(path, fmt, model=info.name, split=split, epochs=epochs, catalog=catalog)
    if not report.ok:
        raise PreflightError(
            f"{split} file {path} breaks the limits of {info.name} (nothing was uploaded):\n"
            + report.summary(max_lines=10)
            + "\nFix the data (rejected rows go to quarantine when the dataset is rendered) or pick another model."
        )
    return report


def check_budget(cost: float | None, cfg: HostedConfig, info, *, tokens: int, epochs: int) -> list[str]:
    """Refuse an estimate above ``budget_usd`` (or an unpriced model unless allowed); returns notes."""
    if cost is None:
        if not cfg.allow_unpriced:
            raise PreflightError(
                f"base_model={info.name!r} has no published training price in the catalog, so the cost of "
                f"{tokens:,} tokens x {epochs} epochs cannot be checked against a budget; add "
                "price_per_1m_training_tokens to the catalog, or set hyperparameters.allow_unpriced=true"
            )
        return [f"unpriced model: {tokens:,} training tokens x {epochs} epochs, cost not checked (allow_unpriced)"]
    if cost > 0 and cfg.budget_usd is None:
        raise PreflightError(
            f"hyperparameters.budget_usd is not set; this run is estimated at ${cost:,.2f} ({tokens:,} tokens x "
            f"{epochs} epochs on {info.name}). Set budget_usd to the most this run may spend"
        )
    if cfg.budget_usd is not None and cost > cfg.budget_usd:
        raise PreflightError(
            f"estimated training cost ${cost:,.2f} ({tokens:,} tokens x {epochs} epochs at "
            f"${info.price_per_1m_training_tokens}/1M tokens on {info.name}) is over budget_usd=${cfg.budget_usd:,.2f}; "
            "raise budget_usd, use fewer epochs or a cheaper model, or train on fewer examples (nothing was uploaded)"
        )
    return [f"estimated cost ${cost:,.4f} within budget ${cfg.budget_usd if cfg.budget_usd is not None else 0:,.2f}"]


def read_bytes(uri: str) -> bytes:
    """The bytes of a rendered file (a local path, or a URI tuneloop.storage can read)."""
    from tuneloop import storage

    return storage.read_bytes(uri)
