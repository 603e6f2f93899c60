"""The OpenAI provider with the real ``openai`` SDK against the stand-in OpenAI server."""

from __future__ import annotations

import json

import pytest

from tests.fakes.learner import MALFORMED
from tests.fakes.openai_server import Plan
from tests.fakes.server import Fault
from tests.unit.hosted.conftest import (
    FAST,
    FAST_PREDICT,
    make_request,
    quiet,
    read_until,
    sigterm_when,
    spawn_task,
)
from tuneloop.evaluation import parse_label
from tuneloop.providers import get_provider
from tuneloop.providers.base import JobCancelled, PreflightError, ProviderError, job_key, run_job
from tuneloop.providers.openai import KEY_METADATA, OpenAIProvider
from tuneloop.secrets import MissingSecret

MODEL = "gpt-4.1-mini-2025-04-14"


def provider(**kw) -> OpenAIProvider:
    return OpenAIProvider(predict=FAST_PREDICT, log=kw.pop("log", quiet), **kw)


def test_tunes_records_model_and_tokens_and_logs_events(openai_fake, dataset, tmp_path):
    lines: list[str] = []
    req = make_request(dataset, "openai", MODEL, {"suffix": "intents", "n_epochs": 2, "batch_size": "auto"})
    result = run_job(provider(log=lines.append), req, record_path=tmp_path / "job.json", log=lines.append)

    (job,) = openai_fake.jobs.values()
    assert result.model_ref == job.body["fine_tuned_model"]
    assert result.model_ref.startswith(f"ft:{MODEL}:") and ":intents:" in result.model_ref
    assert result.trained_tokens == job.body["trained_tokens"] > 0
    # the request carried the supervised method, the hyperparameters and our idempotency key
    assert job.body["method"]["supervised"]["hyperparameters"] == {
        "n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": "auto"
    }
    assert job.body["metadata"][KEY_METADATA] == job_key(dataset.hash, "openai", MODEL, OpenAIProvider.parse_config(req.hyperparameters))
    uploaded = openai_fake.file_data[job.body["training_file"]].decode().splitlines()
    assert len(uploaded) == len(open(req.files["train"]).read().splitlines())
    assert job.body["validation_file"] in openai_fake.files
    # the job id was written before polling, and each event was logged once, oldest first
    assert json.loads((tmp_path / "job.json").read_text())["job_id"] == job.body["id"]
    started = [i for i, line in enumerate(lines) if "Fine-tuning job started" in line]
    done = [i for i, line in enumerate(lines) if "successfully completed" in line]
    assert len(started) == 1 and len(done) == 1 and started[0] < done[0]


def test_429_storm_then_success(openai_fake, dataset, tmp_path):
    storm = [Fault(429, retry_after="0", message="Rate limit reached for requests")] * 4
    openai_fake.http.inject("files.create", *storm)
    openai_fake.http.inject("jobs.create", *storm)
    openai_fake.http.inject("jobs.retrieve", *storm)
    lines: list[str] = []
    result = run_job(provider(log=lines.append), make_request(dataset, "openai", MODEL), record_path=tmp_path / "j.json",
                     log=quiet)
    assert result.model_ref.startswith("ft:")
    assert len(openai_fake.jobs) == 1
    assert openai_fake.http.calls("jobs.create") == 5  # four 429s, then the one that created the job
    assert sum("HTTP 429" in line and "Retry-After 0s" in line for line in lines) == 12


def test_retry_after_is_honoured(openai_fake, dataset, tmp_path):
    waits: list[float] = []
    openai_fake.http.inject("jobs.create", Fault(429, retry_after="7"))
    openai_fake.http.inject("chat.create", Fault(503, retry_after="3"))
    p = OpenAIProvider(predict=FAST_PREDICT, log=quiet, sleep=waits.append)
    result = run_job(p, make_request(dataset, "openai", MODEL), record_path=tmp_path / "j.json", log=quiet)
    assert waits[0] >= 7  # the create waited as long as the server asked
    waits.clear()
    p.predict(result.model_ref, dataset.splits["eval"][:1])
    assert waits and waits[0] >= 3


def test_500_and_dropped_connection_then_success(openai_fake, dataset, tmp_path):
    openai_fake.http.inject("files.create", Fault(500), Fault(drop=True))
    openai_fake.http.inject("jobs.retrieve", Fault(502), Fault(500), Fault(drop=True))
    openai_fake.http.inject("jobs.events", Fault(500))
    result = run_job(provider(), make_request(dataset, "openai", MODEL), record_path=tmp_path / "j.json", log=quiet)
    assert result.model_ref.startswith("ft:")
    assert len(openai_fake.jobs) == 1


def test_create_whose_response_was_lost_is_adopted_not_duplicated(openai_fake, dataset, tmp_path):
    openai_fake.http.inject("jobs.create", Fault(502, after=True))  # the job is created, the answer lost
    result = run_job(provider(), make_request(dataset, "openai", MODEL), record_path=tmp_path / "j.json", log=quiet)
    assert len(openai_fake.jobs) == 1
    assert openai_fake.http.calls("jobs.create") == 1
    assert result.job_id in openai_fake.jobs


def test_job_failure_raises_with_openai_message(openai_fake, dataset, tmp_path):
    message = "The job failed due to an invalid training file. Line 7: 'messages' must contain an assistant turn."
    openai_fake.next_job(Plan(fail_message=message))
    with pytest.raises(ProviderError) as err:
        run_job(provider(), make_request(dataset, "openai", MODEL), record_path=tmp_path / "j.json", log=quiet)
    assert message in str(err.value) and "invalid_training_file" in str(err.value)


def test_rerun_adopts_the_job_instead_of_paying_twice(openai_fake, dataset, tmp_path):
    req = make_request(dataset, "openai", MODEL)
    first = run_job(provider(), req, record_path=tmp_path / "a.json", log=quiet)
    # another task attempt with no record of its own: found by the key in the job's metadata
    lines: list[str] = []
    second = run_job(provider(), req, record_path=tmp_path / "b.json", log=lines.append)
    assert second.model_ref == first.model_ref
    assert len(openai_fake.jobs) == 1 and openai_fake.http.calls("files.create") == 2  # train + validation, once
    assert any("adopting existing job" in line for line in lines)
    # a failed job with the same key is not adopted: the rerun pays for a new one
    openai_fake.jobs[first.job_id].body["status"] = "failed"
    third = run_job(provider(), req, record_path=tmp_path / "c.json", log=quiet)
    assert third.job_id != first.job_id and len(openai_fake.jobs) == 2


def spec(dataset, tmp_path, **hp) -> dict:
    return {
        "provider": "openai",
        "dataset": dataset.uri,
        "format": "openai",
        "base_model": MODEL,
        "hp": {**FAST, "poll_initial_s": 0.01, "poll_max_s": 0.05, **hp},
        "record": str(tmp_path / "job.json"),
    }


def test_task_killed_mid_poll_and_rerun_leaves_exactly_one_job(openai_fake, dataset, tmp_path):
    openai_fake.next_job(Plan(hold=True))
    s = spec(dataset, tmp_path)
    child = spawn_task(s)
    read_until(child, "state running")
    child.kill()  # SIGKILL mid-poll: no handler runs, the remote job keeps going
    child.wait()
    (job_id,) = openai_fake.jobs
    assert openai_fake.jobs[job_id].status == "running"
    assert json.loads((tmp_path / "job.json").read_text())["job_id"] == job_id

    openai_fake.release(job_id)
    lines: list[str] = []  # the retried task: same record path, same request
    result = run_job(provider(), make_request(dataset, "openai", MODEL, s["hp"]), record_path=s["record"],
                     log=lines.append)
    assert any(f"resuming job {job_id}" in line for line in lines)
    assert result.job_id == job_id
    assert len(openai_fake.jobs) == 1 and openai_fake.jobs[job_id].status == "succeeded"
    assert openai_fake.http.calls("jobs.create") == 1


def test_cancelled_task_cancels_the_remote_job(openai_fake, dataset, tmp_path):
    openai_fake.next_job(Plan(hold=True))
    sigterm_when(lambda: "running" in openai_fake.statuses().values())
    with pytest.raises(JobCancelled, match="cancelled openai job"):
        run_job(provider(), make_request(dataset, "openai", MODEL), record_path=tmp_path / "j.json", log=quiet)
    (job,) = openai_fake.jobs.values()
    assert job.status == "cancelled"
    assert openai_fake.http.calls("jobs.cancel") == 1


def test_retired_model_refused_before_upload(openai_fake, dataset, tmp_path):
    with pytest.raises(PreflightError, match=r"end of life on 2020-01-01.*gpt-4.1-mini"):
        run_job(provider(), make_request(dataset, "openai", "gpt-3.5-turbo-0125"), record_path=tmp_path / "j.json",
                log=quiet)
    assert openai_fake.http.calls("files.create") == 0 and not openai_fake.jobs


def test_over_budget_refused_before_upload(openai_fake, dataset, tmp_path):
    req = make_request(dataset, "openai", MODEL, {"budget_usd": 0.0001})
    with pytest.raises(PreflightError, match=r"estimated training cost \$0\.\d+ .* over budget_usd=\$0\.00"):
        run_job(provider(), req, record_path=tmp_path / "j.json", log=quiet)
    assert openai_fake.http.calls("files.create") == 0 and not openai_fake.jobs


def test_missing_budget_and_over_limit_rows_refused_before_upload(openai_fake, dataset, tmp_path):
    no_budget = make_request(dataset, "openai", MODEL)
    no_budget = type(no_budget)(**{**vars(no_budget), "hyperparameters": {**FAST, "budget_usd": None}})
    with pytest.raises(PreflightError, match="budget_usd is not set"):
        provider().preflight(no_budget)
    with pytest.raises(PreflightError, match=r"exceed the 16-token example limit of gpt-4o-mini"):
        provider().preflight(make_request(dataset, "openai", "gpt-4o-mini-2024-07-18"))
    with pytest.raises(PreflightError, match=r"unknown key 'epochs' \(did you mean 'n_epochs'\?\)"):
        provider().preflight(make_request(dataset, "openai", MODEL, {"epochs": 3}))
    assert openai_fake.http.calls("files.create") == 0


def test_predict_counts_malformed_answers_without_crashing(openai_fake, dataset, tmp_path):
    result = run_job(provider(), make_request(dataset, "openai", MODEL), record_path=tmp_path / "j.json", log=quiet)
    openai_fake.malformed_every = 3
    rows = dataset.splits["eval"]
    answers = provider().predict(result.model_ref, rows)
    parsed = [parse_label(a, dataset.labels) for a in answers]
    malformed = sum(a in MALFORMED for a in answers)
    assert malformed == len(rows) // 3 > 0
    assert sum(p is None for p in parsed) == malformed
    correct = sum(p == e.label for p, e in zip(parsed, rows, strict=True))
    assert correct >= len(rows) - malformed - 2  # the stand-in model learnt the uploaded rows


def test_predict_request_cap_refuses_before_sending(openai_fake, dataset, tmp_path):
    result = run_job(provider(), make_request(dataset, "openai", MODEL), record_path=tmp_path / "j.json", log=quiet)
    p = OpenAIProvider(predict={**FAST_PREDICT, "max_requests": 3}, log=quiet)
    with pytest.raises(ProviderError, match=r"only 3 of max_requests=3 requests left"):
        p.predict(result.model_ref, dataset.splits["eval"])
    assert openai_fake.http.calls("chat.create") == 0


def test_predict_stops_on_unknown_model(openai_fake, dataset):
    with pytest.raises(ProviderError, match="does not exist"):
        provider().predict("ft:gpt-4.1-mini:nobody::gone", dataset.splits["eval"])
    assert openai_fake.http.calls("chat.create") <= FAST_PREDICT["concurrency"]


def test_missing_api_key_names_both_ways_to_provide_it(openai_fake, dataset, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(MissingSecret, match="OPENAI_API_KEY_SECRET=projects/"):
        get_provider("openai").resume("tl-x")
