"""One tuning run per dataset, whichever path reaches it first: the claim.

Two paths can tune a published dataset: the upload trigger (the Cloud Function submits
``tune-and-promote`` when a dataset's manifest lands) and a ``continuous-tuning`` run (export and tune
in one run, e.g. on a schedule), whose export publishes the very dataset the trigger then sees. Both
compute the same id for "tune this dataset for this provider, model and registry"
(:func:`tuning_id`: :func:`tuneloop.cloud.pipeline_job_id` of ``tune-and-promote`` on the dataset
hash) and claim it with a create-only write of ``<dataset_root>/claims/<id>.json``:

* the first claim wins; the other path records a skip that names the holder and the id;
* a holder that claimed before and runs again (a redelivered event, a retried task) finds its own
  claim and goes on, so retries are safe; the trigger also submits under that id, and Vertex starts
  one job per id.

A claim is never released: a dataset is tuned once per identity. To tune the same data again (after a
failed run, or with other settings), submit ``tune-and-promote`` by hand with ``--job-id``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from tuneloop import storage

CLAIMS_DIR = "claims"
TUNE_PIPELINE = "tune-and-promote"
# The parameters that tell two tuning runs of one dataset apart (they enter the id), with the defaults
# both pipelines give them (tests/unit/cloud/test_claims.py pins these to the pipelines' defaults).
IDENTITY_DEFAULTS: Mapping[str, str] = {
    "provider": "sklearn",
    "model_name": "support-intent",
    "registry_uri": "",
    "base_model": "",
}
UPLOAD_TRIGGER = "gcs-upload"


@dataclass(frozen=True)
class Claim:
    """The outcome of :func:`claim`.

    Attributes:
        job_id: The tuning id (the trigger's Vertex job id for this dataset and identity).
        holder: Who holds the claim: ``gcs-upload`` or ``continuous-tuning:<run name>``.
        won: True when the caller holds it (just now, or from an earlier attempt).
        uri: Where the claim is recorded.
    """

    job_id: str
    holder: str
    won: bool
    uri: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def identity(params: Mapping[str, Any]) -> dict[str, str]:
    """The identity parameters of a tuning run, with the pipelines' defaults for those not given.

    The provider is canonicalised as the first task does (``OpenAI`` -> ``openai``, ``claude`` with
    ``hyperparameters.method`` -> its member), so the trigger's raw parameters and continuous-tuning's
    checked name give the same id.
    """
    from tuneloop.providers.registry import ProviderNotFound, canonical_name

    out = {k: str(params.get(k) or default) for k, default in IDENTITY_DEFAULTS.items()}
    try:
        out["provider"] = canonical_name(out["provider"], params.get("hyperparameters") or {})
    except ProviderNotFound:
        pass  # the run's first task refuses it, naming the valid ones
    return out


def tuning_id(dataset_hash: str, params: Mapping[str, Any]) -> str:
    """The id both paths use for tuning ``dataset_hash`` with ``params``' provider, model and registry."""
    from tuneloop.cloud import pipeline_job_id

    return pipeline_job_id(TUNE_PIPELINE, dataset_hash, key=identity(params))


def claim(dataset_root: str, dataset_hash: str, params: Mapping[str, Any], *, holder: str) -> Claim:
    """Claim the tuning of a dataset for ``holder`` (create-only; the first claim wins).

    Raises:
        ValueError: a dataset hash that is not a sha256 digest, or an empty holder.
    """
    if not holder:
        raise ValueError("holder is empty; name who tunes the dataset (gcs-upload or continuous-tuning:<run>)")
    job_id = tuning_id(dataset_hash, params)
    uri = storage.join(dataset_root, CLAIMS_DIR, f"{job_id}.json")
    record = {
        "job_id": job_id,
        "dataset_hash": dataset_hash,
        "holder": holder,
        "identity": identity(params),
        "claimed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        storage.write(uri, json.dumps(record, indent=2, sort_keys=True).encode(), if_generation=None)
        return Claim(job_id, holder, True, uri)
    except storage.ConflictError:
        existing, _ = storage.read_json(uri)
        held_by = str((existing or {}).get("holder") or "unknown")
        return Claim(job_id, held_by, held_by == holder, uri)


def dataset_hash_of(dataset_uri: str) -> str:
    """The hash a published dataset's URI ends with (``<root>/datasets/<sha256>``)."""
    return str(dataset_uri).rstrip("/").rsplit("/", 1)[-1]


def claim_for_run(
    *,
    dataset_root: str,
    dataset_uri: str,
    run_name: str,
    provider: str,
    model_name: str,
    registry_uri: str,
    base_model: str,
) -> dict[str, str]:
    """The ``continuous-tuning`` step between publishing and tuning: claim the dataset for this run.

    Returns:
        ``{"status": "claimed" | "taken", "reason", "job_id", "holder"}``: "taken" when another path
        (the upload trigger, another run) tunes this dataset; the run then records a skip.
    """
    params = {"provider": provider, "model_name": model_name, "registry_uri": registry_uri, "base_model": base_model}
    c = claim(dataset_root, dataset_hash_of(dataset_uri), params, holder=f"continuous-tuning:{run_name or 'run'}")
    if c.won:
        return {"status": "claimed", "reason": f"this run tunes {dataset_uri} ({c.job_id})", "job_id": c.job_id,
                "holder": c.holder}
    return {
        "status": "taken",
        "reason": (
            f"dataset {dataset_hash_of(dataset_uri)[:12]} is already tuned under {c.job_id} by {c.holder} "
            f"(claim {c.uri}); one tuning run per dataset"
        ),
        "job_id": c.job_id,
        "holder": c.holder,
    }
