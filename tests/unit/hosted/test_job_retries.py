"""A provider job that ended failed is resubmitted under a distinct key, at most 3 times, never twice live."""

from __future__ import annotations

import json

import pytest

from tests.fakes.openai_server import Plan
from tests.unit.hosted.conftest import FAST
from tuneloop import stages
from tuneloop.providers.base import ProviderError

BASE = "gpt-4.1-mini-2025-04-14"


def _tune(ds, tmp_path, name="m"):
    return stages.tune(provider="openai", dataset_uri=ds.uri, base_model=BASE, hyperparameters=dict(FAST),
                       model_dir=str(tmp_path / name), job_record_path=str(tmp_path / f"{name}-job.json"))


def test_a_job_that_failed_once_is_resubmitted_under_a_new_key_and_recorded(openai_fake, dataset, tmp_path):
    openai_fake.next_job(Plan(fail_message="The job failed due to an internal error", fail_code="server_error"))
    result = _tune(dataset, tmp_path)
    statuses = openai_fake.statuses()
    assert sorted(statuses.values()) == ["failed", "succeeded"]  # two jobs, one after the other
    card = json.loads((tmp_path / "m" / stages.RESULT_CARD).read_text())
    [retry] = card["retries"]
    failed_id = next(j for j, s in statuses.items() if s == "failed")
    assert retry["failed_job_id"] == failed_id and result["job_id"] != failed_id
    assert retry["new_key"] == retry["failed_key"] + "-retry1" and "internal error" in retry["error"]
    assert json.loads((tmp_path / "m-job.json").read_text())["key"] == retry["new_key"]
    # the retry is a decision of the plan's log
    from tuneloop.attempts import retry_decisions

    [decision] = retry_decisions(card, attempt=1)
    assert decision.stage == "retry" and failed_id in decision.reasoning


def test_a_resumed_task_adopts_its_retry_instead_of_submitting_again(openai_fake, dataset, tmp_path):
    openai_fake.next_job(Plan(fail_message="internal error", fail_code="server_error"))
    _tune(dataset, tmp_path)
    before = dict(openai_fake.statuses())
    (tmp_path / "m" / stages.RESULT_CARD).unlink()  # the task's outputs are gone; its job record stays
    _tune(dataset, tmp_path)
    assert openai_fake.statuses() == before  # no new job: the retry's succeeded job was adopted


def test_a_job_that_keeps_failing_stops_after_three_retries(openai_fake, dataset, tmp_path):
    for _ in range(4):
        openai_fake.next_job(Plan(fail_message="still broken", fail_code="server_error"))
    with pytest.raises(ProviderError, match="still broken"):
        _tune(dataset, tmp_path)
    assert sorted(openai_fake.statuses().values()) == ["failed"] * 4  # the first job and 3 retries
