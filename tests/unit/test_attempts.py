"""The attempt rule and plan (tuneloop.attempts): which hyperparameters the next attempt gets, and when to stop."""

from __future__ import annotations

import pytest

from tuneloop.attempts import NoAdjustment, adjust, check_max_attempts, plan_next, signal
from tuneloop.config import ConfigError
from tuneloop.providers.registry import provider_class

NOT_BLESSED = {"blessed": False, "reason": "not blessed: macro_f1 0.40 < min 0.60", "provider": "x",
               "candidate_metrics": {"macro_f1": 0.4}}
BLESSED = {**NOT_BLESSED, "blessed": True, "reason": "blessed", "candidate_metrics": {"macro_f1": 0.8}}


def card(metrics=None, cost=None, retries=()):
    return {"metrics": metrics or {}, "job_id": "j1", "model_ref": "m1", "retries": list(retries),
            "preflight": None if cost is None else {"estimated_cost_usd": cost}}


def test_max_attempts_is_an_integer_from_1_to_5():
    assert check_max_attempts(3) == 3 and check_max_attempts(5.0) == 5  # KFP's whole float
    for bad in (0, 6, 2.5, "3", True, None):
        with pytest.raises(ConfigError, match=r"max_attempts=.* must be an integer from 1 to 5"):
            check_max_attempts(bad)


def test_signals_from_the_result_cards():
    lora = {"steps": 40.0, "best_step": 40.0, "final_val_loss": 1.2, "first_train_loss": 3.0, "final_train_loss": 1.0}
    assert signal(lora)[0] == "falling"
    assert signal({**lora, "best_step": 20.0})[0] == "rising"
    assert signal({**lora, "final_train_loss": 3.5})[0] == "diverged"
    assert signal({"train_accuracy": 0.5, "validation_accuracy": 0.4})[0] == "underfit"
    assert signal({"train_accuracy": 1.0, "validation_accuracy": 0.6})[0] == "overfit"
    assert signal({"train_loss": 0.3, "valid_loss": 0.4})[0] == "none"  # OpenAI's last metrics event: no curve


def test_oss_lora_more_epochs_while_validation_loss_falls_and_a_lower_rate_when_it_rose():
    lora = provider_class("oss-lora")
    falling = {"steps": 40.0, "best_step": 40.0, "final_val_loss": 1.2}
    hp, d = adjust(lora, {"epochs": 4}, falling)
    assert hp["epochs"] == 6 and d.details["old"] == {"epochs": 4.0} and d.details["new"] == {"epochs": 6.0}
    hp, d = adjust(lora, {"learning_rate": 1e-3}, {**falling, "best_step": 10.0})
    assert hp["learning_rate"] == pytest.approx(5e-4) and "rising" in d.reasoning
    hp, _ = adjust(lora, {"max_steps": 10}, falling)  # a fixed step count: the steps grow instead
    assert hp["max_steps"] == 15
    with pytest.raises(NoAdjustment, match="cannot change"):
        adjust(lora, {"epochs": 20}, falling)  # at the cap


def test_hosted_providers_without_a_curve_get_more_epochs():
    hp, d = adjust(provider_class("openai"), {"n_epochs": "auto"}, {"train_loss": 0.3})
    assert hp["n_epochs"] == 5 and d.details["signal"] == "none"  # auto counts as 3; x1.5 rounded up
    hp, _ = adjust(provider_class("gemini"), {"epoch_count": 4, "gcs_staging_uri": "gs://tuneloop-test/runs"}, {})
    assert hp["epoch_count"] == 6


def test_sklearn_underfit_loosens_min_df_then_c_and_overfit_tightens_c():
    sk = provider_class("sklearn")
    assert adjust(sk, {"min_df": 8}, {"train_accuracy": 0.5})[0] == {"min_df": 2}
    assert adjust(sk, {}, {"train_accuracy": 0.5})[0] == {"C": 4.0}
    assert adjust(sk, {"C": 4.0}, {"train_accuracy": 1.0, "validation_accuracy": 0.5})[0] == {"C": 2.0}


def test_plan_stops_when_blessed_or_out_of_attempts_and_goes_otherwise():
    sk = provider_class("sklearn")
    done = plan_next(provider_cls=sk, attempt=1, max_attempts=3, hyperparameters={"min_df": 8.0},
                     blessing=BLESSED, card=card({"train_accuracy": 0.5}))
    assert done["go"] is False and done["stop_reason"] == "blessed" and done["decisions"] == []
    go = plan_next(provider_cls=sk, attempt=1, max_attempts=3, hyperparameters={"min_df": 8.0},
                   blessing=NOT_BLESSED, card=card({"train_accuracy": 0.5}))
    assert go["go"] is True and go["hyperparameters"] == {"min_df": 2}
    assert go["attempts"][0]["hyperparameters"] == {"min_df": 8} and go["attempts"][0]["decision"] == "go"
    last = plan_next(provider_cls=sk, attempt=3, max_attempts=3, hyperparameters={"min_df": 2},
                     blessing=NOT_BLESSED, card=card({"train_accuracy": 0.95}), history=go["attempts"] * 2,
                     decisions=go["decisions"])
    assert last["go"] is False and last["stop_reason"] == "max_attempts" and len(last["attempts"]) == 3
    assert [d["decision"] for d in last["decisions"]] == ["attempt 2: min_df=2", "stop: max_attempts"]


def test_the_budget_covers_all_attempts_together():
    oa = provider_class("openai")
    hp = {"n_epochs": 3, "budget_usd": 5.0}
    # attempt 1 cost 2.0; 5 epochs instead of 3 cost about 3.33: 5.33 > 5 -> stop, with the reason
    stop = plan_next(provider_cls=oa, attempt=1, max_attempts=5, hyperparameters=hp, blessing=NOT_BLESSED,
                     card=card(cost=2.0))
    assert stop["go"] is False and stop["stop_reason"] == "budget"
    [d] = stop["decisions"]
    assert d["decision"] == "stop: budget" and d["details"]["next_estimate_usd"] == pytest.approx(10 / 3)
    # a budget of 6: it fits, and the next job may spend only what is left
    go = plan_next(provider_cls=oa, attempt=1, max_attempts=5, hyperparameters={**hp, "budget_usd": 6.0},
                   blessing=NOT_BLESSED, card=card(cost=2.0))
    assert go["go"] is True and go["hyperparameters"]["n_epochs"] == 5 and go["hyperparameters"]["budget_usd"] == 4.0


def test_failed_jobs_retried_by_the_tune_task_become_retry_decisions():
    retries = [{"retry": 1, "failed_key": "k", "failed_job_id": "ftjob-1", "error": "internal", "new_key": "k-retry1"}]
    out = plan_next(provider_cls=provider_class("sklearn"), attempt=1, max_attempts=1, hyperparameters={},
                    blessing=BLESSED, card=card(retries=retries))
    [d] = out["decisions"]
    assert d["stage"] == "retry" and "ftjob-1" in d["reasoning"] and out["attempts"][0]["retries"] == 1
