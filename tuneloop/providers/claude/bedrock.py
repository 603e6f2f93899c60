"""``claude-bedrock``: Amazon Bedrock model customization (fine-tuning) of a Claude model.

The rendered Bedrock JSONL is uploaded to S3, ``create_model_customization_job`` runs with
``epochCount``, ``batchSize``, ``learningRateMultiplier`` and early stopping, and evaluation invokes
the custom model through the Bedrock runtime. Claude 3 Haiku, the only Claude model Bedrock could
customize, reached its end of life on 2026-09-10 (in the catalog): preflight refuses it, naming few-shot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.config import check_number, setting
from tuneloop.providers import hosted
from tuneloop.providers.base import (
    JobHandle,
    PreflightError,
    PreflightReport,
    ProviderError,
    TuneRequest,
    TuneResult,
)
from tuneloop.providers.claude.common import FAMILY, KEY_TAG, ClaudeFamily

FORMAT = "bedrock"
# Bedrock job status -> tuneloop JOB_STATES
STATES = {"InProgress": "running", "Completed": "succeeded", "Failed": "failed", "Stopping": "running",
          "Stopped": "cancelled"}
LIVE = ("InProgress",)


@dataclass(frozen=True)
class BedrockConfig(hosted.HostedConfig):
    """Hyperparameters of a Bedrock customization job of Claude (plus the shared hosted settings)."""

    epoch_count: int = setting(2, help="epochs (1..10; Bedrock's default for Claude 3 Haiku is 2)")
    batch_size: int = setting(32, help="batch size (4..256)")
    learning_rate_multiplier: float = setting(1.0, help="learning-rate multiplier (0.1..2.0)")
    early_stopping: bool = setting(True, help="stop when validation loss stops improving")
    early_stopping_threshold: float = setting(0.001, help="smallest improvement that counts (0..0.1)")
    early_stopping_patience: int = setting(2, help="evaluations without improvement before stopping (1..10)")
    s3_uri: str = setting("", help="s3://bucket/prefix for the data and the job output (required)")
    role_arn: str = setting("", help="IAM role Bedrock assumes to read and write s3_uri (required)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("epoch_count", self.epoch_count, 1, 10, integer=True)
        check_number("batch_size", self.batch_size, 4, 256, integer=True)
        check_number("learning_rate_multiplier", self.learning_rate_multiplier, 0.1, 2.0)
        if not isinstance(self.early_stopping, bool):
            raise ValueError(f"early_stopping={self.early_stopping!r} must be true or false")
        check_number("early_stopping_threshold", self.early_stopping_threshold, 0, 0.1)
        check_number("early_stopping_patience", self.early_stopping_patience, 1, 10, integer=True)
        if self.s3_uri and not self.s3_uri.startswith("s3://"):
            raise ValueError(f"s3_uri={self.s3_uri!r} must be s3://<bucket>[/<prefix>]")
        if self.role_arn and not self.role_arn.startswith("arn:"):
            raise ValueError(f"role_arn={self.role_arn!r} must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)")

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


class ClaudeBedrockProvider(ClaudeFamily):
    """Claude through Bedrock model customization (``claude`` with ``method: bedrock``)."""

    name = "claude-bedrock"
    method = "bedrock"
    format = FORMAT
    requires = ("boto3",)
    credential = "aws"
    config_class = BedrockConfig
    platforms = ("bedrock",)

    def _model(self, request: TuneRequest, cfg: BedrockConfig):
        catalog = hosted.load_catalog_for(cfg)
        base = request.base_model
        if not base:
            names = [m.name for m in catalog.models if m.provider == FAMILY and m.platform == "bedrock"]
            default = catalog.defaults.get(FAMILY)
            base = default if default in names else (names[0] if names else "")
        return catalog, hosted.check_model(
            catalog, FAMILY, base, platform="bedrock",
            hint="; or set hyperparameters.method='few-shot' (the Anthropic API adapter, no fine-tuning)",
        )

    def preflight(self, request: TuneRequest) -> PreflightReport:
        """Model, data, S3/role and budget checks; uploads nothing."""
        cfg = self.config(request)
        catalog, info = self._model(request, cfg)
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
            provider=self.name,
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

    def submit(self, request: TuneRequest, key: str) -> JobHandle:
        """Upload to S3 and start the customization job tagged with ``key``."""
        cfg = self.config(request)
        _, info = self._model(request, cfg)
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
            self.log(f"[{self.name}] uploaded {uris[split]} ({len(data):,} bytes)")
        attempt = len(self._jobs_with_key(key)) + 1  # earlier failed/stopped jobs keep their names
        name = f"tuneloop-{key}-{attempt}"
        kwargs: dict[str, Any] = {
            "jobName": name,
            "customModelName": name,
            "roleArn": cfg.role_arn,
            "clientRequestToken": name,  # Bedrock's own idempotency for a retried create
            "baseModelIdentifier": info.name,
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
        return JobHandle(provider=self.name, key=key, job_id=name, state="running",
                         detail={"method": self.method, "job_arn": created["jobArn"], "base_model": info.name})

    def resume(self, key: str) -> JobHandle | None:
        """A live or completed customization job named with ``key``, or None (also when no AWS is configured)."""
        if not (self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            return None
        for s in sorted(self._jobs_with_key(key), key=lambda s: str(s.get("creationTime")), reverse=True):
            if s.get("status") in LIVE or s.get("status") == "Completed":
                return JobHandle(provider=self.name, key=key, job_id=s["jobName"],
                                 state=STATES.get(s["status"], "running"),
                                 detail={"method": self.method, "job_arn": s.get("jobArn")})
        return None

    def wait(self, handle: JobHandle, request: TuneRequest, *, deadline_s: float) -> TuneResult:
        """Poll until the job ends: the custom model ARN, or ProviderError with Bedrock's failure message."""
        cfg = self.config(request)
        bedrock = self.boto("bedrock")
        what = f"Bedrock customization job {handle.job_id}"
        poller = hosted.Poller(cfg.poll_policy(), min(deadline_s, cfg.deadline_s), what, sleep=self.sleep)
        events = hosted.EventLog(self.log, f"[{self.name}] {handle.job_id}:")
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
                vals = [v.get("validationLoss") for v in job.get("validationMetrics") or []
                        if v.get("validationLoss") is not None]
                if vals:
                    metrics["valid_loss"] = float(vals[-1])
                return TuneResult(
                    provider=self.name,
                    job_id=handle.job_id,
                    model_ref=job["outputModelArn"],
                    base_model=request.base_model or job.get("baseModelArn", ""),
                    dataset_hash=request.dataset_hash,
                    trained_tokens=None,  # Bedrock does not report trained tokens
                    metrics=metrics,
                    detail={"method": self.method, "job_arn": job.get("jobArn"),
                            "custom_model_arn": job["outputModelArn"],
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
        """Stop the Bedrock job unless it has ended."""
        bedrock = self.boto("bedrock")
        policy = hosted.RetryPolicy(attempts=3, initial_s=0.5, max_s=2.0)
        job = hosted.call(lambda: bedrock.get_model_customization_job(jobIdentifier=handle.job_id),
                          what=f"[{self.name}] get customization job", policy=policy, log=self.log, sleep=self.sleep)
        if job.get("status") not in LIVE:
            self.log(f"[{self.name}] job {handle.job_id} already {job.get('status')}; nothing to stop")
            return
        hosted.call(lambda: bedrock.stop_model_customization_job(jobIdentifier=handle.job_id),
                    what=f"[{self.name}] stop customization job", policy=policy, log=self.log, sleep=self.sleep)
        handle.state = "cancelled"
        self.log(f"[{self.name}] stopped job {handle.job_id}")
