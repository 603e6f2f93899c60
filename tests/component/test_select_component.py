"""The select-model component body through ``.python_func``: outputs, the report and the decision artifacts."""

from __future__ import annotations

import json

from kfp.dsl import Artifact
from tuneloop.components import select_model

from tests.conftest import TESTDATA
from tuneloop import datasets, decisions
from tuneloop import examples as ex


def test_select_model_component_writes_its_outputs_and_artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    for var in ("ANTHROPIC_API_KEY", "GOOGLE_OAUTH_ACCESS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    rows = [ex.classification_example(f"card {i} was declined", ("billing", "cards")[i % 2]) for i in range(900)]
    datasets.build_dataset(rows, tmp_path / "ds", previous=None, task="classification")
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: no-local, reason: a hosted model this time, when: {hosted: false}, "
                     "effect: refuse}\n  - {name: cred, reason: no key no call, when: {credential_missing: true}, "
                     "effect: refuse}\n")
    report = Artifact(name="report", uri=str(tmp_path / "report"), metadata={})
    log = Artifact(name="decisions", uri=str(tmp_path / "decisions"), metadata={})
    out = select_model.python_func(
        dataset_uri=str(tmp_path / "ds"), report=report, decisions=log, task="", budget_usd=0.5, rules=str(rules),
        catalog=str(TESTDATA / "selection" / "catalog.yaml"), today="2026-12-01", ranker="", eval_options={},
        task_env={}, base_models={},
    )
    assert (out.provider, out.base_model) == ("openai", "gpt-cheap-test")
    assert out.hyperparameters["budget_usd"] == 0.5
    assert report.metadata == {"provider": "openai", "base_model": "gpt-cheap-test"}
    body = json.loads((tmp_path / "report").read_text())
    assert body["chosen"]["provider"] == "openai" and body["task"] == "classification"  # the dataset's own task
    [record] = decisions.read(tmp_path / "decisions")
    assert record.decision == "openai:gpt-cheap-test"
