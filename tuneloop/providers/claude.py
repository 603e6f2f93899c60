"""Claude, two ways, chosen by ``hyperparameters.method``:

``bedrock`` — Amazon Bedrock model customization (fine-tuning) of a Claude model Bedrock can
customize: the rendered Bedrock JSONL is uploaded to S3, ``create_model_customization_job`` runs
with ``epochCount``, ``batchSize``, ``learningRateMultiplier`` and early stopping, and evaluation
invokes the custom model through the Bedrock runtime. Claude 3 Haiku, the only Claude model Bedrock
could customize, is legacy with end of life 2026-09-10 (in the catalog), so preflight refuses it
after that date with the message naming the alternative.

``few-shot`` (default) — the Anthropic Messages API has no fine-tuning. The "tuned" artifact is an
instruction plus exemplars selected from the training split (stratified by label, deterministic),
written to the task's model directory as ``fewshot.json``; evaluation sends the exemplars as prior
turns and the eval prompt as the last one. It is judged and promoted like any other candidate.

Credentials: AWS from boto3's chain (environment, profile, task role; region from ``AWS_REGION``
or the ``region`` option); Anthropic from ``ANTHROPIC_API_KEY`` or ``ANTHROPIC_API_KEY_SECRET``
(Secret Manager). Endpoints: ``AWS_ENDPOINT_URL[_BEDROCK_RUNTIME]`` and ``ANTHROPIC_BASE_URL``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop import secrets
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

PROVIDER_NAME = "claude"
FORMAT = "bedrock"
METHODS = ("few-shot", "bedrock")
FEWSHOT_FILE = "fewshot.json"
FEWSHOT_SCHEMA = "tuneloop.fewshot/v1"
KEY_TAG = "tuneloop-key"
BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"
ANTHROPIC_DEFAULT_MODEL = "claude-haiku-4-5"
# Bedrock job status -> tuneloop JOB_STATES
STATES = {"InProgress": "running", "Completed": "succeeded", "Failed": "failed", "Stopping": "running",
          "Stopped": "cancelled"}
LIVE = ("InProgress",)


@dataclass(frozen=True)
class ClaudeConfig(hosted.HostedConfig):
    """Settings of the claude provider (plus the shared hosted settings).

    Attributes:
        method: ``few-shot`` (Anthropic API, no training) or ``bedrock`` (Bedrock fine-tuning).
        epoch_count: bedrock: epochs (1..10; Bedrock's default for Claude 3 Haiku is 2).
        batch_size: bedrock: batch size (4..256).
        learning_rate_multiplier: bedrock: 0.1..2.0.
        early_stopping: bedrock: stop when validation loss stops improving.
        early_stopping_threshold: bedrock: smallest improvement that counts (0..0.1).
        early_stopping_patience: bedrock: evaluations without improvement before stopping (1..10).
        s3_uri: bedrock: ``s3://bucket/prefix`` for the data and the job output (required).
        role_arn: bedrock: IAM role Bedrock assumes to read and write ``s3_uri`` (required).
        exemplars_per_label: few-shot: exemplars taken per label from the training split.
        max_exemplars: few-shot: most exemplars in the prompt.
        instruction: few-shot: the instruction (default: answer with exactly one of the labels).
    """

    method: str = "few-shot"
    epoch_count: int = 2
    batch_size: int = 32
    learning_rate_multiplier: float = 1.0
    early_stopping: bool = True
    early_stopping_threshold: float = 0.001
    early_stopping_patience: int = 2
    s3_uri: str = ""
    role_arn: str = ""
    exemplars_per_label: int = 4
    max_exemplars: int = 40
    instruction: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is not one of {list(METHODS)}")
        hosted.check_number("epoch_count", self.epoch_count, 1, 10, integer=True)
        hosted.check_number("batch_size", self.batch_size, 4, 256, integer=True)
        hosted.check_number("learning_rate_multiplier", self.learning_rate_multiplier, 0.1, 2.0)
        if not isinstance(self.early_stopping, bool):
            raise ValueError(f"early_stopping={self.early_stopping!r} must be true or false")
        hosted.check_number("early_stopping_threshold", self.early_stopping_threshold, 0, 0.1)
        hosted.check_number("early_stopping_patience", self.early_stopping_patience, 1, 10, integer=True)
        if self.s3_uri and not self.s3_uri.startswith("s3://"):
            raise ValueError(f"s3_uri={self.s3_uri!r} must be s3://<bucket>[/<prefix>]")
        if self.role_arn and not self.role_arn.startswith("arn:"):
            raise ValueError(f"role_arn={self.role_arn!r} must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
        hosted.check_number("exemplars_per_label", self.exemplars_per_label, 1, 100, integer=True)
        hosted.check_number("max_exemplars", self.max_exemplars, 1, 500, integer=True)
        if not isinstance(self.instruction, str):
            raise ValueError(f"instruction={self.instruction!r} must be a string")

    def bedrock_hyperparameters(self) -> dict[str, str]:
        """``hyperParameters`` of create_model_customization_job (Bedrock wants strings)."""
        hp = {
            "epochCount": str(self.epoch_count),
            "batchSize": str(self.batch_size),
            "learningRateMultiplier": f"{self.learning_rate_multiplier:g}",
            "earlyStoppingEnabled": "true" if self.early_stopping else "false",
        }
        if self.early_stopping:
            hp["earlyStoppingThreshold"] = f"{self.early_stopping_threshold:g}"
            hp["earlyStoppingPatience"] = str(self.early_stopping_patience)
        return hp


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    return bucket, prefix.strip("/")


def select_exemplars(train: Sequence[Example], *, per_label: int, limit: int) -> list[Example]:
    """Exemplars from the training split: ``per_label`` per target label, interleaved, at most ``limit``.

    Deterministic: within a label, examples are taken in id order (ids are content hashes, so this
    is a fixed pseudo-random order that does not change when unrelated rows are added).
    """
    by_label: dict[str, list[Example]] = {}
    for e in sorted(train, key=lambda e: e.id):
        if e.target is not None and hosted.prompt_messages(e):
            by_label.setdefault(e.target, []).append(e)
    picked: list[Example] = []
    for i in range(per_label):
        for label in sorted(by_label):
            if i < len(by_label[label]) and len(picked) < limit:
                picked.append(by_label[label][i])
    return picked


def default_instruction(labels: Sequence[str]) -> str:
    """The few-shot instruction when none is configured: name the labels, or follow the examples."""
    if labels:
        return (
            "Classify the user's message. Answer with exactly one of these labels and nothing else: "
            + ", ".join(labels)
            + "."
        )
    return "Answer the user's message in the same way as the examples."


def _split_system(messages: list[dict[str, str]]) -> tuple[str, list[dict[str, str]]]:
    system = [m["content"] for m in messages if m["role"] == "system"]
    return "\n\n".join(system), [m for m in messages if m["role"] != "system"]


def read_fewshot(model_ref: str) -> dict[str, Any] | None:
    """The few-shot artifact in the model directory ``model_ref``, or None if it is not one."""
    path = Path(model_ref) / FEWSHOT_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != FEWSHOT_SCHEMA:
        raise ProviderError(f"{path}: schema {data.get('schema')!r} is not {FEWSHOT_SCHEMA!r}; retrain the adapter")
    return data


class ClaudeProvider(hosted.HostedProvider):
    """Claude through Bedrock fine-tuning or a few-shot adapter on the Anthropic API.

    Args:
        region: AWS region for Bedrock and S3 (default: AWS_REGION / AWS_DEFAULT_REGION).
        output_dir: where ``resume(key)`` looks for a few-shot artifact (the task's model dir).
        predict: :class:`~tuneloop.providers.hosted.PredictPolicy` fields for evaluation.
        log: where progress lines go.
        sleep: the sleep function between polls and retries.
    """

    name = PROVIDER_NAME

    def __init__(
        self,
        region: str | None = None,
        output_dir: str | None = None,
        predict: Mapping[str, Any] | hosted.PredictPolicy | None = None,
        log=print,
        sleep=None,
    ):
        self._init_common(output_dir, predict, log, sleep)
        self.region = region
        self._boto: dict[str, Any] = {}
        self._anthropic = None

    # -- clients -------------------------------------------------------------------------------
    def boto(self, service: str):
        """A boto3 client (``bedrock``, ``bedrock-runtime``, ``s3``); botocore's retries are off."""
        if service not in self._boto:
            import boto3
            from botocore.config import Config

            region = self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            if not region:
                raise ProviderError(
                    "claude provider (bedrock): no AWS region; set AWS_REGION in the task's environment (Bedrock "
                    "customization of Claude ran in us-west-2) or pass region= to the provider"
                )
            config = Config(retries={"total_max_attempts": 1}, read_timeout=120, connect_timeout=20)
            self._boto[service] = boto3.client(service, region_name=region, config=config)
        return self._boto[service]

    @property
    def anthropic(self):
        """The ``anthropic.Anthropic`` client (its own retries off)."""
        if self._anthropic is None:
            import anthropic

            self._anthropic = anthropic.Anthropic(
                api_key=secrets.get_secret("ANTHROPIC_API_KEY"), max_retries=0, timeout=120.0
            )
        return self._anthropic

    def _call(self, fn, what: str, cfg: hosted.HostedConfig | None = None, **kw):
        policy = (cfg or ClaudeConfig()).retry_policy()
        return hosted.call(fn, what=f"[claude] {what}", policy=policy, log=self.log, sleep=self.sleep, **kw)

    def _config(self, request: TuneRequest) -> ClaudeConfig:
        return ClaudeConfig.from_hyperparameters(request.hyperparameters, PROVIDER_NAME)

    def _model(self, request: TuneRequest, cfg: ClaudeConfig):
        catalog = hosted.load_catalog_for(cfg)
        base = request.base_model
        if cfg.method == "few-shot":
            if not base:
                names = [m.name for m in catalog.models if m.provider == PROVIDER_NAME and m.kind == "few-shot"]
                base = ANTHROPIC_DEFAULT_MODEL if ANTHROPIC_DEFAULT_MODEL in names else (names[0] if names else "")
            return catalog, hosted.check_model(catalog, PROVIDER_NAME, base, platform="anthropic", kind="few-shot")
        if not base:
            names = [m.name for m in catalog.models if m.provider == PROVIDER_NAME and m.platform == "bedrock"]
            base = catalog.defaults.get(PROVIDER_NAME) if catalog.defaults.get(PROVIDER_NAME) in names else (
                names[0] if names else "")
        return catalog, hosted.check_model(
            catalog, PROVIDER_NAME, base, platform="bedrock",
            hint="; or set hyperparameters.method='few-shot' (the Anthropic API adapter, no fine-tuning)",
        )

    # -- preflight -----------------------------------------------------------------------------
    def preflight(self, request: TuneRequest) -> PreflightReport:
        """Method, model, data, S3/role and budget checks; uploads nothing."""
        cfg = self._config(request)
        catalog, info = self._model(request, cfg)
        if cfg.method == "few-shot":
            picked = select_exemplars(request.train, per_label=cfg.exemplars_per_label, limit=cfg.max_exemplars)
            if not picked:
                raise PreflightError(
                    "few-shot: the train split has no example with a target (label or final assistant turn); "
                    "a few-shot adapter needs labelled exemplars"
                )
            chars = sum(len(m.content) for e in picked for m in e.messages)
            return PreflightReport(
                provider=PROVIDER_NAME,
                base_model=info.name,
                examples=len(picked),
                training_tokens=0,
                estimated_cost_usd=0.0,
                notes=(
                    f"few-shot adapter: {len(picked)} exemplars (~{chars // 4:,} prompt tokens per request, estimate); "
                    "no training job, no training bill; evaluation is billed per request",
                ),
            )
        missing = [k for k in ("s3_uri", "role_arn") if not getattr(cfg, k)]
        if missing:
            raise PreflightError(
                f"method=bedrock needs hyperparameters {missing}: s3_uri (s3://bucket/prefix for data and output) "
                "and role_arn (an IAM role Bedrock can assume with read/write on that prefix)"
            )
        train = hosted.resolve_file(request.files, FORMAT, "train")
        if train is None:
            raise PreflightError("files['train'] is missing: render the dataset with the 'bedrock' format")
        report = hosted.check_file(train, FORMAT, info, split="train", epochs=cfg.epoch_count, catalog=catalog)
        validation = self._validation_file(request)
        if validation:
            hosted.check_file(validation, FORMAT, info, split="validation", epochs=cfg.epoch_count, catalog=catalog)
        cost = info.training_cost_usd(report.tokens_total, cfg.epoch_count)
        notes = hosted.check_budget(cost, cfg, info, tokens=report.tokens_total, epochs=cfg.epoch_count)
        notes.append(
            "a customized Claude model is served through Provisioned Throughput on Bedrock, billed per hour: "
            "buy it for the custom model before evaluating, and delete it afterwards"
        )
        if info.end_of_life is not None:
            notes.append(f"{info.name} end of life {info.end_of_life.isoformat()}")
        return PreflightReport(
            provider=PROVIDER_NAME,
            base_model=info.name,
            examples=report.rows_ok,
            training_tokens=report.tokens_total * cfg.epoch_count,
            estimated_cost_usd=cost,
            notes=tuple(notes),
        )

    @staticmethod
    def _validation_file(request: TuneRequest) -> str | None:
        path = hosted.resolve_file(request.files, FORMAT, "validation")
        if path and Path(path).is_file() and Path(path).stat().st_size:
            return path
        return None

    # -- submit / resume -----------------------------------------------------------------------
    def submit(self, request: TuneRequest, key: str) -> JobHandle:
        """few-shot: write the adapter now; bedrock: upload to S3 and start the customization job."""
        cfg = self._config(request)
        _, info = self._model(request, cfg)
        if cfg.method == "few-shot":
            return self._write_fewshot(request, cfg, info.name, key)
        return self._submit_bedrock(request, cfg, info.name, key)

    def _write_fewshot(self, request: TuneRequest, cfg: ClaudeConfig, model: str, key: str) -> JobHandle:
        out = Path(request.output_dir or self.output_dir or "")
        if not str(out) or str(out) == ".":
            raise ProviderError("few-shot: no output directory for the adapter; set TuneRequest.output_dir")
        existing = read_fewshot(str(out))
        if existing is not None and existing.get("key") != key:
            raise ProviderError(
                f"{out} already holds a few-shot adapter for job {existing.get('key')}; refusing to overwrite it "
                f"with {key}: use an empty output_dir"
            )
        if existing is None:
            picked = select_exemplars(request.train, per_label=cfg.exemplars_per_label, limit=cfg.max_exemplars)
            systems = {_split_system(hosted.prompt_messages(e))[0] for e in picked}
            shared_system = systems.pop() if len(systems) == 1 else ""
            labels = sorted(request.labels)
            instruction = cfg.instruction or default_instruction(labels)
            if shared_system:
                instruction = f"{shared_system}\n\n{instruction}"
            artifact = {
                "schema": FEWSHOT_SCHEMA,
                "provider": PROVIDER_NAME,
                "method": "few-shot",
                "base_model": model,
                "key": key,
                "dataset_hash": request.dataset_hash,
                "instruction": instruction,
                "labels": labels,
                "exemplars": [
                    {"id": e.id, "label": e.target, "messages": _split_system(hosted.prompt_messages(e))[1],
                     "answer": e.target}
                    for e in picked
                ],
            }
            out.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{FEWSHOT_FILE}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(artifact, fh, indent=2, sort_keys=True, ensure_ascii=False)
            os.replace(tmp, out / FEWSHOT_FILE)
            self.log(f"[claude] few-shot adapter: {len(picked)} exemplars for {model} -> {out / FEWSHOT_FILE}")
        return JobHandle(provider=PROVIDER_NAME, key=key, job_id=f"fewshot-{key}", state="succeeded",
                         detail={"method": "few-shot", "output_dir": str(out)})

    def _jobs_with_key(self, key: str) -> list[dict[str, Any]]:
        bedrock = self.boto("bedrock")
        summaries: list[dict[str, Any]] = []
        token = None
        while True:
            kw: dict[str, Any] = {"nameContains": key, "maxResults": 100}
            if token:
                kw["nextToken"] = token
            page = self._call(lambda kw=kw: bedrock.list_model_customization_jobs(**kw), "list customization jobs")
            summaries += page.get("modelCustomizationJobSummaries", [])
            token = page.get("nextToken")
            if not token:
                return [s for s in summaries if key in s.get("jobName", "")]

    def _submit_bedrock(self, request: TuneRequest, cfg: ClaudeConfig, model: str, key: str) -> JobHandle:
        bucket, prefix = _split_s3(cfg.s3_uri)
        base = f"{prefix}/{key}" if prefix else key
        s3 = self.boto("s3")
        uris = {}
        for split, path in (("train", hosted.resolve_file(request.files, FORMAT, "train")),
                            ("validation", self._validation_file(request))):
            if not path:
                continue
            data = hosted.read_bytes(path)
            obj = f"{base}/{split}.jsonl"
            self._call(lambda d=data, o=obj: s3.put_object(Bucket=bucket, Key=o, Body=d,
                                                           ContentType="application/jsonl"), f"upload {split}", cfg)
            uris[split] = f"s3://{bucket}/{obj}"
            self.log(f"[claude] uploaded {uris[split]} ({len(data):,} bytes)")
        attempt = len(self._jobs_with_key(key)) + 1  # earlier failed/stopped jobs keep their names
        name = f"tuneloop-{key}-{attempt}"
        kwargs: dict[str, Any] = {
            "jobName": name,
            "customModelName": name,
            "roleArn": cfg.role_arn,
            "clientRequestToken": name,  # Bedrock's own idempotency for a retried create
            "baseModelIdentifier": model,
            "customizationType": "FINE_TUNING",
            "trainingDataConfig": {"s3Uri": uris["train"]},
            "outputDataConfig": {"s3Uri": f"s3://{bucket}/{base}/output/"},
            "hyperParameters": cfg.bedrock_hyperparameters(),
            "jobTags": [{"key": KEY_TAG, "value": key}],
            "customModelTags": [{"key": KEY_TAG, "value": key}],
        }
        if "validation" in uris:
            kwargs["validationDataConfig"] = {"validators": [{"s3Uri": uris["validation"]}]}
        bedrock = self.boto("bedrock")
        created = self._call(lambda: bedrock.create_model_customization_job(**kwargs), "create customization job",
                             cfg, before_retry=lambda: self.resume(key))
        if isinstance(created, JobHandle):
            return created
        return JobHandle(provider=PROVIDER_NAME, key=key, job_id=name, state="running",
                         detail={"method": "bedrock", "job_arn": created["jobArn"], "base_model": model})

    def resume(self, key: str) -> JobHandle | None:
        """few-shot: the adapter in ``output_dir`` built with ``key``; bedrock: a live or completed job."""
        if self.output_dir:
            art = read_fewshot(self.output_dir)
            if art is not None and art.get("key") == key:
                return JobHandle(provider=PROVIDER_NAME, key=key, job_id=f"fewshot-{key}", state="succeeded",
                                 detail={"method": "few-shot", "output_dir": self.output_dir})
        if not (self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            return None  # no AWS configured: only few-shot can run here
        for s in sorted(self._jobs_with_key(key), key=lambda s: str(s.get("creationTime")), reverse=True):
            if s.get("status") in LIVE or s.get("status") == "Completed":
                return JobHandle(provider=PROVIDER_NAME, key=key, job_id=s["jobName"],
                                 state=STATES.get(s["status"], "running"),
                                 detail={"method": "bedrock", "job_arn": s.get("jobArn")})
        return None

    # -- wait / cancel -------------------------------------------------------------------------
    def wait(self, handle: JobHandle, request: TuneRequest, *, deadline_s: float) -> TuneResult:
        """few-shot: read the adapter; bedrock: poll until the job ends (custom model ARN or its failure)."""
        cfg = self._config(request)
        if handle.detail.get("method") == "few-shot" or handle.job_id.startswith("fewshot-"):
            out = handle.detail.get("output_dir") or request.output_dir
            art = read_fewshot(out)
            if art is None or art.get("key") != handle.key:
                raise ProviderError(f"few-shot job {handle.job_id}: no adapter for this key in {out}; delete the job record")
            return TuneResult(provider=PROVIDER_NAME, job_id=handle.job_id, model_ref=str(out),
                              base_model=art["base_model"], dataset_hash=art["dataset_hash"], trained_tokens=0,
                              metrics={"exemplars": float(len(art["exemplars"]))},
                              detail={"method": "few-shot", "exemplar_ids": [x["id"] for x in art["exemplars"]]})
        bedrock = self.boto("bedrock")
        what = f"Bedrock customization job {handle.job_id}"
        poller = hosted.Poller(cfg.poll_policy(), min(deadline_s, cfg.deadline_s), what, sleep=self.sleep)
        events = hosted.EventLog(self.log, f"[claude] {handle.job_id}:")
        while True:
            job = self._call(lambda: bedrock.get_model_customization_job(jobIdentifier=handle.job_id),
                             "get customization job", cfg)
            status = job.get("status", "InProgress")
            handle.state = STATES.get(status, "running")
            events.state(status)
            if status == "Completed":
                metrics = {}
                loss = (job.get("trainingMetrics") or {}).get("trainingLoss")
                if loss is not None:
                    metrics["train_loss"] = float(loss)
                vals = [v.get("validationLoss") for v in job.get("validationMetrics") or [] if v.get("validationLoss") is not None]
                if vals:
                    metrics["valid_loss"] = float(vals[-1])
                return TuneResult(
                    provider=PROVIDER_NAME,
                    job_id=handle.job_id,
                    model_ref=job["outputModelArn"],
                    base_model=request.base_model or job.get("baseModelArn", ""),
                    dataset_hash=request.dataset_hash,
                    trained_tokens=None,  # Bedrock does not report trained tokens
                    metrics=metrics,
                    detail={"method": "bedrock", "job_arn": job.get("jobArn"), "custom_model_arn": job["outputModelArn"],
                            "output_data": (job.get("outputDataConfig") or {}).get("s3Uri"), "key": handle.key},
                )
            if status == "Failed":
                raise ProviderError(f"{what} failed: {job.get('failureMessage') or 'no failure message given'}")
            if status == "Stopped":
                raise ProviderError(f"{what} was stopped outside this task; nothing to promote. Rerun to tune again")
            try:
                poller.pause(status)
            except hosted.DeadlineExceeded:
                if cfg.cancel_on_deadline:
                    self.cancel(handle)
                raise

    def cancel(self, handle: JobHandle) -> None:
        """Stop the Bedrock job unless it has ended (a few-shot adapter has nothing to cancel)."""
        if handle.detail.get("method") == "few-shot" or handle.job_id.startswith("fewshot-"):
            return
        bedrock = self.boto("bedrock")
        policy = hosted.RetryPolicy(attempts=3, initial_s=0.5, max_s=2.0)
        job = hosted.call(lambda: bedrock.get_model_customization_job(jobIdentifier=handle.job_id),
                          what="[claude] get customization job", policy=policy, log=self.log, sleep=self.sleep)
        if job.get("status") not in LIVE:
            self.log(f"[claude] job {handle.job_id} already {job.get('status')}; nothing to stop")
            return
        hosted.call(lambda: bedrock.stop_model_customization_job(jobIdentifier=handle.job_id),
                    what="[claude] stop customization job", policy=policy, log=self.log, sleep=self.sleep)
        handle.state = "cancelled"
        self.log(f"[claude] stopped job {handle.job_id}")

    # -- predict -------------------------------------------------------------------------------
    def predict(self, model_ref: str, examples: Sequence[Example]) -> list[str]:
        """A few-shot adapter directory -> Anthropic Messages API; a Bedrock model ARN -> InvokeModel."""
        policy = self.predict_policy
        art = read_fewshot(model_ref) if model_ref and not model_ref.startswith("arn:") else None
        if art is not None:
            ask = self._fewshot_asker(art, policy)
        elif model_ref.startswith("arn:aws"):
            ask = self._bedrock_asker(model_ref, policy)
        else:
            raise ProviderError(
                f"model_ref={model_ref!r} is neither a few-shot adapter directory (with {FEWSHOT_FILE}) nor a "
                "Bedrock model ARN; pass the model_ref a claude job returned"
            )
        answers, self.last_predict = hosted.predict_all(
            ask, examples, policy=policy, counter=self.counter, what=f"[claude] predict {model_ref}",
            log=self.log, sleep=self.sleep,
        )
        return answers

    def _fewshot_asker(self, art: Mapping[str, Any], policy: hosted.PredictPolicy):
        prefix: list[dict[str, Any]] = []
        for x in art["exemplars"]:
            prefix.extend(x["messages"])
            prefix.append({"role": "assistant", "content": x["answer"]})
        if prefix:  # cache the shared exemplar prefix (ignored by the API below its minimum length)
            last = prefix[-1]
            prefix[-1] = {"role": last["role"], "content": [
                {"type": "text", "text": last["content"], "cache_control": {"type": "ephemeral"}}]}
        client = self.anthropic

        def ask(example: Example) -> str:
            system, msgs = _split_system(hosted.prompt_messages(example))
            instruction = art["instruction"] + (f"\n\n{system}" if system and system not in art["instruction"] else "")
            r = client.messages.create(  # this SDK has no sampling parameters: the model's defaults
                model=art["base_model"],
                max_tokens=policy.max_output_tokens,
                system=instruction,
                messages=[*prefix, *msgs],
            )
            return "".join(b.text for b in r.content if getattr(b, "type", "") == "text")

        return ask

    def _bedrock_asker(self, model_ref: str, policy: hosted.PredictPolicy):
        runtime = self.boto("bedrock-runtime")

        def ask(example: Example) -> str:
            system, msgs = _split_system(hosted.prompt_messages(example))
            body: dict[str, Any] = {
                "anthropic_version": BEDROCK_ANTHROPIC_VERSION,
                "max_tokens": policy.max_output_tokens,
                "temperature": 0,
                "messages": msgs,
            }
            if system:
                body["system"] = system
            r = runtime.invoke_model(modelId=model_ref, body=json.dumps(body), contentType="application/json",
                                     accept="application/json")
            data = json.loads(r["body"].read())
            return "".join(b.get("text", "") for b in data.get("content", []) if b.get("type") == "text")

        return ask
