"""Claude, as a family of two providers chosen by ``hyperparameters.method`` under the name ``claude``:

* ``claude-few-shot`` (``method: few-shot``, the default) — the Anthropic Messages API has no
  fine-tuning. The "tuned" artifact is an instruction plus exemplars selected from the training
  split, written to the task's model directory as ``fewshot.json``; evaluation sends the exemplars as
  prior turns and the eval prompt as the last one. It is judged and promoted like any other candidate.
* ``claude-bedrock`` (``method: bedrock``) — Amazon Bedrock model customization of a Claude model
  Bedrock can customize: the rendered Bedrock JSONL is uploaded to S3 and
  ``create_model_customization_job`` runs; evaluation invokes the custom model through the Bedrock
  runtime. Claude 3 Haiku, the only Claude model Bedrock could customize, reached its end of life on
  2026-09-10 (in the catalog), so preflight refuses it, naming few-shot.

This module holds what both share: the clients and ``predict``, which answers with either kind of
model (a few-shot adapter directory or a Bedrock model ARN), so a champion registered under the old
single name ``claude`` still answers.

Credentials: AWS from boto3's chain (environment, profile, task role; region from ``AWS_REGION``
or the ``region`` option); Anthropic from ``ANTHROPIC_API_KEY`` or ``ANTHROPIC_API_KEY_SECRET``
(Secret Manager). Endpoints: ``AWS_ENDPOINT_URL[_BEDROCK_RUNTIME]`` and ``ANTHROPIC_BASE_URL``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tuneloop import secrets
from tuneloop.examples import Example
from tuneloop.providers import hosted
from tuneloop.providers.base import ProviderError

FAMILY = "claude"
FEWSHOT_FILE = "fewshot.json"
FEWSHOT_SCHEMA = "tuneloop.fewshot/v1"
KEY_TAG = "tuneloop-key"
BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"
# Base models asked as they are (a judge): an Anthropic API model id, or a Bedrock model / inference profile id.
ANTHROPIC_MODEL = re.compile(r"^claude-[A-Za-z0-9.\-@]+$")
BEDROCK_MODEL = re.compile(r"^(?:[a-z]{2,4}\.)?anthropic\.claude-[A-Za-z0-9.\-:]+$")


def split_system(messages: list[dict[str, str]]) -> tuple[str, list[dict[str, str]]]:
    """``(system text, the other turns)`` of a conversation; the other turns alternate, user first
    (:func:`~tuneloop.providers.hosted.alternating`), as the Messages API and Bedrock require."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    return "\n\n".join(system), hosted.alternating(messages)


def read_fewshot(model_ref: str) -> dict[str, Any] | None:
    """The few-shot artifact in the model directory ``model_ref``, or None if it is not one."""
    path = Path(model_ref) / FEWSHOT_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != FEWSHOT_SCHEMA:
        raise ProviderError(f"{path}: schema {data.get('schema')!r} is not {FEWSHOT_SCHEMA!r}; retrain the adapter")
    return data


class ClaudeFamily(hosted.HostedProvider):
    """What both Claude providers share: their clients, and ``predict`` for either kind of model.

    Args:
        region: AWS region for Bedrock and S3 (default: AWS_REGION / AWS_DEFAULT_REGION).
        output_dir: where ``resume(key)`` looks for a few-shot artifact (the task's model dir).
        predict: :class:`~tuneloop.providers.hosted.PredictPolicy` fields for evaluation.
        log: where progress lines go.
        sleep: the sleep function between polls and retries.
    """

    family = FAMILY
    hosted = True
    extra = "claude"
    tasks = ("classification", "chat")

    def __init__(
        self,
        region: str | None = None,
        output_dir: str | None = None,
        predict: Mapping[str, Any] | hosted.PredictPolicy | None = None,
        log=print,
        sleep=None,
    ):
        self._init_common(output_dir, predict, log, sleep)
        self.region = region
        self._boto: dict[str, Any] = {}
        self._anthropic = None

    # -- clients -------------------------------------------------------------------------------
    def boto(self, service: str):
        """A boto3 client (``bedrock``, ``bedrock-runtime``, ``s3``); botocore's retries are off."""
        if service not in self._boto:
            import boto3
            from botocore.config import Config

            region = self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            if not region:
                raise ProviderError(
                    "claude provider (bedrock): no AWS region; set AWS_REGION in the task's environment (Bedrock "
                    "customization of Claude ran in us-west-2) or pass region= to the provider"
                )
            config = Config(retries={"total_max_attempts": 1}, read_timeout=120, connect_timeout=20)
            self._boto[service] = boto3.client(service, region_name=region, config=config)
        return self._boto[service]

    @property
    def anthropic(self):
        """The ``anthropic.Anthropic`` client (its own retries off)."""
        if self._anthropic is None:
            import anthropic

            self._anthropic = anthropic.Anthropic(
                api_key=secrets.get_secret("ANTHROPIC_API_KEY"), max_retries=0, timeout=120.0
            )
        return self._anthropic

    def _call(self, fn, what: str, cfg: hosted.HostedConfig | None = None, **kw):
        policy = (cfg or hosted.HostedConfig()).retry_policy()
        return hosted.call(fn, what=f"[{self.name}] {what}", policy=policy, log=self.log, sleep=self.sleep, **kw)

    # -- predict -------------------------------------------------------------------------------
    def predict(self, model_ref: str, examples: Sequence[Example]) -> list[str]:
        """A few-shot adapter directory -> Anthropic Messages API; a Bedrock model ARN -> InvokeModel.

        A base model id is asked as it is (what a judge names): ``claude-...`` on the Anthropic API,
        ``anthropic.claude-...`` (or an inference profile ``us.anthropic.claude-...``) on Bedrock.
        """
        policy = self.predict_policy
        art = read_fewshot(model_ref) if model_ref and not model_ref.startswith("arn:") else None
        if art is not None:
            ask = self._fewshot_asker(art, policy)
        elif model_ref.startswith("arn:aws") or BEDROCK_MODEL.match(model_ref or ""):
            ask = self._bedrock_asker(model_ref, policy)
        elif ANTHROPIC_MODEL.match(model_ref or ""):
            ask = self._fewshot_asker({"exemplars": [], "instruction": "", "base_model": model_ref}, policy)
        else:
            raise ProviderError(
                f"model_ref={model_ref!r} is neither a few-shot adapter directory (with {FEWSHOT_FILE}), a Bedrock "
                "model ARN, nor a base model id (claude-..., anthropic.claude-...); pass the model_ref a claude job "
                "returned, or a model id"
            )
        answers, self.last_predict = hosted.predict_all(
            ask, examples, policy=policy, counter=self.counter, what=f"[{self.name}] predict {model_ref}",
            log=self.log, sleep=self.sleep,
        )
        return answers

    def _fewshot_asker(self, art: Mapping[str, Any], policy: hosted.PredictPolicy):
        prefix: list[dict[str, Any]] = []
        for x in art["exemplars"]:
            prefix.extend(x["messages"])
            prefix.append({"role": "assistant", "content": x["answer"]})
        if prefix:  # cache the shared exemplar prefix (ignored by the API below its minimum length)
            last = prefix[-1]
            prefix[-1] = {"role": last["role"], "content": [
                {"type": "text", "text": last["content"], "cache_control": {"type": "ephemeral"}}]}
        client = self.anthropic

        def ask(example: Example) -> str:
            system, msgs = split_system(hosted.prompt_messages(example))
            instruction = art["instruction"] + (f"\n\n{system}" if system and system not in art["instruction"] else "")
            kwargs = {"system": instruction.strip()} if instruction.strip() else {}
            r = client.messages.create(  # this SDK has no sampling parameters: the model's defaults
                model=art["base_model"],
                max_tokens=policy.max_output_tokens,
                messages=[*prefix, *msgs],
                **kwargs,
            )
            return "".join(b.text for b in r.content if getattr(b, "type", "") == "text")

        return ask

    def _bedrock_asker(self, model_ref: str, policy: hosted.PredictPolicy):
        runtime = self.boto("bedrock-runtime")

        def ask(example: Example) -> str:
            system, msgs = split_system(hosted.prompt_messages(example))
            body: dict[str, Any] = {
                "anthropic_version": BEDROCK_ANTHROPIC_VERSION,
                "max_tokens": policy.max_output_tokens,
                "temperature": 0,
                "messages": msgs,
            }
            if system:
                body["system"] = system
            r = runtime.invoke_model(modelId=model_ref, body=json.dumps(body), contentType="application/json",
                                     accept="application/json")
            data = json.loads(r["body"].read())
            return "".join(b.get("text", "") for b in data.get("content", []) if b.get("type") == "text")

        return ask
