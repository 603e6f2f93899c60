"""select-model: a published dataset -> the provider, base model and starting hyperparameters to tune.

One task. Its outputs are what tune-and-promote takes (``provider``, ``base_model``,
``hyperparameters``); its ``report`` and ``decisions`` artifacts say why (docs/select-model.md).
"""

from collections import namedtuple
from typing import NamedTuple

from kfp import dsl
from tuneloop.components.select import select_model as select_task


@dsl.pipeline(name="select-model")
def select_model(
    dataset_uri: str,
    task: str = "",
    budget_usd: float = 0.0,
    rules: str = "",
    catalog: str = "",
    today: str = "",
    ranker: str = "",
    eval_options: dict = {},
    task_env: dict = {},
    base_models: dict = {},
) -> NamedTuple("SelectionOutputs", provider=str, base_model=str, hyperparameters=dict):
    """Choose a provider, base model and starting hyperparameters for a dataset, by catalog, budget and rules.

    Args:
        dataset_uri: Published dataset directory (from export-dataset or an upload trigger).
        task: ``classification`` or ``chat`` ("" = the task the dataset was built for).
        budget_usd: Most the tuning job may cost; a candidate estimated above it is refused
            (0 = only candidates with no training bill: local providers, few-shot adapters).
        rules: A selection rules YAML, local or gs:// ("" = the packaged rules: docs/select-model.md).
        catalog: A model catalog YAML with the same schema as the packaged one ("" = packaged).
        today: The date end-of-life is judged on, YYYY-MM-DD ("" = the real date).
        ranker: ``PROVIDER:MODEL`` (a provider that declares chat) asked to rank the admissible candidates
            with reasoning; it only reorders candidates the rules admitted ("" = none).
        eval_options: How the ranker is asked: ``max_requests``, ``concurrency``, ``max_output_tokens``, ``retry``.
        task_env: The tuning tasks' environment (``<NAME>_SECRET`` Secret Manager names), so a hosted
            provider is judged by the credential its tuning task will have.
        base_models: ``{provider: base model}`` for providers whose catalog entry is any model (oss-lora:
            the base model folder); without one such a provider is refused.

    Returns:
        ``provider``, ``base_model`` and ``hyperparameters`` for tune-and-promote.
    """
    selected = select_task(
        dataset_uri=dataset_uri,
        task=task,
        budget_usd=budget_usd,
        rules=rules,
        catalog=catalog,
        today=today,
        ranker=ranker,
        eval_options=eval_options,
        task_env=task_env,
        base_models=base_models,
    ).set_caching_options(False)  # judged on today's date, credentials and the ranker's answer
    outputs = namedtuple("SelectionOutputs", "provider base_model hyperparameters")
    return outputs(selected.outputs["provider"], selected.outputs["base_model"], selected.outputs["hyperparameters"])
