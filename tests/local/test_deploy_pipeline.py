"""tune-and-promote's deploy_endpoint under kfp.local: sklearn tuned, promoted on a gs:// registry, deployed to a
Vertex endpoint (the Vertex REST stand-in, fake-gcs-server), with deploy_options through KFP (3 -> 3.0)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.fakes import gcp_emulators as emu
from tests.fakes.data import support_messages
from tests.local.conftest import run
from tuneloop import datasets
from tuneloop.registry import FileRegistry

REGION = "us-central1"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    from tests.fakes.vertex_pipelines_rest import FakeVertex

    gcs = emu.start_fake_gcs(tmp_path_factory.mktemp("fake-gcs"))
    vertex = FakeVertex().start()
    yield gcs, vertex
    vertex.stop()
    gcs.stop()


def test_a_promoted_sklearn_champion_is_deployed_when_deploy_endpoint_is_set(servers, monkeypatch, tmp_path):
    from google.cloud import storage as gcs_lib

    from tuneloop.deploy import served_providers

    assert served_providers() == ["oss-lora", "sklearn"]  # the providers that declare a serving container
    gcs, vertex = servers
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
    monkeypatch.setenv("TUNELOOP_VERTEX_ENDPOINT", vertex.url)
    monkeypatch.setenv("TUNELOOP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    bucket = f"tl-{uuid.uuid4().hex[:10]}"
    gcs_lib.Client(project=emu.PROJECT).create_bucket(bucket)
    built = tmp_path / "built"
    datasets.build_dataset(support_messages(200, seed=9), built, previous=None, formats=[], min_examples=10)
    dataset_uri = datasets.publish(built, str(tmp_path / "datasets"),
                                   expected=datasets.RootState.read(str(tmp_path / "datasets")))
    endpoint = f"vertex://{emu.PROJECT}/{REGION}/support-intent"
    run("tune-and-promote", {
        "dataset_uri": dataset_uri, "registry_uri": f"gs://{bucket}/registry", "provider": "sklearn",
        "min_values": {"macro_f1": 0.3}, "deploy_endpoint": endpoint,
        "deploy_options": {"min_replica_count": 1, "max_replica_count": 3, "machine_type": "n1-standard-4"},
    }, tmp_path / "runs")
    champion = FileRegistry(f"gs://{bucket}/registry", "support-intent").champion()
    assert champion is not None and champion.version == "v1"
    [ep] = [e for e in vertex.endpoints.values() if e["displayName"] == "support-intent"]
    [deployed] = ep["deployedModels"]
    assert deployed["displayName"] == "support-intent-v1" and ep["trafficSplit"] == {deployed["id"]: 100}
    assert deployed["dedicatedResources"]["maxReplicaCount"] == 3
    [record] = list((tmp_path / "runs").rglob("deployment"))
    assert json.loads(record.read_text())["action"] == "deployed"


def test_deploy_endpoint_for_a_hosted_provider_fails_the_first_task(tmp_path):
    from tuneloop.config import ConfigError
    from tuneloop.stages import check_config

    common = {"registry_uri": str(tmp_path / "r"), "model_name": "m", "hyperparameters": {},
              "thresholds": {"min_values": {"macro_f1": 0.5}}, "task_env": {"OPENAI_API_KEY_SECRET":
                                                                          "projects/p/secrets/k/versions/1"}}
    endpoint = {"endpoint": f"vertex://{emu.PROJECT}/{REGION}/support-intent", "options": {}}
    with pytest.raises(ConfigError, match="openai models are served by their provider"):
        check_config(provider="openai", deploy=endpoint, **common)
    with pytest.raises(ConfigError, match="deploy_options"):
        check_config(provider="sklearn", deploy={**endpoint, "options": {"machine_typ": "n1"}}, **common)
    assert check_config(provider="sklearn", deploy=endpoint, **common)["provider"] == "sklearn"
