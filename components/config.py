"""The first task of every tuning run: validate and parse the parameters before any work or spend."""

from typing import NamedTuple

from kfp import dsl
from tuneloop.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def check_config(
    provider: str,
    registry_uri: str,
    model_name: str,
    min_values: dict,
    max_drop: dict,
    hyperparameters: dict,
    budget_usd: float,
    task_env: dict,
    eval_options: dict,
    accelerator_type: str,
    accelerator_count: int,
    cpu_limit: str,
    memory_limit: str,
    deploy_endpoint: str,
    deploy_options: dict,
    task: str = "classification",
    judge: str = "",
    judge_rubric: str = "",
    extract_query: str = "",
    query_params: dict = {},  # noqa: B006 - KFP reads the default; {} = no query parameters
    taxonomy: str = "",
    max_attempts: int = 1,
) -> NamedTuple("ConfigOutputs", provider=str, image=str, hyperparameters=dict):
    """Fail fast on an invalid run configuration; pass on the canonical provider and its parsed config.

    Args:
        provider: The tuner to run (any registered provider; ``claude`` + ``hyperparameters.method``
            names a Claude family member).
        registry_uri: Model registry root (directory, gs:// prefix or vertex:// URI).
        model_name: Registry model name.
        min_values: Value thresholds, e.g. ``{"macro_f1": 0.6}``.
        max_drop: Largest allowed drop vs the champion, e.g. ``{"macro_f1": 0.05}``.
        hyperparameters: Provider hyperparameters, parsed with the provider's config class (an unknown
            key or a bad value fails here, naming the valid keys).
        budget_usd: Most a hosted tuning job may cost (fills ``hyperparameters.budget_usd``; refused for
            providers that spend nothing remotely).
        task_env: Environment of the tuning/evaluation tasks: ``<NAME>_SECRET`` Secret Manager version
            names and plain settings such as ``AWS_REGION`` (never a credential itself).
        eval_options: How evaluation asks a hosted model (concurrency, max_requests, ...), parsed here.
        task: ``classification`` or ``chat``; a provider that does not declare it is refused, naming
            the providers that can.
        judge: Chat only: the pairwise judge, ``PROVIDER:MODEL`` or its JSON mapping ("" = none); its
            provider must declare chat.
        judge_rubric: Chat only: what the judge compares ("" = the packaged game rubric).
        accelerator_type: The GPU branch's accelerator, checked against Vertex's names (GPU providers).
        accelerator_count: The GPU branch's accelerator count.
        cpu_limit: The GPU branch's vCPUs (a Kubernetes CPU quantity).
        memory_limit: The GPU branch's memory (e.g. 32G).
        deploy_endpoint: Where a promoted champion is deployed ("" = nowhere); refused for a provider
            that declares no serving container.
        deploy_options: Serving settings of that deployment, checked here.
        extract_query: The extract query ("" = the interaction table), read and checked here: one
            read-only SELECT over declared parameters returning the canonical columns.
        query_params: The query's ``@name`` values, checked against the query here.
        taxonomy: Taxonomy file ("" = none), read and parsed here: a broken one is refused naming the field.
        max_attempts: Attempts the run may make (1..5; 1 = tune once), checked here.

    Returns:
        The canonical provider name, the image its tasks run on (``cpu`` or ``gpu``: the branch taken),
        and the parsed hyperparameters the tune task receives.
    """
    from collections import namedtuple

    from tuneloop.stages import check_config as run

    r = run(
        provider=provider,
        registry_uri=registry_uri,
        model_name=model_name,
        thresholds={"min_values": min_values, "max_drop": max_drop},
        hyperparameters=hyperparameters,
        task_env=task_env,
        eval_options=eval_options,
        task=task,
        judge=judge,
        judge_rubric=judge_rubric,
        budget_usd=budget_usd,
        gpu={"accelerator_type": accelerator_type, "accelerator_count": accelerator_count,
             "cpu_limit": cpu_limit, "memory_limit": memory_limit},
        deploy={"endpoint": deploy_endpoint, "options": deploy_options},
        extract_query=extract_query,
        query_params=query_params,
        taxonomy=taxonomy,
        max_attempts=max_attempts,
    )
    return namedtuple("ConfigOutputs", "provider image hyperparameters")(r["provider"], r["image"], r["hyperparameters"])
