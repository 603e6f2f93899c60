"""The Gemini provider with the real ``google-genai`` and ``google-cloud-storage`` clients against
the Vertex stand-in and fake-gcs-server."""

from __future__ import annotations

import json

import pytest

from tests.fakes.learner import MALFORMED
from tests.fakes.server import Fault
from tests.fakes.vertex_server import Plan, read_gcs
from tests.unit.hosted.conftest import FAST_PREDICT, make_request, quiet, sigterm_when
from tuneloop.evaluation import parse_label
from tuneloop.providers.base import JobCancelled, PreflightError, ProviderError, job_key, run_job
from tuneloop.providers.gemini import KEY_LABEL, GeminiProvider
from tuneloop.providers.hosted import DeadlineExceeded

MODEL = "gemini-flash-test"
STAGING = "gs://tuneloop-staging/runs"


def provider(**kw) -> GeminiProvider:
    return GeminiProvider(predict=FAST_PREDICT, log=kw.pop("log", quiet), **kw)


def request(dataset, model=MODEL, **hp):
    return make_request(dataset, "gemini", model, {"gcs_staging_uri": STAGING, **hp})


def test_stages_data_tunes_with_defaults_and_labels(vertex_fake, dataset, tmp_path):
    req = request(dataset)
    lines: list[str] = []
    result = run_job(provider(log=lines.append), req, record_path=tmp_path / "job.json", log=quiet)
    key = job_key(dataset.hash, "gemini", MODEL, GeminiProvider.parse_config(req.hyperparameters))
    (body,) = vertex_fake.requests
    spec = body["supervisedTuningSpec"]
    # the observation-classifier defaults: 4 epochs, adapter size 4, learning-rate multiplier 1.0
    assert spec["hyperParameters"] == {"epochCount": 4, "adapterSize": "ADAPTER_SIZE_FOUR", "learningRateMultiplier": 1.0}
    assert body["labels"][KEY_LABEL] == key and body["tunedModelDisplayName"] == f"tuneloop-{key}"
    # Vertex read exactly the rendered Gemini files, uploaded to the staging prefix under the key
    assert spec["trainingDatasetUri"] == f"{STAGING}/{key}/train.jsonl"
    assert read_gcs(spec["trainingDatasetUri"]) == open(req.files["train"], "rb").read()
    assert read_gcs(spec["validationDatasetUri"]) == open(req.files["validation"], "rb").read()
    assert result.model_ref.startswith("projects/tuneloop-test/locations/us-central1/endpoints/")
    assert result.trained_tokens and result.trained_tokens % 4 == 0
    assert json.loads((tmp_path / "job.json").read_text())["job_id"] == result.job_id
    assert any("state JOB_STATE_SUCCEEDED" in line for line in lines)


def test_429_storm_and_500_then_success(vertex_fake, dataset, tmp_path):
    vertex_fake.http.inject("tuningJobs.create", *[Fault(429, retry_after="0")] * 3)
    vertex_fake.http.inject("tuningJobs.get", Fault(500), Fault(503), Fault(drop=True))
    result = run_job(provider(), request(dataset), record_path=tmp_path / "j.json", log=quiet)
    assert len(vertex_fake.jobs) == 1 and vertex_fake.http.calls("tuningJobs.create") == 4
    vertex_fake.http.inject("generateContent", Fault(429, retry_after="0"), Fault(500))
    answers = provider().predict(result.model_ref, dataset.splits["eval"])
    assert all(a in dataset.labels for a in answers)


def test_job_failure_raises_with_vertex_message(vertex_fake, dataset, tmp_path):
    message = "Dataset validation failed: line 12 has 1 content with role 'model' but no preceding 'user' turn."
    vertex_fake.next_job(Plan(fail_message=message))
    with pytest.raises(ProviderError, match="Dataset validation failed: line 12"):
        run_job(provider(), request(dataset), record_path=tmp_path / "j.json", log=quiet)


def test_died_mid_poll_then_rerun_resumes_the_same_job(vertex_fake, dataset, tmp_path):
    vertex_fake.next_job(Plan(hold=True))
    req = request(dataset, deadline_s=0.05, poll_initial_s=0.01, poll_max_s=0.01)
    with pytest.raises(DeadlineExceeded, match="rerun the task to keep waiting"):
        run_job(provider(), req, record_path=tmp_path / "j.json", log=quiet)
    (name,) = vertex_fake.jobs
    assert vertex_fake.jobs[name].state == "JOB_STATE_RUNNING"  # the deadline did not cancel it
    vertex_fake.release(name)
    lines: list[str] = []
    result = run_job(provider(), req, record_path=tmp_path / "j.json", log=lines.append)
    assert result.job_id == name and any(f"resuming job {name}" in line for line in lines)
    # a task attempt without the record adopts it by label; the staged files are reused, not rewritten
    again: list[str] = []
    adopted = run_job(provider(log=again.append), req, record_path=tmp_path / "other.json", log=again.append)
    assert adopted.model_ref == result.model_ref
    assert len(vertex_fake.jobs) == 1 and vertex_fake.http.calls("tuningJobs.create") == 1


def test_cancelled_task_cancels_the_tuning_job(vertex_fake, dataset, tmp_path):
    vertex_fake.next_job(Plan(hold=True))
    sigterm_when(lambda: "JOB_STATE_RUNNING" in vertex_fake.states().values())
    with pytest.raises(JobCancelled):
        run_job(provider(), request(dataset), record_path=tmp_path / "j.json", log=quiet)
    (state,) = vertex_fake.states().values()
    assert state in ("JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED")
    assert vertex_fake.http.calls("tuningJobs.cancel") == 1


def test_retired_model_refused_before_upload(vertex_fake, dataset, tmp_path):
    req = request(dataset, "gemini-2.5-flash", catalog="")  # the packaged catalog: retired 2026-10-16
    with pytest.raises(PreflightError, match=r"gemini-2.5-flash.*end of life on 2026-10-16"):
        run_job(provider(), req, record_path=tmp_path / "j.json", log=quiet)
    assert not vertex_fake.requests and vertex_fake.http.calls("tuningJobs.create") == 0


def test_budget_unpriced_and_staging_refused_before_upload(vertex_fake, dataset):
    with pytest.raises(PreflightError, match=r"over budget_usd=\$0\.00"):
        provider().preflight(request(dataset, budget_usd=0.001))
    with pytest.raises(PreflightError, match="no published training price.*allow_unpriced=true"):
        provider().preflight(request(dataset, "gemini-unpriced-test"))
    assert provider().preflight(request(dataset, "gemini-unpriced-test", allow_unpriced=True)).estimated_cost_usd is None
    with pytest.raises(PreflightError, match="gcs_staging_uri is not set"):
        provider().preflight(make_request(dataset, "gemini", MODEL))
    with pytest.raises(PreflightError, match=r"adapter_size=3 must be one of \[1, 2, 4, 8, 16, 32\]"):
        provider().preflight(request(dataset, adapter_size=3))
    assert vertex_fake.http.calls("tuningJobs.create") == 0


def test_predict_counts_malformed_answers(vertex_fake, dataset, tmp_path):
    result = run_job(provider(), request(dataset), record_path=tmp_path / "j.json", log=quiet)
    vertex_fake.malformed_every = 4
    rows = dataset.splits["eval"]
    answers = provider().predict(result.model_ref, rows)
    parsed = [parse_label(a, dataset.labels) for a in answers]
    assert sum(a in MALFORMED for a in answers) == sum(p is None for p in parsed) == len(rows) // 4
    with pytest.raises(ProviderError, match="not a Vertex endpoint .* nor a Gemini base model"):
        provider().predict("flash-test", rows)  # a base model is named gemini-... (a judge asks one as it is)
