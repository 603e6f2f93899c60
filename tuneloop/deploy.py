"""Deploy the champion to a Vertex AI endpoint (optional, after promotion), smoke-tested before it gets traffic.

For champions that need serving infrastructure (``sklearn``, ``oss-lora``; hosted models are served by
their provider and are skipped). :func:`deploy_champion` does, for the registry's current champion:

1. a Vertex model for the version: the Vertex Model Registry version itself (``vertex://`` registries),
   or one uploaded from the version's ``gs://`` files (file/GCS registry), with the serving container:
   the prebuilt scikit-learn image (it loads ``model.joblib``, which the sklearn tuner writes) or an LLM
   serving image (vLLM) for an oss-lora model (its merged weights, or its base + LoRA adapter);
2. a deployment of it on the *staging* endpoint (``<endpoint>-staging``, created when needed), where
   it answers a smoke request (Vertex routes predictions by traffic split only, so a deployment at 0%
   on the serving endpoint cannot be asked on its own; the staging endpoint holds nothing else);
3. only when the smoke answer is well formed: a deployment on the serving endpoint, traffic moved to
   it (100%) in one update, and the previous deployments undeployed (``keep_previous`` keeps them at
   0% for an instant rollback); the staging deployment is removed either way;
4. a deployment record next to the registry (:func:`deployment_of`), which ``tuneloop registry
   champion`` prints as the endpoint.

A smoke failure undeploys the new deployment and raises :class:`DeployError`: the endpoint keeps
serving the previous champion untouched. :func:`rollback_endpoint` rolls the registry back one step and
deploys that champion the same way, so traffic goes back to it (at once, when it was kept).

Re-running is safe: a champion that already has all the traffic is a no-op (``already-serving``), and
its Vertex model is found again by label instead of being uploaded twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tuneloop import storage
from tuneloop.config import ConfigError, from_mapping, setting

ENDPOINT_FORM = "vertex://PROJECT/REGION/ENDPOINT_NAME"
# Serving kinds a provider may declare (Provider.serving) -> what serves it on an endpoint.
SERVING_KINDS = ("sklearn", "llm")
DEPLOYMENT_FILE = "deployment.json"
STAGING_SUFFIX = "-staging"
SKLEARN_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-5:latest"
LLM_IMAGE = "us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/pytorch-vllm-serve:latest"
LABEL_MODEL = "tuneloop_model"
LABEL_VERSION = "tuneloop_version"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,100}$")


class DeployError(RuntimeError):
    """The deployment did not take traffic (smoke failed, files missing); the endpoint is unchanged."""


@dataclass(frozen=True)
class EndpointRef:
    """A Vertex endpoint by project, region and display name (``vertex://PROJECT/REGION/NAME``)."""

    project: str
    region: str
    name: str

    @classmethod
    def parse(cls, uri: str) -> EndpointRef:
        """``vertex://PROJECT/REGION/NAME`` -> EndpointRef.

        Raises:
            ValueError: naming the URI and the form to write.
        """
        if not isinstance(uri, str) or not uri.startswith("vertex://"):
            raise ValueError(f"deploy_endpoint={uri!r}: write {ENDPOINT_FORM} (or '' for no deployment)")
        parts = uri[len("vertex://"):].strip("/").split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"deploy_endpoint={uri!r}: write {ENDPOINT_FORM}")
        project, region, name = parts
        from tuneloop.cloud import VertexTarget

        VertexTarget(project, region, "gs://placeholder")  # checks project and region
        if not _NAME.match(name):
            raise ValueError(
                f"deploy_endpoint={uri!r}: endpoint name {name!r} must be letters, digits, '_' or '-' (a display name)"
            )
        return cls(project, region, name)

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"


@dataclass(frozen=True)
class DeployConfig:
    """How the champion is served (the ``deploy_options`` pipeline parameter)."""

    machine_type: str = setting("n1-standard-2", help="Vertex machine type of each replica")
    min_replica_count: int = setting(1, help="replicas kept running")
    max_replica_count: int = setting(1, help="replicas under load (autoscaling)")
    accelerator_type: str = setting("", help="e.g. NVIDIA_L4 for an oss-lora model ('' = none)")
    accelerator_count: int = setting(0, help="accelerators per replica")
    sklearn_image: str = setting(SKLEARN_IMAGE, help="serving container of sklearn models (match the sklearn version)")
    llm_image: str = setting(LLM_IMAGE, help="serving container of oss-lora models (vLLM)")
    smoke_instances: tuple[Any, ...] = setting((), help="the smoke request's instances (default: one per kind)")
    keep_previous: bool = setting(False, help="keep the previous deployment at 0% for an instant rollback")

    def __post_init__(self) -> None:
        for name in ("min_replica_count", "max_replica_count"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name}={v!r} must be an integer >= 1")
        if self.max_replica_count < self.min_replica_count:
            raise ConfigError(f"max_replica_count={self.max_replica_count} is below min_replica_count="
                              f"{self.min_replica_count}")
        if isinstance(self.accelerator_count, bool) or not isinstance(self.accelerator_count, int) or \
                self.accelerator_count < 0:
            raise ConfigError(f"accelerator_count={self.accelerator_count!r} must be an integer >= 0")
        if bool(self.accelerator_type) != bool(self.accelerator_count):
            raise ConfigError("accelerator_type and accelerator_count go together (both set, or neither)")
        for name in ("machine_type", "sklearn_image", "llm_image"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ConfigError(f"{name}={getattr(self, name)!r} must be a non-empty string")


@dataclass(frozen=True)
class DeployResult:
    """What a deployment did: ``action`` is ``deployed``, ``already-serving`` or ``skipped``."""

    action: str
    reason: str
    version: str = ""
    endpoint: str = ""
    deployed_model_id: str = ""
    undeployed: tuple[str, ...] = ()
    smoke: Sequence[Any] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["undeployed"], d["smoke"] = list(self.undeployed), list(self.smoke)
        return d


def _record_uri(registry) -> str:
    base = getattr(registry, "base", None)
    if base is None:  # Vertex Model Registry: next to the version files
        base = storage.join(registry.artifact_root, registry.model_name)
    return storage.join(base, DEPLOYMENT_FILE)


def deployment_of(registry_uri: str, model_name: str) -> dict[str, Any] | None:
    """The last deployment record of a model (``{version, endpoint, deployed_model_id, at}``), or None."""
    from tuneloop.registry import open_registry

    value, _ = storage.read_json(_record_uri(open_registry(registry_uri, model_name)))
    return value


class _Vertex:
    """The GAPIC clients (real google-cloud-aiplatform, REST against the stand-in in tests)."""

    def __init__(self, ref: EndpointRef):
        from google.cloud.aiplatform import utils

        from tuneloop.cloud import init_vertex

        aiplatform = init_vertex(ref.project, ref.region)
        cfg = aiplatform.initializer.global_config
        self.ref = ref
        self.endpoints = cfg.create_client(client_class=utils.EndpointClientWithOverride, location_override=ref.region)
        self.models = cfg.create_client(client_class=utils.ModelClientWithOverride, location_override=ref.region)
        self.prediction = cfg.create_client(client_class=utils.PredictionClientWithOverride,
                                            location_override=ref.region)

    def endpoint(self, display_name: str, *, create: bool = True):
        found = [e for e in self.endpoints.list_endpoints(request={"parent": self.ref.parent, "filter": f'display_name="{display_name}"'})
                 if e.display_name == display_name]
        if found:
            return found[0]
        if not create:
            return None
        from google.cloud.aiplatform_v1.types import Endpoint

        op = self.endpoints.create_endpoint(parent=self.ref.parent, endpoint=Endpoint(
            display_name=display_name, labels={"tuneloop": "v1"}))
        return op.result()


def serving_of(provider: str) -> str | None:
    """The serving kind a provider declares (``Provider.serving``), or None (served by the provider)."""
    from tuneloop.providers.registry import ProviderNotFound, provider_class

    try:
        return provider_class(provider).serving
    except ProviderNotFound:
        return None


def served_providers() -> list[str]:
    """The providers whose champion the deploy step can put on an endpoint."""
    from tuneloop.providers.registry import provider_classes

    return sorted(n for n, c in provider_classes().items() if c.serving in SERVING_KINDS)


def _container(record, config: DeployConfig) -> dict[str, Any]:
    """The serving container of a version: prebuilt sklearn, or vLLM over the oss-lora model."""
    if serving_of(record.provider) == "sklearn":
        return {"image_uri": config.sklearn_image}
    from tuneloop.providers.oss_lora import checkpoint as ckpt

    manifest, _ = storage.read_json(storage.join(record.model_uri, ckpt.MANIFEST))
    if manifest is None:
        raise DeployError(f"{record.model_uri}: no {ckpt.MANIFEST}; not an oss-lora model folder")
    if manifest.get("task") != "causal-lm":
        raise DeployError(
            f"{record.version} is a {manifest.get('task')} oss-lora model; the LLM serving image serves causal LMs "
            "(serve a classifier with tuneloop.serving, or your own container)"
        )
    args = ["python", "-m", "vllm.entrypoints.api_server", "--host=0.0.0.0", "--port=8080"]
    if manifest.get("merged"):
        args.append(f"--model={storage.join(record.model_uri, ckpt.MERGED_DIR)}")
    else:
        base = str(manifest.get("base_model") or "")
        if not storage.is_gcs(base):
            raise DeployError(
                f"{record.version} is a LoRA adapter over base {base!r}, which Vertex cannot read; train with "
                "merge=true or from a gs:// base model"
            )
        args += [f"--model={base}", "--enable-lora", f"--lora-modules=champion={record.model_uri}"]
    return {"image_uri": config.llm_image, "args": args, "ports": [{"container_port": 8080}],
            "predict_route": "/generate", "health_route": "/ping"}


def _vertex_model(vx: _Vertex, registry, record, config: DeployConfig) -> str:
    """The Vertex model version to deploy (``projects/.../models/ID@VERSION``), uploaded once per version."""
    from tuneloop.registry.vertex import VertexRegistry

    if isinstance(registry, VertexRegistry):
        return f"{registry.model}@{record.number}"
    if not storage.is_gcs(record.model_uri or ""):
        raise DeployError(
            f"{record.model_name} {record.version}: its files are at {record.model_uri!r}; Vertex serves models from "
            "gs://, so keep the registry on gs:// (registry_uri=gs://BUCKET/registry) or on vertex://"
        )
    from google.api_core import exceptions as gexc
    from google.cloud.aiplatform_v1.types import Model, ModelContainerSpec

    model_id = re.sub(r"[^a-z0-9_-]", "-", f"tuneloop-{record.model_name}".lower())[:63]
    name = f"{vx.ref.parent}/models/{model_id}"
    try:
        for m in vx.models.list_model_versions(name=name):
            if m.labels.get(LABEL_VERSION) == record.version:
                return f"{name}@{m.version_id}"
        exists = True
    except gexc.NotFound:
        exists = False
    container = _container(record, config)
    model = Model(display_name=model_id, artifact_uri=record.model_uri,
                  container_spec=ModelContainerSpec(**container),
                  labels={LABEL_MODEL: model_id, LABEL_VERSION: record.version, "provider": record.provider})
    request = {"parent": vx.ref.parent, "model": model, **({"parent_model": name} if exists else {"model_id": model_id})}
    response = vx.models.upload_model(request=request).result()
    return f"{name}@{response.model_version_id}"


def _deployed(model: str, display: str, config: DeployConfig):
    from google.cloud.aiplatform_v1.types import DedicatedResources, DeployedModel, MachineSpec

    spec = MachineSpec(machine_type=config.machine_type)
    if config.accelerator_type:
        spec.accelerator_type = config.accelerator_type
        spec.accelerator_count = config.accelerator_count
    return DeployedModel(model=model, display_name=display, dedicated_resources=DedicatedResources(
        machine_spec=spec, min_replica_count=config.min_replica_count, max_replica_count=config.max_replica_count))


def _smoke_instances(record, config: DeployConfig) -> list[Any]:
    if config.smoke_instances:
        return list(config.smoke_instances)
    if serving_of(record.provider) == "sklearn":
        return ["hello, I need some help with my order"]
    return [{"prompt": "Hello!", "max_tokens": 8}]


def _smoke(vx: _Vertex, endpoint_name: str, instances: list[Any]) -> list[Any]:
    from google.protobuf import json_format, struct_pb2

    values = []
    for inst in instances:
        v = struct_pb2.Value()
        json_format.ParseDict(inst, v)
        values.append(v)
    try:
        response = vx.prediction.predict(endpoint=endpoint_name, instances=values)
    except Exception as exc:  # any error from the container is a failed smoke
        raise DeployError(f"the smoke request failed: {exc}") from exc
    predictions = [json_format.MessageToDict(p._pb) if hasattr(p, "_pb") else p for p in response.predictions]
    predictions = [json.loads(json.dumps(p, default=str)) for p in predictions]
    if len(predictions) != len(instances) or any(p in (None, "", [], {}) for p in predictions):
        raise DeployError(f"the smoke request got {predictions!r} for {len(instances)} instance(s); refusing traffic")
    return predictions


def _undeploy(vx: _Vertex, endpoint, deployed_id: str, split: Mapping[str, int] | None = None) -> None:
    vx.endpoints.undeploy_model(endpoint=endpoint.name, deployed_model_id=deployed_id,
                                traffic_split=dict(split or {})).result()


def check_deploy_settings(deploy_endpoint: str, deploy_options: Mapping[str, Any] | None) -> DeployConfig | None:
    """Validate the pipeline's ``deploy_endpoint`` / ``deploy_options`` (for the first task, before training).

    Returns:
        The parsed :class:`DeployConfig`, or None when ``deploy_endpoint`` is empty (no deployment).

    Raises:
        ValueError: naming the parameter, the bad value and the fix.
    """
    if deploy_endpoint in ("", None):
        if deploy_options:
            raise ValueError("deploy_options is set but deploy_endpoint is empty; set deploy_endpoint="
                             f"{ENDPOINT_FORM} or drop deploy_options")
        return None
    EndpointRef.parse(deploy_endpoint)
    return from_mapping(DeployConfig, deploy_options, what="deploy_options", owner="the endpoint deployment")


def deploy_champion(registry_uri: str, model_name: str, endpoint: str,
                    options: DeployConfig | Mapping[str, Any] | None = None, *, log=print) -> DeployResult:
    """Deploy the current champion to ``endpoint`` after a smoke request; see the module docstring.

    Args:
        registry_uri: The registry (a ``gs://`` file registry or ``vertex://``).
        model_name: The registry model.
        endpoint: ``vertex://PROJECT/REGION/ENDPOINT_NAME`` (created if missing).
        options: :class:`DeployConfig` or its fields (``deploy_options``).
        log: Where progress lines go.

    Raises:
        DeployError: the champion's files cannot be served or the smoke request failed (traffic unchanged).
        ValueError: a bad endpoint URI or option.
    """
    from google.cloud.aiplatform_v1.types import Endpoint
    from google.protobuf import field_mask_pb2

    from tuneloop.registry import open_registry

    ref = EndpointRef.parse(endpoint)
    config = options if isinstance(options, DeployConfig) else from_mapping(
        DeployConfig, options, what="deploy_options", owner="the endpoint deployment")
    registry = open_registry(registry_uri, model_name)
    record = registry.champion()
    if record is None:
        return DeployResult("skipped", "no champion to deploy yet", endpoint=endpoint)
    if serving_of(record.provider) not in SERVING_KINDS:
        return DeployResult("skipped", f"{record.provider} models are served by their provider, not a Vertex endpoint",
                            version=record.version, endpoint=endpoint)
    vx = _Vertex(ref)
    display = f"{model_name}-{record.version}"
    serving = vx.endpoint(ref.name)
    current = {d.id: d for d in serving.deployed_models}
    split = dict(serving.traffic_split)
    mine = [i for i, d in current.items() if d.display_name == display]
    if mine and split.get(mine[0], 0) == 100:
        _write_record(registry, record.version, serving.name, mine[0])
        return DeployResult("already-serving", f"{display} already has all the traffic", record.version,
                            serving.name, mine[0])
    if mine and config.keep_previous:  # kept from an earlier deploy: it answered its smoke then; move back
        new_id = mine[0]
        smoke: list[Any] = []
        log(f"[deploy] {display} is still deployed on {ref.name}: moving traffic back to it")
    else:
        model = _vertex_model(vx, registry, record, config)
        staging = vx.endpoint(ref.name + STAGING_SUFFIX)
        log(f"[deploy] {display}: deploying {model} to {staging.display_name} for the smoke request")
        staged = vx.endpoints.deploy_model(endpoint=staging.name, deployed_model=_deployed(model, display, config),
                                           traffic_split={"0": 100}).result().deployed_model
        try:
            smoke = _smoke(vx, staging.name, _smoke_instances(record, config))
        except DeployError:
            _undeploy(vx, staging, staged.id)
            log(f"[deploy] {display}: smoke failed; {ref.name} keeps serving what it served")
            raise
        _undeploy(vx, staging, staged.id)
        log(f"[deploy] {display}: smoke answered {smoke!r}; deploying to {ref.name}")
        keep = {k: v for k, v in split.items() if v}
        new = vx.endpoints.deploy_model(endpoint=serving.name, deployed_model=_deployed(model, display, config),
                                        traffic_split={**keep, "0": 0} if keep else {"0": 100}).result()
        new_id = new.deployed_model.id
    # Traffic moves in one update: all of it to the new deployment.
    vx.endpoints.update_endpoint(endpoint=Endpoint(name=serving.name, traffic_split={new_id: 100}),
                                 update_mask=field_mask_pb2.FieldMask(paths=["traffic_split"]))
    undeployed = []
    if not config.keep_previous:
        for old in current:
            if old != new_id:
                _undeploy(vx, serving, old, {new_id: 100})
                undeployed.append(old)
    _write_record(registry, record.version, serving.name, new_id)
    log(f"[deploy] {display} serves 100% of {ref.name}; undeployed {undeployed or 'nothing'}")
    return DeployResult("deployed", f"{display} answered the smoke request and took the traffic", record.version,
                        serving.name, new_id, tuple(undeployed), tuple(smoke))


def rollback_endpoint(registry_uri: str, model_name: str, endpoint: str,
                      options: DeployConfig | Mapping[str, Any] | None = None, *, reason: str,
                      log=print) -> DeployResult:
    """Roll the registry's champion back one step and move the endpoint's traffic back to it.

    Raises:
        RegistryError: no earlier champion. DeployError: as :func:`deploy_champion`.
    """
    from tuneloop.registry import open_registry

    EndpointRef.parse(endpoint)
    back = open_registry(registry_uri, model_name).rollback(reason=reason)
    log(f"[deploy] registry rolled back to {back.version}: {reason}")
    return deploy_champion(registry_uri, model_name, endpoint, options, log=log)


def _write_record(registry, version: str, endpoint: str, deployed_id: str) -> None:
    from tuneloop.examples import utc_now

    storage.write_json(_record_uri(registry), {"version": version, "endpoint": endpoint,
                                               "deployed_model_id": deployed_id, "at": utc_now()})
