"""Fixtures for the oss-lora tests: a tiny pre-trained Llama-style base, topic Q/A data, one trained run.

Everything is built offline from seeds (tuneloop.providers.oss_lora.tiny); the base is pre-trained
once per session (a few seconds), because a random base cannot learn anything through LoRA alone.
``tiny_base`` and ``topic_data`` live in tests/oss_lora_fixtures.py, shared with tests/local.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from tests import oss_lora_fixtures as shared  # noqa: E402
from tests.fakes.fixtures import gcs  # noqa: E402,F401 - fake-gcs-server, for gs:// base models
from tuneloop.examples import dataset_hash  # noqa: E402
from tuneloop.providers.base import TuneRequest, TuneResult, job_key, run_job  # noqa: E402
from tuneloop.providers.oss_lora import OssLoraProvider, tiny  # noqa: E402

TopicData = shared.TopicData
tiny_base = shared.tiny_base  # session fixtures, built once per process with tests/local's
topic_data = shared.topic_data

# The run every "does it learn" test reads: small, but enough steps for held-out exact match to rise.
TRAIN_HP = {
    "rank": 8, "alpha": 16, "learning_rate": 3e-3, "batch_size": 8, "max_steps": 60, "max_seq_len": 256,
    "eval_interval": 20, "checkpoint_interval": 30, "log_interval": 10, "merge": True,
}


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return tiny.build_tokenizer()


def build_request(base: str, data: TopicData, output_dir: Path, **hp) -> TuneRequest:
    return TuneRequest(train=data.train, validation=data.validation,
                       dataset_hash=dataset_hash([*data.train, *data.validation]), base_model=base,
                       hyperparameters={**TRAIN_HP, **hp}, output_dir=str(output_dir))


@pytest.fixture(scope="session")
def make_request():
    """``make_request(base, data, output_dir, **hyperparameters)`` -> a TuneRequest over the topic data."""
    return build_request


@dataclass(frozen=True)
class TrainedRun:
    provider: OssLoraProvider
    request: TuneRequest
    result: TuneResult
    key: str
    record: Path
    logs: list[str]


@pytest.fixture(scope="session")
def trained(tiny_base, topic_data, tmp_path_factory) -> TrainedRun:
    out = tmp_path_factory.mktemp("trained")
    request = build_request(tiny_base, topic_data, out / "runs")
    logs: list[str] = []
    provider = OssLoraProvider(output_dir=request.output_dir, log=logs.append)
    record = out / "job-record.json"
    result = run_job(provider, request, record_path=record, log=logs.append)
    key = job_key(request.dataset_hash, provider.name, request.base_model, provider.parse_config(request.hyperparameters))
    return TrainedRun(provider, request, result, key, record, logs)
