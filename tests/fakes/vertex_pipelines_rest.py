"""A stand-in for the Vertex AI REST API (v1): pipelineJobs, schedules and models.

The real ``google-cloud-aiplatform`` client talks to it with ``aiplatform.init(api_transport="rest",
api_endpoint="http://127.0.0.1:PORT", credentials=AnonymousCredentials())``. It keeps what a test needs
to check: the jobs created (a second create with the same id answers 409 ALREADY_EXISTS, as Vertex
does), the schedules with their state, and model versions with their aliases (an alias is unique
within a model: merging it onto one version moves it off another).
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


def _done_operation(name: str, type_url: str, response: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": f"{name}/operations/{abs(hash((name, type_url))) % 10**12}",
        "done": True,
        "response": {"@type": type_url, **response},
    }
