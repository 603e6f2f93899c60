"""Promotion: register + compare-and-set the champion alias; skips are recorded too."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output
from tuneloop.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def promote_model(
    blessing: Input[Artifact],
    model: Input[Model],
    registry_uri: str,
    model_name: str,
    run_name: str,
    reports_uri: str,
    summary: Output[Artifact],
    decision_log: Output[Artifact],
    attempts: str = "[]",
    decisions: str = "[]",
) -> NamedTuple("PromoteOutputs", promoted_version=str, champion=str):
    """Register a blessed candidate and move ``champion`` from the champion that was evaluated.

    A candidate that is not blessed is a recorded no-op. If another run moved the champion since
    evaluation, the compare-and-set fails and this task fails with the reason.

    Args:
        blessing: The evaluator's decision record.
        model: The candidate model artifact.
        registry_uri: Registry root (directory or gs:// prefix).
        model_name: Registry model name.
        run_name: Pipeline run name, recorded in lineage and the summary path.
        reports_uri: Where ``<run_name>/summary.json`` is written too ("" = artifact only).
        summary: The run summary (provider, metrics, decision, promoted version, attempts, decisions).
        decision_log: The run's decision log as JSON Lines (also next to the summary under reports_uri).
        attempts: Every attempt of the run as a JSON list (from plan-attempt), for the summary and report.
        decisions: The run's decision records as a JSON list (from plan-attempt), for the summary and report.

    Returns:
        The promoted version ("" if none) and the champion after this step.
    """
    import json
    from collections import namedtuple

    from tuneloop.stages import promote

    r = promote(
        blessing_path=blessing.path,
        model_dir=model.path,
        registry_uri=registry_uri,
        model_name=model_name,
        run_name=run_name,
        reports_uri=reports_uri,
        summary_path=summary.path,
        attempts=json.loads(attempts),
        decisions=json.loads(decisions),
        decisions_path=decision_log.path,
    )
    summary.metadata.update(promoted=r["promoted_version"] or "", champion=r["champion_after"] or "")
    return namedtuple("PromoteOutputs", "promoted_version champion")(
        r["promoted_version"] or "", r["champion_after"] or ""
    )


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def record_skip(
    reason: str,
    provider: str,
    registry_uri: str,
    model_name: str,
    run_name: str,
    reports_uri: str,
    summary: Output[Artifact],
) -> str:
    """Record a run that ends without training (not enough new data) as a skip, not a failure.

    Args:
        reason: Why the run skipped.
        provider: The provider the run would have tuned.
        registry_uri: Registry root, to report the unchanged champion.
        model_name: Registry model name.
        run_name: Pipeline run name.
        reports_uri: Where ``<run_name>/summary.json`` is written too ("" = artifact only).
        summary: The run summary.

    Returns:
        The skip reason.
    """
    from tuneloop.stages import record_skip as run

    r = run(
        reason=reason,
        provider=provider,
        registry_uri=registry_uri,
        model_name=model_name,
        run_name=run_name,
        reports_uri=reports_uri,
        summary_path=summary.path,
    )
    summary.metadata.update(skipped=True, reason=reason)
    return r["decision"]["reason"]
