"""The provider interface every tuner implements, and the job runner that makes remote jobs safe.

A provider knows how to check a dataset against its limits (``preflight``), start a tuning job
(``submit``), find a job it already started for the same idempotency key (``resume``), follow it to
the end (``wait``), stop it (``cancel``) and answer prompts with a tuned model (``predict``).

:func:`run_job` is the one place that makes a job idempotent and restart-safe, for every provider:

1. the job key is a hash of dataset + base model + the hyperparameters that shape training (:func:`job_key`);
2. a job record already written by an earlier attempt of this task is resumed;
3. otherwise ``provider.resume(key)`` adopts a live or finished job the provider already has;
4. otherwise the job is submitted, and its id is written to the record *before* polling starts;
5. SIGTERM/SIGINT while waiting (a cancelled pipeline task) cancels the remote job.
"""

from __future__ import annotations

import abc
import hashlib
import json
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.examples import Example


class ProviderError(RuntimeError):
    """A provider refused or failed a job; the message carries the provider's own words."""


class PreflightError(ValueError):
    """The dataset or config cannot be tuned as asked; raised before anything is uploaded or paid."""


class JobCancelled(RuntimeError):
    """The task was cancelled while waiting; the remote job was cancelled too."""


@dataclass(frozen=True)
class TuneRequest:
    """What to tune: the dataset splits (canonical examples) plus the provider-specific config."""

    train: Sequence[Example]
    validation: Sequence[Example]
    dataset_hash: str
    base_model: str
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)  # rendered provider files by split, if any
    labels: Sequence[str] = ()  # label set for classification tasks
    output_dir: str = ""  # where a local provider writes its model artifact


@dataclass(frozen=True)
class PreflightReport:
    provider: str
    base_model: str
    examples: int
    training_tokens: int
    estimated_cost_usd: float | None
    notes: tuple[str, ...] = ()


@dataclass
class JobHandle:
    """A submitted job. ``job_id`` is the provider's id; ``state`` one of JOB_STATES."""

    provider: str
    key: str
    job_id: str
    state: str = "submitted"
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobHandle:
        return cls(**{k: d[k] for k in ("provider", "key", "job_id", "state", "detail") if k in d})


JOB_STATES = ("submitted", "running", "succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class TuneResult:
    """A finished job: ``model_ref`` is what ``predict`` takes (a local path or a remote model id)."""

    provider: str
    job_id: str
    model_ref: str
    base_model: str
    dataset_hash: str
    trained_tokens: int | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"] = dict(self.metrics)
        d["detail"] = dict(self.detail)
        return d


class Provider(abc.ABC):
    """One tuner. Subclasses set ``name`` and implement the six operations."""

    name: str = ""

    @abc.abstractmethod
    def preflight(self, request: TuneRequest) -> PreflightReport:
        """Check model, limits and budget before anything is uploaded; raise PreflightError."""

    @abc.abstractmethod
    def submit(self, request: TuneRequest, key: str) -> JobHandle:
        """Start a job tagged with ``key``; returns at once with the job id."""

    @abc.abstractmethod
    def resume(self, key: str) -> JobHandle | None:
        """A live or succeeded job already started with ``key``, or None."""

    @abc.abstractmethod
    def wait(self, handle: JobHandle, request: TuneRequest, *, deadline_s: float) -> TuneResult:
        """Follow the job to its end; raise ProviderError with the provider's message on failure."""

    @abc.abstractmethod
    def cancel(self, handle: JobHandle) -> None:
        """Cancel the remote job (a no-op when it has already ended)."""

    @abc.abstractmethod
    def predict(self, model_ref: str, examples: Sequence[Example]) -> list[str]:
        """One raw answer per example (the evaluator parses answers to labels)."""


def job_key(dataset_hash: str, provider: str, base_model: str, hyperparameters: Mapping[str, Any]) -> str:
    """Deterministic idempotency key: the same data + model + config always gives the same key.

    Settings that say how to run rather than what to train (budget, deadline, polling, retries,
    catalog path: ``hosted.NOT_IN_JOB_KEY``) are left out, so a rerun that only changes them adopts
    the job already paid for instead of submitting another.
    """
    from tuneloop.providers.hosted import NOT_IN_JOB_KEY

    trained = {k: v for k, v in hyperparameters.items() if k not in NOT_IN_JOB_KEY}
    payload = json.dumps(
        {"dataset": dataset_hash, "provider": provider, "base_model": base_model, "hp": trained},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return "tl-" + hashlib.sha256(payload.encode()).hexdigest()[:24]


class _CancelRequested(BaseException):
    """Raised by the signal handler to unwind whatever ``wait`` was doing (a request, a sleep).

    A BaseException, so no SDK's ``except Exception`` (retry loops, botocore's error wrapping) can
    swallow or wrap it on the way out.
    """


class _CancelOnSignal:
    """Turn SIGTERM/SIGINT during ``wait`` into a remote cancel (only in the main thread).

    The handler only raises: the remote cancel runs after ``wait`` has unwound (:func:`run_job`).
    Calling the provider from inside the handler deadlocks when the signal lands while the same HTTP
    client holds its connection-pool lock mid-request.
    """

    def __init__(self, provider: Provider, handle: JobHandle):
        self.provider, self.handle, self.fired = provider, handle, False
        self._old: dict[int, Any] = {}

    def _on_signal(self, signum, frame):  # noqa: ARG002
        self.fired = True
        raise _CancelRequested(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._on_signal)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


def run_job(
    provider: Provider,
    request: TuneRequest,
    *,
    record_path: str | Path,
    deadline_s: float = 24 * 3600,
    log=print,
) -> TuneResult:
    """Preflight, then submit-or-resume and wait, writing the job id to ``record_path`` before polling."""
    key = job_key(request.dataset_hash, provider.name, request.base_model, request.hyperparameters)
    record = Path(record_path)
    handle: JobHandle | None = None
    if record.exists() and record.stat().st_size:
        prior = JobHandle.from_dict(json.loads(record.read_text()))
        if prior.key == key:
            handle = prior
            log(f"[{provider.name}] resuming job {handle.job_id} from this task's record (key {key})")
    if handle is None:
        handle = provider.resume(key)
        if handle is not None:
            log(
                f"[{provider.name}] adopting existing job {handle.job_id} with key {key}; not submitting again"
            )
    if handle is None:
        report = provider.preflight(request)
        log(
            f"[{provider.name}] preflight ok: {report.examples} examples, {report.training_tokens} training "
            f"tokens, estimated cost {report.estimated_cost_usd}"
        )
        handle = provider.submit(request, key)
        handle.detail["preflight"] = asdict(report)  # the estimate this run accepted, for its report
        log(f"[{provider.name}] submitted job {handle.job_id} (key {key})")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(handle.to_dict(), indent=2, sort_keys=True))
    try:
        with _CancelOnSignal(provider, handle):
            return provider.wait(handle, request, deadline_s=deadline_s)
    except _CancelRequested as exc:
        provider.cancel(handle)  # the wait has unwound: no lock it held is held now
        raise JobCancelled(
            f"task cancelled (signal {exc.args[0]}); cancelled {provider.name} job {handle.job_id}"
        ) from None
