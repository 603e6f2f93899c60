"""The first task of every tuning run: validate parameters before any work or spend."""

from kfp import dsl
from tuneloop.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def check_config(
    provider: str,
    branches: list,
    registry_uri: str,
    model_name: str,
    min_values: dict,
    max_drop: dict,
    hyperparameters: dict,
    task_env: dict,
    eval_options: dict,
) -> str:
    """Fail fast on an invalid run configuration.

    Args:
        provider: The tuner to run; must be one of ``branches``.
        branches: The providers this pipeline has a branch for.
        registry_uri: Model registry root (directory or gs:// prefix).
        model_name: Registry model name.
        min_values: Value thresholds, e.g. ``{"macro_f1": 0.6}``.
        max_drop: Largest allowed drop vs the champion, e.g. ``{"macro_f1": 0.05}``.
        hyperparameters: Provider hyperparameters.
        task_env: Environment of the tuning/evaluation tasks: ``<NAME>_SECRET`` Secret Manager version
            names and plain settings such as ``AWS_REGION`` (never a credential itself).
        eval_options: How evaluation asks a hosted model (concurrency, max_requests, ...).

    Returns:
        The provider name, once validated.
    """
    from tuneloop.stages import check_config as run

    return run(
        provider=provider,
        branches=branches,
        registry_uri=registry_uri,
        model_name=model_name,
        thresholds={"min_values": min_values, "max_drop": max_drop},
        hyperparameters=hyperparameters,
        task_env=task_env,
        eval_options=eval_options,
    )["provider"]
