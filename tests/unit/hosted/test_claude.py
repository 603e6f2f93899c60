"""The claude family: claude-bedrock (real boto3 against moto + the runtime stand-in) and claude-few-shot
(real ``anthropic`` SDK against the Messages API stand-in), both reached through the name ``claude``
with ``hyperparameters.method`` as the pipeline's first task resolves it."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import boto3
import pytest

from tests.fakes.bedrock import BUCKET, ROLE_ARN, Plan
from tests.fakes.learner import MALFORMED
from tests.fakes.server import Fault
from tests.unit.hosted.conftest import FAST_PREDICT, make_request, quiet, sigterm_when
from tuneloop.catalog import load_catalog
from tuneloop.evaluation import parse_label
from tuneloop.providers.base import JobCancelled, PreflightError, ProviderError, job_key, run_job
from tuneloop.providers.claude import FEWSHOT_FILE, KEY_TAG, ClaudeFamily
from tuneloop.providers.hosted import DeadlineExceeded
from tuneloop.providers.registry import ProviderNotFound, resolve

BEDROCK_MODEL = "anthropic.claude-tunable-test-v1:0"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
S3 = f"s3://{BUCKET}/runs"


def claude(hp: dict):
    """The family member ``provider=claude`` + these hyperparameters means, and its hyperparameters."""
    return resolve("claude", hp)


def provider(method: str = "bedrock", **kw) -> ClaudeFamily:
    cls, _ = claude({"method": method})
    return cls(predict=FAST_PREDICT, log=kw.pop("log", quiet), **kw)


def bedrock_request(dataset, model=BEDROCK_MODEL, **hp):
    cls, hp = claude({"method": "bedrock", "s3_uri": S3, "role_arn": ROLE_ARN, **hp})
    assert cls.name == "claude-bedrock"
    return make_request(dataset, "bedrock", model, hp)


def s3_objects(fake) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=fake.url)
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


# -- Bedrock customization ---------------------------------------------------------------------


def test_bedrock_customizes_from_s3_and_evaluates_the_custom_model(bedrock_fake, dataset, tmp_path):
    req = bedrock_request(dataset, epoch_count=3, early_stopping_patience=4)
    result = run_job(provider(), req, record_path=tmp_path / "job.json", log=quiet)
    key = job_key(dataset.hash, "claude-bedrock", BEDROCK_MODEL, provider().parse_config(req.hyperparameters))
    (job,) = bedrock_fake.jobs().values()
    assert job.job_name == f"tuneloop-{key}-1" and job.base_model_identifier == BEDROCK_MODEL
    assert job.hyper_parameters == {"epochCount": "3", "batchSize": "32", "learningRateMultiplier": "1",
                                    "earlyStoppingEnabled": "true", "earlyStoppingThreshold": "0.001",
                                    "earlyStoppingPatience": "4"}
    assert {"key": KEY_TAG, "value": key} in job.job_tags
    s3 = boto3.client("s3", endpoint_url=bedrock_fake.url)
    uploaded = s3.get_object(Bucket=BUCKET, Key=f"runs/{key}/train.jsonl")["Body"].read()
    assert uploaded == Path(req.files["train"]).read_bytes()
    assert job.validation_data_config["validators"][0]["s3Uri"] == f"{S3}/{key}/validation.jsonl"
    assert result.model_ref == job.output_model_arn
    rows = dataset.splits["eval"]
    answers = provider().predict(result.model_ref, rows)
    correct = sum(parse_label(a, dataset.labels) == e.label for a, e in zip(answers, rows, strict=True))
    assert correct >= len(rows) - 2


def test_bedrock_failure_surfaces_the_failure_message(bedrock_fake, dataset, tmp_path):
    message = "Training data validation failed: record 17 exceeds the 32000 token limit for this model."
    bedrock_fake.next_job(Plan(fail_message=message))
    with pytest.raises(ProviderError, match="record 17 exceeds the 32000 token limit"):
        run_job(provider(), bedrock_request(dataset), record_path=tmp_path / "j.json", log=quiet)
    # a rerun does not adopt the failed job: it pays for a second attempt, under a new name
    result = run_job(provider(), bedrock_request(dataset), record_path=tmp_path / "j2.json", log=quiet)
    assert sorted(bedrock_fake.statuses().values()) == ["Completed", "Failed"]
    assert result.job_id.endswith("-2")


def test_bedrock_died_mid_poll_then_rerun_resumes_and_record_loss_adopts(bedrock_fake, dataset, tmp_path):
    bedrock_fake.next_job(Plan(hold=True))
    req = bedrock_request(dataset, deadline_s=0.05, poll_initial_s=0.01, poll_max_s=0.01)
    with pytest.raises(DeadlineExceeded):
        run_job(provider(), req, record_path=tmp_path / "j.json", log=quiet)
    (name,) = bedrock_fake.jobs()
    bedrock_fake.release(name)
    lines: list[str] = []
    result = run_job(provider(), req, record_path=tmp_path / "j.json", log=lines.append)
    assert result.job_id == name and any(f"resuming job {name}" in line for line in lines)
    adopted = run_job(provider(), req, record_path=tmp_path / "elsewhere.json", log=quiet)
    assert adopted.model_ref == result.model_ref and len(bedrock_fake.jobs()) == 1


def test_bedrock_cancelled_task_stops_the_job(bedrock_fake, dataset, tmp_path):
    bedrock_fake.next_job(Plan(hold=True))
    sigterm_when(lambda: "InProgress" in bedrock_fake.statuses().values())
    with pytest.raises(JobCancelled):
        run_job(provider(), bedrock_request(dataset), record_path=tmp_path / "j.json", log=quiet)
    assert list(bedrock_fake.statuses().values()) == ["Stopped"]


def test_claude_3_haiku_is_legacy_and_refused_before_upload(bedrock_fake, dataset, tmp_path):
    haiku = load_catalog().model("claude", HAIKU)  # the packaged catalog
    assert haiku.end_of_life == dt.date(2026, 9, 10) and haiku.platform == "bedrock" and haiku.tunable
    assert "legacy" in haiku.notes.lower()
    req = bedrock_request(dataset, HAIKU, catalog="")
    if dt.date.today() <= haiku.end_of_life:  # pragma: no cover - only before the end of life
        pytest.skip("Claude 3 Haiku customization is still available today")
    with pytest.raises(PreflightError, match=r"end of life on 2026-09-10"):
        run_job(provider(), req, record_path=tmp_path / "j.json", log=quiet)
    assert not bedrock_fake.jobs() and s3_objects(bedrock_fake) == []


def test_bedrock_budget_and_missing_settings_refused_before_upload(bedrock_fake, dataset):
    with pytest.raises(PreflightError, match=r"over budget_usd=\$0\.00"):
        provider().preflight(bedrock_request(dataset, budget_usd=0.0001))
    with pytest.raises(PreflightError, match=r"method=bedrock needs hyperparameters \['s3_uri', 'role_arn'\]"):
        provider().preflight(make_request(dataset, "bedrock", BEDROCK_MODEL, claude({"method": "bedrock"})[1]))
    with pytest.raises(PreflightError, match=r"batch_size=2 must be an integer in \[4, 256\]"):
        provider().preflight(bedrock_request(dataset, batch_size=2))
    assert not bedrock_fake.jobs() and s3_objects(bedrock_fake) == []


def test_bedrock_runtime_throttling_then_success_and_malformed_answers(bedrock_fake, dataset, tmp_path):
    result = run_job(provider(), bedrock_request(dataset), record_path=tmp_path / "j.json", log=quiet)
    bedrock_fake.runtime.inject("InvokeModel", Fault(429, retry_after="0"), Fault(503), Fault(500))
    bedrock_fake.malformed_every = 5
    rows = dataset.splits["eval"]
    answers = provider().predict(result.model_ref, rows)
    parsed = [parse_label(a, dataset.labels) for a in answers]
    assert sum(a in MALFORMED for a in answers) == sum(p is None for p in parsed) == len(rows) // 5


# -- few-shot ----------------------------------------------------------------------------------


def fewshot_request(dataset, out, model="claude-haiku-test", **hp):
    cls, hp = claude(hp)  # few-shot is the family's default method
    assert cls.name == "claude-few-shot"
    return make_request(dataset, "bedrock", model, hp, output_dir=str(out))


def test_fewshot_adapter_is_stratified_stored_and_evaluated(anthropic_fake, dataset, tmp_path):
    out = tmp_path / "model"
    result = run_job(provider("few-shot"), fewshot_request(dataset, out, exemplars_per_label=3),
                     record_path=tmp_path / "j.json", log=quiet)
    art = json.loads((out / FEWSHOT_FILE).read_text())
    assert result.model_ref == str(out) and result.trained_tokens == 0
    assert Counter(x["label"] for x in art["exemplars"]) == dict.fromkeys(dataset.labels, 3)
    train_ids = {e.id for e in dataset.splits["train"]}
    assert {x["id"] for x in art["exemplars"]} <= train_ids  # never an eval row
    assert all(label in art["instruction"] for label in dataset.labels)

    rows = dataset.splits["eval"]
    answers = provider().predict(result.model_ref, rows)
    sent = anthropic_fake.requests[0]
    assert sent["model"] == "claude-haiku-test" and sent["system"] == art["instruction"]
    assert len(sent["messages"]) == 2 * len(art["exemplars"]) + 1
    correct = sum(parse_label(a, dataset.labels) == e.label for a, e in zip(answers, rows, strict=True))
    assert correct > len(rows) / len(dataset.labels)  # better than guessing


def test_fewshot_rerun_reuses_the_adapter_and_counts_malformed(anthropic_fake, dataset, tmp_path):
    out = tmp_path / "model"
    req = fewshot_request(dataset, out)
    first = run_job(provider("few-shot"), req, record_path=tmp_path / "a.json", log=quiet)
    before = (out / FEWSHOT_FILE).stat().st_mtime_ns
    lines: list[str] = []
    again = run_job(provider("few-shot", output_dir=str(out)), req, record_path=tmp_path / "b.json",
                    log=lines.append)
    assert again.model_ref == first.model_ref and (out / FEWSHOT_FILE).stat().st_mtime_ns == before
    assert any("adopting existing job" in line for line in lines)
    anthropic_fake.http.inject("messages.create", Fault(529, message="Overloaded"), Fault(429, retry_after="0"))
    anthropic_fake.malformed_every = 3
    rows = dataset.splits["eval"]
    answers = provider().predict(first.model_ref, rows)
    assert sum(parse_label(a, dataset.labels) is None for a in answers) == len(rows) // 3


def test_fewshot_refuses_a_model_of_the_wrong_kind(anthropic_fake, dataset, tmp_path):
    with pytest.raises(PreflightError, match=r"runs on bedrock, not anthropic"):
        provider("few-shot").preflight(fewshot_request(dataset, tmp_path, BEDROCK_MODEL))
    with pytest.raises(ProviderNotFound, match=r"method='fine-tune' is not a method of the claude provider; use one "
                       r"of \['bedrock', 'few-shot'\]"):
        fewshot_request(dataset, tmp_path, method="fine-tune")


def test_either_member_answers_with_either_kind_of_claude_model(bedrock_fake, anthropic_fake, dataset, tmp_path):
    """A champion registered under the old single name ``claude`` is served by the family default."""
    tuned = run_job(provider(), bedrock_request(dataset), record_path=tmp_path / "b.json", log=quiet)
    out = tmp_path / "fewshot"
    adapter = run_job(provider("few-shot"), fewshot_request(dataset, out), record_path=tmp_path / "f.json", log=quiet)
    rows = dataset.splits["eval"][:4]
    old_name = provider("few-shot")  # what get_provider("claude") builds for a version recorded as 'claude'
    before = bedrock_fake.runtime.calls("InvokeModel")
    assert len(old_name.predict(tuned.model_ref, rows)) == len(rows)
    assert bedrock_fake.runtime.calls("InvokeModel") - before == len(rows)  # the ARN went to Bedrock
    sent = len(anthropic_fake.requests)
    assert len(provider().predict(adapter.model_ref, rows)) == len(rows)
    assert len(anthropic_fake.requests) - sent == len(rows)  # the adapter went to the Anthropic API
