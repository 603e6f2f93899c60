"""Stand-in Google Cloud for the cloud tests: fake-gcs-server, bqemulator and a Vertex REST fake.

The servers start once per session on free loopback ports; each test gets its own bucket, dataset or
model name, and the environment variables that point the real clients at the servers (set per test,
so fixtures of other test folders that touch the same variables cannot leave them stale).
"""

from __future__ import annotations

import logging
import uuid

import pytest

from tests.fakes import gcp_emulators as emu

PROJECT = emu.PROJECT
REGION = "us-central1"


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    server = emu.start_fake_gcs(tmp_path_factory.mktemp("fake-gcs"))
    yield server
    server.stop()


@pytest.fixture
def gcs(gcs_server, monkeypatch, tmp_path):
    """A fresh bucket on fake-gcs-server; returns ``gs://<bucket>``."""
    from google.cloud import storage as gcs_lib

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url)
    monkeypatch.setenv("TUNELOOP_CACHE_DIR", str(tmp_path / "cache"))
    name = f"tl-{uuid.uuid4().hex[:12]}"
    gcs_lib.Client(project=PROJECT).create_bucket(name)
    return f"gs://{name}"


@pytest.fixture(scope="session")
def bq_server(tmp_path_factory):
    why = emu.bq_emulator_available()
    if why:
        pytest.skip(why)
    server = emu.start_bqemulator(tmp_path_factory.mktemp("bqemulator"))
    yield server
    server.stop()


@pytest.fixture
def bq_env(bq_server, monkeypatch):
    """Point ``bigquery://`` warehouses at the emulator (REST; see the report on the Storage Read API)."""
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bq_server.url)
    monkeypatch.delenv("BIGQUERY_STORAGE_EMULATOR_HOST", raising=False)
    return bq_server


@pytest.fixture
def bq_uri(bq_env):
    """A fresh, empty dataset in the emulator: ``bigquery://tuneloop-test/ds_<n>``."""
    return f"bigquery://{PROJECT}/ds_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def vertex_server():
    from tests.fakes.vertex_pipelines_rest import FakeVertex

    server = FakeVertex().start()
    logging.getLogger("google.cloud.aiplatform").setLevel(logging.WARNING)
    yield server
    server.stop()


@pytest.fixture
def vertex(vertex_server, gcs, monkeypatch):
    """The Vertex fake (with GCS next to it, as on Google Cloud); returns the FakeVertex."""
    monkeypatch.setenv("TUNELOOP_VERTEX_ENDPOINT", vertex_server.url)
    return vertex_server


@pytest.fixture
def target(gcs):
    from tuneloop.cloud import VertexTarget

    return VertexTarget(
        project=PROJECT,
        region=REGION,
        pipeline_root=f"{gcs}/pipeline-root",
        service_account=f"runner@{PROJECT}.iam.gserviceaccount.com",
    )
