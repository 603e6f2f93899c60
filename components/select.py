"""Model selection: pick a provider, base model and starting hyperparameters for a published dataset."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Output
from tuneloop.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def select_model(
    dataset_uri: str,
    report: Output[Artifact],
    decisions: Output[Artifact],
    task: str = "",
    budget_usd: float = 0.0,
    rules: str = "",
    catalog: str = "",
    today: str = "",
    ranker: str = "",
    eval_options: dict = {},  # noqa: B006 - KFP reads the default; {} = the default request bounds
    task_env: dict = {},  # noqa: B006
    base_models: dict = {},  # noqa: B006
) -> NamedTuple("SelectOutputs", provider=str, base_model=str, hyperparameters=dict):
    """Choose the provider, base model and starting hyperparameters by the catalog, the budget and the rules.

    Every (provider, base model) of the provider registry and the model catalog is listed as taken or
    refused with its reasons; a retired, over-budget or over-limit model is never chosen, whatever the
    rules or the ranker say.

    Args:
        dataset_uri: Published dataset directory (its manifest gives rows, task and token counts).
        report: The selection report (JSON): inputs, the choice, every candidate with its reasons.
        decisions: The decision log (JSON Lines): one ``select-model`` record.
        task: ``classification`` or ``chat`` ("" = the dataset's own task).
        budget_usd: Most the tuning job may cost (0 = only candidates with no training bill).
        rules: A selection rules YAML (local or gs://; "" = the packaged rules).
        catalog: A model catalog YAML ("" = the packaged catalog).
        today: The date retirement is judged on, YYYY-MM-DD ("" = the real date).
        ranker: ``PROVIDER:MODEL`` asked to rank the admissible candidates ("" = none).
        eval_options: How the ranker is asked (concurrency, max_requests, max_output_tokens, retry).
        task_env: The tuning tasks' environment (Secret Manager names), for the credential rules.
        base_models: ``{provider: base model}`` for providers without listed models (oss-lora's folder).

    Returns:
        The chosen provider, base model and hyperparameters (what tune-and-promote takes).
    """
    from collections import namedtuple

    from tuneloop.selection import run_selection

    r = run_selection(
        report_path=report.path, decisions_path=decisions.path, dataset_uri=dataset_uri, task=task,
        budget_usd=budget_usd, rules=rules, catalog=catalog, today=today, ranker=ranker,
        eval_options=eval_options, task_env=task_env, base_models=base_models,
    )
    report.metadata.update(provider=r["provider"], base_model=r["base_model"])
    return namedtuple("SelectOutputs", "provider base_model hyperparameters")(
        r["provider"], r["base_model"], r["hyperparameters"]
    )
