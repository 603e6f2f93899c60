"""The upload trigger: a Cloud Function that starts ``tune-and-promote`` when a dataset lands on GCS.

Deployed as a 2nd-gen Cloud Function on the bucket's ``google.cloud.storage.object.v1.finalized``
events (the exact ``gcloud functions deploy`` command is in docs/google-cloud.md). Every finalized
object is looked at, and the function acts only when all of this holds:

1. the object is under ``<dataset_root>/datasets/<sha256>/`` (anything else in the bucket is ignored);
2. the dataset there is complete: ``manifest.json`` names the same hash as the folder, and every file a
   run reads is present (canonical splits; each rendered format's splits and report). A dataset still
   being uploaded is a *partial upload* and is ignored; the event of its last file finds it complete,
   whatever order the files arrive in;
3. then it submits ``tune-and-promote`` with that dataset's URI under a job id derived from the
   dataset hash (:func:`tuneloop.cloud.pipeline_job_id`). A double-fired event, a retried delivery,
   or the same data arriving through the cron export and an upload ask for the same job id, and Vertex
   starts it once; "already exists" is success.

An ignored event returns normally (no retry); a failed submission raises, so Eventarc redelivers it
when the function is deployed with ``--retry``.

Configuration is read from the function's environment at call time (set with ``--set-env-vars``)::

    TUNELOOP_DATASET_ROOT    gs://BUCKET/PREFIX   the export pipeline's dataset_root
    TUNELOOP_PROJECT         the Vertex project
    TUNELOOP_REGION          the Vertex region
    TUNELOOP_PIPELINE_ROOT   gs://BUCKET/pipeline-root
    TUNELOOP_TEMPLATE        the compiled tune-and-promote YAML (gs://... or an Artifact Registry URL)
    TUNELOOP_SERVICE_ACCOUNT the account runs act as (optional)
    TUNELOOP_PARAMS          JSON object of the other parameters: registry_uri, provider, model_name...
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from tuneloop import cloud, storage

PIPELINE = "tune-and-promote"
DATASETS_DIR = "datasets"
_HASH = re.compile(r"^[0-9a-f]{64}$")
# Parameters that tell two tuning runs on the same data apart (they go into the job id's key).
IDENTITY_PARAMS = ("provider", "model_name", "registry_uri", "base_model")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TriggerConfig:
    """What the function submits, and for which datasets.

    Attributes:
        dataset_root: ``gs://BUCKET/PREFIX``: datasets are ``<dataset_root>/datasets/<sha256>/``.
        target: Where runs go.
        template_path: The compiled ``tune-and-promote`` pipeline.
        params: Fixed parameters for every run (``dataset_uri`` is added per dataset).
        pipeline: The pipeline name used in the job id.
    """

    dataset_root: str
    target: cloud.VertexTarget
    template_path: str
    params: Mapping[str, Any] = field(default_factory=dict)
    pipeline: str = PIPELINE

    def __post_init__(self) -> None:
        if not storage.is_gcs(self.dataset_root):
            raise ValueError(
                f"dataset_root={self.dataset_root!r} must be the gs://BUCKET/PREFIX the export publishes to"
            )
        if not self.template_path:
            raise ValueError("template_path is empty; point it at the compiled tune-and-promote YAML")
        if "dataset_uri" in self.params:
            raise ValueError("params: dataset_uri is set per event; remove it from TUNELOOP_PARAMS")
        object.__setattr__(self, "params", cloud.check_params(dict(self.params)))

    @property
    def datasets_prefix(self) -> tuple[str, str]:
        """``(bucket, "prefix/datasets/")``: the object-name prefix of every dataset."""
        bucket, prefix = storage.split_gcs(self.dataset_root)
        return bucket, "/".join(p for p in (prefix, DATASETS_DIR) if p) + "/"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TriggerConfig:
        """Read the ``TUNELOOP_*`` variables (see the module docstring).

        Raises:
            ValueError: naming the missing or malformed variable.
        """
        env = os.environ if env is None else env

        def need(key: str) -> str:
            value = env.get(key, "").strip()
            if not value:
                raise ValueError(f"{key} is not set; deploy the function with --set-env-vars {key}=...")
            return value

        try:
            params = json.loads(env.get("TUNELOOP_PARAMS") or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"TUNELOOP_PARAMS is not JSON: {exc}") from exc
        if not isinstance(params, dict):
            raise ValueError("TUNELOOP_PARAMS must be a JSON object of pipeline parameters")
        target = cloud.VertexTarget(
            project=need("TUNELOOP_PROJECT"),
            region=need("TUNELOOP_REGION"),
            pipeline_root=need("TUNELOOP_PIPELINE_ROOT"),
            service_account=env.get("TUNELOOP_SERVICE_ACCOUNT") or None,
            labels={"trigger": "gcs-upload"},
        )
        return cls(
            dataset_root=need("TUNELOOP_DATASET_ROOT"),
            target=target,
            template_path=need("TUNELOOP_TEMPLATE"),
            params=params,
        )


@dataclass(frozen=True)
class TriggerOutcome:
    """What one event did: ``action`` is ``ignored``, ``submitted`` or ``already-submitted``."""

    action: str
    reason: str
    object_uri: str
    dataset_uri: str = ""
    job_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def required_files(manifest: Mapping[str, Any]) -> list[str]:
    """The files (relative to the dataset folder) a run reads, from the dataset's manifest."""
    from tuneloop.datasets import CANONICAL_DIR, MANIFEST
    from tuneloop.examples import SPLITS

    files = [MANIFEST, *(f"{CANONICAL_DIR}/{s}.parquet" for s in SPLITS)]
    for fmt in sorted(manifest.get("formats") or {}):
        files += [f"{fmt}/{s}.jsonl" for s in SPLITS] + [f"{fmt}/report.json"]
    return files


def missing_files(dataset_uri: str, dataset_hash: str) -> list[str]:
    """What a dataset folder still lacks (empty: complete); a manifest for another hash counts as missing."""
    from tuneloop.datasets import MANIFEST

    manifest, _ = storage.read_json(storage.join(dataset_uri, MANIFEST))
    if manifest is None:
        return [MANIFEST]
    if manifest.get("dataset_hash") != dataset_hash:
        return [f"{MANIFEST} (it names dataset {manifest.get('dataset_hash')!r}, not the folder's hash)"]
    present = set(storage.list_files(dataset_uri))
    return [f for f in required_files(manifest) if f not in present]


def handle_object_event(data: Mapping[str, Any], config: TriggerConfig) -> TriggerOutcome:
    """Decide on one GCS object-finalized event and submit the run when a dataset is complete.

    Args:
        data: The event's data (a Cloud Storage object resource: ``bucket``, ``name``, ...).
        config: The trigger's configuration.

    Returns:
        What happened; see :class:`TriggerOutcome`.

    Raises:
        tuneloop.cloud.CloudError: Vertex refused the submission (the event should be redelivered).
    """
    bucket, name = str(data.get("bucket", "")), str(data.get("name", ""))
    object_uri = f"gs://{bucket}/{name}"
    root_bucket, prefix = config.datasets_prefix
    if bucket != root_bucket or not name.startswith(prefix):
        return TriggerOutcome(
            "ignored", f"outside the dataset prefix gs://{root_bucket}/{prefix}", object_uri
        )
    dataset_hash, _, rel = name[len(prefix) :].partition("/")
    if not _HASH.match(dataset_hash) or not rel:
        return TriggerOutcome("ignored", "not a file inside a datasets/<sha256>/ folder", object_uri)
    dataset_uri = f"gs://{bucket}/{prefix}{dataset_hash}"
    missing = missing_files(dataset_uri, dataset_hash)
    if missing:
        return TriggerOutcome(
            "ignored", f"partial upload: {dataset_uri} still lacks {missing[:5]}", object_uri, dataset_uri
        )
    key = {k: config.params.get(k) for k in IDENTITY_PARAMS}
    job_id = cloud.pipeline_job_id(config.pipeline, dataset_hash, key=key)
    result = cloud.submit_pipeline(
        config.template_path,
        config.target,
        {**config.params, "dataset_uri": dataset_uri},
        job_id=job_id,
        labels={"dataset": dataset_hash[:63]},
    )
    action = "submitted" if result.created else "already-submitted"
    reason = "dataset complete" if result.created else "a run for this dataset already exists"
    return TriggerOutcome(action, reason, object_uri, dataset_uri, job_id)


def on_dataset_finalized(cloud_event) -> None:
    """The Cloud Function entry point (``--entry-point on_dataset_finalized``), a CloudEvent handler."""
    outcome = handle_object_event(cloud_event.data or {}, TriggerConfig.from_env())
    # One JSON line: Cloud Logging indexes it as a structured entry.
    print(
        json.dumps(
            {"severity": "INFO", "message": f"tuneloop trigger: {outcome.action}", **outcome.to_dict()}
        )
    )


try:  # registers the signature type for `functions-framework --target on_dataset_finalized`
    import functions_framework

    on_dataset_finalized = functions_framework.cloud_event(on_dataset_finalized)
except ImportError:  # pragma: no cover - the gcp extra is not installed; the handler still works
    pass
