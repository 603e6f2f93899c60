"""Gemini supervised tuning on Vertex AI with ``google-genai``: ``Client(vertexai=True).tunings.tune``.

Flow (driven by :func:`tuneloop.providers.base.run_job`):

1. ``preflight`` — the base model is in the catalog, tunable and not retired; the rendered Gemini
   JSONL passes the format's rules and the model's limits (examples, tokens, file size); the
   estimated bill fits ``budget_usd``; ``gcs_staging_uri`` is a ``gs://`` prefix.
2. ``submit`` — uploads train/validation to ``<gcs_staging_uri>/<key>/`` (create-only; an object
   already there with the same bytes is reused), then ``tunings.tune`` with
   ``TuningDataset(gcs_uri=...)``, the validation dataset, ``epoch_count``, ``adapter_size``,
   ``learning_rate_multiplier`` (defaults 4 / 4 / 1.0, the observation-classifier settings),
   ``tuned_model_display_name`` and ``labels={"tuneloop-key": <key>}``.
3. ``resume`` — ``tunings.list(filter='labels.tuneloop-key="<key>"')``: a live or succeeded job is
   adopted instead of paying twice.
4. ``wait`` — polls ``tunings.get`` with backoff + jitter under a deadline, logging each state
   change; returns the tuned model's endpoint, or raises with Vertex's error message.
5. ``predict`` — ``models.generate_content`` on the endpoint, bounded concurrency, retries, cap.

Credentials: Application Default Credentials (the task's service account on Vertex AI
Pipelines) or a short-lived token in ``GOOGLE_OAUTH_ACCESS_TOKEN``. Project and region come from
the ``project``/``location`` options or ``GOOGLE_CLOUD_PROJECT``/``GOOGLE_CLOUD_LOCATION``; the
endpoint from the ``base_url`` option or ``GOOGLE_VERTEX_BASE_URL`` (the SDK's variable).
``vertexai.tuning.sft`` is not used (removed from the Vertex SDK).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop import secrets
from tuneloop.config import check_number, setting
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

PROVIDER_NAME = "gemini"
FORMAT = "gemini"
KEY_LABEL = "tuneloop-key"
DATASET_LABEL = "tuneloop-dataset"
DEFAULT_LOCATION = "us-central1"
# Vertex adapter sizes (tuning adapter rank) -> the SDK's enum names.
ADAPTER_SIZES = {1: "ADAPTER_SIZE_ONE", 2: "ADAPTER_SIZE_TWO", 4: "ADAPTER_SIZE_FOUR", 8: "ADAPTER_SIZE_EIGHT",
                 16: "ADAPTER_SIZE_SIXTEEN", 32: "ADAPTER_SIZE_THIRTY_TWO"}
STATES = {
    "JOB_STATE_QUEUED": "submitted",
    "JOB_STATE_PENDING": "submitted",
    "JOB_STATE_RUNNING": "running",
    "JOB_STATE_UPDATING": "running",
    "JOB_STATE_PAUSED": "running",
    "JOB_STATE_CANCELLING": "running",
    "JOB_STATE_SUCCEEDED": "succeeded",
    "JOB_STATE_PARTIALLY_SUCCEEDED": "failed",
    "JOB_STATE_FAILED": "failed",
    "JOB_STATE_CANCELLED": "cancelled",
    "JOB_STATE_EXPIRED": "failed",
}
LIVE = ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_UPDATING", "JOB_STATE_PAUSED")
_ENDPOINT = re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/endpoints/[^/]+$")
# A base model asked as it is (a judge): ``gemini-2.5-flash`` or ``publishers/google/models/gemini-2.5-flash``.
_BASE_MODEL = re.compile(r"^(?:publishers/google/models/)?gemini-[A-Za-z0-9.\-@]+$")


@dataclass(frozen=True)
class GeminiConfig(hosted.HostedConfig):
    """Hyperparameters of a Vertex Gemini supervised tuning job (plus the shared hosted settings)."""

    epoch_count: int = setting(4, help="passes over the training set (1..100; observation-classifier default 4)")
    adapter_size: int = setting(4, help="LoRA adapter size, one of 1, 2, 4, 8, 16, 32")
    learning_rate_multiplier: float = setting(1.0, help="multiplier of Vertex's recommended learning rate")
    tuned_model_display_name: str = setting("", help="the tuned model's name in Vertex (default tuneloop-<key>)")
    gcs_staging_uri: str = setting("", help="gs://bucket/prefix the datasets are uploaded to (required)")
    use_validation: bool = setting(True, help="send the validation split as the validation dataset when it has rows")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("epoch_count", self.epoch_count, 1, 100, integer=True)
        if self.adapter_size not in ADAPTER_SIZES or isinstance(self.adapter_size, bool):
            raise ValueError(f"adapter_size={self.adapter_size!r} must be one of {sorted(ADAPTER_SIZES)}")
        check_number("learning_rate_multiplier", self.learning_rate_multiplier, 1e-6, 100)
        if not isinstance(self.tuned_model_display_name, str) or len(self.tuned_model_display_name) > 128:
            raise ValueError(f"tuned_model_display_name={self.tuned_model_display_name!r} must be <= 128 characters")
        if self.gcs_staging_uri and not re.match(r"^gs://[a-z0-9][a-z0-9._-]{1,221}[a-z0-9](/.*)?$", self.gcs_staging_uri):
            raise ValueError(f"gcs_staging_uri={self.gcs_staging_uri!r} must be gs://<bucket>[/<prefix>]")
        if not isinstance(self.use_validation, bool):
            raise ValueError(f"use_validation={self.use_validation!r} must be true or false")


def _experimental_warning() -> type[Warning]:
    try:
        from google.genai._common import ExperimentalWarning
    except ImportError:  # a later SDK without it: filter nothing
        return type("_NoWarning", (Warning,), {})
    return ExperimentalWarning


def _split_gs(uri: str) -> tuple[str, str]:
    bucket, _, name = uri[len("gs://"):].partition("/")
    return bucket, name


def contents_of(example: Example):
    """``(system_instruction or None, contents)`` for generate_content, from an example's prompt turns."""
    from google.genai import types

    turns = hosted.prompt_messages(example)
    system = [m["content"] for m in turns if m["role"] == "system"]
    contents = [
        types.Content(role="model" if m["role"] == "assistant" else "user", parts=[types.Part(text=m["content"])])
        for m in hosted.alternating(turns)  # roles alternate, user first, as generateContent expects
    ]
    return ("\n\n".join(system) or None), contents


class GeminiProvider(hosted.HostedProvider):
    """Tunes Gemini on Vertex AI and evaluates through the tuned model's endpoint.

    Args:
        project: Google Cloud project (default: GOOGLE_CLOUD_PROJECT, else the ADC project).
        location: Vertex region (default: GOOGLE_CLOUD_LOCATION, else us-central1).
        base_url: Vertex endpoint override (default: GOOGLE_VERTEX_BASE_URL, else Google's).
        output_dir: the task's model directory (accepted like every provider's; the model lives remotely).
        predict: :class:`~tuneloop.providers.hosted.PredictPolicy` fields for evaluation.
        log: where progress lines go.
        sleep: the sleep function between polls and retries.
    """

    name = PROVIDER_NAME
    format = FORMAT
    hosted = True
    extra = "gemini"
    requires = ("google.genai", "google.cloud.storage")
    tasks = ("classification", "chat")
    credential = "google"
    config_class = GeminiConfig

    def __init__(
        self,
        project: str | None = None,
        location: str | None = None,
        base_url: str | None = None,
        output_dir: str | None = None,
        predict: Mapping[str, Any] | hosted.PredictPolicy | None = None,
        log=print,
        sleep=None,
    ):
        self._init_common(output_dir, predict, log, sleep)
        self._project = project
        self._location = location
        self.base_url = base_url
        self._clients: dict[tuple[str, str], Any] = {}
        self._creds: tuple[Any, str | None] | None = None

    # -- plumbing ----------------------------------------------------------------------------
    def _credentials(self) -> tuple[Any, str | None]:
        if self._creds is None:
            self._creds = secrets.google_credentials()
        return self._creds

    @property
    def project(self) -> str:
        project = self._project or os.environ.get("GOOGLE_CLOUD_PROJECT") or self._credentials()[1]
        if not project:
            raise ProviderError(
                "gemini provider: no Google Cloud project; set GOOGLE_CLOUD_PROJECT in the task's environment "
                "or pass project= to the provider"
            )
        return project

    @property
    def location(self) -> str:
        return self._location or os.environ.get("GOOGLE_CLOUD_LOCATION") or DEFAULT_LOCATION

    def client(self, project: str | None = None, location: str | None = None):
        """A ``genai.Client(vertexai=True)`` for the project and region (cached; SDK retries off)."""
        from google import genai
        from google.genai import types

        key = (project or self.project, location or self.location)
        if key not in self._clients:
            base_url = self.base_url or os.environ.get("GOOGLE_VERTEX_BASE_URL")
            self._clients[key] = genai.Client(
                vertexai=True,
                project=key[0],
                location=key[1],
                credentials=self._credentials()[0],
                http_options=types.HttpOptions(base_url=base_url, timeout=120_000) if base_url else
                types.HttpOptions(timeout=120_000),
            )
        return self._clients[key]

    def _call(self, fn, what: str, cfg: hosted.HostedConfig | None = None, **kw):
        policy = (cfg or GeminiConfig()).retry_policy()
        return hosted.call(fn, what=f"[gemini] {what}", policy=policy, log=self.log, sleep=self.sleep, **kw)

    @staticmethod
    def _state(job) -> str:
        state = job.state
        return getattr(state, "value", state) or "JOB_STATE_UNSPECIFIED"

    def _handle(self, key: str, job) -> JobHandle:
        state = self._state(job)
        return JobHandle(
            provider=PROVIDER_NAME,
            key=key,
            job_id=job.name,
            state=STATES.get(state, "running"),
            detail={"state": state, "base_model": job.base_model, "display_name": job.tuned_model_display_name},
        )

    # -- Provider interface ----------------------------------------------------------------------
    def preflight(self, request: TuneRequest) -> PreflightReport:
        """Model, file, staging and budget checks; uploads nothing."""
        cfg = self.config(request)
        catalog = hosted.load_catalog_for(cfg)
        info = hosted.check_model(catalog, PROVIDER_NAME, request.base_model, platform="vertex")
        if not cfg.gcs_staging_uri:
            raise PreflightError(
                "hyperparameters.gcs_staging_uri is not set; Vertex reads tuning data from GCS: pass "
                "gs://<bucket>/<prefix> that the task's service account can write and Vertex can read"
            )
        train = hosted.resolve_file(request.files, FORMAT, "train")
        if train is None:
            raise PreflightError("files['train'] is missing: render the dataset with the 'gemini' format")
        report = hosted.check_file(train, FORMAT, info, split="train", epochs=cfg.epoch_count, catalog=catalog)
        validation = self._validation_file(request, cfg)
        if validation:
            hosted.check_file(validation, FORMAT, info, split="validation", epochs=cfg.epoch_count, catalog=catalog)
        cost = info.training_cost_usd(report.tokens_total, cfg.epoch_count)
        notes = hosted.check_budget(cost, cfg, info, tokens=report.tokens_total, epochs=cfg.epoch_count)
        notes.append("token counts are estimates (Gemini's tokenizer is not available offline)")
        if info.end_of_life is not None:
            notes.append(f"{info.name} end of life {info.end_of_life.isoformat()}: tuned models stop serving then")
        return PreflightReport(
            provider=PROVIDER_NAME,
            base_model=info.name,
            examples=report.rows_ok,
            training_tokens=report.tokens_total * cfg.epoch_count,
            estimated_cost_usd=cost,
            notes=tuple(notes),
        )

    @staticmethod
    def _validation_file(request: TuneRequest, cfg: GeminiConfig) -> str | None:
        if not cfg.use_validation:
            return None
        path = hosted.resolve_file(request.files, FORMAT, "validation")
        if path and Path(path).is_file() and Path(path).stat().st_size:
            return path
        return None

    def _stage(self, data: bytes, uri: str, cfg: GeminiConfig) -> None:
        """Upload ``data`` to ``uri`` create-only; an object already there must hold the same bytes."""
        from google.api_core import exceptions as gexc
        from google.cloud import storage

        creds, _ = self._credentials()
        bucket_name, name = _split_gs(uri)
        blob = storage.Client(project=self.project, credentials=creds).bucket(bucket_name).blob(name)
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - GCS's own checksum

        def upload() -> str:
            try:
                blob.upload_from_string(data, content_type="application/jsonl", if_generation_match=0)
                return "uploaded"
            except gexc.PreconditionFailed:
                blob.reload()
                if blob.md5_hash != md5:
                    raise ProviderError(
                        f"{uri} already exists with other content (md5 {blob.md5_hash}, expected {md5}); it is "
                        "keyed by the job key, so someone else wrote it: delete it or use another gcs_staging_uri"
                    ) from None
                return "already there"

        outcome = self._call(upload, f"upload {uri}", cfg)
        self.log(f"[gemini] {uri}: {outcome} ({len(data):,} bytes)")

    def submit(self, request: TuneRequest, key: str) -> JobHandle:
        """Stage the files in GCS and start ``tunings.tune`` labelled with ``key``."""
        from google.genai import types

        cfg = self.config(request)
        info = hosted.check_model(hosted.load_catalog_for(cfg), PROVIDER_NAME, request.base_model, platform="vertex")
        prefix = f"{cfg.gcs_staging_uri.rstrip('/')}/{key}"
        train_uri = f"{prefix}/train.jsonl"
        self._stage(hosted.read_bytes(hosted.resolve_file(request.files, FORMAT, "train")), train_uri, cfg)
        config = types.CreateTuningJobConfig(
            epoch_count=cfg.epoch_count,
            adapter_size=ADAPTER_SIZES[cfg.adapter_size],
            learning_rate_multiplier=cfg.learning_rate_multiplier,
            tuned_model_display_name=cfg.tuned_model_display_name or f"tuneloop-{key}",
            labels={KEY_LABEL: key, DATASET_LABEL: request.dataset_hash[:63].lower()},
        )
        validation = self._validation_file(request, cfg)
        if validation:
            val_uri = f"{prefix}/validation.jsonl"
            self._stage(hosted.read_bytes(validation), val_uri, cfg)
            config.validation_dataset = types.TuningValidationDataset(gcs_uri=val_uri)
        client = self.client()

        def tune():
            with warnings.catch_warnings():  # "tuning is experimental" on every call: said once, in the docs
                warnings.simplefilter("ignore", category=_experimental_warning())
                return client.tunings.tune(
                    base_model=info.name, training_dataset=types.TuningDataset(gcs_uri=train_uri), config=config
                )

        job = self._call(tune, "create tuning job", cfg, before_retry=lambda: self.resume(key))
        if isinstance(job, JobHandle):
            return job
        return self._handle(key, job)

    def resume(self, key: str) -> JobHandle | None:
        """The newest live or succeeded tuning job labelled with ``key``, or None."""
        from google.genai import types

        client = self.client()
        config = types.ListTuningJobsConfig(filter=f'labels.{KEY_LABEL}="{key}"', page_size=100)
        jobs = self._call(lambda: list(client.tunings.list(config=config)), "list tuning jobs by key")
        for job in jobs:
            if (job.labels or {}).get(KEY_LABEL) != key:
                continue  # the server ignored the filter: check it here too
            state = self._state(job)
            if state in LIVE or state == "JOB_STATE_SUCCEEDED":
                return self._handle(key, job)
        return None

    def wait(self, handle: JobHandle, request: TuneRequest, *, deadline_s: float) -> TuneResult:
        """Poll until the job ends; the tuned endpoint, or ProviderError with Vertex's message."""
        cfg = self.config(request)
        what = f"Vertex tuning job {handle.job_id}"
        client = self.client()
        poller = hosted.Poller(cfg.poll_policy(), min(deadline_s, cfg.deadline_s), what, sleep=self.sleep)
        events = hosted.EventLog(self.log, f"[gemini] {handle.job_id}:")
        while True:
            job = self._call(lambda: client.tunings.get(name=handle.job_id), "get tuning job", cfg)
            state = self._state(job)
            handle.state = STATES.get(state, "running")
            events.state(state, self._progress(job))
            if state == "JOB_STATE_SUCCEEDED":
                return self._result(handle, job, request, cfg)
            if state in ("JOB_STATE_FAILED", "JOB_STATE_EXPIRED", "JOB_STATE_PARTIALLY_SUCCEEDED"):
                err = job.error
                detail = f"{err.message} (code {err.code})" if err is not None and err.message else state
                raise ProviderError(f"{what} failed: {detail}")
            if state == "JOB_STATE_CANCELLED":
                raise ProviderError(f"{what} was cancelled outside this task; nothing to promote. Rerun to tune again")
            try:
                poller.pause(state)
            except hosted.DeadlineExceeded:
                if cfg.cancel_on_deadline:
                    self.cancel(handle)
                raise

    @staticmethod
    def _stats(job):
        stats = job.tuning_data_stats
        return stats.supervised_tuning_data_stats if stats is not None else None

    def _progress(self, job) -> str:
        s = self._stats(job)
        if s is None:
            return ""
        return f"{s.tuning_dataset_example_count} examples, {s.total_billable_token_count} billable tokens"

    def _result(self, handle: JobHandle, job, request: TuneRequest, cfg: GeminiConfig) -> TuneResult:
        tuned = job.tuned_model
        if tuned is None or not tuned.endpoint:
            raise ProviderError(f"Vertex tuning job {handle.job_id} succeeded but names no tuned endpoint")
        s = self._stats(job)
        billable = int(s.total_billable_token_count) if s is not None and s.total_billable_token_count else None
        return TuneResult(
            provider=PROVIDER_NAME,
            job_id=job.name,
            model_ref=tuned.endpoint,
            base_model=job.base_model or request.base_model,
            dataset_hash=request.dataset_hash,
            trained_tokens=billable * cfg.epoch_count if billable is not None else None,
            metrics={},
            detail={
                "state": self._state(job),
                "tuned_model": tuned.model,
                "endpoint": tuned.endpoint,
                "display_name": job.tuned_model_display_name,
                "billable_tokens_per_epoch": billable,
                "epoch_count": cfg.epoch_count,
                "key": handle.key,
            },
        )

    def cancel(self, handle: JobHandle) -> None:
        """Cancel the tuning job unless it has already ended (then a no-op)."""
        policy = hosted.RetryPolicy(attempts=3, initial_s=0.5, max_s=2.0)
        client = self.client()
        job = hosted.call(lambda: client.tunings.get(name=handle.job_id), what="[gemini] get tuning job",
                          policy=policy, log=self.log, sleep=self.sleep)
        state = self._state(job)
        if state not in LIVE:
            self.log(f"[gemini] job {handle.job_id} already {state}; nothing to cancel")
            return
        hosted.call(lambda: client.tunings.cancel(name=handle.job_id), what="[gemini] cancel tuning job",
                    policy=policy, log=self.log, sleep=self.sleep)
        handle.state = "cancelled"
        self.log(f"[gemini] cancelled job {handle.job_id}")

    def _predict_client(self, model_ref: str):
        """The client that answers ``model_ref``: a tuned endpoint's project and region, or the provider's for a base model."""
        m = _ENDPOINT.match(model_ref or "")
        if m:
            return self.client(m["project"], m["location"])
        if _BASE_MODEL.match(model_ref or ""):
            return self.client()
        raise ProviderError(
            f"model_ref={model_ref!r} is not a Vertex endpoint (projects/<p>/locations/<l>/endpoints/<id>) nor a "
            "Gemini base model (gemini-...); pass the model_ref a gemini tuning job returned, or a model name"
        )

    def predict(self, model_ref: str, examples: Sequence[Example]) -> list[str]:
        """``generate_content`` on the tuned endpoint per example (temperature 0); its text.

        A Gemini base model name (``gemini-2.5-flash``, or its ``publishers/google/models/`` form) is
        asked as it is, in the provider's project and region: what a judge names.
        """
        from google.genai import types

        client = self._predict_client(model_ref)
        policy = self.predict_policy

        def ask(example: Example) -> str:
            system, contents = contents_of(example)
            r = client.models.generate_content(
                model=model_ref,
                contents=contents,
                config=types.GenerateContentConfig(
                    system_instruction=system, temperature=0, max_output_tokens=policy.max_output_tokens
                ),
            )
            parts = r.candidates[0].content.parts if r.candidates and r.candidates[0].content else None
            return "".join(p.text or "" for p in parts or [])

        answers, self.last_predict = hosted.predict_all(
            ask, examples, policy=policy, counter=self.counter, what=f"[gemini] predict {model_ref}",
            log=self.log, sleep=self.sleep,
        )
        return answers

    def predict_scored(self, model_ref: str, examples: Sequence[Example], *, top_logprobs: int = 5):
        """Like :meth:`predict`, asked with ``response_logprobs`` and ``logprobs``: the answers and their tokens.

        The tokens are ``candidates[0].logprobs_result.chosen_candidates`` as ``{"token", "logprob"}`` dicts, or
        None where the answer came without them (tuneloop.labeling reads them).
        """
        from google.genai import types

        client = self._predict_client(model_ref)
        policy = self.predict_policy
        tokens: dict[str, Any] = {}

        def ask(example: Example) -> str:
            system, contents = contents_of(example)
            r = client.models.generate_content(
                model=model_ref,
                contents=contents,
                config=types.GenerateContentConfig(
                    system_instruction=system, temperature=0, max_output_tokens=policy.max_output_tokens,
                    response_logprobs=True, logprobs=top_logprobs,
                ),
            )
            cand = r.candidates[0] if r.candidates else None
            chosen = getattr(getattr(cand, "logprobs_result", None), "chosen_candidates", None)
            tokens[example.id] = [{"token": c.token or "", "logprob": c.log_probability} for c in chosen] if chosen else None
            parts = cand.content.parts if cand and cand.content else None
            return "".join(p.text or "" for p in parts or [])

        answers, self.last_predict = hosted.predict_all(
            ask, examples, policy=policy, counter=self.counter, what=f"[gemini] predict {model_ref}",
            log=self.log, sleep=self.sleep,
        )
        return answers, [tokens.get(e.id) for e in examples]
