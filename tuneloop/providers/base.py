"""The provider interface every tuner implements, and the job runner that makes remote jobs safe.

A provider knows how to check a dataset against its limits (``preflight``), start a tuning job
(``submit``), find a job it already started for the same idempotency key (``resume``), follow it to
the end (``wait``), stop it (``cancel``) and answer prompts with a tuned model (``predict``).

:func:`run_job` is the one place that makes a job idempotent and restart-safe, for every provider:

1. the job key is a hash of dataset + base model + the parsed config's fields that shape training
   (:func:`job_key`);
2. a job record already written by an earlier attempt of this task is resumed;
3. otherwise ``provider.resume(key)`` adopts a live or finished job the provider already has;
4. otherwise the job is submitted, and its id is written to the record *before* polling starts;
5. SIGTERM/SIGINT while waiting (a cancelled pipeline task) cancels the remote job.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tuneloop.config import ConfigError, from_mapping, job_key_fields
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
    config: Any = None  # the provider's parsed config (the first task parsed ``hyperparameters``)


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


class HyperparameterError(PreflightError, ConfigError):
    """The hyperparameters do not parse into the provider's config (both a preflight and a config error)."""


@dataclass(frozen=True)
class NoSettings:
    """The config of a provider that takes no hyperparameters."""


class Provider(abc.ABC):
    """One tuner: it declares who it is (class attributes) and implements the six operations.

    The declarations are the one place the rest of tuneloop learns about a provider
    (:mod:`tuneloop.providers.registry` derives every list from them):

    Attributes:
        name: the provider's name, as the ``provider`` pipeline parameter spells it.
        format: the training format rendered for it (``openai``, ``gemini``, ``bedrock``, ``hf``), or
            None when it reads canonical examples directly.
        hosted: True when the model lives at the provider and tuning is a paid remote job.
        extra: the pip extra that brings its dependencies (None = the core install).
        requires: modules that extra provides, checked by the first task (a missing one names the extra).
        image: where its tune and evaluate tasks run: ``cpu`` (the base image) or ``gpu`` (the CUDA
            trainer image with an accelerator).
        tasks: the task kinds it can tune: ``classification`` and/or ``chat``.
        config_class: the frozen dataclass its ``hyperparameters`` parse into (:func:`parse_config`).
        family: the family name several providers answer to (``claude`` -> ``claude-few-shot`` /
            ``claude-bedrock``, chosen by ``hyperparameters.method``), or None.
        method: this member's ``method`` within its family.
        family_default: the member a family name means when no ``method`` is given.
        credential: what the tasks need to reach the provider: an API key's environment variable
            (``OPENAI_API_KEY``; ``<VAR>_SECRET`` in ``task_env`` names a Secret Manager version instead),
            ``google`` (Application Default Credentials or a token), ``aws`` (boto3's chain), or None.
        serving: the serving container a Vertex AI endpoint runs its champion on (``sklearn``: the
            prebuilt scikit-learn image; ``llm``: an LLM serving image over the adapter), or None
            when its models are served by the provider (the ``deploy_endpoint`` step skips them).
        platforms: the catalog platforms of the base models it tunes, when it shares its catalog
            name with other providers (a family member: ``("bedrock",)``); () = every entry listed
            under its catalog name (the ``select-model`` step reads this).
    """

    name: ClassVar[str] = ""
    format: ClassVar[str | None] = None
    hosted: ClassVar[bool] = False
    extra: ClassVar[str | None] = None
    requires: ClassVar[tuple[str, ...]] = ()
    image: ClassVar[str] = "cpu"
    tasks: ClassVar[tuple[str, ...]] = ("classification",)
    config_class: ClassVar[type] = NoSettings
    family: ClassVar[str | None] = None
    method: ClassVar[str | None] = None
    family_default: ClassVar[bool] = False
    credential: ClassVar[str | None] = None
    serving: ClassVar[str | None] = None
    platforms: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def catalog_name(cls) -> str:
        """The provider name its base models are listed under in the model catalog (its family's)."""
        return cls.family or cls.name

    @classmethod
    def parse_config(cls, hyperparameters: Mapping[str, Any] | None) -> Any:
        """``hyperparameters`` as this provider's frozen config (whole floats from KFP become ints).

        Raises:
            HyperparameterError: an unknown key (with the valid ones and the closest match) or a bad value.
        """
        if isinstance(hyperparameters, cls.config_class):
            return hyperparameters
        try:
            return from_mapping(cls.config_class, hyperparameters, owner=f"the {cls.name} provider")
        except ConfigError as exc:
            raise HyperparameterError(str(exc)) from exc

    def config(self, request: TuneRequest) -> Any:
        """The request's parsed config (parsed here when the request carries only the mapping)."""
        if request.config is not None:
            return self.parse_config(request.config)
        return self.parse_config(request.hyperparameters)

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


def job_key(dataset_hash: str, provider: str, base_model: str, config: Any) -> str:
    """Deterministic idempotency key: the same data + model + config always gives the same key.

    ``config`` is the provider's parsed config (:meth:`Provider.parse_config`). Only the fields that
    say *what* is trained enter the key (``job_key=True`` in the field's :func:`~tuneloop.config.setting`),
    and of those only the ones that differ from their defaults: spelling a default out
    (``{"n_epochs": "auto"}`` for ``{}``, or ``3.0`` for ``3``) gives the same key, and keys of jobs
    submitted before configs were typed stay the same. Budget, deadline, polling and retries never
    enter it, so a rerun that only changes them adopts the job already paid for.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"job_key needs the provider's parsed config (Provider.parse_config), not {type(config).__name__}")
    defaults = job_key_fields(type(config)())
    trained = {k: v for k, v in job_key_fields(config).items() if defaults.get(k, _UNSET) != v}
    payload = json.dumps(
        {"dataset": dataset_hash, "provider": provider, "base_model": base_model, "hp": trained},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return "tl-" + hashlib.sha256(payload.encode()).hexdigest()[:24]


_UNSET = object()


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
    key_suffix: str = "",
) -> TuneResult:
    """Preflight, then submit-or-resume and wait, writing the job id to ``record_path`` before polling.

    ``key_suffix`` makes the job key distinct from the config's own (a resubmission of a job that
    failed: :func:`tuneloop.stages.run_job_with_retries`).
    """
    config = provider.config(request)
    request = dataclasses.replace(request, config=config)
    key = job_key(request.dataset_hash, provider.name, request.base_model, config) + key_suffix
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
