"""Tuning: run or resume the provider's job; the job record is written before polling."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Model, Output
from tuneloop.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def tune_model(
    provider: str,
    dataset_uri: str,
    base_model: str,
    hyperparameters: dict,
    task_env: dict,
    model: Output[Model],
    job: Output[Artifact],
    task: str = "classification",
) -> NamedTuple("TuneOutputs", model_ref=str, job_id=str):
    """Tune a candidate model with one provider, idempotently.

    Args:
        provider: Canonical provider name (from the first task).
        dataset_uri: Published dataset directory.
        base_model: Base model id or path (ignored by sklearn).
        hyperparameters: The provider's config as parsed by the first task.
        task_env: Environment to set first: Secret Manager names of credentials, region settings.
        task: ``classification`` or ``chat``; a dataset built for the other is refused.
        model: The candidate model artifact (local model files or a card naming a remote model).
        job: The job record (provider job id + idempotency key), written before polling.

    Returns:
        The model reference ``predict`` takes, and the provider's job id.
    """
    from collections import namedtuple

    from tuneloop.stages import tune

    r = tune(
        provider=provider,
        dataset_uri=dataset_uri,
        base_model=base_model,
        hyperparameters=hyperparameters,
        task_env=task_env,
        model_dir=model.path,
        job_record_path=job.path,
        task=task,
    )
    model.metadata.update(provider=provider, dataset_hash=r["dataset_hash"], job_id=r["job_id"])
    return namedtuple("TuneOutputs", "model_ref job_id")(r["model_ref"], r["job_id"])
