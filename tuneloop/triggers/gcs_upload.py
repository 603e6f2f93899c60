"""The upload trigger: a Cloud Function that starts ``tune-and-promote`` when a dataset lands on GCS.

Deployed as a 2nd-gen Cloud Function on the bucket's ``google.cloud.storage.object.v1.finalized``
events with ``--retry`` (the exact ``gcloud functions deploy`` command is in docs/google-cloud.md).
Every finalized object is looked at; the function acts only when all of this holds:

1. the object is a dataset's ``manifest.json``: ``<dataset_root>/datasets/<sha256>/manifest.json``
   (every other object, in the bucket or in the dataset, is ignored: the manifest is written last);
2. the dataset is complete: the manifest names the same hash as the folder and every file a run reads
   is there (canonical splits; each rendered format's splits and report). A manifest that lands
   before its files (a parallel ``gcloud storage cp -r``) is retried until they are there, for an
   hour after the manifest was written; then it is dropped as an abandoned upload;
3. the dataset is claimed for tuning (:mod:`tuneloop.claims`): unless a ``continuous-tuning`` run
   already tunes it, it submits ``tune-and-promote`` with that dataset's URI under the claim's job id,
   derived from the dataset hash. A double-fired event, a redelivery, or the same data from the cron
   export and an upload ask for the same job id, and Vertex starts it once ("already exists" is
   success).

Errors: a retryable failure (throttling, a timeout, a 5xx from Vertex or GCS, a dataset still being
uploaded) raises, and Eventarc redelivers the event. A permanent one (a bad configuration, a template
Vertex refuses, a permission) is logged as one ERROR line with the reason and acknowledged: its event
would fail the same way for days. Every event ends in one JSON log line (Cloud Logging indexes it).

Configuration is read from the function's environment at call time (set with ``--env-vars-file``)::

    TUNELOOP_DATASET_ROOT    gs://BUCKET/PREFIX   the export pipeline's dataset_root
    TUNELOOP_PROJECT         the Vertex project
    TUNELOOP_REGION          the Vertex region
    TUNELOOP_PIPELINE_ROOT   gs://BUCKET/pipeline-root
    TUNELOOP_TEMPLATE        the compiled tune-and-promote YAML (gs://... or an Artifact Registry URL)
    TUNELOOP_SERVICE_ACCOUNT the account runs act as (optional)
    TUNELOOP_PARAMS          JSON object of the other parameters: registry_uri, provider, model_name,
                             task_env (where the tasks find a hosted provider's key), hyperparameters...
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from tuneloop import claims, cloud, storage

PIPELINE = claims.TUNE_PIPELINE
DATASETS_DIR = "datasets"
MANIFEST = "manifest.json"
_HASH = re.compile(r"^[0-9a-f]{64}$")
# How long a manifest that landed before its files is retried (then dropped as an abandoned upload).
PARTIAL_UPLOAD_WAIT_SECONDS = 3600.0


class DatasetIncomplete(RuntimeError):
    """The manifest landed before the files it lists; retryable: the rest of the upload is on its way."""


class TriggerConfigError(ValueError):
    """The function's configuration is invalid; permanent until it is redeployed."""


@dataclass(frozen=True)
class TriggerConfig:
    """What the function submits, and for which datasets.

    Attributes:
        dataset_root: ``gs://BUCKET/PREFIX``: datasets are ``<dataset_root>/datasets/<sha256>/``.
        target: Where runs go.
        template_path: The compiled ``tune-and-promote`` pipeline.
        params: Fixed parameters for every run (``dataset_uri`` is added per dataset). ``task_env`` and,
            for a hosted provider, the credential it names are checked here, once.
        pipeline: The pipeline name used in the job id.
        partial_upload_wait: Seconds a manifest whose files are missing is retried.
    """

    dataset_root: str
    target: cloud.VertexTarget
    template_path: str
    params: Mapping[str, Any] = field(default_factory=dict)
    pipeline: str = PIPELINE
    partial_upload_wait: float = PARTIAL_UPLOAD_WAIT_SECONDS

    def __post_init__(self) -> None:
        from tuneloop.secrets import MissingSecret, check_credentials

        if not storage.is_gcs(self.dataset_root):
            raise TriggerConfigError(
                f"dataset_root={self.dataset_root!r} must be the gs://BUCKET/PREFIX the export publishes to"
            )
        if not self.template_path:
            raise TriggerConfigError("template_path is empty; point it at the compiled tune-and-promote YAML")
        if "dataset_uri" in self.params:
            raise TriggerConfigError("params: dataset_uri is set per event; remove it from TUNELOOP_PARAMS")
        if not self.params.get("registry_uri"):
            raise TriggerConfigError(
                'TUNELOOP_PARAMS has no registry_uri; add "registry_uri": "gs://BUCKET/registry" (tune-and-promote needs it)'
            )
        try:
            params = cloud.check_params(dict(self.params))
            hyper = params.get("hyperparameters") or {}
            method = hyper.get("method") if isinstance(hyper, Mapping) else None
            # the tasks run on Vertex: their only environment is task_env
            check_credentials(params.get("provider", ""), params.get("task_env") or {}, method=method, on_vertex=True)
        except (ValueError, MissingSecret) as exc:
            raise TriggerConfigError(f"TUNELOOP_PARAMS: {exc}") from exc
        object.__setattr__(self, "params", params)

    @property
    def datasets_prefix(self) -> tuple[str, str]:
        """``(bucket, "prefix/datasets/")``: the object-name prefix of every dataset."""
        bucket, prefix = storage.split_gcs(self.dataset_root)
        return bucket, "/".join(p for p in (prefix, DATASETS_DIR) if p) + "/"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TriggerConfig:
        """Read the ``TUNELOOP_*`` variables (see the module docstring).

        Raises:
            TriggerConfigError: naming the missing or malformed variable.
        """
        env = os.environ if env is None else env

        def need(key: str) -> str:
            value = env.get(key, "").strip()
            if not value:
                raise TriggerConfigError(f"{key} is not set; deploy the function with --set-env-vars {key}=...")
            return value

        try:
            params = json.loads(env.get("TUNELOOP_PARAMS") or "{}")
        except json.JSONDecodeError as exc:
            raise TriggerConfigError(f"TUNELOOP_PARAMS is not JSON: {exc}") from exc
        if not isinstance(params, dict):
            raise TriggerConfigError("TUNELOOP_PARAMS must be a JSON object of pipeline parameters")
        try:
            target = cloud.VertexTarget(
                project=need("TUNELOOP_PROJECT"),
                region=need("TUNELOOP_REGION"),
                pipeline_root=need("TUNELOOP_PIPELINE_ROOT"),
                service_account=env.get("TUNELOOP_SERVICE_ACCOUNT") or None,
                labels={"trigger": "gcs-upload"},
            )
        except TriggerConfigError:
            raise
        except ValueError as exc:
            raise TriggerConfigError(str(exc)) from exc
        return cls(
            dataset_root=need("TUNELOOP_DATASET_ROOT"),
            target=target,
            template_path=need("TUNELOOP_TEMPLATE"),
            params=params,
        )


@dataclass(frozen=True)
class TriggerOutcome:
    """What one event did.

    ``action``: ``ignored`` (not a dataset's manifest, or a manifest that is not trusted),
    ``submitted``, ``already-submitted`` (a run with this job id exists), ``tuned-elsewhere`` (a
    continuous-tuning run claimed the dataset), ``refused`` (a permanent error, acknowledged).
    """

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


def _age_seconds(data: Mapping[str, Any]) -> float | None:
    stamp = data.get("timeCreated") or data.get("updated")
    if not stamp:
        return None
    try:
        created = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    return (dt.datetime.now(dt.UTC) - created).total_seconds()


def handle_object_event(data: Mapping[str, Any], config: TriggerConfig) -> TriggerOutcome:
    """Decide on one GCS object-finalized event and submit the run when a dataset's manifest is complete.

    Args:
        data: The event's data (a Cloud Storage object resource: ``bucket``, ``name``, ``timeCreated``...).
        config: The trigger's configuration.

    Returns:
        What happened; see :class:`TriggerOutcome`.

    Raises:
        DatasetIncomplete: the manifest landed before its files (retry: they are on their way).
        tuneloop.cloud.CloudError: Vertex refused the submission; ``retryable`` says whether a
            redelivery can help (:func:`on_dataset_finalized` acknowledges the permanent ones).
        google.api_core.exceptions.GoogleAPICallError: GCS failed while the dataset was checked.
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
    if rel != MANIFEST:
        return TriggerOutcome("ignored", f"not the dataset's {MANIFEST} (it is written last and starts the run)", object_uri)
    dataset_uri = f"gs://{bucket}/{prefix}{dataset_hash}"
    missing = missing_files(dataset_uri, dataset_hash)
    if missing and missing[0].startswith(f"{MANIFEST} (it names"):
        return TriggerOutcome("ignored", f"untrusted manifest: {missing[0]}", object_uri, dataset_uri)
    if missing:
        age = _age_seconds(data)
        if age is not None and age > config.partial_upload_wait:
            return TriggerOutcome(
                "refused",
                f"abandoned partial upload: {dataset_uri} still lacks {missing[:5]} {age / 60:.0f} min after "
                "its manifest; upload the missing files, then the manifest again",
                object_uri,
                dataset_uri,
            )
        raise DatasetIncomplete(f"partial upload: {dataset_uri} still lacks {missing[:5]}; retrying")
    claim = claims.claim(config.dataset_root, dataset_hash, config.params, holder=claims.UPLOAD_TRIGGER)
    if not claim.won:
        return TriggerOutcome(
            "tuned-elsewhere",
            f"{claim.holder} already tunes this dataset under {claim.job_id} (claim {claim.uri})",
            object_uri,
            dataset_uri,
            claim.job_id,
        )
    result = cloud.submit_pipeline(
        config.template_path,
        config.target,
        {**config.params, "dataset_uri": dataset_uri},
        job_id=claim.job_id,
        labels={"dataset": dataset_hash[:63]},
    )
    action = "submitted" if result.created else "already-submitted"
    reason = "dataset complete" if result.created else "a run for this dataset already exists"
    return TriggerOutcome(action, reason, object_uri, dataset_uri, claim.job_id)


def _log(severity: str, message: str, **fields: Any) -> None:
    """One JSON line on stdout: Cloud Logging indexes it as a structured entry with this severity."""
    print(json.dumps({"severity": severity, "message": message, **fields}, default=str), flush=True)
    sys.stdout.flush()


def on_dataset_finalized(cloud_event) -> None:
    """The Cloud Function entry point (``--entry-point on_dataset_finalized``), a CloudEvent handler.

    Returns normally (the event is acknowledged) for ignored events, submissions and permanent errors;
    raises for retryable ones, so that Eventarc redelivers the event (deploy with ``--retry``).
    """
    data = cloud_event.data or {}
    object_uri = f"gs://{data.get('bucket', '')}/{data.get('name', '')}"
    try:
        outcome = handle_object_event(data, TriggerConfig.from_env())
    except DatasetIncomplete as exc:
        _log("WARNING", f"tuneloop trigger: retrying: {exc}", action="retry", object_uri=object_uri)
        raise
    except Exception as exc:
        if cloud.is_retryable(exc):
            _log("WARNING", f"tuneloop trigger: retrying after a transient error: {exc}", action="retry",
                 object_uri=object_uri)
            raise
        _log(
            "ERROR",
            f"tuneloop trigger: refused (acknowledged, not retried): {type(exc).__name__}: {exc}",
            action="refused",
            reason=str(exc),
            object_uri=object_uri,
        )
        return
    severity = "ERROR" if outcome.action == "refused" else "INFO"
    _log(severity, f"tuneloop trigger: {outcome.action}", **outcome.to_dict())


try:  # registers the signature type for `functions-framework --target on_dataset_finalized`
    import functions_framework

    on_dataset_finalized = functions_framework.cloud_event(on_dataset_finalized)
except ImportError:  # pragma: no cover - the gcp extra is not installed; the handler still works
    pass
