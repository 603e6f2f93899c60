"""The loop end to end under kfp.local: promote, judge against the champion, skip, fail fast, lose a race."""

from __future__ import annotations

import json

import pytest

from tests.local.conftest import run, summaries
from tuneloop.registry import FileRegistry


def test_first_run_promotes_v1_then_new_traffic_is_judged_against_it(loop_env):
    from tuneloop import demo_data

    params = loop_env["params"]
    run("continuous-tuning", params, loop_env["root"])
    [first] = summaries(loop_env["reports"])
    assert first["promoted_version"] == "v1"
    assert first["champion_metrics"] is None
    assert "no champion" in first["decision"]["reason"]
    assert first["candidate_metrics"]["macro_f1"] > 0.6

    demo_data.add_traffic(str(loop_env["warehouse"]), 300, seed=8, table="interactions")
    run("continuous-tuning", params, loop_env["root"])
    second = summaries(loop_env["reports"])[-1]
    assert second["champion_evaluated"] == "v1"
    assert second["champion_metrics"] is not None
    # the champion was re-scored on this run's eval rows, not copied from its own registration
    v1 = FileRegistry(params["registry_uri"], "support-intent").get("v1")
    assert second["champion_metrics"]["n"] > v1.metrics["n"]
    assert second["decision"]["blessed"] == (second["promoted_version"] == "v2")

    # the second dataset holds every eval row of the first: same ids, same split
    manifests = sorted((loop_env["reports"].parent / "datasets" / "datasets").glob("*/manifest.json"))
    assert len(manifests) == 2


def test_a_worse_candidate_is_not_promoted(loop_env):
    from tuneloop import demo_data

    params = loop_env["params"]
    run("continuous-tuning", params, loop_env["root"])
    demo_data.add_traffic(str(loop_env["warehouse"]), 200, seed=9, table="interactions")
    # a crippled candidate (only words seen in 60+ messages); a low value bar, so the change rule decides
    crippled = {"hyperparameters": {"min_df": 60, "ngram_max": 1}, "min_values": {"macro_f1": 0.05}}
    run("continuous-tuning", {**params, **crippled}, loop_env["root"])
    second = summaries(loop_env["reports"])[-1]
    assert second["decision"]["blessed"] is False
    assert second["promoted_version"] is None
    assert second["candidate_metrics"]["macro_f1"] < second["champion_metrics"]["macro_f1"] - 0.05
    assert "champion v1" in second["decision"]["reason"]
    assert second["champion_after"] == "v1"
    assert FileRegistry(params["registry_uri"], "support-intent").champion().version == "v1"


def test_too_little_new_data_ends_as_a_recorded_skip(loop_env):
    params = loop_env["params"]
    run("continuous-tuning", params, loop_env["root"])
    run("continuous-tuning", params, loop_env["root"])  # nothing new in the warehouse
    skipped = summaries(loop_env["reports"])[-1]
    assert skipped["skipped"] is True
    assert "min_new_examples=100" in skipped["decision"]["reason"]
    assert skipped["champion_after"] == "v1"


def test_unknown_provider_fails_the_first_task_naming_the_valid_ones(loop_env):
    with pytest.raises(RuntimeError) as info:
        run("continuous-tuning", {**loop_env["params"], "provider": "sklarn"}, loop_env["root"])
    assert "provider='sklarn' is not a known provider (did you mean 'sklearn'?); use one of" in str(info.value)
    assert all(name in str(info.value) for name in ("'openai'", "'oss-lora'", "'claude'"))
    assert not (loop_env["reports"].parent / "datasets").exists()  # nothing extracted or published


def test_a_racing_promotion_loses_the_compare_and_set(loop_env):
    """Replay the promote step of a run whose champion moved after it was evaluated."""
    from tuneloop.registry import ChampionMoved
    from tuneloop.stages import promote

    params = loop_env["params"]
    run_dir = run("continuous-tuning", params, loop_env["root"])
    blessing = next(run_dir.rglob("evaluate-model/blessing"))
    model = next(run_dir.rglob("tune-model/model"))
    assert json.loads(blessing.read_text())["champion_version"] is None  # evaluated with no champion
    # another run's promotion (this one) already moved the champion to v1
    with pytest.raises(ChampionMoved, match="v1"):
        promote(
            blessing_path=str(blessing),
            model_dir=str(model),
            registry_uri=params["registry_uri"],
            model_name="support-intent",
            run_name="late-run",
            reports_uri="",
            summary_path=str(loop_env["root"] / "late-summary.json"),
        )
    registry = FileRegistry(params["registry_uri"], "support-intent")
    assert registry.champion().version == "v1"
    late = json.loads((loop_env["root"] / "late-summary.json").read_text())
    assert late["promoted_version"] is None and "not promoted" in late["decision"]["reason"]
