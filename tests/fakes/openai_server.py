"""A stand-in for the OpenAI REST API: files, fine_tuning.jobs (+ events, cancel), chat completions.

Paths, JSON shapes and status codes follow the API the ``openai`` SDK speaks (``/v1/files``,
``/v1/fine_tuning/jobs``, ``/v1/fine_tuning/jobs/{id}/events``, ``/v1/fine_tuning/jobs/{id}/cancel``,
``/v1/chat/completions``), errors are ``{"error": {"message", "type", "param", "code"}}``, lists
are cursor pages ``{"object": "list", "data", "has_more"}`` newest first, and a list filters by
``metadata[key]=value``.

A model registered with :meth:`FakeOpenAI.add_judge` answers as a pairwise judge: it reads the
``<reply_a>`` / ``<reply_b>`` blocks of the last user turn and answers with its preference function's
verdict, so tests control what a judge prefers (and whether it is position-biased or malformed).

A job moves one step along ``plan.states`` each time it is retrieved, so tests control progress
by polling, never by sleeping. When it succeeds, the "tuned model" is a :class:`Memory` of the
uploaded training file, and chat completions on it answer from that memory.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.learner import MALFORMED, Memory, last
from tests.fakes.server import FakeHTTPServer, Request, Response

API_KEY = "sk-test-fake-0123456789"
ORG = "org-tuneloop-test"
TERMINAL = ("succeeded", "failed", "cancelled")
BASE_MODELS = (
    "gpt-4.1-2025-04-14",
    "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano-2025-04-14",
    "gpt-4o-mini-2024-07-18",
    "gpt-3.5-turbo-0125",
)


@dataclass
class Plan:
    """How the next job behaves: the states it walks through, and how it ends."""

    states: tuple[str, ...] = ("validating_files", "queued", "running", "running", "succeeded")
    fail_message: str | None = None  # end in "failed" with this error message instead
    fail_code: str = "invalid_training_file"
    hold: bool = False  # stay "running" until release() (a job that outlives a task)


@dataclass
class Job:
    body: dict[str, Any]
    plan: Plan
    step: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    memory: Memory | None = None

    @property
    def status(self) -> str:
        return self.body["status"]


def _error(status: int, message: str) -> dict[str, Any]:
    kind = {
        401: ("invalid_request_error", "invalid_api_key"),
        404: ("invalid_request_error", "not_found"),
        429: ("requests", "rate_limit_exceeded"),
    }.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": kind[0], "param": None, "code": kind[1]}}


class FakeOpenAI:
    """The server and its state. ``url`` is the ``base_url`` for ``openai.OpenAI`` (ends in /v1)."""

    def __init__(self, api_key: str = API_KEY):
        self.api_key = api_key
        self.http = FakeHTTPServer(error_body=_error, auth=self._auth)
        self.files: dict[str, dict[str, Any]] = {}
        self.file_data: dict[str, bytes] = {}
        self.jobs: dict[str, Job] = {}
        self.plans: deque[Plan] = deque()
        self.default_plan = Plan()
        self.malformed_every = 0  # every n-th chat completion answers with a malformed text
        self.judges: dict[str, Callable[[str, str, str], str]] = {}
        self.judged: list[dict[str, str]] = []  # what each judge request showed: conversation, reply_a, reply_b
        self.labelers: dict[str, Callable[[str], tuple[str, float | None]]] = {}
        self.labelled: list[dict[str, Any]] = []  # what each labeller request asked: system, user, logprobs
        self.responders: dict[str, Callable[[list[dict]], str]] = {}
        self.asked: list[dict[str, Any]] = []  # the request bodies responder models received
        self.answered = 0
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._routes()

    # -- test controls ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.http.url + "/v1"

    def start(self) -> FakeOpenAI:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()

    def next_job(self, plan: Plan) -> None:
        """The next created job follows ``plan`` (then the default plan again)."""
        self.plans.append(plan)

    def release(self, job_id: str) -> None:
        """Let a held job go on to the end of its plan."""
        with self._lock:
            self.jobs[job_id].plan.hold = False

    def add_model(self, name: str, pairs: list[tuple[str, str]]) -> str:
        """A fine-tuned model ``name`` that answers from ``pairs`` (a finished job, as if tuned here)."""
        with self._lock:
            job_id = self._id("ftjob")
            job = Job(body={"id": job_id, "object": "fine_tuning.job", "model": BASE_MODELS[0], "status": "succeeded",
                            "fine_tuned_model": name, "created_at": int(time.time())}, plan=Plan(states=()))
            job.memory = Memory(pairs)
            self.jobs[job_id] = job
        return name

    def add_judge(self, model: str, prefer: Callable[[str, str, str], str]) -> str:
        """``model`` answers judge requests with ``prefer(conversation, reply_a, reply_b)`` (its raw text)."""
        with self._lock:
            self.judges[model] = prefer
        return model

    def add_labeler(self, model: str, answer: Callable[[str], tuple[str, float | None]]) -> str:
        """``model`` answers with ``answer(user_text) -> (text, p)``: the text, and the probability its label
        tokens get (the tokens between the quotes of its ``"label"`` value, or the whole text when it is not
        JSON); with ``logprobs: true`` in the request (and ``p`` not None) the choice carries ``logprobs.content`` as the API
        returns it (``token``, ``logprob``, ``bytes``, ``top_logprobs``); ``p`` None: ``logprobs`` null."""
        with self._lock:
            self.labelers[model] = answer
        return model

    def add_responder(self, model: str, answer: Callable[[list[dict]], str]) -> str:
        """``model`` answers every chat completion with ``answer(messages)`` (its raw text); requests go to ``asked``."""
        with self._lock:
            self.responders[model] = answer
        return model

    def statuses(self) -> dict[str, str]:
        with self._lock:
            return {j: job.status for j, job in self.jobs.items()}

    # -- helpers -------------------------------------------------------------------------------
    def _auth(self, req: Request) -> str | None:
        if req.headers.get("Authorization") != f"Bearer {self.api_key}":
            return "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
        return None

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):06d}abcdef"

    def _event(self, job: Job, message: str, level: str = "info", data: Any = None) -> None:
        job.events.append(
            {
                "object": "fine_tuning.job.event",
                "id": self._id("ftevent"),
                "created_at": int(time.time()),
                "level": level,
                "message": message,
                "data": data,
                "type": "message",
            }
        )

    def _advance(self, job: Job) -> None:
        if job.status in TERMINAL:
            return
        if job.plan.hold and job.status == "running":
            return
        job.step = min(job.step + 1, len(job.plan.states) - 1)
        state = job.plan.states[job.step]
        if job.plan.hold and state not in ("validating_files", "queued"):
            state = "running"
        if state == "succeeded" and job.plan.fail_message:
            state = "failed"
        if state == job.status:
            if state == "running":
                self._event(job, f"Step {job.step}/{len(job.plan.states)}: training loss=0.{9 - job.step % 9}")
            return
        job.body["status"] = state
        if state == "running":
            self._event(job, "Fine-tuning job started")
        elif state == "queued":
            self._event(job, "Files validated, moving job to queued state")
        elif state == "failed":
            job.body["error"] = {"code": job.plan.fail_code, "message": job.plan.fail_message, "param": "training_file"}
            job.body["finished_at"] = int(time.time())
            self._event(job, job.plan.fail_message or "failed", level="error")
        elif state == "succeeded":
            self._succeed(job)

    def _succeed(self, job: Job) -> None:
        rows = [json.loads(line) for line in self.file_data[job.body["training_file"]].decode().splitlines() if line]
        pairs = [(last("user", r["messages"]), last("assistant", r["messages"])) for r in rows]
        job.memory = Memory(pairs)
        epochs = job.body["method"]["supervised"]["hyperparameters"].get("n_epochs")
        epochs = 3 if epochs in (None, "auto") else int(epochs)
        words = sum(len(json.dumps(r).split()) for r in rows)
        suffix = job.body.get("suffix") or ""
        job.body.update(
            status="succeeded",
            fine_tuned_model=f"ft:{job.body['model']}:{ORG}:{suffix}:{job.body['id'][-8:]}",
            trained_tokens=words * epochs,
            finished_at=int(time.time()),
            result_files=[self._id("file")],
        )
        self._event(job, "New fine-tuned model created")
        self._event(job, "The job has successfully completed")

    def _job_or_404(self, job_id: str) -> Job | Response:
        job = self.jobs.get(job_id)
        if job is None:
            return Response(404, _error(404, f"No such fine-tuning job: {job_id}"))
        return job

    # -- routes --------------------------------------------------------------------------------
    def _routes(self) -> None:
        r = self.http.route

        @r("POST", "/v1/files", "files.create")
        def create_file(req: Request) -> Response:
            ctype = req.headers.get("Content-Type", "")
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {ctype}\r\n\r\n".encode() + req.body
            )
            fields, data, filename = {}, None, None
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if part.get_filename():
                    data, filename = part.get_payload(decode=True), part.get_filename()
                else:
                    fields[name] = part.get_content().strip()
            if data is None:
                return Response(400, _error(400, "Missing required parameter: 'file'."))
            if fields.get("purpose") not in ("fine-tune", "batch", "assistants", "vision", "user_data", "evals"):
                return Response(400, _error(400, f"Invalid value for 'purpose': {fields.get('purpose')!r}."))
            with self._lock:
                fid = self._id("file")
                self.file_data[fid] = data
                self.files[fid] = {
                    "id": fid,
                    "object": "file",
                    "bytes": len(data),
                    "created_at": int(time.time()),
                    "filename": filename,
                    "purpose": fields["purpose"],
                    "status": "processed",
                    "expires_at": None,
                    "status_details": None,
                }
                return Response(200, self.files[fid])

        @r("GET", "/v1/files/(?P<fid>[^/]+)", "files.retrieve")
        def get_file(req: Request) -> Response:
            f = self.files.get(req.params["fid"])
            return Response(200, f) if f else Response(404, _error(404, f"No such File object: {req.params['fid']}"))

        @r("POST", "/v1/fine_tuning/jobs", "jobs.create")
        def create_job(req: Request) -> Response:
            b = req.json()
            for key in ("model", "training_file"):
                if not b.get(key):
                    return Response(400, _error(400, f"Missing required parameter: '{key}'."))
            if b["model"] not in BASE_MODELS:
                return Response(400, _error(400, f"Model {b['model']} is not available for fine-tuning or does not exist."))
            for key in ("training_file", "validation_file"):
                fid = b.get(key)
                if fid and (fid not in self.files or self.files[fid]["purpose"] != "fine-tune"):
                    return Response(400, _error(400, f"Invalid file ID {fid}: not a file uploaded with purpose 'fine-tune'."))
            method = b.get("method") or {"type": "supervised", "supervised": {"hyperparameters": b.get("hyperparameters") or {}}}
            if method.get("type") != "supervised" or "supervised" not in method:
                return Response(400, _error(400, "method.type must be 'supervised' with a 'supervised' object"))
            meta = b.get("metadata") or {}
            if len(meta) > 16 or any(len(k) > 64 or len(str(v)) > 512 for k, v in meta.items()):
                return Response(400, _error(400, "metadata: at most 16 keys of <= 64 chars, values <= 512 chars"))
            if b.get("suffix") and len(b["suffix"]) > 64:
                return Response(400, _error(400, "suffix: at most 64 characters"))
            hp = dict(method["supervised"].get("hyperparameters") or {})
            with self._lock:
                jid = self._id("ftjob")
                plan = self.plans.popleft() if self.plans else Plan(**vars(self.default_plan))
                body = {
                    "object": "fine_tuning.job",
                    "id": jid,
                    "model": b["model"],
                    "created_at": int(time.time()),
                    "finished_at": None,
                    "fine_tuned_model": None,
                    "organization_id": ORG,
                    "result_files": [],
                    "status": plan.states[0],
                    "validation_file": b.get("validation_file"),
                    "training_file": b["training_file"],
                    "hyperparameters": {k: hp.get(k, "auto") for k in ("n_epochs", "batch_size", "learning_rate_multiplier")},
                    "method": {"type": "supervised", "supervised": {"hyperparameters": hp}},
                    "trained_tokens": None,
                    "error": None,
                    "seed": b.get("seed") or 42,
                    "estimated_finish": None,
                    "integrations": [],
                    "metadata": meta or None,
                    "suffix": b.get("suffix"),
                }
                job = Job(body=body, plan=plan)
                self.jobs[jid] = job
                self._event(job, f"Created fine-tuning job: {jid}")
                return Response(200, _public(job))

        @r("GET", "/v1/fine_tuning/jobs", "jobs.list")
        def list_jobs(req: Request) -> Response:
            wanted = {m.group(1): v for k, v in req.query.items() if (m := re.fullmatch(r"metadata\[(.+)\]", k))}
            with self._lock:
                jobs = [j for j in reversed(self.jobs.values()) if _meta_match(j.body.get("metadata"), wanted)]
                return _page([_public(j) for j in jobs], req)

        @r("GET", "/v1/fine_tuning/jobs/(?P<jid>[^/]+)", "jobs.retrieve")
        def get_job(req: Request) -> Response:
            with self._lock:
                job = self._job_or_404(req.params["jid"])
                if isinstance(job, Response):
                    return job
                self._advance(job)
                return Response(200, _public(job))

        @r("GET", "/v1/fine_tuning/jobs/(?P<jid>[^/]+)/events", "jobs.events")
        def events(req: Request) -> Response:
            with self._lock:
                job = self._job_or_404(req.params["jid"])
                if isinstance(job, Response):
                    return job
                return _page(list(reversed(job.events)), req)

        @r("POST", "/v1/fine_tuning/jobs/(?P<jid>[^/]+)/cancel", "jobs.cancel")
        def cancel(req: Request) -> Response:
            with self._lock:
                job = self._job_or_404(req.params["jid"])
                if isinstance(job, Response):
                    return job
                if job.status in TERMINAL:
                    return Response(400, _error(400, f"Job {job.body['id']} has already {job.status}; it cannot be cancelled."))
                job.body.update(status="cancelled", finished_at=int(time.time()))
                self._event(job, "Fine-tuning job cancelled")
                return Response(200, _public(job))

        @r("POST", "/v1/chat/completions", "chat.create")
        def chat(req: Request) -> Response:
            b = req.json()
            model = b.get("model")
            if model in self.responders:
                with self._lock:
                    self.answered += 1
                    self.asked.append(b)
                    n = self.answered
                text = self.responders[model](b.get("messages") or [])
                return Response(200, _completion(n, model, text, _block("user", b.get("messages") or [])))
            if model in self.judges:
                text = _block("user", b.get("messages") or [])
                seen = {k: _tag(text, k) for k in ("conversation", "reply_a", "reply_b")}
                with self._lock:
                    self.answered += 1
                    self.judged.append(seen)
                    n = self.answered
                verdict = self.judges[model](seen["conversation"], seen["reply_a"], seen["reply_b"])
                return Response(200, _completion(n, model, verdict, text))
            if model in self.labelers:
                msgs = b.get("messages") or []
                user = last("user", msgs)
                with self._lock:
                    self.answered += 1
                    n = self.answered
                    self.labelled.append({"system": _block("system", msgs), "user": user,
                                          "logprobs": bool(b.get("logprobs")), "top_logprobs": b.get("top_logprobs")})
                text, p = self.labelers[model](user)
                body = _completion(n, model, text, user)
                if b.get("logprobs") and p is not None:
                    body["choices"][0]["logprobs"] = {"content": _token_logprobs(text, p, int(b.get("top_logprobs") or 0)),
                                                      "refusal": None}
                return Response(200, body)
            with self._lock:
                memory = next(
                    (j.memory for j in self.jobs.values() if j.body.get("fine_tuned_model") == model and j.memory),
                    None,
                )
                if memory is None and model not in BASE_MODELS:
                    return Response(
                        404,
                        {
                            "error": {
                                "message": f"The model `{model}` does not exist or you do not have access to it.",
                                "type": "invalid_request_error",
                                "param": None,
                                "code": "model_not_found",
                            }
                        },
                    )
                self.answered += 1
                n = self.answered
            prompt = last("user", b.get("messages") or [])
            if self.malformed_every and n % self.malformed_every == 0:
                text = MALFORMED[n % len(MALFORMED)]
            else:
                text = memory.answer(prompt) if memory else "Hello! How can I help?"
            return Response(
                200,
                {
                    "id": f"chatcmpl-{n:08d}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                              "total_tokens": len(prompt.split()) + len(text.split())},
                },
            )


_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


def _token_logprobs(text: str, p: float | None, top: int) -> list[dict[str, Any]]:
    """``logprobs.content`` for ``text``: word/space/punctuation tokens; the label's tokens share ``log(p)``, the
    others are near-certain (logprob -0.0001); each lists ``top`` alternatives (the token first)."""
    import math

    m = re.search(r'"label"\s*:\s*"([^"]*)"', text)
    span = (m.start(1), m.end(1)) if m else (0, len(text))
    toks = [(t.group(0), t.start(), t.end()) for t in _TOKEN.finditer(text)]
    inside = [t for t in toks if t[2] > span[0] and t[1] < span[1]]
    share = math.log(p) / len(inside) if (p and inside) else None
    out = []
    for tok, a, b_ in toks:
        lp = share if (share is not None and b_ > span[0] and a < span[1]) else -0.0001
        alts = [{"token": tok, "logprob": lp, "bytes": list(tok.encode())}]
        alts += [{"token": f"<alt{i}>", "logprob": lp - 2.0 - i, "bytes": list(f"<alt{i}>".encode())} for i in range(max(top - 1, 0))]
        out.append({"token": tok, "logprob": lp, "bytes": list(tok.encode()), "top_logprobs": alts[:top]})
    return out


def _block(role: str, messages: list[dict]) -> str:
    return last(role, messages)


def _tag(text: str, name: str) -> str:
    m = re.search(rf"<{name}>\n?(.*?)\n?</{name}>", text, re.DOTALL)
    return m.group(1) if m else ""


def _completion(n: int, model: str, text: str, prompt: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{n:08d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                  "total_tokens": len(prompt.split()) + len(text.split())},
    }


def _public(job: Job) -> dict[str, Any]:
    return {k: v for k, v in job.body.items() if k != "suffix"}


def _meta_match(meta: dict[str, str] | None, wanted: dict[str, str]) -> bool:
    return all((meta or {}).get(k) == v for k, v in wanted.items())


def _page(items: list[dict[str, Any]], req: Request) -> Response:
    after = req.query.get("after")
    if after:
        ids = [i["id"] for i in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    limit = int(req.query.get("limit") or 20)
    return Response(200, {"object": "list", "data": items[:limit], "has_more": len(items) > limit})
