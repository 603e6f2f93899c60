"""tune-and-promote: a published dataset -> the provider's branch: tune -> evaluate -> promote."""

from kfp import dsl
from tuneloop.components.config import check_config
from tuneloop.components.evaluate import evaluate_model
from tuneloop.components.promote import promote_model
from tuneloop.components.tune import tune_model

# The providers this pipeline has a branch for (dsl.If blocks; dsl.OneOf does not run locally).
BRANCHES = ["sklearn"]
# Blessing rules (support-intent system): macro F1 at least 0.6, and at most 0.05 below the champion.
DEFAULT_MIN_VALUES = {"macro_f1": 0.6}
DEFAULT_MAX_DROP = {"macro_f1": 0.05}


@dsl.pipeline(name="tune-evaluate-promote")
def tune_evaluate_promote(
    provider: str,
    dataset_uri: str,
    base_model: str,
    hyperparameters: dict,
    registry_uri: str,
    model_name: str,
    min_values: dict,
    max_drop: dict,
    reports_uri: str,
):
    """One provider's branch: tune a candidate, judge it against the champion, promote if blessed.

    Args:
        provider: Tuner name.
        dataset_uri: Published dataset directory.
        base_model: Base model id or path.
        hyperparameters: Provider hyperparameters.
        registry_uri: Registry root.
        model_name: Registry model name.
        min_values: Value thresholds ``{metric: minimum}``.
        max_drop: ``{metric: largest allowed drop}`` against the champion.
        reports_uri: Where run summaries are written ("" = artifacts only).
    """
    tune = tune_model(
        provider=provider, dataset_uri=dataset_uri, base_model=base_model, hyperparameters=hyperparameters
    )
    evaluate = evaluate_model(
        provider=provider,
        model=tune.outputs["model"],
        dataset_uri=dataset_uri,
        registry_uri=registry_uri,
        model_name=model_name,
        min_values=min_values,
        max_drop=max_drop,
    )
    promote_model(
        blessing=evaluate.outputs["blessing"],
        model=tune.outputs["model"],
        registry_uri=registry_uri,
        model_name=model_name,
        run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        reports_uri=reports_uri,
    )


@dsl.pipeline(name="tune-and-promote")
def tune_and_promote(
    dataset_uri: str,
    registry_uri: str,
    provider: str = "sklearn",
    model_name: str = "support-intent",
    base_model: str = "",
    hyperparameters: dict = {},
    min_values: dict = DEFAULT_MIN_VALUES,
    max_drop: dict = DEFAULT_MAX_DROP,
    reports_uri: str = "",
):
    """Tune a candidate on a published dataset with the chosen provider, evaluate, promote.

    Args:
        dataset_uri: Published dataset directory (from export-dataset or an upload trigger).
        registry_uri: Model registry root (directory or gs:// prefix).
        provider: Tuner: one of the pipeline's branches; anything else fails the first task.
        model_name: Registry model name.
        base_model: Base model id or path (unused by sklearn).
        hyperparameters: Provider hyperparameters.
        min_values: Value thresholds ``{metric: minimum}`` (first run: the only rules).
        max_drop: ``{metric: largest allowed drop}`` against the champion on the same eval rows.
        reports_uri: Where ``<run>/summary.json`` is written ("" = artifacts only).
    """
    checked = check_config(
        provider=provider,
        branches=BRANCHES,
        registry_uri=registry_uri,
        model_name=model_name,
        min_values=min_values,
        max_drop=max_drop,
        hyperparameters=hyperparameters,
    )
    with dsl.If(checked.output == "sklearn", name="provider-sklearn"):
        tune_evaluate_promote(
            provider="sklearn",
            dataset_uri=dataset_uri,
            base_model=base_model,
            hyperparameters=hyperparameters,
            registry_uri=registry_uri,
            model_name=model_name,
            min_values=min_values,
            max_drop=max_drop,
            reports_uri=reports_uri,
        )
