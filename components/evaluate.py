"""Evaluation: candidate vs current champion on the same eval rows; the blessing is always written."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Input, Metrics, Model, Output
from tuneloop.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate_model(
    provider: str,
    model: Input[Model],
    dataset_uri: str,
    registry_uri: str,
    model_name: str,
    min_values: dict,
    max_drop: dict,
    task_env: dict,
    eval_options: dict,
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    blessing: Output[Artifact],
    report: Output[HTML],
    task: str = "classification",
    judge: str = "",
    judge_rubric: str = "",
    taxonomy: str = "",
) -> NamedTuple("EvalOutputs", blessed=bool, reason=str):
    """Score the candidate and the champion on the eval split and decide the blessing.

    Args:
        provider: Provider that produced the candidate (it answers the eval prompts).
        model: The candidate model artifact.
        dataset_uri: Published dataset whose eval split both models answer.
        registry_uri: Registry holding the current champion.
        model_name: Registry model name.
        min_values: Value thresholds, e.g. ``{"macro_f1": 0.6}``.
        max_drop: Largest allowed drop vs the champion (none configured at all = not blessed).
        task_env: Environment to set first: Secret Manager names of credentials, region settings.
        eval_options: How a hosted model is asked: concurrency, max_requests (the run's request cap
            per model), max_output_tokens, retry.
        task: ``classification`` (labels: accuracy, F1, McNemar) or ``chat`` (replies: chrF, ROUGE-L and
            the judge's win rate).
        judge: Chat: the pairwise judge ``PROVIDER:MODEL`` ("" = reference metrics alone).
        judge_rubric: Chat: what the judge compares ("" = the packaged game rubric).
        taxonomy: Taxonomy file ("" = none): adds per-domain metrics (``domain_f1.<domain>``, ...).
        metrics: Scalar metrics (candidate, and champion with a ``champion_`` prefix).
        classification: The candidate's confusion matrix (classification tasks).
        blessing: Decision record: blessed, reason, both metric sets, champion version, paired test.
        report: The evaluation report (HTML, self-contained): decision, metrics with deltas, confusion
            matrix, per-label scores, paired test, dataset quarantine, cost and requests.

    Returns:
        Whether the candidate is blessed, and why.
    """
    from collections import namedtuple

    from tuneloop.stages import evaluate

    r = evaluate(
        provider=provider,
        model_dir=model.path,
        dataset_uri=dataset_uri,
        registry_uri=registry_uri,
        model_name=model_name,
        thresholds={"min_values": min_values, "max_drop": max_drop},
        blessing_path=blessing.path,
        task_env=task_env,
        eval_options=eval_options,
        report_path=report.path,
        task=task,
        judge=judge,
        judge_rubric=judge_rubric,
        taxonomy=taxonomy,
    )
    for k, v in r["scalar_metrics"].items():
        metrics.log_metric(k, v)
    cm = r["candidate_metrics"].get("confusion_matrix")
    if cm:
        classification.log_confusion_matrix(cm["labels"], cm["rows"])
    blessing.metadata.update(blessed=r["blessed"], reason=r["reason"], champion=r.get("champion_version") or "")
    return namedtuple("EvalOutputs", "blessed reason")(r["blessed"], r["reason"])
