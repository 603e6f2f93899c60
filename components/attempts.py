"""Evaluate and iterate: after an attempt's evaluation, stop or go with adjusted hyperparameters."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output
from tuneloop.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def plan_attempt(
    provider: str,
    attempt: int,
    max_attempts: int,
    hyperparameters: dict,
    blessing: Input[Artifact],
    model: Input[Model],
    decision_log: Output[Artifact],
    history: str = "[]",
    decisions_so_far: str = "[]",
) -> NamedTuple("PlanOutputs", go=bool, hyperparameters=dict, attempts=str, decisions=str):
    """Decide whether the run makes another attempt, and with which hyperparameters.

    The rule (docs/attempts.md, ``tuneloop.attempts``) reads the attempt's training metrics from its
    result card: validation loss still falling -> more epochs, diverged or rising -> a lower learning
    rate, no curve -> a documented default; the budget covers all attempts together.

    Args:
        provider: Canonical provider name (from the first task).
        attempt: This attempt's number (1-based).
        max_attempts: The run's attempt limit (1..5).
        hyperparameters: This attempt's hyperparameters.
        blessing: This attempt's blessing record.
        model: This attempt's model artifact (its result card: training metrics, cost, retries).
        history: The earlier attempts' records, as a JSON list ("[]" for the first attempt).
        decisions_so_far: The decision records so far, as a JSON list (records hold nulls, which KFP's
            list parameters do not carry).
        decision_log: Every decision so far as JSON Lines (``tuneloop.decisions``).

    Returns:
        Whether to go on, the next hyperparameters, every attempt's record and the decisions so far (JSON).
    """
    import json
    from collections import namedtuple

    from tuneloop.stages import plan_attempt as plan

    r = plan(
        provider=provider,
        attempt=attempt,
        max_attempts=max_attempts,
        hyperparameters=hyperparameters,
        blessing_path=blessing.path,
        model_dir=model.path,
        history=json.loads(history),
        decisions=json.loads(decisions_so_far),
        decisions_path=decision_log.path,
    )
    decision_log.metadata.update(go=r["go"], stop_reason=r["stop_reason"])
    return namedtuple("PlanOutputs", "go hyperparameters attempts decisions")(
        r["go"], r["hyperparameters"], json.dumps(r["attempts"]), json.dumps(r["decisions"])
    )
