"""A stand-in for the Vertex AI REST API (v1): pipelineJobs, schedules, models and endpoints.

The real ``google-cloud-aiplatform`` client talks to it with ``aiplatform.init(api_transport="rest",
api_endpoint="http://127.0.0.1:PORT", credentials=AnonymousCredentials())``. It keeps what a test needs
to check: the jobs created (a second create with the same id answers 409 ALREADY_EXISTS, as Vertex
does), the schedules with their state, and model versions with their aliases (an alias is unique
within a model: merging it onto one version moves it off another).

Endpoints serve for real what a prebuilt container would: a deployed model whose container is the
scikit-learn image loads ``model.joblib`` from its ``artifactUri`` (fake-gcs-server) and predicts; one on
an LLM (vLLM) image answers ``predictions`` with a short text when its model folder holds the oss-lora
manifest. A model that cannot load answers the prediction with an error, as a broken container does.
Predictions follow the endpoint's traffic split (the deployment with the largest share answers).
"""

from __future__ import annotations

import copy
import itertools
import threading
from typing import Any

from tests.fakes.server import FakeHTTPServer, Request, Response

_LOC = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
_STATUS = {
    400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
}


def _error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeVertex:
    """Vertex AI v1 pipelineJobs / schedules / models on a local HTTP server."""

    def __init__(self) -> None:
        self.server = FakeHTTPServer(error_body=_error)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.schedules: dict[str, dict[str, Any]] = {}
        self.resumes: list[dict[str, Any]] = []
        self.patches: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.models: dict[str, dict[str, Any]] = {}  # model id -> {"versions": {vid: Model JSON}}
        self.endpoints: dict[str, dict[str, Any]] = {}  # endpoint resource name -> Endpoint JSON
        self.predictions: list[tuple[str, str]] = []  # (endpoint name, deployed model display name) answered
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()
        self._routes()

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> FakeVertex:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def calls(self, name: str) -> int:
        return self.server.calls(name)

    def inject(self, name: str, *faults) -> None:
        """Queue faults (tests.fakes.server.Fault) for the next requests to route ``name``."""
        self.server.inject(name, *faults)

    # -- routes ---------------------------------------------------------------------------------------
    def _routes(self) -> None:  # noqa: C901 - one table of small handlers
        r = self.server.route

        @r("POST", f"{_LOC}/pipelineJobs", "pipelineJobs.create")
        def create_job(req: Request) -> Response:
            body = req.json()
            job_id = req.query.get("pipelineJobId") or f"job-{next(self._ids)}"
            name = (
                f"projects/{req.params['project']}/locations/{req.params['location']}/pipelineJobs/{job_id}"
            )
            with self._lock:
                if name in self.jobs:
                    return Response(409, _error(409, f"PipelineJob {name} already exists"))
                job = {**body, "name": name, "state": "PIPELINE_STATE_PENDING", "createTime": _now()}
                self.jobs[name] = job
            return Response(200, job)

        @r("GET", f"{_LOC}/pipelineJobs/(?P<id>[^/:]+)", "pipelineJobs.get")
        def get_job(req: Request) -> Response:
            name = f"projects/{req.params['project']}/locations/{req.params['location']}/pipelineJobs/{req.params['id']}"
            job = self.jobs.get(name)
            return Response(200, job) if job else Response(404, _error(404, f"{name} not found"))

        @r("POST", f"{_LOC}/schedules", "schedules.create")
        def create_schedule(req: Request) -> Response:
            body = req.json()
            sid = str(next(self._ids))
            name = f"projects/{req.params['project']}/locations/{req.params['location']}/schedules/{sid}"
            sched = {**body, "name": name, "state": "ACTIVE", "createTime": _now(), "startedRunCount": "0"}
            with self._lock:
                self.schedules[name] = sched
            return Response(200, sched)

        @r("GET", f"{_LOC}/schedules", "schedules.list")
        def list_schedules(req: Request) -> Response:
            prefix = f"projects/{req.params['project']}/locations/{req.params['location']}/schedules/"
            found = [s for n, s in sorted(self.schedules.items()) if n.startswith(prefix)]
            flt = req.query.get("filter", "")
            if flt.startswith("display_name="):
                want = flt.split("=", 1)[1].strip('"')
                found = [s for s in found if s.get("displayName") == want]
            return Response(200, {"schedules": found})

        def _sched(req: Request) -> tuple[str, dict[str, Any] | None]:
            name = f"projects/{req.params['project']}/locations/{req.params['location']}/schedules/{req.params['id']}"
            return name, self.schedules.get(name)

        @r("GET", f"{_LOC}/schedules/(?P<id>[^/:]+)", "schedules.get")
        def get_schedule(req: Request) -> Response:
            name, s = _sched(req)
            return Response(200, s) if s else Response(404, _error(404, f"{name} not found"))

        @r("POST", f"{_LOC}/schedules/(?P<id>[^/:]+):pause", "schedules.pause")
        def pause(req: Request) -> Response:
            name, s = _sched(req)
            if not s:
                return Response(404, _error(404, f"{name} not found"))
            if s["state"] != "ACTIVE":
                return Response(400, _error(400, f"{name} is {s['state']}, not ACTIVE"))
            s["state"] = "PAUSED"
            return Response(200, {})

        @r("POST", f"{_LOC}/schedules/(?P<id>[^/:]+):resume", "schedules.resume")
        def resume(req: Request) -> Response:
            name, s = _sched(req)
            if not s:
                return Response(404, _error(404, f"{name} not found"))
            if s["state"] != "PAUSED":
                return Response(400, _error(400, f"{name} is {s['state']}, not PAUSED"))
            body = req.json()
            self.resumes.append({"name": name, "catchUp": bool(body.get("catchUp", False))})
            s["state"] = "ACTIVE"
            s["catchUp"] = bool(body.get("catchUp", False))
            return Response(200, {})

        @r("DELETE", f"{_LOC}/schedules/(?P<id>[^/:]+)", "schedules.delete")
        def delete(req: Request) -> Response:
            name, s = _sched(req)
            if not s:
                return Response(404, _error(404, f"{name} not found"))
            del self.schedules[name]
            return Response(200, _done_operation(name, "type.googleapis.com/google.protobuf.Empty", {}))

        # -- models --------------------------------------------------------------------------------
        @r("POST", f"{_LOC}/models:upload", "models.upload")
        def upload(req: Request) -> Response:
            body = req.json()
            base = f"projects/{req.params['project']}/locations/{req.params['location']}/models/"
            parent = body.get("parentModel")
            with self._lock:
                if parent:
                    model_id = parent.rsplit("/", 1)[-1]
                    if model_id not in self.models:
                        return Response(404, _error(404, f"parent model {parent} not found"))
                else:
                    model_id = body.get("modelId") or str(next(self._ids))
                    if model_id in self.models:
                        return Response(409, _error(409, f"model {base}{model_id} already exists"))
                    self.models[model_id] = {"versions": {}}
                versions = self.models[model_id]["versions"]
                vid = str(len(versions) + 1)
                model = copy.deepcopy(body["model"])
                aliases = list(model.get("versionAliases", []))
                if not versions:
                    aliases.append("default")
                for alias in aliases:
                    for other in versions.values():
                        if alias in other.get("versionAliases", []):
                            other["versionAliases"].remove(alias)
                model.update(
                    name=f"{base}{model_id}",
                    versionId=vid,
                    versionAliases=aliases,
                    createTime=_now(),
                    versionCreateTime=_now(),
                    versionUpdateTime=_now(),
                )
                versions[vid] = model
            return Response(
                200,
                _done_operation(
                    f"{base}{model_id}",
                    "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
                    {"model": f"{base}{model_id}", "modelVersionId": vid},
                ),
            )

        def _resolve(req: Request) -> tuple[dict[str, Any] | None, str]:
            model_id, _, ref = req.params["id"].partition("@")
            versions = self.models.get(model_id, {}).get("versions", {})
            ref = ref or "default"
            if ref in versions:
                return versions[ref], ""
            for v in versions.values():
                if ref in v.get("versionAliases", []):
                    return v, ""
            return None, f"model {req.params['id']} not found"

        @r("GET", f"{_LOC}/models/(?P<id>[^/:]+)", "models.get")
        def get_model(req: Request) -> Response:
            model, err = _resolve(req)
            return Response(200, model) if model else Response(404, _error(404, err))

        @r("GET", f"{_LOC}/models/(?P<id>[^/:@]+):listVersions", "models.listVersions")
        def list_versions(req: Request) -> Response:
            model = self.models.get(req.params["id"])
            if model is None:
                return Response(404, _error(404, f"model {req.params['id']} not found"))
            return Response(
                200, {"models": [model["versions"][k] for k in sorted(model["versions"], key=int)]}
            )

        @r("POST", f"{_LOC}/models/(?P<id>[^/:]+):mergeVersionAliases", "models.mergeVersionAliases")
        def merge_aliases(req: Request) -> Response:
            with self._lock:
                model, err = _resolve(req)
                if model is None:
                    return Response(404, _error(404, err))
                versions = self.models[req.params["id"].partition("@")[0]]["versions"]
                for alias in req.json().get("versionAliases", []):
                    if alias.startswith("-"):
                        if alias[1:] == "default":
                            return Response(400, _error(400, "the default alias cannot be removed"))
                        if alias[1:] in model["versionAliases"]:
                            model["versionAliases"].remove(alias[1:])
                        continue
                    for other in versions.values():
                        if alias in other.get("versionAliases", []):
                            other["versionAliases"].remove(alias)
                    model["versionAliases"].append(alias)
                model["versionUpdateTime"] = _now()
            return Response(200, model)

        @r("PATCH", f"{_LOC}/models/(?P<id>[^/:]+)", "models.patch")
        def patch(req: Request) -> Response:
            with self._lock:
                model, err = _resolve(req)
                if model is None:
                    return Response(404, _error(404, err))
                body = req.json()
                self.patches.append((req.params["id"], dict(req.query), body))
                for field in req.query.get("updateMask", "").split(","):
                    camel = "".join(p if i == 0 else p.title() for i, p in enumerate(field.split("_")))
                    if camel in body:
                        model[camel] = body[camel]
                model["versionUpdateTime"] = _now()
            return Response(200, model)


        # -- endpoints -----------------------------------------------------------------------------
        def _ep(req: Request) -> tuple[str, dict[str, Any] | None]:
            name = f"projects/{req.params['project']}/locations/{req.params['location']}/endpoints/{req.params['id']}"
            return name, self.endpoints.get(name)

        @r("POST", f"{_LOC}/endpoints", "endpoints.create")
        def create_endpoint(req: Request) -> Response:
            body = req.json()
            eid = req.query.get("endpointId") or str(next(self._ids))
            name = f"projects/{req.params['project']}/locations/{req.params['location']}/endpoints/{eid}"
            with self._lock:
                ep = {**body, "name": name, "deployedModels": [], "trafficSplit": {}, "createTime": _now()}
                self.endpoints[name] = ep
            return Response(200, _done_operation(name, "type.googleapis.com/google.cloud.aiplatform.v1.Endpoint", ep))

        @r("GET", f"{_LOC}/endpoints", "endpoints.list")
        def list_endpoints(req: Request) -> Response:
            prefix = f"projects/{req.params['project']}/locations/{req.params['location']}/endpoints/"
            found = [e for n, e in sorted(self.endpoints.items()) if n.startswith(prefix)]
            flt = req.query.get("filter", "")
            if flt.startswith("display_name="):
                want = flt.split("=", 1)[1].strip('"')
                found = [e for e in found if e.get("displayName") == want]
            return Response(200, {"endpoints": copy.deepcopy(found)})

        @r("GET", f"{_LOC}/endpoints/(?P<id>[^/:]+)", "endpoints.get")
        def get_endpoint(req: Request) -> Response:
            name, ep = _ep(req)
            return Response(200, ep) if ep else Response(404, _error(404, f"{name} not found"))

        def _check_split(ep: dict[str, Any], split: dict[str, Any]) -> str:
            ids = {d["id"] for d in ep["deployedModels"]}
            if split and sum(int(v) for v in split.values()) != 100:
                return f"traffic split {split} does not sum to 100"
            unknown = sorted(set(split) - ids)
            return f"traffic split names deployed models {unknown} that are not on the endpoint" if unknown else ""

        @r("POST", f"{_LOC}/endpoints/(?P<id>[^/:]+):deployModel", "endpoints.deployModel")
        def deploy_model(req: Request) -> Response:
            with self._lock:
                name, ep = _ep(req)
                if ep is None:
                    return Response(404, _error(404, f"{name} not found"))
                body = req.json()
                deployed = copy.deepcopy(body["deployedModel"])
                model, err = self._model_by_name(deployed.get("model", ""))
                if model is None:
                    return Response(404, _error(404, err))
                deployed["id"] = str(next(self._ids))
                deployed["createTime"] = _now()
                ep["deployedModels"].append(deployed)
                split = {(deployed["id"] if k == "0" else k): int(v) for k, v in (body.get("trafficSplit") or {}).items()}
                problem = _check_split(ep, split)
                if problem:
                    ep["deployedModels"].pop()
                    return Response(400, _error(400, problem))
                if split:
                    ep["trafficSplit"] = split
            return Response(200, _done_operation(
                name, "type.googleapis.com/google.cloud.aiplatform.v1.DeployModelResponse", {"deployedModel": deployed}))

        @r("POST", f"{_LOC}/endpoints/(?P<id>[^/:]+):undeployModel", "endpoints.undeployModel")
        def undeploy_model(req: Request) -> Response:
            with self._lock:
                name, ep = _ep(req)
                if ep is None:
                    return Response(404, _error(404, f"{name} not found"))
                body = req.json()
                did = body.get("deployedModelId")
                if did not in {d["id"] for d in ep["deployedModels"]}:
                    return Response(404, _error(404, f"deployed model {did} is not on {name}"))
                split = {k: int(v) for k, v in (body.get("trafficSplit") or {}).items()}
                rest = {k: v for k, v in (split or ep["trafficSplit"]).items() if k != did}
                if ep["trafficSplit"].get(did, 0) and not split and len(ep["deployedModels"]) > 1:
                    # (Vertex lets the last deployed model go without a new split)
                    return Response(400, _error(400, f"deployed model {did} still takes traffic; pass a new split"))
                ep["deployedModels"] = [d for d in ep["deployedModels"] if d["id"] != did]
                ep["trafficSplit"] = rest
            return Response(200, _done_operation(
                name, "type.googleapis.com/google.cloud.aiplatform.v1.UndeployModelResponse", {}))

        @r("PATCH", f"{_LOC}/endpoints/(?P<id>[^/:]+)", "endpoints.patch")
        def patch_endpoint(req: Request) -> Response:
            with self._lock:
                name, ep = _ep(req)
                if ep is None:
                    return Response(404, _error(404, f"{name} not found"))
                body = req.json()
                if any(m in req.query.get("updateMask", "") for m in ("traffic_split", "trafficSplit")):
                    split = {k: int(v) for k, v in (body.get("trafficSplit") or {}).items()}
                    problem = _check_split(ep, split)
                    if problem:
                        return Response(400, _error(400, problem))
                    ep["trafficSplit"] = split
            return Response(200, ep)

        @r("POST", f"{_LOC}/endpoints/(?P<id>[^/:]+):predict", "endpoints.predict")
        def predict(req: Request) -> Response:
            name, ep = _ep(req)
            if ep is None:
                return Response(404, _error(404, f"{name} not found"))
            split = ep["trafficSplit"]
            if not split or not any(split.values()):
                return Response(400, _error(400, f"{name} has no deployed model taking traffic"))
            did = max(split, key=lambda k: (split[k], k))
            deployed = next(d for d in ep["deployedModels"] if d["id"] == did)
            model, err = self._model_by_name(deployed["model"])
            if model is None:
                return Response(500, _error(500, err))
            instances = req.json().get("instances") or []
            try:
                predictions = _serve(model, instances)
            except Exception as exc:  # the container failed to load or answer
                return Response(500, _error(500, f"prediction container error: {type(exc).__name__}: {exc}"))
            self.predictions.append((name, deployed.get("displayName", "")))
            return Response(200, {"predictions": predictions, "deployedModelId": did})

    def _model_by_name(self, resource: str) -> tuple[dict[str, Any] | None, str]:
        model_id, _, ref = resource.rsplit("/", 1)[-1].partition("@")
        versions = self.models.get(model_id, {}).get("versions", {})
        ref = ref or "default"
        if ref in versions:
            return versions[ref], ""
        for v in versions.values():
            if ref in v.get("versionAliases", []):
                return v, ""
        return None, f"model {resource} not found"


def _serve(model: dict[str, Any], instances: list[Any]) -> list[Any]:
    """What the model's serving container answers (sklearn: loads model.joblib; vLLM: a short text)."""
    from tests.fakes.vertex_server import read_gcs

    image = model.get("containerSpec", {}).get("imageUri", "")
    artifact = model.get("artifactUri", "").rstrip("/")
    if "sklearn" in image:
        import io

        import joblib

        estimator = joblib.load(io.BytesIO(read_gcs(f"{artifact}/model.joblib")))
        return [str(p) for p in estimator.predict(list(instances))]
    if "vllm" in image:
        read_gcs(f"{artifact}/tuneloop_lora.json")  # the model folder must be there
        return [f"hello from {model.get('displayName')}" for _ in instances]
    raise RuntimeError(f"the stand-in does not serve image {image!r}")


def _done_operation(name: str, type_url: str, response: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": f"{name}/operations/{abs(hash((name, type_url))) % 10**12}",
        "done": True,
        "response": {"@type": type_url, **response},
    }
