"""tune -> evaluate -> promote (tuneloop.stages, no kfp) for each hosted provider against the stand-ins,
configured only through the environment, as a pipeline task would be."""

from __future__ import annotations

import json

import pytest

from tests.fakes.bedrock import BUCKET, ROLE_ARN
from tests.unit.hosted.conftest import FAST
from tuneloop import stages
from tuneloop.registry import FileRegistry

THRESHOLDS = {"min_values": {"accuracy": 0.6}, "max_drop": {"macro_f1": 0.05}}


def loop(dataset, tmp_path, provider: str, base_model: str, hp: dict, run: str = "run1") -> tuple[dict, dict]:
    """One pass of the tune-and-promote branch; returns (blessing record, summary)."""
    work = tmp_path / run
    tuned = stages.tune(
        provider=provider,
        dataset_uri=dataset.uri,
        base_model=base_model,
        hyperparameters={**FAST, **hp},
        model_dir=str(work / "model"),
        job_record_path=str(work / "job.json"),
    )
    assert json.loads((work / "job.json").read_text())["job_id"] == tuned["job_id"]
    common = {"registry_uri": str(tmp_path / "registry"), "model_name": "intents"}
    blessing = stages.evaluate(provider=provider, model_dir=str(work / "model"), dataset_uri=dataset.uri,
                               thresholds=THRESHOLDS, blessing_path=str(work / "blessing.json"), **common)
    summary = stages.promote(blessing_path=str(work / "blessing.json"), model_dir=str(work / "model"),
                             run_name=run, reports_uri=str(tmp_path / "reports"),
                             summary_path=str(work / "summary.json"), **common)
    assert json.loads((tmp_path / "reports" / run / "summary.json").read_text()) == json.loads(
        (work / "summary.json").read_text())
    return blessing, summary


def test_openai_branch_promotes_and_counts_malformed_answers(openai_fake, dataset, tmp_path):
    openai_fake.malformed_every = 5
    blessing, summary = loop(dataset, tmp_path, "openai", "gpt-4.1-mini-2025-04-14", {})
    n = len(dataset.splits["eval"])
    assert blessing["candidate_metrics"]["unparseable"] == n // 5
    assert len(blessing["unparseable_examples"]) == n // 5
    assert summary["promoted_version"] == "v1" and summary["champion_after"] == "v1"
    champion = FileRegistry(str(tmp_path / "registry"), "intents").champion()
    assert champion.model_ref.startswith("ft:gpt-4.1-mini-2025-04-14:") and champion.provider == "openai"


def test_openai_job_failure_fails_the_branch_and_promotes_nothing(openai_fake, dataset, tmp_path):
    from tests.fakes.openai_server import Plan
    from tuneloop.providers.base import ProviderError

    for _ in range(4):  # the job and its 3 resubmissions (tuneloop.stages.run_job_with_retries) all fail
        openai_fake.next_job(Plan(fail_message="Training file contains 3 examples over the context length."))
    with pytest.raises(ProviderError, match="over the context length"):
        loop(dataset, tmp_path, "openai", "gpt-4.1-mini-2025-04-14", {})
    assert sorted(openai_fake.statuses().values()) == ["failed"] * 4
    assert FileRegistry(str(tmp_path / "registry"), "intents").champion() is None
    assert not (tmp_path / "reports").exists()


def test_gemini_branch_promotes_then_a_second_run_is_judged_against_it(vertex_fake, dataset, tmp_path):
    hp = {"gcs_staging_uri": "gs://tuneloop-staging/loop"}
    _, first = loop(dataset, tmp_path, "gemini", "gemini-flash-test", hp)
    assert first["promoted_version"] == "v1"
    blessing, second = loop(dataset, tmp_path, "gemini", "gemini-flash-test", hp, run="run2")
    assert blessing["champion_version"] == "v1" and blessing["champion_metrics"] is not None
    assert len(vertex_fake.jobs) == 1  # the same data and config: the job was adopted, not paid twice
    assert second["decision"]["blessed"] is True and second["champion_after"] == "v2"


def test_claude_bedrock_branch_promotes(bedrock_fake, dataset, tmp_path):
    hp = {"method": "bedrock", "s3_uri": f"s3://{BUCKET}/loop", "role_arn": ROLE_ARN}
    blessing, summary = loop(dataset, tmp_path, "claude", "anthropic.claude-tunable-test-v1:0", hp)
    assert blessing["blessed"] and summary["promoted_version"] == "v1"
    assert FileRegistry(str(tmp_path / "registry"), "intents").champion().model_ref.startswith(
        "arn:aws:bedrock:us-west-2:")


def test_claude_fewshot_branch_ends_with_a_recorded_decision(anthropic_fake, dataset, tmp_path):
    blessing, summary = loop(dataset, tmp_path, "claude", "claude-haiku-test", {"method": "few-shot"})
    accuracy = blessing["candidate_metrics"]["accuracy"]
    assert summary["decision"]["blessed"] is (accuracy >= 0.6)
    assert "accuracy" in summary["decision"]["reason"]
    assert summary["promoted_version"] == ("v1" if accuracy >= 0.6 else None)
    registry = FileRegistry(str(tmp_path / "registry"), "intents")
    if summary["promoted_version"]:
        record = registry.get("v1")
        assert record.model_uri and record.provider == "claude"  # the adapter directory was archived


def test_eval_options_cap_the_requests_an_evaluation_may_send(openai_fake, dataset, tmp_path):
    from tuneloop.providers.base import ProviderError

    work = tmp_path / "capped"
    stages.tune(provider="openai", dataset_uri=dataset.uri, base_model="gpt-4.1-mini-2025-04-14",
                hyperparameters=FAST, model_dir=str(work / "model"), job_record_path=str(work / "job.json"))
    with pytest.raises(ProviderError, match=r"max_requests=3"):
        stages.evaluate(provider="openai", model_dir=str(work / "model"), dataset_uri=dataset.uri,
                        registry_uri=str(tmp_path / "registry"), model_name="intents", thresholds=THRESHOLDS,
                        blessing_path=str(work / "blessing.json"), eval_options={"max_requests": 3.0})
    assert openai_fake.http.calls("chat.create") == 0  # refused before sending anything
    with pytest.raises(stages.ConfigError, match=r"eval_options: unknown key 'max_request' \(did you mean 'max_requests'\?\)"):
        stages.eval_policy({"max_request": 3})
