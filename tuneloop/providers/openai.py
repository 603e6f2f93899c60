"""OpenAI supervised fine-tuning: Files API upload, ``fine_tuning.jobs``, chat completions to evaluate.

Flow (driven by :func:`tuneloop.providers.base.run_job`):

1. ``preflight`` — the base model is in the catalog, tunable and not retired; the rendered OpenAI
   JSONL passes the format's rules and the model's limits; the estimated bill (catalog price x
   exact tokens x epochs, the ``auto`` rule when epochs are ``auto``) fits ``budget_usd``.
2. ``submit`` — ``files.create(purpose="fine-tune")`` for train (and validation), then
   ``fine_tuning.jobs.create`` with the supervised method and its hyperparameters, ``suffix``, and
   ``metadata={"tuneloop_key": <key>}``. A create that failed with a 5xx is looked up by key before
   it is retried, so a lost response never makes two jobs.
3. ``resume`` — ``fine_tuning.jobs.list(metadata={"tuneloop_key": key})``: a live or succeeded job
   with the key is adopted instead of paying twice.
4. ``wait`` — polls the job with backoff + jitter under a deadline, logs each new job event once,
   returns the fine-tuned model id and trained tokens, or raises with OpenAI's own error message.
5. ``predict`` — chat completions on the tuned model, bounded concurrency, retries, request cap.

Credentials: ``OPENAI_API_KEY`` (or ``OPENAI_API_KEY_SECRET`` naming a Secret Manager version),
read when the client is built. Endpoint: ``OPENAI_BASE_URL`` or the ``base_url`` option.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop import secrets
from tuneloop.config import setting
from tuneloop.examples import Example
from tuneloop.providers import hosted
from tuneloop.providers.base import (
    JobHandle,
    PreflightError,
    PreflightReport,
    ProviderError,
    TuneRequest,
    TuneResult,
)

PROVIDER_NAME = "openai"
FORMAT = "openai"
KEY_METADATA = "tuneloop_key"
DATASET_METADATA = "tuneloop_dataset"
# OpenAI job status -> tuneloop JOB_STATES
STATES = {
    "validating_files": "submitted",
    "queued": "submitted",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}
LIVE = ("validating_files", "queued", "running")
MAX_SUFFIX = 64
AUTO = "auto"


def _auto_or(name: str, value: Any, *, integer: bool, lo: float, hi: float) -> None:
    if value == AUTO:
        return
    kind = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kind) or not lo <= value <= hi:
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name}={value!r} must be 'auto' or {what} in [{lo}, {hi}]")


@dataclass(frozen=True)
class OpenAIConfig(hosted.HostedConfig):
    """Hyperparameters of an OpenAI supervised fine-tuning job (plus the shared hosted settings)."""

    n_epochs: int | str = setting(AUTO, help="epochs (1..50), or 'auto' (OpenAI picks; the estimate uses its rule)")
    batch_size: int | str = setting(AUTO, help="batch size (1..256), or 'auto'")
    learning_rate_multiplier: float | str = setting(AUTO, help="learning-rate multiplier, or 'auto'")
    suffix: str = setting("", help="up to 64 characters added to the tuned model's name")
    seed: int | None = setting(None, help="training seed (null: OpenAI picks one)")
    use_validation: bool = setting(True, help="upload the validation split as validation_file when it has rows")

    def __post_init__(self) -> None:
        super().__post_init__()
        _auto_or("n_epochs", self.n_epochs, integer=True, lo=1, hi=50)
        _auto_or("batch_size", self.batch_size, integer=True, lo=1, hi=256)
        _auto_or("learning_rate_multiplier", self.learning_rate_multiplier, integer=False, lo=1e-6, hi=100)
        if not isinstance(self.suffix, str) or len(self.suffix) > MAX_SUFFIX:
            raise ValueError(f"suffix={self.suffix!r} must be a string of at most {MAX_SUFFIX} characters")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed={self.seed!r} must be an integer or null")
        if not isinstance(self.use_validation, bool):
            raise ValueError(f"use_validation={self.use_validation!r} must be true or false")

    def method(self) -> dict[str, Any]:
        """The ``method`` object of ``fine_tuning.jobs.create``."""
        hp = {
            "n_epochs": self.n_epochs,
            "batch_size": self.batch_size,
            "learning_rate_multiplier": self.learning_rate_multiplier,
        }
        return {"type": "supervised", "supervised": {"hyperparameters": hp}}


class OpenAIProvider(hosted.HostedProvider):
    """Fine-tunes on the OpenAI API and evaluates with chat completions.

    Args:
        base_url: API endpoint (default: ``OPENAI_BASE_URL``, else api.openai.com).
        organization / project: optional OpenAI org and project ids (not secrets).
        output_dir: the task's model directory (accepted like every provider's; the model lives remotely).
        predict: :class:`~tuneloop.providers.hosted.PredictPolicy` fields for evaluation.
        log: where progress lines go (default print: the task's log).
        sleep: the sleep function between polls and retries.
    """

    name = PROVIDER_NAME
    format = FORMAT
    hosted = True
    extra = "openai"
    requires = ("openai",)
    tasks = ("classification", "chat")
    credential = "OPENAI_API_KEY"
    config_class = OpenAIConfig

    def __init__(
        self,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        output_dir: str | None = None,
        predict: Mapping[str, Any] | hosted.PredictPolicy | None = None,
        log=print,
        sleep=None,
    ):
        self._init_common(output_dir, predict, log, sleep)
        self.base_url = base_url
        self.organization = organization
        self.project = project
        self._client = None

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def client(self):
        """The ``openai.OpenAI`` client (built on first use; the SDK's own retries are off)."""
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                api_key=secrets.get_secret("OPENAI_API_KEY"),
                base_url=self.base_url or None,
                organization=self.organization or None,
                project=self.project or None,
                max_retries=0,
                timeout=120.0,
            )
        return self._client

    def _call(self, fn, what: str, cfg: hosted.HostedConfig | None = None, **kw):
        policy = (cfg or OpenAIConfig()).retry_policy()
        return hosted.call(fn, what=f"[openai] {what}", policy=policy, log=self.log, sleep=self.sleep, **kw)

    @staticmethod
    def _handle(key: str, job) -> JobHandle:
        return JobHandle(
            provider=PROVIDER_NAME,
            key=key,
            job_id=job.id,
            state=STATES.get(job.status, "running"),
            detail={
                "status": job.status,
                "model": job.model,
                "training_file": job.training_file,
                "validation_file": job.validation_file,
            },
        )

    # -- Provider interface ----------------------------------------------------------------------
    def preflight(self, request: TuneRequest) -> PreflightReport:
        """Model, file and budget checks against the catalog; sends nothing to OpenAI."""
        cfg = self.config(request)
        catalog = hosted.load_catalog_for(cfg)
        info = hosted.check_model(catalog, PROVIDER_NAME, request.base_model, platform="openai")
        train = hosted.resolve_file(request.files, FORMAT, "train")
        if train is None:
            raise PreflightError(
                "files['train'] is missing: the openai provider uploads the rendered OpenAI JSONL; render the "
                "dataset with the 'openai' format"
            )
        epochs_arg = None if cfg.n_epochs == AUTO else cfg.n_epochs
        report = hosted.check_file(train, FORMAT, info, split="train", epochs=epochs_arg, catalog=catalog)
        notes = []
        validation = hosted.resolve_file(request.files, FORMAT, "validation") if cfg.use_validation else None
        if validation and Path(validation).is_file() and Path(validation).stat().st_size:
            hosted.check_file(validation, FORMAT, info, split="validation", epochs=epochs_arg, catalog=catalog)
        epochs = info.epochs_for(report.rows_ok, epochs_arg)
        cost = info.training_cost_usd(report.tokens_total, epochs)
        notes += hosted.check_budget(cost, cfg, info, tokens=report.tokens_total, epochs=epochs)
        if info.end_of_life is not None:
            notes.append(f"{info.name} end of life {info.end_of_life.isoformat()}: tuned models stop working then")
        return PreflightReport(
            provider=PROVIDER_NAME,
            base_model=info.name,
            examples=report.rows_ok,
            training_tokens=report.tokens_total * epochs,
            estimated_cost_usd=cost,
            notes=tuple(notes),
        )

    def submit(self, request: TuneRequest, key: str) -> JobHandle:
        """Upload the files and create the job tagged with ``key`` (adopting one a lost response created)."""
        cfg = self.config(request)
        info = hosted.check_model(hosted.load_catalog_for(cfg), PROVIDER_NAME, request.base_model, platform="openai")
        uploads: dict[str, str] = {}
        for split in ("train", "validation"):
            path = hosted.resolve_file(request.files, FORMAT, split)
            if split == "validation" and not cfg.use_validation:
                continue
            if not path:
                continue
            data = hosted.read_bytes(path)
            if not data.strip():
                continue
            f = self._call(
                lambda d=data, s=split: self.client.files.create(file=(f"{key}-{s}.jsonl", d), purpose="fine-tune"),
                f"upload {split} file",
                cfg,
            )
            uploads[split] = f.id
            self.log(f"[openai] uploaded {split} file {f.id} ({len(data):,} bytes)")
        metadata = {KEY_METADATA: key, DATASET_METADATA: request.dataset_hash[:64]}
        kwargs: dict[str, Any] = {
            "model": info.name,
            "training_file": uploads["train"],
            "method": cfg.method(),
            "metadata": metadata,
        }
        if "validation" in uploads:
            kwargs["validation_file"] = uploads["validation"]
        if cfg.suffix:
            kwargs["suffix"] = cfg.suffix
        if cfg.seed is not None:
            kwargs["seed"] = cfg.seed

        def adopt() -> JobHandle | None:
            return self.resume(key)

        created = self._call(lambda: self.client.fine_tuning.jobs.create(**kwargs), "create fine-tuning job", cfg,
                             before_retry=adopt)
        if isinstance(created, JobHandle):
            return created
        return self._handle(key, created)

    def resume(self, key: str) -> JobHandle | None:
        """The newest live or succeeded job whose metadata carries ``key``, or None."""
        page = self._call(
            lambda: self.client.fine_tuning.jobs.list(metadata={KEY_METADATA: key}, limit=100), "list jobs by key"
        )
        for job in page.data:  # newest first
            if (job.metadata or {}).get(KEY_METADATA) != key:
                continue  # the server ignored the filter: check it here too
            if job.status in LIVE or job.status == "succeeded":
                return self._handle(key, job)
        return None

    def _log_events(self, job_id: str, events: hosted.EventLog, cfg: OpenAIConfig) -> dict[str, float]:
        page = self._call(lambda: self.client.fine_tuning.jobs.list_events(job_id, limit=100), "list job events", cfg)
        items = list(reversed(page.data))  # oldest first
        metrics: dict[str, float] = {}
        for e in items:
            data = e.data if isinstance(e.data, Mapping) else None
            if e.type == "metrics" and data:
                metrics = {k: float(v) for k, v in data.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        events.events([(e.id, f"{e.level}: {e.message}") for e in items])
        return metrics

    def wait(self, handle: JobHandle, request: TuneRequest, *, deadline_s: float) -> TuneResult:
        """Poll until the job ends; the tuned model id, or ProviderError with OpenAI's message."""
        cfg = self.config(request)
        what = f"OpenAI fine-tuning job {handle.job_id}"
        poller = hosted.Poller(cfg.poll_policy(), min(deadline_s, cfg.deadline_s), what, sleep=self.sleep)
        events = hosted.EventLog(self.log, f"[openai] {handle.job_id}:")
        metrics: dict[str, float] = {}
        while True:
            job = self._call(lambda: self.client.fine_tuning.jobs.retrieve(handle.job_id), "retrieve job", cfg)
            handle.state = STATES.get(job.status, "running")
            metrics = self._log_events(handle.job_id, events, cfg) or metrics
            events.state(job.status)
            if job.status == "succeeded":
                return TuneResult(
                    provider=PROVIDER_NAME,
                    job_id=job.id,
                    model_ref=job.fine_tuned_model,
                    base_model=job.model,
                    dataset_hash=request.dataset_hash,
                    trained_tokens=job.trained_tokens,
                    metrics=metrics,
                    detail={
                        "status": job.status,
                        "fine_tuned_model": job.fine_tuned_model,
                        "trained_tokens": job.trained_tokens,
                        "training_file": job.training_file,
                        "validation_file": job.validation_file,
                        "result_files": list(job.result_files or []),
                        "hyperparameters": job.hyperparameters.model_dump() if job.hyperparameters else {},
                        "key": handle.key,
                    },
                )
            if job.status == "failed":
                err = job.error
                detail = f"{err.message} (code {err.code}" + (f", param {err.param})" if err.param else ")") if err else "no error given"
                raise ProviderError(f"{what} failed: {detail}")
            if job.status == "cancelled":
                raise ProviderError(
                    f"{what} was cancelled outside this task; nothing to promote. Rerun to submit a new job"
                )
            try:
                poller.pause(job.status)
            except hosted.DeadlineExceeded:
                if cfg.cancel_on_deadline:
                    self.cancel(handle)
                raise

    def cancel(self, handle: JobHandle) -> None:
        """Cancel the job unless it has already ended (then a no-op)."""
        policy = hosted.RetryPolicy(attempts=3, initial_s=0.5, max_s=2.0)
        job = hosted.call(lambda: self.client.fine_tuning.jobs.retrieve(handle.job_id), what="[openai] retrieve job",
                          policy=policy, log=self.log, sleep=self.sleep)
        if job.status not in LIVE:
            self.log(f"[openai] job {handle.job_id} already {job.status}; nothing to cancel")
            return
        hosted.call(lambda: self.client.fine_tuning.jobs.cancel(handle.job_id), what="[openai] cancel job",
                    policy=policy, log=self.log, sleep=self.sleep)
        handle.state = "cancelled"
        self.log(f"[openai] cancelled job {handle.job_id}")

    def predict(self, model_ref: str, examples: Sequence[Example]) -> list[str]:
        """One chat completion per example (temperature 0), its text as the raw answer."""
        policy = self.predict_policy
        client = self.client  # built once here, not by each worker thread racing to build it

        def ask(example: Example) -> str:
            r = client.chat.completions.create(
                model=model_ref,
                messages=hosted.prompt_messages(example),
                temperature=0,
                max_completion_tokens=policy.max_output_tokens,
            )
            return (r.choices[0].message.content or "") if r.choices else ""

        answers, self.last_predict = hosted.predict_all(
            ask, examples, policy=policy, counter=self.counter, what=f"[openai] predict {model_ref}",
            log=self.log, sleep=self.sleep,
        )
        return answers

    def predict_scored(self, model_ref: str, examples: Sequence[Example], *, top_logprobs: int = 5):
        """Like :meth:`predict`, asked with ``logprobs=true, top_logprobs``: the answers and each answer's tokens.

        The tokens are the API's ``choices[0].logprobs.content`` entries as dicts (``token``, ``logprob``,
        ``top_logprobs``), or None where the answer came without them (tuneloop.labeling reads them).
        """
        policy = self.predict_policy
        client = self.client
        tokens: dict[str, Any] = {}

        def ask(example: Example) -> str:
            r = client.chat.completions.create(
                model=model_ref,
                messages=hosted.prompt_messages(example),
                temperature=0,
                max_completion_tokens=policy.max_output_tokens,
                logprobs=True,
                top_logprobs=top_logprobs,
            )
            choice = r.choices[0] if r.choices else None
            content = getattr(getattr(choice, "logprobs", None), "content", None)
            tokens[example.id] = [t.model_dump() for t in content] if content else None
            return (choice.message.content or "") if choice else ""

        answers, self.last_predict = hosted.predict_all(
            ask, examples, policy=policy, counter=self.counter, what=f"[openai] predict {model_ref}",
            log=self.log, sleep=self.sleep,
        )
        return answers, [tokens.get(e.id) for e in examples]
