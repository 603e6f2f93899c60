"""Evaluate and iterate: whether a run tries again, and with which hyperparameters.

A tuning run may make up to ``max_attempts`` (1..5) attempts. After each attempt's evaluation,
:func:`plan_next` decides: stop (the candidate is blessed, the attempts are used up, the budget cannot
pay for another, or no rule applies) or go, with hyperparameters adjusted by :func:`adjust`. Every
attempt becomes one record (its config, training metrics, evaluation, decision) and every choice one
:class:`tuneloop.decisions.Decision`; the run's summary carries both lists.

The adjustment rule (docs/attempts.md), read from the tune task's result card (``metrics``):

* **diverged** (oss-lora: the last training loss is above the first) -> learning rate x0.5;
* **validation loss rose before the end** (oss-lora: the best validation step is before the last
  step) -> learning rate x0.5;
* **validation loss still falling at the end** (oss-lora: best step = last step) -> epochs x1.5
  (rounded up, at least +1, at most 20);
* **underfit** (sklearn: training accuracy below 0.9) -> ``min_df`` / 4 when it is above 1 (the
  features were pruned too hard), else ``C`` x4 (at most 100);
* **overfit** (sklearn: training accuracy more than 0.15 above validation accuracy) -> ``C`` x0.5;
* **no curve** (OpenAI's last metrics event, Gemini, Bedrock: no validation curve in the card) ->
  the default: epochs x1.5; sklearn without a signal: ``C`` x4; the Claude few-shot adapter:
  ``exemplars_per_label`` x2.

The provider's knobs are found by field name (``epochs``/``n_epochs``/``epoch_count``,
``learning_rate``/``learning_rate_multiplier``), so a plug-in provider's config with those fields gets
the same rule; OpenAI's ``auto`` counts as 3 epochs and a multiplier of 1.0. The new values are parsed
through the provider's config class, so they are valid for it (a value it refuses stops the run with
that reason). A rule that cannot change anything (epochs already at the cap) stops the run too.

Budget: ``budget_usd`` (in the first attempt's hyperparameters, from the pipeline's ``budget_usd``)
covers all attempts together. The next attempt goes only when what the earlier attempts' accepted
preflight estimates add up to, plus the next attempt's estimate (this attempt's, scaled by the epoch
change), fits; the next attempt's own ``budget_usd`` is what is left, so its preflight enforces it too.

Nothing here imports kfp; :func:`plan_next` is a pure function of its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tuneloop.config import ConfigError, changed_fields
from tuneloop.decisions import Decision, inputs_hash

MAX_ATTEMPTS = 5
MAX_JOB_RETRIES = 3  # a provider job that ended failed is resubmitted at most this many times

EPOCH_FIELDS = ("epochs", "n_epochs", "epoch_count")
LR_FIELDS = ("learning_rate", "learning_rate_multiplier")
EPOCH_FACTOR, EPOCH_CAP = 1.5, 20
LR_FACTOR = 0.5
C_UP, C_DOWN, C_CAP = 4.0, 0.5, 100.0
MIN_DF_DIVISOR = 4
UNDERFIT_TRAIN_ACCURACY = 0.9
OVERFIT_GAP = 0.15
AUTO_EPOCHS, AUTO_LR = 3, 1.0


class NoAdjustment(ValueError):
    """No rule can change this config: the run stops with the reason."""


def check_max_attempts(value: Any) -> int:
    """``max_attempts`` as an int in 1..5 (a whole float from KFP accepted), else ConfigError."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ATTEMPTS:
        raise ConfigError(
            f"max_attempts={value!r} must be an integer from 1 to {MAX_ATTEMPTS} (1 = tune once, the default; "
            f"up to {MAX_ATTEMPTS} attempts adjust the hyperparameters after a candidate that is not blessed)"
        )
    return value


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def signal(metrics: Mapping[str, Any]) -> tuple[str, str]:
    """``(signal, why)`` read from a result card's training metrics (see the module's rule)."""
    m = {k: _num(v) for k, v in (metrics or {}).items()}
    first, final = m.get("first_train_loss"), m.get("final_train_loss")
    if first is not None and final is not None and final > first:
        return "diverged", f"training loss rose from {first:.4g} to {final:.4g}"
    steps, best = m.get("steps"), m.get("best_step")
    if steps is not None and best is not None and m.get("final_val_loss") is not None:
        if best < steps:
            return "rising", f"validation loss was lowest at step {best:g} of {steps:g} and rose after it"
        return "falling", f"validation loss was still falling at the last step ({steps:g})"
    train, val = m.get("train_accuracy"), m.get("validation_accuracy")
    if train is not None and train < UNDERFIT_TRAIN_ACCURACY:
        return "underfit", f"training accuracy {train:.3f} is below {UNDERFIT_TRAIN_ACCURACY}"
    if train is not None and val is not None and train - val > OVERFIT_GAP:
        return "overfit", f"training accuracy {train:.3f} is more than {OVERFIT_GAP} above validation {val:.3f}"
    return "none", "the tuning job recorded no loss curve"


def _field(current: Mapping[str, Any], names: Sequence[str]) -> str | None:
    return next((n for n in names if n in current), None)


def adjust(provider_cls: type, hyperparameters: Mapping[str, Any], metrics: Mapping[str, Any]) -> tuple[dict, Decision]:
    """The next attempt's hyperparameters (parsed by the provider's config class) and its Decision.

    Raises:
        NoAdjustment: no rule applies, the rule cannot change anything, or the provider refuses the value.
    """
    config = provider_cls.parse_config(dict(hyperparameters))
    full = {f: getattr(config, f) for f in config.__dataclass_fields__}
    sig, why = signal(metrics)
    epochs_f, lr_f = _field(full, EPOCH_FIELDS), _field(full, LR_FIELDS)
    if epochs_f == "epochs" and full.get("max_steps"):
        epochs_f = "max_steps"  # oss-lora with a fixed step count: scale the steps instead
    change: dict[str, Any] = {}
    if sig in ("diverged", "rising") and lr_f:
        old = AUTO_LR if full[lr_f] == "auto" else float(full[lr_f])
        change[lr_f] = old * LR_FACTOR
        rule = f"{sig}: {lr_f} x{LR_FACTOR}"
    elif sig in ("underfit", "overfit", "none") and "C" in full and "min_df" in full:
        if sig == "underfit" and full["min_df"] > 1:
            change["min_df"] = max(1, full["min_df"] // MIN_DF_DIVISOR)
            rule = f"underfit: min_df /{MIN_DF_DIVISOR}"
        elif sig == "overfit":
            change["C"] = full["C"] * C_DOWN
            rule = f"overfit: C x{C_DOWN}"
        else:
            change["C"] = min(C_CAP, full["C"] * C_UP)
            rule = f"{sig}: C x{C_UP} (at most {C_CAP:g})"
    elif epochs_f:
        old = AUTO_EPOCHS if full[epochs_f] == "auto" else full[epochs_f]
        new = max(math.ceil(old * EPOCH_FACTOR), math.floor(old) + 1)
        change[epochs_f] = new if epochs_f == "max_steps" else min(EPOCH_CAP, new)
        rule = f"{sig if sig != 'none' else 'no curve'}: {epochs_f} x{EPOCH_FACTOR}" + (
            "" if epochs_f == "max_steps" else f" (at most {EPOCH_CAP})")
    elif "exemplars_per_label" in full:
        change["exemplars_per_label"] = full["exemplars_per_label"] * 2
        rule = "no training curve (few-shot): exemplars_per_label x2"
    else:
        raise NoAdjustment(
            f"no adjustment rule for {provider_cls.name}: its config has none of {EPOCH_FIELDS + LR_FIELDS}, "
            "C/min_df or exemplars_per_label"
        )
    old_values = {k: full[k] for k in change}
    if all(old_values[k] == v for k, v in change.items()):
        raise NoAdjustment(f"the rule ({rule}) cannot change {old_values} any further")
    try:
        new_config = provider_cls.parse_config({**changed_fields(config), **change})
    except ConfigError as exc:
        raise NoAdjustment(f"the rule ({rule}) gives a value the {provider_cls.name} provider refuses: {exc}") from exc
    new_hp = changed_fields(new_config)
    new_values = {k: getattr(new_config, k) for k in change}
    decision = Decision(
        stage="attempt",
        decision=", ".join(f"{k}={v!r}" for k, v in new_values.items()),
        reasoning=f"{why}; rule {rule}",
        inputs_hash=inputs_hash({"hyperparameters": dict(hyperparameters), "metrics": dict(metrics or {})}),
        details={"signal": sig, "rule": rule, "old": old_values, "new": new_values,
                 "old_hyperparameters": dict(hyperparameters), "new_hyperparameters": new_hp},
    )
    return new_hp, decision


def _cost(card: Mapping[str, Any]) -> float:
    pre = card.get("preflight") if isinstance(card.get("preflight"), Mapping) else {}
    return _num(pre.get("estimated_cost_usd")) or 0.0


def _epochs(hp: Mapping[str, Any]) -> float | None:
    for f in EPOCH_FIELDS + ("max_steps",):
        v = hp.get(f)
        if v == "auto":
            return float(AUTO_EPOCHS)
        if _num(v):
            return float(v)
    return None


def attempt_record(attempt: int, hyperparameters: Mapping[str, Any], blessing: Mapping[str, Any],
                   card: Mapping[str, Any]) -> dict[str, Any]:
    """One attempt as the summary lists it: its config, training metrics, evaluation, cost, retries."""
    return {
        "attempt": attempt,
        "provider": blessing.get("provider") or card.get("provider"),
        "hyperparameters": dict(hyperparameters),
        "job_id": card.get("job_id"),
        "model_ref": card.get("model_ref"),
        "training_metrics": dict(card.get("metrics") or {}),
        "candidate_metrics": blessing.get("candidate_metrics"),
        "blessed": bool(blessing.get("blessed")),
        "reason": blessing.get("reason"),
        "estimated_cost_usd": _cost(card),
        "retries": len(card.get("retries") or []),
    }


def retry_decisions(card: Mapping[str, Any], attempt: int) -> list[Decision]:
    """The tune task's resubmissions of failed provider jobs (card ``retries``) as Decisions."""
    out = []
    for r in card.get("retries") or []:
        out.append(Decision(
            stage="retry",
            decision=f"resubmit as job key {r.get('new_key')}",
            reasoning=f"attempt {attempt}: provider job {r.get('failed_job_id') or '?'} ended failed: {r.get('error')}",
            inputs_hash=inputs_hash(r),
            details={"attempt": attempt, **dict(r)},
        ))
    return out


def plan_next(
    *,
    provider_cls: type,
    attempt: int,
    max_attempts: int,
    hyperparameters: Mapping[str, Any],
    blessing: Mapping[str, Any],
    card: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] = (),
    decisions: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """After attempt ``attempt``: stop, or go with the next hyperparameters.

    Args:
        provider_cls: The provider's class (its config class parses the new values).
        attempt: This attempt's number (1-based).
        max_attempts: The run's ``max_attempts`` (1..5).
        hyperparameters: This attempt's hyperparameters.
        blessing: This attempt's blessing record.
        card: This attempt's tune result card (training metrics, preflight, retries).
        history: The earlier attempts' records (:func:`attempt_record`).
        decisions: The decisions recorded so far (``Decision.to_dict()``), upstream ones included.

    Returns:
        ``go`` (bool), ``hyperparameters`` (the next attempt's, or this one's when stopping),
        ``attempts`` (every record so far, this one last), ``decisions`` (all so far, as dicts),
        ``stop_reason`` ("" when going: ``blessed``, ``max_attempts``, ``budget``, ``rule``).
    """
    max_attempts = check_max_attempts(max_attempts)
    hyperparameters = changed_fields(provider_cls.parse_config(dict(hyperparameters)))  # KFP's 8.0 -> 8
    record = attempt_record(attempt, hyperparameters, blessing, card)
    attempts = [dict(a) for a in history] + [record]
    new: list[Decision] = retry_decisions(card, attempt)
    go, stop, next_hp = False, "", dict(hyperparameters)
    if record["blessed"]:
        stop = "blessed"
    elif attempt >= max_attempts:
        stop = "max_attempts"
        if max_attempts > 1:
            new.append(Decision(
                stage="attempt", decision="stop: max_attempts",
                reasoning=f"attempt {attempt} of {max_attempts} was not blessed ({record['reason']}); no attempts left",
                inputs_hash=inputs_hash(attempts), details={"attempt": attempt, "max_attempts": max_attempts}))
    else:
        try:
            next_hp, decision = adjust(provider_cls, hyperparameters, card.get("metrics") or {})
        except NoAdjustment as exc:
            stop = "rule"
            new.append(Decision(stage="attempt", decision="stop: no adjustment", reasoning=str(exc),
                                inputs_hash=inputs_hash(attempts), details={"attempt": attempt}))
            next_hp = dict(hyperparameters)
        else:
            first_hp = attempts[0]["hyperparameters"]
            budget = _num(first_hp.get("budget_usd")) or 0.0
            spent = sum(a["estimated_cost_usd"] for a in attempts)
            old_e, new_e = _epochs(hyperparameters), _epochs(next_hp)
            estimate = record["estimated_cost_usd"] * (new_e / old_e if old_e and new_e else 1.0)
            if budget and spent + estimate > budget:
                stop = "budget"
                new.append(Decision(
                    stage="attempt", decision="stop: budget",
                    reasoning=(f"attempt {attempt + 1} would cost about ${estimate:.4f}; with ${spent:.4f} spent by "
                               f"{attempt} attempt(s) that exceeds budget_usd={budget:g}"),
                    inputs_hash=inputs_hash(attempts),
                    details={"attempt": attempt, "spent_usd": spent, "next_estimate_usd": estimate,
                             "budget_usd": budget, "proposed_hyperparameters": next_hp}))
                next_hp = dict(hyperparameters)
            else:
                if budget:
                    next_hp = changed_fields(provider_cls.parse_config(
                        {**next_hp, "budget_usd": round(budget - spent, 6)}))
                go = True
                new.append(Decision(
                    stage=decision.stage, decision=f"attempt {attempt + 1}: {decision.decision}",
                    reasoning=f"attempt {attempt} was not blessed ({record['reason']}); {decision.reasoning}",
                    inputs_hash=decision.inputs_hash,
                    details={**dict(decision.details), "attempt": attempt + 1, "new_hyperparameters": next_hp,
                             "spent_usd": spent, "budget_usd": budget or None}))
    record["decision"] = "go" if go else f"stop: {stop}"
    return {
        "go": go,
        "hyperparameters": next_hp,
        "attempts": attempts,
        "decisions": [dict(d) for d in decisions] + [d.to_dict() for d in new],
        "stop_reason": stop,
    }
