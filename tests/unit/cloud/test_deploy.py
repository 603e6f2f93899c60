"""Deploy the champion to a Vertex endpoint: the real aiplatform clients against the Vertex REST stand-in,
whose endpoints serve the sklearn models for real (model.joblib from fake-gcs-server)."""

from __future__ import annotations

import uuid

import pytest

from tests.fakes.data import support_messages
from tuneloop.deploy import DeployError, EndpointRef, deploy_champion, deployment_of, rollback_endpoint
from tuneloop.examples import dataset_hash
from tuneloop.providers import get_provider
from tuneloop.providers.base import TuneRequest, run_job
from tuneloop.registry import FileRegistry
from tuneloop.serving import champion_info

PROJECT, REGION = "tuneloop-test", "us-central1"
CANCEL = "please cancel subscription today"


def _train(tmp_path, name, examples):
    out = tmp_path / name
    request = TuneRequest(train=examples, validation=[], dataset_hash=dataset_hash(examples), base_model="",
                          output_dir=str(out))
    return run_job(get_provider("sklearn", output_dir=str(out)), request, record_path=tmp_path / f"{name}.json",
                   log=lambda _: None).model_ref


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    rows = support_messages(200, seed=5)
    broken = tmp / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("{}")  # a model card without its model: the container cannot load it
    return {"v1": _train(tmp, "v1", [e for e in rows if e.label != "cancellation"]), "v2": _train(tmp, "v2", rows),
            "broken": str(broken)}


def _register(reg, model_dir, provider="sklearn"):
    return reg.register(provider=provider, model_ref=model_dir, model_dir=model_dir, metrics={"macro_f1": 0.8},
                        data_hash="ef" * 32, example_ids=["x"], config={}, blessing={"blessed": True})


def _ask(vertex_server, endpoint_name, text):
    from google.cloud.aiplatform import utils

    from tuneloop.cloud import init_vertex

    aiplatform = init_vertex(PROJECT, REGION)
    client = aiplatform.initializer.global_config.create_client(
        client_class=utils.PredictionClientWithOverride, location_override=REGION)
    return list(client.predict(endpoint=endpoint_name, instances=[text]).predictions)[0]


def test_deploy_smoke_switch_undeploy_refuse_a_broken_one_and_roll_back(vertex, gcs, models):
    reg = FileRegistry(f"{gcs}/registry", f"intent-{uuid.uuid4().hex[:6]}")
    for key in ("v1", "v2", "broken"):
        _register(reg, models[key])
    endpoint = f"vertex://{PROJECT}/{REGION}/support-{uuid.uuid4().hex[:6]}"
    logs: list[str] = []
    assert deploy_champion(reg.root, reg.model_name, endpoint, log=logs.append).action == "skipped"

    reg.set_champion("v1", expected=None, reason="first")
    first = deploy_champion(reg.root, reg.model_name, endpoint, log=logs.append)
    assert first.action == "deployed" and first.version == "v1" and first.smoke
    ep = vertex.endpoints[first.endpoint]
    assert ep["trafficSplit"] == {first.deployed_model_id: 100} and len(ep["deployedModels"]) == 1
    assert _ask(vertex, first.endpoint, CANCEL) != "cancellation"  # v1 never learned it

    reg.set_champion("v2", expected="v1", reason="better")
    second = deploy_champion(reg.root, reg.model_name, endpoint, {"machine_type": "n1-standard-4"}, log=logs.append)
    assert second.action == "deployed" and second.undeployed == (first.deployed_model_id,)
    assert ep["trafficSplit"] == {second.deployed_model_id: 100}
    assert [d["displayName"] for d in ep["deployedModels"]] == [f"{reg.model_name}-v2"]
    assert ep["deployedModels"][0]["dedicatedResources"]["machineSpec"]["machineType"] == "n1-standard-4"
    assert _ask(vertex, first.endpoint, CANCEL) == "cancellation"
    staging = next(e for e in vertex.endpoints.values() if e["displayName"].endswith("-staging"))
    assert staging["deployedModels"] == []  # the smoke deployment is gone
    assert deploy_champion(reg.root, reg.model_name, endpoint).action == "already-serving"
    info = champion_info(reg.root, reg.model_name)
    assert info.endpoint == first.endpoint and info.version == "v2"

    reg.set_champion("v3", expected="v2", reason="looked fine offline")
    predicted_before = len(vertex.predictions)
    with pytest.raises(DeployError, match="smoke request failed"):
        deploy_champion(reg.root, reg.model_name, endpoint)
    assert ep["trafficSplit"] == {second.deployed_model_id: 100}  # traffic never moved
    assert staging["deployedModels"] == [] and len(vertex.predictions) == predicted_before
    assert _ask(vertex, first.endpoint, CANCEL) == "cancellation"
    assert deployment_of(reg.root, reg.model_name)["version"] == "v2"

    back = rollback_endpoint(reg.root, reg.model_name, endpoint, reason="v3 cannot load")
    assert (back.action, back.version) == ("already-serving", "v2")
    again = rollback_endpoint(reg.root, reg.model_name, endpoint, reason="v2 too eager to cancel")
    assert again.action == "deployed" and again.version == "v1"  # traffic back on the previous champion
    assert _ask(vertex, first.endpoint, CANCEL) != "cancellation"
    assert ep["trafficSplit"] == {again.deployed_model_id: 100} and len(ep["deployedModels"]) == 1


def test_keep_previous_makes_the_rollback_a_traffic_move(vertex, gcs, models):
    reg = FileRegistry(f"{gcs}/registry", f"intent-{uuid.uuid4().hex[:6]}")
    _register(reg, models["v1"])
    _register(reg, models["v2"])
    endpoint = f"vertex://{PROJECT}/{REGION}/keep-{uuid.uuid4().hex[:6]}"
    reg.set_champion("v1", expected=None, reason="first")
    one = deploy_champion(reg.root, reg.model_name, endpoint, {"keep_previous": True})
    reg.set_champion("v2", expected="v1", reason="better")
    two = deploy_champion(reg.root, reg.model_name, endpoint, {"keep_previous": True})
    ep = vertex.endpoints[one.endpoint]
    assert ep["trafficSplit"] == {two.deployed_model_id: 100} and len(ep["deployedModels"]) == 2
    deploys = vertex.calls("endpoints.deployModel")
    back = rollback_endpoint(reg.root, reg.model_name, endpoint, {"keep_previous": True}, reason="revert")
    assert back.deployed_model_id == one.deployed_model_id and ep["trafficSplit"] == {one.deployed_model_id: 100}
    assert vertex.calls("endpoints.deployModel") == deploys  # no new deployment: traffic moved back


def test_hosted_champions_and_local_registries_are_refused_clearly(vertex, gcs, models, tmp_path):
    reg = FileRegistry(f"{gcs}/registry", f"bot-{uuid.uuid4().hex[:6]}")
    reg.register(provider="openai", model_ref="ft:gpt-4.1-mini:org::x", model_dir=None, metrics={}, data_hash="a" * 64,
                 example_ids=[], config={}, blessing=None)
    reg.set_champion("v1", expected=None, reason="first")
    skipped = deploy_champion(reg.root, reg.model_name, f"vertex://{PROJECT}/{REGION}/bot")
    assert skipped.action == "skipped" and "served by their provider" in skipped.reason
    local = FileRegistry(str(tmp_path / "registry"), "local")
    _register(local, models["v1"])
    local.set_champion("v1", expected=None, reason="first")
    with pytest.raises(DeployError, match="Vertex serves models from gs://"):
        deploy_champion(local.root, local.model_name, f"vertex://{PROJECT}/{REGION}/local")
    with pytest.raises(ValueError, match="write vertex://PROJECT/REGION/ENDPOINT_NAME"):
        EndpointRef.parse("vertex://p/us-central1")
    with pytest.raises(ValueError, match="did you mean 'machine_type'"):
        deploy_champion(local.root, local.model_name, f"vertex://{PROJECT}/{REGION}/x", {"machine": "n1"})


def test_deploy_settings_are_checked_before_anything_runs():
    from tuneloop.deploy import check_deploy_settings

    assert check_deploy_settings("", {}) is None
    cfg = check_deploy_settings(f"vertex://{PROJECT}/{REGION}/ep", {"max_replica_count": 3.0, "keep_previous": "true"})
    assert cfg.max_replica_count == 3 and cfg.keep_previous is True  # KFP hands numbers over as floats
    with pytest.raises(ValueError, match="deploy_options is set but deploy_endpoint is empty"):
        check_deploy_settings("", {"machine_type": "n1-standard-4"})
    with pytest.raises(ValueError, match="max_replica_count=1 is below min_replica_count=2"):
        check_deploy_settings(f"vertex://{PROJECT}/{REGION}/ep", {"min_replica_count": 2})
    with pytest.raises(ValueError, match="accelerator_type and accelerator_count go together"):
        check_deploy_settings(f"vertex://{PROJECT}/{REGION}/ep", {"accelerator_type": "NVIDIA_L4"})
    with pytest.raises(ValueError, match="endpoint name 'a b' must be"):
        check_deploy_settings(f"vertex://{PROJECT}/{REGION}/a b", {})
