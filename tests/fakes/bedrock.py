"""Amazon Bedrock and S3 for the tests: moto's server for the control plane and S3, plus a small
stand-in for the Bedrock runtime's ``InvokeModel`` (moto's answers ``{}``).

* :class:`MotoBedrock` runs ``moto.server.ThreadedMotoServer`` on 127.0.0.1 (boto3 reaches it through
  ``AWS_ENDPOINT_URL``). moto leaves a customization job ``InProgress`` forever, so a lifecycle hook
  on its backend moves each job one step per ``GetModelCustomizationJob`` along a :class:`Plan`
  (``InProgress`` -> ``Completed``, or ``Failed`` with a message, or held) — the same control the other
  stand-ins give.
* The runtime stand-in serves ``POST /model/{modelId}/invoke`` (reached through
  ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``) with an Anthropic Messages response, answering from a
  :class:`Memory` of the training file the custom model's job read from moto's S3.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from tests.fakes.learner import MALFORMED, Memory, last
from tests.fakes.server import FakeHTTPServer, Request, Response

REGION = "us-west-2"
BUCKET = "tuneloop-bedrock"
ROLE_ARN = "arn:aws:iam::123456789012:role/tuneloop-bedrock-customization"
ACCOUNT = "123456789012"


@dataclass
class Plan:
    """How the next customization job behaves: polls while InProgress, then Completed or Failed."""

    polls: int = 2
    fail_message: str | None = None
    hold: bool = False


def _error(status: int, message: str) -> dict[str, Any]:
    return {"message": message}


class MotoBedrock:
    """moto (bedrock + s3) and the runtime stand-in, with per-job plans."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.runtime = FakeHTTPServer(error_body=_error)
        self.plans: deque[Plan] = deque()
        self.job_plans: dict[str, Plan] = {}
        self.polls: dict[str, int] = {}
        self.malformed_every = 0
        self.answered = 0
        self._memories: dict[str, Memory] = {}
        self._lock = threading.RLock()
        self._original_get = None
        self._runtime_routes()

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.moto.get_host_and_port()
        return f"http://{host}:{port}"

    def environ(self) -> dict[str, str]:
        """The environment boto3 needs to talk to these stand-ins (fake credentials)."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.runtime.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",  # noqa: S105 - moto's documented dummy
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def start(self) -> MotoBedrock:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
        self.moto.start()
        self.runtime.start()
        self._install_hook()
        self.reset()
        return self

    def stop(self) -> None:
        from moto.bedrock.models import BedrockBackend

        if self._original_get is not None:
            BedrockBackend.get_model_customization_job = self._original_get
        self.runtime.stop()
        self.moto.stop()

    def reset(self) -> None:
        """Forget every job, model and object; recreate the staging bucket."""
        import boto3
        import requests

        requests.post(f"{self.url}/moto-api/reset", timeout=10)
        with self._lock:
            self.plans.clear()
            self.job_plans.clear()
            self.polls.clear()
            self._memories.clear()
            self.malformed_every = 0
            self.answered = 0
        s3 = boto3.client("s3", endpoint_url=self.url, region_name=REGION, aws_access_key_id="testing",
                          aws_secret_access_key="testing")  # noqa: S106
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})

    def next_job(self, plan: Plan) -> None:
        self.plans.append(plan)

    def release(self, job_name: str) -> None:
        with self._lock:
            self.job_plans[job_name].hold = False

    # -- moto state ------------------------------------------------------------------------------
    @staticmethod
    def backend():
        from moto.bedrock.models import bedrock_backends

        return bedrock_backends[ACCOUNT][REGION]

    def jobs(self) -> dict[str, Any]:
        """job name -> moto's job object."""
        return dict(self.backend().model_customization_jobs)

    def statuses(self) -> dict[str, str]:
        return {n: j.status for n, j in self.jobs().items()}

    def _install_hook(self) -> None:
        from moto.bedrock.models import BedrockBackend

        original = BedrockBackend.get_model_customization_job
        self._original_get = original
        fake = self

        def get_and_advance(backend, job_identifier: str):
            job = original(backend, job_identifier)
            fake._advance(job)
            return job

        BedrockBackend.get_model_customization_job = get_and_advance

    def _advance(self, job) -> None:
        with self._lock:
            plan = self.job_plans.get(job.job_name)
            if plan is None:
                plan = self.job_plans[job.job_name] = self.plans.popleft() if self.plans else Plan()
            if job.status != "InProgress":
                if job.status == "Stopping":
                    job.status = "Stopped"
                return
            self.polls[job.job_name] = n = self.polls.get(job.job_name, 0) + 1
            if plan.hold or n <= plan.polls:
                return
            now = time.strftime("%Y-%m-%d %H:%M:%S")
            job.end_time = job.last_modified_time = now
            if plan.fail_message:
                job.status, job.failure_message = "Failed", plan.fail_message
            else:
                job.status, job.failure_message = "Completed", None

    # -- runtime ---------------------------------------------------------------------------------
    def _memory_for(self, model_id: str) -> Memory | None:
        import boto3

        if model_id in self._memories:
            return self._memories[model_id]
        for job in self.jobs().values():
            if model_id in (job.output_model_arn, job.output_model_name) and job.status == "Completed":
                uri = job.training_data_config["s3Uri"]
                bucket, _, key = uri[len("s3://"):].partition("/")
                s3 = boto3.client("s3", endpoint_url=self.url, region_name=REGION, aws_access_key_id="testing",
                                  aws_secret_access_key="testing")  # noqa: S106
                rows = [json.loads(x) for x in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines() if x]
                memory = Memory((last("user", r["messages"]), last("assistant", r["messages"])) for r in rows)
                self._memories[model_id] = memory
                return memory
        return None

    def _runtime_routes(self) -> None:
        @self.runtime.route("POST", "/model/(?P<model>.+)/invoke", "InvokeModel")
        def invoke(req: Request) -> Response:
            model_id = req.params["model"]
            body = req.json()
            if body.get("anthropic_version") != "bedrock-2023-05-31" or not body.get("max_tokens"):
                return Response(400, {"message": "Malformed input request: anthropic_version and max_tokens are required"},
                                {"x-amzn-ErrorType": "ValidationException"})
            memory = self._memory_for(model_id)
            if memory is None:
                return Response(404, {"message": f"Could not find model {model_id}"},
                                {"x-amzn-ErrorType": "ResourceNotFoundException"})
            with self._lock:
                self.answered += 1
                n = self.answered
            if self.malformed_every and n % self.malformed_every == 0:
                text = MALFORMED[n % len(MALFORMED)]
            else:
                text = memory.answer(last("user", body.get("messages") or []))
            return Response(
                200,
                {
                    "id": f"msg_bdrk_{n:06d}",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-3-haiku-20240307",
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 10, "output_tokens": len(text.split())},
                },
            )
