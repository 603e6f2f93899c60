"""tune-and-promote with max_attempts under kfp.local: a candidate that is not blessed is tuned again
with hyperparameters adjusted by the rule (tuneloop.attempts), and only the blessed attempt is promoted."""

from __future__ import annotations

import pytest

from tests.fakes import fixtures as stand_ins
from tests.local.conftest import run, summaries
from tests.unit.hosted import conftest as hosted
from tuneloop.registry import FileRegistry

openai_fake = stand_ins.openai_fake
hosted_dataset = hosted.dataset

# With min_df=8 the 120-message training split keeps too few n-grams: training accuracy ~0.5, macro F1
# ~0.04. The rule reads "underfit" from the card and divides min_df by 4: min_df=2 gives macro F1 ~0.74.
CRIPPLED = {"min_df": 8, "ngram_max": 1}
BAR = {"min_values": {"macro_f1": 0.6}, "max_drop": {"macro_f1": 0.05}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from tests.unit.hosted.conftest import support_messages
    from tuneloop import datasets

    out = tmp_path_factory.mktemp("attempts") / "dataset"
    datasets.build_dataset(support_messages(120, seed=1), out, previous=None, formats=[], min_examples=8)
    return str(out)


def _params(dataset, tmp_path, **extra) -> dict:
    return {
        "dataset_uri": dataset,
        "registry_uri": str(tmp_path / "registry"),
        "reports_uri": str(tmp_path / "reports"),
        "provider": "sklearn",
        "model_name": "intents",
        "hyperparameters": CRIPPLED,
        **BAR,
        **extra,
    }


def test_a_second_attempt_with_adjusted_hyperparameters_is_blessed_and_promoted_once(dataset, tmp_path):
    run("tune-and-promote", _params(dataset, tmp_path, max_attempts=3), tmp_path / "runs")
    [summary] = summaries(tmp_path / "reports")
    first, second = summary["attempts"]
    assert first["hyperparameters"]["min_df"] == 8 and first["blessed"] is False
    assert first["candidate_metrics"]["macro_f1"] < 0.6 < second["candidate_metrics"]["macro_f1"]
    assert second["hyperparameters"]["min_df"] == 2 and second["blessed"] is True
    assert first["decision"] == "go" and second["decision"] == "stop: blessed"
    [decision] = summary["decisions"]
    assert decision["stage"] == "attempt"
    assert decision["details"]["old"] == {"min_df": 8} and decision["details"]["new"] == {"min_df": 2}
    assert "underfit" in decision["reasoning"]
    # one promotion: the blessed second attempt, its metrics the summary's
    registry = FileRegistry(str(tmp_path / "registry"), "intents")
    assert [v.version for v in registry.versions()] == ["v1"]
    assert summary["promoted_version"] == "v1" and registry.champion().version == "v1"
    assert summary["candidate_metrics"] == second["candidate_metrics"]
    report = (tmp_path / "reports" / summary["run"] / "report.html").read_text()
    assert "Attempts" in report and "Decisions" in report and "min_df" in report


@pytest.mark.slow
def test_one_attempt_is_the_default_and_a_failed_candidate_is_a_recorded_no_op(dataset, tmp_path):
    run("tune-and-promote", _params(dataset, tmp_path), tmp_path / "runs")
    [summary] = summaries(tmp_path / "reports")
    [only] = summary["attempts"]
    assert only["blessed"] is False and only["decision"] == "stop: max_attempts"
    assert summary["decisions"] == []  # one attempt: nothing was decided automatically
    assert summary["promoted_version"] is None
    assert FileRegistry(str(tmp_path / "registry"), "intents").champion() is None


@pytest.mark.parametrize("bad", [0, 6])  # a float or a string is refused by KFP itself (an int parameter)
def test_max_attempts_out_of_range_fails_the_first_task(dataset, tmp_path, bad):
    with pytest.raises(RuntimeError) as info:
        run("tune-and-promote", _params(dataset, tmp_path, max_attempts=bad), tmp_path / "runs")
    assert f"max_attempts={bad!r} must be an integer from 1 to 5" in str(info.value)


# The OpenAI stand-in's job for the 120-message dataset is estimated at $0.028 for 3 epochs (n_epochs
# auto). A budget of $0.10 pays for attempt 2 (5 epochs: ~$0.047, $0.075 together), not attempt 3
# (8 epochs: ~$0.075 more).
@pytest.mark.slow
def test_the_budget_stops_further_attempts_with_the_reason_recorded(openai_fake, hosted_dataset, tmp_path):
    from tests.fakes.fixtures import FAST

    hp = {k: v for k, v in FAST.items() if k != "budget_usd"}
    p = {**_params(hosted_dataset.uri, tmp_path, max_attempts=5, budget_usd=0.1), "provider": "openai",
         "base_model": "gpt-4.1-mini-2025-04-14", "hyperparameters": hp,
         "min_values": {"accuracy": 1.0}, "max_drop": {}}  # a bar the stand-in's model does not clear
    run("tune-and-promote", p, tmp_path / "runs")
    [summary] = summaries(tmp_path / "reports")
    first, second = summary["attempts"]
    assert not first["blessed"] and not second["blessed"]
    assert "n_epochs" not in first["hyperparameters"] and second["hyperparameters"]["n_epochs"] == 5
    assert second["hyperparameters"]["budget_usd"] == pytest.approx(0.1 - first["estimated_cost_usd"])
    assert first["estimated_cost_usd"] < second["estimated_cost_usd"]
    assert second["decision"] == "stop: budget"
    stop = summary["decisions"][-1]
    assert stop["decision"] == "stop: budget" and "budget_usd=0.1" in stop["reasoning"]
    assert stop["details"]["proposed_hyperparameters"]["n_epochs"] == 8
    assert summary["promoted_version"] is None and len(openai_fake.statuses()) == 2  # two jobs, no third
