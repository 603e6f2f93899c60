"""A provider from another package: installed with pip, found through the ``tuneloop.providers`` entry
point, run through the compiled continuous-tuning pipeline under kfp.local — no tuneloop file names it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.local.conftest import run, summaries
from tuneloop.providers import registry
from tuneloop.registry import FileRegistry

PACKAGE = ROOT / "tests" / "testdata" / "plugin_provider"


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """``pip install`` the word-vote package into its own site folder on this process's and the tasks' path."""
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src)  # build in a copy: nothing is written into the test data
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--no-index", "--target", str(site), str(src)],
        check=True, capture_output=True,
    )
    monkeypatch.setenv("PYTHONPATH", f"{site}:{ROOT}")  # the kfp.local task subprocesses
    monkeypatch.syspath_prepend(str(site))
    registry.provider_classes.cache_clear()
    yield site
    registry.provider_classes.cache_clear()


def test_a_plugin_provider_tunes_evaluates_and_promotes_through_kfp_local(plugin, loop_env):
    assert "word-vote" in registry.provider_names()  # found by its entry point
    assert registry.provider_class("Word_Vote").image == "cpu"
    params = {**loop_env["params"], "provider": "word-vote", "model_name": "support-intent",
              "hyperparameters": {"min_count": 2, "alpha": 1},  # ints: KFP turns them into 2.0 and 1.0
              "min_values": {"macro_f1": 0.5}}
    run("continuous-tuning", params, loop_env["root"])
    [summary] = summaries(loop_env["reports"])
    assert summary["provider"] == "word-vote"
    assert summary["candidate_metrics"]["macro_f1"] >= 0.5 and summary["promoted_version"] == "v1"
    champion = FileRegistry(params["registry_uri"], "support-intent").champion()
    assert champion.provider == "word-vote"
    model = json.loads(next(Path(loop_env["root"]).rglob("wordvote.json")).read_text())
    assert model["config"] == {"alpha": 1.0, "min_count": 2}  # the parsed config reached the provider
    assert type(model["config"]["min_count"]) is int


def test_a_plugin_providers_config_is_checked_by_the_first_task(plugin, loop_env):
    params = {**loop_env["params"], "provider": "word-vote", "hyperparameters": {"min_cout": 2}}
    with pytest.raises(RuntimeError) as info:
        run("continuous-tuning", params, loop_env["root"])
    assert "unknown key 'min_cout' (did you mean 'min_count'?) for the word-vote provider" in str(info.value)
    assert not (loop_env["reports"].parent / "datasets").exists()  # nothing extracted or published


def test_a_plugin_providers_task_kinds_count_in_the_first_tasks_refusal(plugin, tmp_path):
    from tuneloop.chat_eval import providers_for
    from tuneloop.config import ConfigError
    from tuneloop.stages import check_config

    assert "word-vote" in providers_for("classification") and "word-vote" not in providers_for("chat")
    common = {"registry_uri": str(tmp_path / "r"), "model_name": "m", "hyperparameters": {}, "thresholds": {}}
    with pytest.raises(ConfigError, match=r"provider='word-vote' tunes \['classification'\] tasks, not task='chat'"):
        check_config(provider="word-vote", task="chat", **common)
    assert check_config(provider="word-vote", task="classification", **common)["task"] == "classification"


def test_a_plugin_provider_is_a_select_model_candidate(plugin, tmp_path):
    from tuneloop import datasets
    from tuneloop import examples as ex
    from tuneloop.selection import parse_rules, select_model

    rows = [ex.classification_example(f"refund {i} is missing", ("billing", "refund")[i % 2]) for i in range(60)]
    datasets.build_dataset(rows, tmp_path / "ds", previous=None, task="classification")
    prefer = parse_rules({"rules": [{"name": "try-word-vote", "reason": "our own classifier first", "effect": "prefer",
                                     "when": {"providers": ["word-vote"]}}]})
    sel = select_model(dataset_uri=str(tmp_path / "ds"), rules=prefer, today="2026-12-01", environ={})
    [candidate] = [c for c in sel.candidates if c.provider == "word-vote"]
    assert (sel.provider, sel.base_model) == ("word-vote", "")  # no catalog entry: one candidate, no base model
    assert candidate.notes == ["not in the catalog: no dataset limits checked"] and candidate.score == 1
    plain = select_model(dataset_uri=str(tmp_path / "ds"), rules=parse_rules({"rules": []}), today="2026-12-01",
                         environ={})
    ranks = {c.provider: c.rank for c in plain.candidates if c.admissible}
    assert ranks["sklearn"] < ranks["word-vote"]  # without the preference, cost ties break by name
