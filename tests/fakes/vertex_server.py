"""A stand-in for the Vertex AI REST API that ``google-genai`` (``Client(vertexai=True)``) speaks.

Routes (``v1beta1``, the SDK's default, and ``v1``):

* ``POST   /{v}/projects/{p}/locations/{l}/tuningJobs``               create (``tunings.tune``)
* ``GET    /{v}/projects/{p}/locations/{l}/tuningJobs``               list, ``filter=labels.k="v"``
* ``GET    /{v}/projects/{p}/locations/{l}/tuningJobs/{id}``          get (advances the job one step)
* ``POST   /{v}/projects/{p}/locations/{l}/tuningJobs/{id}:cancel``   cancel
* ``POST   /{v}/projects/{p}/locations/{l}/endpoints/{e}:generateContent``
* ``POST   /{v}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent`` (a base
  model registered with ``add_judge``: it answers judge requests with its preference)

Errors are Google's ``{"error": {"code", "message", "status"}}``. A job reads its training file
from GCS (fake-gcs-server, via ``STORAGE_EMULATOR_HOST``) when created, as Vertex validates the
dataset, and its tuned endpoint answers from a :class:`Memory` of that file.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.learner import MALFORMED, Memory
from tests.fakes.server import FakeHTTPServer, Request, Response

TOKEN = "ya29-fake-vertex-token"  # not the ya29. shape: the secret scanner must not flag fixtures
PROJECT = "tuneloop-test"
STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")
ADAPTER_SIZES = ("ADAPTER_SIZE_ONE", "ADAPTER_SIZE_TWO", "ADAPTER_SIZE_FOUR", "ADAPTER_SIZE_EIGHT",
                 "ADAPTER_SIZE_SIXTEEN", "ADAPTER_SIZE_THIRTY_TWO")
_V = r"/(?P<ver>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
_LABEL = re.compile(r"^[a-z0-9_-]{0,63}$")


def _error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": STATUS.get(status, "UNKNOWN")}}


@dataclass
class Plan:
    """How the next tuning job behaves."""

    states: tuple[str, ...] = ("JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED")
    fail_message: str | None = None
    hold: bool = False


@dataclass
class Job:
    body: dict[str, Any]
    plan: Plan
    rows: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0

    @property
    def state(self) -> str:
        return self.body["state"]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def read_gcs(uri: str) -> bytes:
    """The object at ``gs://bucket/name`` (from fake-gcs-server)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    bucket, _, name = uri[len("gs://"):].partition("/")
    client = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
    return client.bucket(bucket).blob(name).download_as_bytes()


class FakeVertex:
    """The server and its state; ``url`` is the ``base_url`` for the genai client."""

    def __init__(self, token: str = TOKEN):
        self.token = token
        self.http = FakeHTTPServer(error_body=_error, auth=self._auth)
        self.jobs: dict[str, Job] = {}
        self.memories: dict[str, Memory] = {}  # endpoint resource name -> what its model knows
        self.judges: dict[str, Any] = {}  # base model -> prefer(conversation, reply_a, reply_b): answers as a judge
        self.judged: list[dict[str, str]] = []
        self.labelers: dict[str, Any] = {}  # base model -> answer(user_text) -> (text, p)
        self.labelled: list[dict[str, Any]] = []  # system, user, logprobs of each labeller request
        self.plans: deque[Plan] = deque()
        self.malformed_every = 0
        self.answered = 0
        self.requests: list[dict[str, Any]] = []  # create bodies, as received
        self._ids = itertools.count(1000)
        self._lock = threading.RLock()
        self._routes()

    @property
    def url(self) -> str:
        return self.http.url + "/"

    def start(self) -> FakeVertex:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()

    def next_job(self, plan: Plan) -> None:
        self.plans.append(plan)

    def add_labeler(self, model: str, answer) -> str:
        """Base model ``model`` answers with ``answer(user_text) -> (text, p)`` (see the OpenAI stand-in's
        ``add_labeler``); with ``responseLogprobs`` (and ``p`` not None) the candidate carries ``logprobsResult``
        (``chosenCandidates`` of ``{token, logProbability}``, ``topCandidates``) as Vertex returns it."""
        self.labelers[model] = answer
        return model

    def add_judge(self, model: str, prefer) -> str:
        """Base model ``model`` answers judge requests with ``prefer(conversation, reply_a, reply_b)``."""
        self.judges[model] = prefer
        return model

    def release(self, name: str) -> None:
        with self._lock:
            self.jobs[name].plan.hold = False

    def states(self) -> dict[str, str]:
        with self._lock:
            return {n: j.state for n, j in self.jobs.items()}

    def _auth(self, req: Request) -> str | None:
        if req.headers.get("Authorization") != f"Bearer {self.token}":
            return "Request had invalid authentication credentials. Expected OAuth 2 access token."
        return None

    def _advance(self, job: Job) -> None:
        if job.state in TERMINAL or (job.plan.hold and job.state == "JOB_STATE_RUNNING"):
            return
        if job.state == "JOB_STATE_CANCELLING":
            job.body.update(state="JOB_STATE_CANCELLED", endTime=_now(), updateTime=_now())
            return
        job.step = min(job.step + 1, len(job.plan.states) - 1)
        state = job.plan.states[job.step]
        if job.plan.hold and state in TERMINAL:
            state = "JOB_STATE_RUNNING"
        if state == "JOB_STATE_RUNNING" and "startTime" not in job.body:
            job.body["startTime"] = _now()
        if state == "JOB_STATE_SUCCEEDED" and job.plan.fail_message:
            job.body.update(state="JOB_STATE_FAILED", endTime=_now(),
                            error={"code": 3, "message": job.plan.fail_message, "details": []})
            return
        job.body.update(state=state, updateTime=_now())
        if state == "JOB_STATE_SUCCEEDED":
            self._succeed(job)

    def _succeed(self, job: Job) -> None:
        p, loc = job.body["_project"], job.body["_location"]
        n = next(self._ids)
        endpoint = f"projects/{p}/locations/{loc}/endpoints/{n}"
        pairs = []
        for row in job.rows:
            turns = row.get("contents", [])
            user = [t for t in turns if t.get("role") == "user"]
            model = [t for t in turns if t.get("role") == "model"]
            if user and model:
                pairs.append((user[-1]["parts"][0]["text"], model[-1]["parts"][0]["text"]))
        self.memories[endpoint] = Memory(pairs)
        chars = sum(len(json.dumps(r)) for r in job.rows)
        job.body.update(
            endTime=_now(),
            tunedModel={"model": f"projects/{p}/locations/{loc}/models/{n}@1", "endpoint": endpoint},
            tuningDataStats={
                "supervisedTuningDataStats": {
                    "tuningDatasetExampleCount": str(len(job.rows)),
                    "totalTuningCharacterCount": str(chars),
                    "totalBillableTokenCount": str(chars // 4),
                    "tuningStepCount": str(max(1, len(job.rows) // 8)),
                }
            },
        )

    def _public(self, job: Job) -> dict[str, Any]:
        return {k: v for k, v in job.body.items() if not k.startswith("_")}

    def _label(self, model: str, b: dict[str, Any]) -> Response:
        user = [c for c in b.get("contents", []) if c.get("role") == "user"]
        text_in = " ".join(p.get("text", "") for p in user[-1]["parts"]) if user else ""
        system = " ".join(p.get("text", "") for p in (b.get("systemInstruction") or {}).get("parts", []))
        cfg = b.get("generationConfig") or {}
        with self._lock:
            self.answered += 1
            self.labelled.append({"system": system, "user": text_in, "logprobs": bool(cfg.get("responseLogprobs")),
                                  "top_logprobs": cfg.get("logprobs")})
        text, p = self.labelers[model](text_in)
        return Response(200, _label_response(model, text, p, cfg))

    def _routes(self) -> None:
        r = self.http.route

        @r("POST", _V + "/tuningJobs", "tuningJobs.create")
        def create(req: Request) -> Response:
            b = req.json()
            self.requests.append(b)
            spec = b.get("supervisedTuningSpec") or {}
            if not b.get("baseModel"):
                return Response(400, _error(400, "baseModel is required."))
            uri = spec.get("trainingDatasetUri", "")
            if not uri.startswith("gs://"):
                return Response(400, _error(400, f"Training dataset URI must be a gs:// URI, got {uri!r}."))
            try:
                data = read_gcs(uri)
            except Exception as exc:
                return Response(400, _error(400, f"Failed to read training dataset {uri}: {type(exc).__name__}."))
            vuri = spec.get("validationDatasetUri")
            if vuri:
                try:
                    read_gcs(vuri)
                except Exception:
                    return Response(400, _error(400, f"Failed to read validation dataset {vuri}."))
            hp = spec.get("hyperParameters") or {}
            if "adapterSize" in hp and hp["adapterSize"] not in ADAPTER_SIZES:
                return Response(400, _error(400, f"Invalid adapterSize {hp['adapterSize']!r}."))
            labels = b.get("labels") or {}
            bad = [k for k, v in labels.items() if not _LABEL.match(k) or not k or not _LABEL.match(v)]
            if bad:
                return Response(400, _error(400, f"Invalid label {bad[0]!r}: lowercase letters, digits, - and _ only."))
            p, loc = req.params["project"], req.params["location"]
            with self._lock:
                name = f"projects/{p}/locations/{loc}/tuningJobs/{next(self._ids)}"
                plan = self.plans.popleft() if self.plans else Plan()
                body = {
                    "name": name,
                    "tunedModelDisplayName": b.get("tunedModelDisplayName") or name.rsplit("/", 1)[-1],
                    "baseModel": b["baseModel"],
                    "supervisedTuningSpec": spec,
                    "state": plan.states[0],
                    "createTime": _now(),
                    "updateTime": _now(),
                    "labels": labels,
                    "_project": p,
                    "_location": loc,
                }
                if b.get("description"):
                    body["description"] = b["description"]
                job = Job(body=body, plan=plan, rows=[json.loads(x) for x in data.decode().splitlines() if x])
                self.jobs[name] = job
                return Response(200, self._public(job))

        @r("GET", _V + "/tuningJobs", "tuningJobs.list")
        def list_jobs(req: Request) -> Response:
            wanted = dict(re.findall(r'labels\.([a-z0-9_-]+)\s*=\s*"([^"]*)"', req.query.get("filter", "")))
            prefix = f"projects/{req.params['project']}/locations/{req.params['location']}/"
            with self._lock:
                jobs = [
                    self._public(j) for n, j in reversed(self.jobs.items())
                    if n.startswith(prefix) and all(j.body["labels"].get(k) == v for k, v in wanted.items())
                ]
            size = int(req.query.get("pageSize") or 50)
            start = int(req.query.get("pageToken") or 0)
            out: dict[str, Any] = {"tuningJobs": jobs[start : start + size]}
            if start + size < len(jobs):
                out["nextPageToken"] = str(start + size)
            return Response(200, out)

        @r("GET", _V + "/tuningJobs/(?P<id>[0-9]+)", "tuningJobs.get")
        def get(req: Request) -> Response:
            name = f"projects/{req.params['project']}/locations/{req.params['location']}/tuningJobs/{req.params['id']}"
            with self._lock:
                job = self.jobs.get(name)
                if job is None:
                    return Response(404, _error(404, f"TuningJob {name} not found."))
                self._advance(job)
                return Response(200, self._public(job))

        @r("POST", _V + "/tuningJobs/(?P<id>[0-9]+):cancel", "tuningJobs.cancel")
        def cancel(req: Request) -> Response:
            name = f"projects/{req.params['project']}/locations/{req.params['location']}/tuningJobs/{req.params['id']}"
            with self._lock:
                job = self.jobs.get(name)
                if job is None:
                    return Response(404, _error(404, f"TuningJob {name} not found."))
                if job.state in TERMINAL:
                    return Response(400, {"error": {"code": 400, "status": "FAILED_PRECONDITION",
                                                    "message": f"TuningJob {name} is in state {job.state} and cannot be cancelled."}})
                job.body.update(state="JOB_STATE_CANCELLING", updateTime=_now())
                return Response(200, {})

        @r("POST", _V + "/publishers/google/models/(?P<model>[^/:]+):generateContent", "publisher.generateContent")
        def generate_base(req: Request) -> Response:
            from tests.fakes.chat_data import judge_parts

            model = req.params["model"]
            if model in self.labelers:
                return self._label(model, req.json())
            if model not in self.judges:
                return Response(404, _error(404, f"Publisher Model projects/{req.params['project']}/locations/"
                                                 f"{req.params['location']}/publishers/google/models/{model} not found."))
            user = [c for c in req.json().get("contents", []) if c.get("role") == "user"]
            seen = judge_parts(" ".join(p.get("text", "") for p in user[-1]["parts"]) if user else "")
            with self._lock:
                self.answered += 1
                self.judged.append(seen)
            text = self.judges[model](seen["conversation"], seen["reply_a"], seen["reply_b"])
            return Response(200, {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                                  "finishReason": "STOP", "index": 0}], "modelVersion": model})

        @r("POST", _V + "/endpoints/(?P<endpoint>[^/:]+):generateContent", "generateContent")
        def generate(req: Request) -> Response:
            b = req.json()
            endpoint = f"projects/{req.params['project']}/locations/{req.params['location']}/endpoints/{req.params['endpoint']}"
            with self._lock:
                memory = self.memories.get(endpoint)
                if memory is None:
                    return Response(404, _error(404, f"Endpoint {endpoint} not found."))
                self.answered += 1
                n = self.answered
            user = [c for c in b.get("contents", []) if c.get("role") == "user"]
            prompt = " ".join(p.get("text", "") for p in user[-1]["parts"]) if user else ""
            if self.malformed_every and n % self.malformed_every == 0:
                text = MALFORMED[n % len(MALFORMED)]
            else:
                text = memory.answer(prompt)
            return Response(
                200,
                {
                    "candidates": [
                        {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
                    ],
                    "usageMetadata": {
                        "promptTokenCount": len(prompt.split()),
                        "candidatesTokenCount": len(text.split()),
                        "totalTokenCount": len(prompt.split()) + len(text.split()),
                    },
                    "modelVersion": endpoint,
                },
            )


def _label_response(model: str, text: str, p: float | None, cfg: dict[str, Any]) -> dict[str, Any]:
    from tests.fakes.openai_server import _token_logprobs

    cand: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
    if cfg.get("responseLogprobs") and p is not None:
        toks = _token_logprobs(text, p, int(cfg.get("logprobs") or 0))
        cand["logprobsResult"] = {
            "chosenCandidates": [{"token": t["token"], "logProbability": t["logprob"]} for t in toks],
            "topCandidates": [{"candidates": [{"token": a["token"], "logProbability": a["logprob"]}
                                              for a in t["top_logprobs"]]} for t in toks],
        }
        cand["avgLogprobs"] = sum(t["logprob"] for t in toks) / max(len(toks), 1)
    return {"candidates": [cand], "modelVersion": model}
