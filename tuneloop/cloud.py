"""Run the compiled pipelines on Vertex AI Pipelines: submit one run, or schedule the export.

Everything here takes a compiled pipeline (the YAML ``tuneloop compile`` writes, or the one a
``gs://``/Artifact Registry URL names) and plain values; it never imports kfp. Credentials are read at
run time (Application Default Credentials); ``TUNELOOP_VERTEX_ENDPOINT`` points the client at another
endpoint (a test stand-in) over REST without credentials.

Idempotency: a run's job id can be given (:func:`pipeline_job_id` derives one from a dataset hash),
and Vertex refuses a second job with the same id. :func:`submit_pipeline` takes that refusal as
success ("already exists"), so a retried trigger or a cron run and an upload for the same data start
exactly one run. Note the consequence: a run that failed keeps its id, so re-running the same data
needs another id (``--job-id`` / a different ``attempt``).

Caching is decided in the compiled pipeline, task by task: a task whose result depends on state outside
its inputs (the warehouse, the registry, the dataset root, the clock) is compiled with caching off, so
it runs however the template is named, uploaded or scheduled (docs/google-cloud.md#caching). A
submission only ever turns caching off for every task (``enable_caching=False``), never on.

Errors: :class:`CloudError` says whether a retry can help (``retryable``: throttling, a timeout, the
server's own error) or not (permissions, a bad template or parameter); :func:`is_retryable` answers
the same for any exception, walking its causes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

ENDPOINT_ENV = "TUNELOOP_VERTEX_ENDPOINT"
LOGIN_HINT = "gcloud auth application-default login"
DEFAULT_LABELS = {"app": "tuneloop"}
MAX_CONCURRENT_RUNS = 1

_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_JOB_ID = re.compile(r"^[a-z][-a-z0-9]{0,127}$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_SA = re.compile(
    r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9-]+\.iam\.gserviceaccount\.com$|^[0-9]+-compute@developer\.gserviceaccount\.com$"
)
# Parameter names that look like credentials: these belong in Secret Manager, read at run time.
_SECRET_NAME = re.compile(r"(api[_-]?key|secret|password|passwd|token|credential|private[_-]?key)", re.I)


class CloudError(RuntimeError):
    """Vertex AI refused a request; the message says which resource and what to do.

    Attributes:
        retryable: Whether the same request may succeed later (throttling, a timeout, a server error);
            False for permissions, a bad template or parameter, missing credentials.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class CredentialsError(CloudError):
    """No Google credentials on this machine; the message names the command that logs in."""


def is_retryable(exc: BaseException) -> bool:
    """Whether retrying the request that raised ``exc`` can help (its causes are looked at too).

    Retryable: HTTP 408/429/5xx (but 501), gRPC UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
    ABORTED, connection failures and timeouts, a token refresh the auth library marks retryable.
    Anything else, a 4xx answer above all (permission, not found, invalid argument), is permanent.
    """
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as aexc

    transient = (
        gexc.TooManyRequests, gexc.ResourceExhausted, gexc.ServiceUnavailable, gexc.InternalServerError,
        gexc.BadGateway, gexc.GatewayTimeout, gexc.DeadlineExceeded, gexc.Aborted, gexc.RetryError,
        gexc.Unknown,
    )
    try:
        import requests

        transient += (requests.ConnectionError, requests.Timeout)
    except ImportError:  # pragma: no cover - requests comes with google-auth's transport
        pass
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, CloudError):
            return e.retryable
        if isinstance(e, transient):
            return True
        if isinstance(e, gexc.GoogleAPICallError):
            code = getattr(e, "code", None)
            return isinstance(code, int) and (code in (408, 429) or (code >= 500 and code != 501))
        if isinstance(e, aexc.RefreshError):
            return bool(getattr(e, "retryable", False))
        if isinstance(e, aexc.TransportError | ConnectionError | TimeoutError):
            return True
        if isinstance(e, aexc.DefaultCredentialsError):
            return False
        e = e.__cause__ or e.__context__
    return False


def _refused(what: str, exc: Exception) -> CloudError:
    """The CloudError for a refused request, retryable or not, naming the fix where one is known."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as aexc

    if isinstance(exc, aexc.DefaultCredentialsError):
        return CredentialsError(
            f"no Google credentials to call Vertex AI: run `{LOGIN_HINT}` (or run as a service account)"
        )
    if isinstance(exc, aexc.RefreshError) and not getattr(exc, "retryable", False):
        return CredentialsError(f"Google credentials could not be refreshed ({exc}): run `{LOGIN_HINT}` again")
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, gexc.Forbidden):  # PermissionDenied (gRPC) is a Forbidden (REST 403)
        message += (
            ". The submitting account needs roles/aiplatform.user and roles/iam.serviceAccountUser on the "
            "run's service account"
        )
    retryable = is_retryable(exc)
    return CloudError(f"{what}: {message}{'; retry' if retryable else ''}", retryable=retryable)


@dataclass(frozen=True)
class VertexTarget:
    """Where runs go: the project, region, pipeline root and the service account they run as.

    Attributes:
        project: Google Cloud project id.
        region: Vertex AI region, e.g. ``us-central1`` (the bucket of ``pipeline_root`` should be there too).
        pipeline_root: ``gs://BUCKET/PREFIX`` where Vertex writes each run's artifacts.
        service_account: The account the run's tasks act as (None: the Compute Engine default account,
            which is broader than it needs to be; see docs/google-cloud.md for the roles).
        labels: Labels put on every job (lowercase keys/values, as Vertex requires), merged over
            ``{"app": "tuneloop"}``.
    """

    project: str
    region: str
    pipeline_root: str
    service_account: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _PROJECT.match(self.project or ""):
            raise ValueError(
                f"project={self.project!r} is not a Google Cloud project id (6-30 lowercase letters, digits, "
                "hyphens; `gcloud projects list` shows yours)"
            )
        if not _REGION.match(self.region or ""):
            raise ValueError(f"region={self.region!r} is not a Vertex AI region; write e.g. us-central1")
        if not isinstance(self.pipeline_root, str) or not self.pipeline_root.startswith("gs://"):
            raise ValueError(
                f"pipeline_root={self.pipeline_root!r} must be a gs://BUCKET/PREFIX Vertex can write to"
            )
        if self.service_account is not None and not _SA.match(self.service_account):
            raise ValueError(
                f"service_account={self.service_account!r} is not a service account email; write "
                "NAME@PROJECT.iam.gserviceaccount.com"
            )
        object.__setattr__(self, "labels", check_labels({**DEFAULT_LABELS, **dict(self.labels)}))


@dataclass(frozen=True)
class SubmitResult:
    """The outcome of :func:`submit_pipeline`.

    Attributes:
        job_id: The pipeline job id.
        resource_name: ``projects/.../locations/.../pipelineJobs/<job_id>``.
        created: False when a job with this id already existed (nothing new was started).
        console_url: Where to watch it.
    """

    job_id: str
    resource_name: str
    created: bool
    console_url: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScheduleInfo:
    """A pipeline schedule as Vertex reports it."""

    resource_name: str
    display_name: str
    cron: str
    state: str
    max_concurrent_run_count: int
    allow_queueing: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- values ---------------------------------------------------------------------------------------------


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Vertex label rules: keys ``[a-z][a-z0-9_-]{0,62}``, values ``[a-z0-9_-]{0,63}``, at most 64.

    Raises:
        ValueError: naming the label and the rule.
    """
    out = {}
    for k, v in labels.items():
        v = str(v)
        if not _LABEL_KEY.match(str(k)):
            raise ValueError(f"label key {k!r}: lowercase letter first, then [a-z0-9_-], at most 63 chars")
        if not _LABEL_VALUE.match(v):
            raise ValueError(f"label {k}={v!r}: values are [a-z0-9_-], at most 63 chars")
        out[str(k)] = v
    if len(out) > 64:
        raise ValueError(f"labels: {len(out)} labels; Vertex allows 64")
    return out


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Pipeline parameters must be JSON values and must not carry credentials.

    Raises:
        ValueError: a parameter named like a secret (use Secret Manager, read at run time) or a value
            that is not JSON.
    """
    out = {}
    for k, v in params.items():
        if _SECRET_NAME.search(str(k)):
            raise ValueError(
                f"param {k!r} looks like a credential; never pass secrets as pipeline parameters (they are "
                "stored in the job spec in clear). Put it in Secret Manager and let the task read it"
            )
        try:
            json.dumps(v)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"param {k}={v!r} is not a JSON value") from exc
        out[str(k)] = v
    return out


def pipeline_job_id(pipeline: str, dataset_hash: str, *, key: Mapping[str, Any] | None = None) -> str:
    """A deterministic job id for running ``pipeline`` on one dataset.

    ``<pipeline>-<first 32 hex of the dataset hash>-<8 hex of the key>``: the same dataset and the same
    ``key`` (what else makes a run different: provider, model name, registry...) give the same id, so
    Vertex starts it once however many times it is submitted.

    Raises:
        ValueError: a dataset hash that is not hex, or a pipeline name that cannot start a job id.
    """
    if not re.fullmatch(r"[0-9a-f]{32,64}", dataset_hash or ""):
        raise ValueError(f"dataset_hash={dataset_hash!r} is not a sha256 hex digest")
    slug = re.sub(r"[^a-z0-9-]+", "-", pipeline.lower()).strip("-")[:60]
    extra = hashlib.sha256(json.dumps(dict(key or {}), sort_keys=True, default=str).encode()).hexdigest()[:8]
    job_id = f"{slug}-{dataset_hash[:32]}-{extra}"
    if not _JOB_ID.match(job_id):
        raise ValueError(f"pipeline={pipeline!r} gives no valid job id ({job_id!r}); start it with a letter")
    return job_id


def cron_with_time_zone(cron: str, time_zone: str) -> str:
    """``"0 3 * * *", "Europe/Berlin"`` -> ``"TZ=Europe/Berlin 0 3 * * *"`` (what Vertex schedules take).

    Raises:
        ValueError: a cron that is not 5 fields, or an unknown IANA time zone.
    """
    import zoneinfo

    fields = cron.split()
    if len(fields) != 5 or cron.startswith(("TZ=", "CRON_TZ=")):
        raise ValueError(
            f"cron={cron!r}: write 5 fields (minute hour day-of-month month day-of-week), e.g. '0 3 * * *'; "
            "give the time zone separately"
        )
    try:
        zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"time_zone={time_zone!r} is not an IANA time zone, e.g. Europe/Berlin or UTC"
        ) from exc
    return f"TZ={time_zone} {' '.join(fields)}"


# -- the client ------------------------------------------------------------------------------------------


def init_vertex(project: str, region: str) -> Any:
    """``aiplatform.init`` for ``project``/``region``; returns the ``aiplatform`` module.

    With ``TUNELOOP_VERTEX_ENDPOINT`` set (``http://host:port``), requests go there over REST without
    credentials (the test stand-in); otherwise to Vertex with Application Default Credentials.
    """
    try:
        from google.cloud import aiplatform
    except ImportError as exc:
        raise ImportError(
            "submitting to Vertex AI needs the cloud extra: pip install 'tuneloop[gcp]'"
        ) from exc
    endpoint = os.environ.get(ENDPOINT_ENV)
    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        aiplatform.init(
            project=project,
            location=region,
            api_transport="rest",
            api_endpoint=endpoint,
            credentials=AnonymousCredentials(),
        )
    else:
        # init() only sets what it is given: forget an endpoint and credentials set by an earlier call
        config = aiplatform.initializer.global_config
        for attr in ("_api_endpoint", "_credentials", "_api_transport"):
            if hasattr(config, attr):
                setattr(config, attr, None)
        aiplatform.init(project=project, location=region)
    return aiplatform


def _pipeline_name(template_path: str) -> str:
    base = template_path.rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"\.(ya?ml|json)$", "", base)


def _job(aiplatform, template_path, target, params, *, job_id, display_name, enable_caching, labels):
    """The ``PipelineJob`` of a template; a template or credentials that cannot be read are refused, named.

    Raises:
        ValueError, TypeError: bad parameters or labels (as raised).
        CloudError: the template (gs://, Artifact Registry) or the credentials could not be read.
    """
    try:
        return aiplatform.PipelineJob(
            display_name=display_name or _pipeline_name(template_path),
            template_path=template_path,
            job_id=job_id,
            pipeline_root=target.pipeline_root,
            parameter_values=check_params(params),
            enable_caching=enable_caching,
            labels={**target.labels, **check_labels(labels or {})},
            project=target.project,
            location=target.region,
        )
    except (ValueError, TypeError):
        raise
    except Exception as exc:  # reading the template (gs://, Artifact Registry) or the credentials
        raise _refused(f"cannot load template {template_path}", exc) from exc


def _console(project: str, region: str, kind: str, ident: str) -> str:
    return f"https://console.cloud.google.com/vertex-ai/locations/{region}/{kind}/{ident}?project={project}"


def submit_pipeline(
    template_path: str,
    target: VertexTarget,
    params: Mapping[str, Any],
    *,
    job_id: str | None = None,
    display_name: str | None = None,
    enable_caching: bool | None = None,
    labels: Mapping[str, str] | None = None,
) -> SubmitResult:
    """Submit one run of a compiled pipeline; a job that already exists under ``job_id`` is success.

    Args:
        template_path: The compiled pipeline: a local YAML, ``gs://...`` or an Artifact Registry URL.
        target: Project, region, pipeline root, service account and labels.
        params: Pipeline parameters (JSON values; no credentials).
        job_id: The run's id (see :func:`pipeline_job_id`); None lets Vertex name it (not idempotent).
        display_name: Shown in the console (default: the pipeline name).
        enable_caching: None = the compiled per-task settings (tasks that read the warehouse, the
            registry or the clock are never cached); False = no task is cached. True is refused: it
            would answer a warehouse extract or an evaluation from cache.
        labels: Extra labels for this run.

    Raises:
        ValueError: bad parameters, labels or job id.
        CloudError: Vertex refused the job (permissions, a bad template), with the reason and whether a
            retry can help (``retryable``); :class:`CredentialsError` when there are no credentials.
    """
    from google.api_core import exceptions as gexc

    if job_id is not None and not _JOB_ID.match(job_id):
        raise ValueError(f"job_id={job_id!r}: lowercase letter first, then [a-z0-9-], at most 128 chars")
    if enable_caching:
        raise ValueError(
            "enable_caching=True would cache every task, the warehouse extract and the evaluation too; "
            "leave it unset (the compiled per-task settings) or False"
        )
    params = check_params(params)
    aiplatform = init_vertex(target.project, target.region)
    job = _job(
        aiplatform,
        template_path,
        target,
        params,
        job_id=job_id,
        display_name=display_name,
        enable_caching=enable_caching,
        labels=labels,
    )
    parent = f"projects/{target.project}/locations/{target.region}"
    name = f"{parent}/pipelineJobs/{job.job_id}"
    resource = job._gca_resource  # the spec built by PipelineJob (gca_resource refuses before creation)
    if target.service_account:
        resource.service_account = target.service_account
    try:
        # PipelineJob.submit() would first look for the pipeline root's bucket and create it (and grant
        # IAM on it) when missing; tuneloop leaves bucket creation to the setup (docs/google-cloud.md), so
        # a typo in --pipeline-root fails instead of creating a bucket somewhere. The create is the same.
        created = job.api_client.create_pipeline_job(
            parent=parent, pipeline_job=resource, pipeline_job_id=job.job_id
        )
    except gexc.Conflict as exc:
        if not already_exists(exc):
            raise CloudError(f"Vertex AI refused to create {name}: {exc.message}; retry", retryable=True) from exc
        return SubmitResult(
            job.job_id, name, False, _console(target.project, target.region, "pipelines/runs", job.job_id)
        )
    except Exception as exc:  # API errors, connection failures, credentials
        raise _refused(f"Vertex AI refused to create {name}", exc) from exc
    return SubmitResult(
        job.job_id,
        created.name or name,
        True,
        _console(target.project, target.region, "pipelines/runs", job.job_id),
    )


def already_exists(exc: Exception) -> bool:
    """Whether an API error is ALREADY_EXISTS (gRPC) or a 409 whose status says so (REST)."""
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.AlreadyExists):
        return True
    if not isinstance(exc, gexc.Conflict) or isinstance(exc, gexc.Aborted):
        return False
    response = getattr(exc, "response", None)
    try:
        return response.json()["error"]["status"] == "ALREADY_EXISTS"
    except Exception:  # noqa: BLE001 - no JSON body: fall back to the message
        return "already exists" in str(exc.message).lower()


# -- schedules -------------------------------------------------------------------------------------------


def _info(s) -> ScheduleInfo:
    gca = s._gca_resource
    return ScheduleInfo(
        resource_name=gca.name,
        display_name=gca.display_name,
        cron=gca.cron,
        state=gca.state.name if hasattr(gca.state, "name") else str(gca.state),
        max_concurrent_run_count=int(gca.max_concurrent_run_count),
        allow_queueing=bool(gca.allow_queueing),
    )


def create_schedule(
    template_path: str,
    target: VertexTarget,
    params: Mapping[str, Any],
    *,
    display_name: str,
    cron: str,
    time_zone: str = "UTC",
    labels: Mapping[str, str] | None = None,
) -> ScheduleInfo:
    """Create a Vertex ``PipelineJobSchedule`` that runs the compiled pipeline on ``cron`` in ``time_zone``.

    At most one run at a time; a run due while one is still going is skipped, not queued
    (``allow_queueing=False``); a paused schedule resumes without catching up on missed runs.
    Refuses to create a second schedule with the same display name (two schedules would export twice).

    Raises:
        ValueError: a bad cron, time zone or parameter, or a schedule of that name exists.
        CloudError: Vertex refused the schedule.
    """
    from google.api_core import exceptions as gexc

    cron_tz = cron_with_time_zone(cron, time_zone)
    existing = [s for s in list_schedules(target.project, target.region) if s.display_name == display_name]
    if existing:
        raise ValueError(
            f"a schedule named {display_name!r} exists ({existing[0].resource_name}, {existing[0].state}); "
            "delete it first (`tuneloop schedule delete`) or pick another --name"
        )
    aiplatform = init_vertex(target.project, target.region)
    job = _job(
        aiplatform,
        template_path,
        target,
        params,
        job_id=None,
        display_name=display_name,
        enable_caching=None,
        labels=labels,
    )
    schedule = aiplatform.PipelineJobSchedule(pipeline_job=job, display_name=display_name)
    try:
        schedule.create(
            cron=cron_tz,
            max_concurrent_run_count=MAX_CONCURRENT_RUNS,
            allow_queueing=False,
            service_account=target.service_account,
        )
    except gexc.GoogleAPICallError as exc:
        raise _refused(f"Vertex AI refused schedule {display_name!r}", exc) from exc
    return _info(schedule)


def list_schedules(project: str, region: str) -> list[ScheduleInfo]:
    """Every pipeline schedule in the project and region, oldest first."""
    aiplatform = init_vertex(project, region)
    return [_info(s) for s in aiplatform.PipelineJobSchedule.list(project=project, location=region)]


def _find(project: str, region: str, schedule: str):
    aiplatform = init_vertex(project, region)
    if "/" not in schedule and not schedule.isdigit():
        matches = [s for s in list_schedules(project, region) if s.display_name == schedule]
        if not matches:
            raise ValueError(
                f"schedule={schedule!r}: no schedule with that name in {project}/{region}; "
                "`tuneloop schedule list` shows them"
            )
        if len(matches) > 1:
            names = [m.resource_name for m in matches]
            raise ValueError(
                f"schedule={schedule!r} names {len(matches)} schedules {names}; pass the resource name"
            )
        schedule = matches[0].resource_name
    return aiplatform.PipelineJobSchedule.get(schedule, project=project, location=region)


def pause_schedule(project: str, region: str, schedule: str) -> ScheduleInfo:
    """Pause a schedule (by display name, numeric id or resource name); no runs start until resumed."""
    s = _find(project, region, schedule)
    s.pause()
    return _info(s.get(s.resource_name, project=project, location=region))


def resume_schedule(project: str, region: str, schedule: str) -> ScheduleInfo:
    """Resume a paused schedule without catching up on the runs it missed while paused."""
    s = _find(project, region, schedule)
    # The SDK's resume() drops its catch_up argument; ask the API for "no catch-up" explicitly.
    s.api_client.resume_schedule(request={"name": s.resource_name, "catch_up": False})
    return _info(s.get(s.resource_name, project=project, location=region))


def delete_schedule(project: str, region: str, schedule: str) -> str:
    """Delete a schedule; returns its resource name. Runs it already started keep running."""
    s = _find(project, region, schedule)
    name = s.resource_name
    s.delete()
    return name


def schedules_as_dicts(items: Sequence[ScheduleInfo]) -> list[dict[str, Any]]:
    """For printing: each schedule as a plain dict."""
    return [i.to_dict() for i in items]
