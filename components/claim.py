"""The claim between publishing a dataset and tuning it: one tuning run per dataset, whichever path is first."""

from typing import NamedTuple

from kfp import dsl
from tuneloop.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def claim_tuning(
    dataset_root: str,
    dataset_uri: str,
    run_name: str,
    provider: str,
    model_name: str,
    registry_uri: str,
    base_model: str,
) -> NamedTuple("ClaimOutputs", status=str, reason=str, job_id=str):
    """Claim the tuning of a published dataset for this run, unless the upload trigger got there first.

    The claim (``<dataset_root>/claims/<job id>.json``, create-only) carries the same job id the upload
    trigger submits ``tune-and-promote`` under, so a schedule and an upload of one dataset tune it once.

    Args:
        dataset_root: Root the dataset was published under.
        dataset_uri: The published dataset.
        run_name: This run's name (the claim's holder).
        provider: Tuner the run would use.
        model_name: Registry model name.
        registry_uri: Registry root.
        base_model: Base model id or path.

    Returns:
        ``status`` ("claimed": tune it; "taken": another path tunes it), the reason, the job id.
    """
    from collections import namedtuple

    from tuneloop.claims import claim_for_run

    r = claim_for_run(
        dataset_root=dataset_root,
        dataset_uri=dataset_uri,
        run_name=run_name,
        provider=provider,
        model_name=model_name,
        registry_uri=registry_uri,
        base_model=base_model,
    )
    return namedtuple("ClaimOutputs", "status reason job_id")(r["status"], r["reason"], r["job_id"])
