"""The compiled select-model pipeline under kfp.local, with the ranker served by the OpenAI stand-in.

KFP hands the dict parameters' numbers to the task as floats (``max_requests: 2`` -> 2.0) and the
budget as a float; the task parses them. The outputs are what tune-and-promote takes: the openai
provider's config class parses the chosen hyperparameters back to the same config.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tuneloop.pipelines.local_runner import LocalRunFailed, run_local_pipeline

from tests.conftest import TESTDATA
from tests.fakes import fixtures as stand_ins
from tests.unit.hosted import conftest as hosted
from tuneloop import datasets, decisions
from tuneloop import examples as ex

openai_fake = stand_ins.openai_fake
dataset = hosted.dataset  # 120 support messages rendered in the openai, gemini and bedrock formats

CATALOG = str(TESTDATA / "selection" / "catalog.yaml")
RANKER = "gpt-ranker-test"
RULES = """
rules:
  - name: hosted-needs-credential
    reason: no credential, no call
    when: {hosted: true, credential_missing: true}
    effect: refuse
  - name: tiny-sets-more-epochs
    reason: small sets need more passes
    when: {rows_below: 500, providers: [openai]}
    effect: hyperparameters
    hyperparameters: {n_epochs: 4, batch_size: 8}
"""


@pytest.fixture
def env(tmp_path, monkeypatch, openai_fake):
    for var in ("ANTHROPIC_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
                "GOOGLE_OAUTH_ACCESS_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    rows = [ex.classification_example(f"my refund {i} has not arrived yet", ("billing", "refund")[i % 2])
            for i in range(300)]
    datasets.build_dataset(rows, tmp_path / "ds", previous=None, task="classification")
    (tmp_path / "rules.yaml").write_text(RULES)
    return {"dataset_uri": str(tmp_path / "ds"), "rules": str(tmp_path / "rules.yaml"), "root": tmp_path / "runs"}


def _params(env, **extra) -> dict:
    return {"dataset_uri": env["dataset_uri"], "budget_usd": 1.0, "rules": env["rules"], "catalog": CATALOG,
            "today": "2026-12-01", "eval_options": {"max_requests": 2, "concurrency": 1},
            "base_models": {"oss-lora": "/models/tiny-llama"}, **extra}


def test_select_model_runs_under_kfp_local_and_the_rules_outrank_the_ranker(env, openai_fake):
    ranking = {"ranking": ["openai:gpt-retired-test", "openai:gpt-pricey-test", "openai:gpt-cheap-test"],
               "reasoning": "newest first", "confidence": 0.7}
    openai_fake.add_responder(RANKER, lambda messages: json.dumps(ranking))
    run = run_local_pipeline("select-model", _params(env, ranker=f"openai:{RANKER}"), pipeline_root=env["root"],
                             quiet=True)
    out = run.outputs
    assert (out["provider"], out["base_model"]) == ("openai", "gpt-cheap-test")
    from tuneloop.providers.openai import OpenAIConfig
    from tuneloop.providers.registry import provider_class

    cfg = provider_class(out["provider"]).parse_config(out["hyperparameters"])  # what tune-and-promote's first task does
    assert isinstance(cfg, OpenAIConfig) and (cfg.n_epochs, cfg.batch_size, cfg.budget_usd) == (4, 8, 1.0)
    assert type(cfg.n_epochs) is int and cfg.catalog == CATALOG
    [report_path] = list(Path(run.run_dir).rglob("report"))
    report = json.loads(report_path.read_text())
    states = {c["provider"] + ":" + c["base_model"]: c["why"].split(":")[0] for c in report["candidates"]}
    assert states["openai:gpt-retired-test"] == states["openai:gpt-pricey-test"] == "refused"
    # the ranker placed only the cheap model; the rest follow by cost, then name
    assert states["openai:gpt-cheap-test"] == "chosen"
    assert states["oss-lora:/models/tiny-llama"] == "admissible, ranked 2"
    assert states["sklearn:tfidf-linearsvc"] == "admissible, ranked 3"
    assert report["ranker"]["malformed"] == 0 and report["ranker"]["requests"]["requests"] == 1
    [record] = decisions.read(next(Path(run.run_dir).rglob("decisions")))
    assert record.stage == "select-model" and record.decision == "openai:gpt-cheap-test" and record.confidence == 0.7


def test_a_bad_budget_fails_the_task_naming_the_parameter(env):
    with pytest.raises(LocalRunFailed) as info:
        run_local_pipeline("select-model", _params(env, budget_usd=-2.0), pipeline_root=env["root"], quiet=True)
    assert "budget_usd=-2.0 must be a number of USD >= 0" in info.value.error


FEED_RULES = """
rules:
  - name: hosted-needs-credential
    reason: no credential, no call
    when: {hosted: true, credential_missing: true}
    effect: refuse
  - name: hosted-only
    reason: this run tunes a hosted model
    when: {hosted: false}
    effect: refuse
  - name: stand-in-polling
    reason: the stand-in's jobs advance per poll; no need to wait between polls
    when: {providers: [openai]}
    effect: hyperparameters
    hyperparameters: {poll_initial_s: 0.0, poll_max_s: 0.0, retry_initial_s: 0.0, retry_max_s: 0.01}
"""


@pytest.mark.slow  # ~21 s on 2 cores: two pipeline runs, a tuning job and an evaluation on the stand-in
def test_the_selection_outputs_feed_tune_and_promote(env, openai_fake, dataset, tmp_path):
    """select-model on a dataset rendered for OpenAI, then tune-and-promote with exactly its outputs."""
    from tests.fakes.fixtures import TEST_CATALOG
    from tuneloop.registry import FileRegistry

    (tmp_path / "feed.yaml").write_text(FEED_RULES)
    chosen = run_local_pipeline("select-model", {
        "dataset_uri": dataset.uri, "budget_usd": 5.0, "rules": str(tmp_path / "feed.yaml"), "catalog": TEST_CATALOG,
        "today": "2026-12-01"}, pipeline_root=env["root"], quiet=True).outputs
    # the stand-in catalog's retired gpt-3.5 and its 16-token gpt-4o-mini are refused; gpt-4.1-mini is left
    assert (chosen["provider"], chosen["base_model"]) == ("openai", "gpt-4.1-mini-2025-04-14")
    params = {"dataset_uri": dataset.uri, "registry_uri": str(tmp_path / "registry"), "model_name": "intents",
              "reports_uri": str(tmp_path / "reports"), "min_values": {"accuracy": 0.6}, **chosen}
    run_local_pipeline("tune-and-promote", params, pipeline_root=env["root"], quiet=True)
    champion = FileRegistry(str(tmp_path / "registry"), "intents").champion()
    assert champion.version == "v1" and champion.provider == "openai"
    [job] = openai_fake.jobs.values()
    assert job.body["model"] == "gpt-4.1-mini-2025-04-14"
