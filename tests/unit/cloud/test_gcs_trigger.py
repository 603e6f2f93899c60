"""The upload trigger as deployed: functions-framework serving the CloudEvent handler, GCS events in,
Vertex pipeline jobs out (fake-gcs-server and the Vertex REST stand-in behind real clients)."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid

import pytest

from tests.conftest import ROOT
from tests.fakes.server import Fault
from tuneloop import claims, datasets, storage
from tuneloop.examples import classification_example
from tuneloop.triggers import gcs_upload

PROJECT, REGION = "tuneloop-test", "us-central1"
TEMPLATE = str(ROOT / "compile" / "tune-and-promote.yaml")


@pytest.fixture
def function(vertex, gcs, monkeypatch, capsys):
    """The function served by functions-framework (as Cloud Functions runs it) + its dataset root.

    ``fire(bucket, name)`` delivers one finalize event and returns ``(HTTP status, log lines)``: 2xx
    acknowledges the event, 5xx makes Eventarc redeliver it.
    """
    import functions_framework

    root = f"{gcs}/support"
    for key, value in {
        "TUNELOOP_DATASET_ROOT": root,
        "TUNELOOP_PROJECT": PROJECT,
        "TUNELOOP_REGION": REGION,
        "TUNELOOP_PIPELINE_ROOT": f"{gcs}/pipeline-root",
        "TUNELOOP_TEMPLATE": TEMPLATE,
        "TUNELOOP_SERVICE_ACCOUNT": f"runner@{PROJECT}.iam.gserviceaccount.com",
        "TUNELOOP_PARAMS": json.dumps({"registry_uri": f"{gcs}/registry", "provider": "sklearn"}),
    }.items():
        monkeypatch.setenv(key, value)
    app = functions_framework.create_app(
        target="on_dataset_finalized", source=gcs_upload.__file__, signature_type="cloudevent"
    )
    client = app.test_client()

    def fire(bucket_uri: str, name: str, *, created: dt.datetime | None = None) -> tuple[int, list[dict]]:
        bucket = storage.split_gcs(bucket_uri)[0]
        headers = {
            "ce-id": uuid.uuid4().hex,
            "ce-specversion": "1.0",
            "ce-type": "google.cloud.storage.object.v1.finalized",
            "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "ce-subject": f"objects/{name}",
            "Content-Type": "application/json",
        }
        when = (created or dt.datetime.now(dt.UTC)).isoformat().replace("+00:00", "Z")
        data = {"bucket": bucket, "name": name, "generation": "1", "metageneration": "1", "size": "10",
                "timeCreated": when}
        capsys.readouterr()
        status = client.post("/", headers=headers, data=json.dumps(data)).status_code
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        return status, lines

    return root, fire


def _publish(root: str, tmp_path, n: int = 30) -> str:
    examples = [
        classification_example(f"where is my invoice number {i} {uuid.uuid4().hex[:4]}", ["billing", "refund"][i % 2])
        for i in range(n)
    ]
    built = tmp_path / f"built-{uuid.uuid4().hex[:6]}"
    datasets.build_dataset(examples, built, previous=None, formats=["openai"], min_examples=5)
    return datasets.publish(built, root, expected=datasets.RootState.read(root))


def _object(uri: str) -> str:
    return storage.split_gcs(uri)[1]


def _jobs_for(vertex, dataset_hash: str) -> list[dict]:
    return [j for j in vertex.jobs.values() if f"-{dataset_hash[:32]}-" in j["name"]]


def test_the_manifest_fired_twice_submits_one_run_and_other_files_start_nothing(function, vertex, tmp_path):
    root, fire = function
    uri = _publish(root, tmp_path)
    dataset_hash = uri.rsplit("/", 1)[-1]
    creates = vertex.calls("pipelineJobs.create")
    status, lines = fire(root, f"{_object(uri)}/canonical/eval.parquet")  # not the manifest: no GCS read even
    assert status == 200 and lines[-1]["action"] == "ignored" and "not the dataset's manifest" in lines[-1]["reason"]
    assert vertex.calls("pipelineJobs.create") == creates
    assert fire(root, f"{_object(uri)}/manifest.json")[0] == 200
    status, lines = fire(root, f"{_object(uri)}/manifest.json")  # a retried delivery / a second notification
    assert status == 200 and lines[-1]["action"] == "already-submitted"
    [job] = _jobs_for(vertex, dataset_hash)
    assert job["name"].rsplit("/", 1)[-1] == claims.tuning_id(dataset_hash, {"registry_uri": f"{root.rsplit('/', 1)[0]}/registry"})
    assert job["runtimeConfig"]["parameterValues"]["dataset_uri"] == uri
    assert job["runtimeConfig"]["parameterValues"]["provider"] == "sklearn"
    assert job["labels"]["dataset"] == dataset_hash[:63] and job["labels"]["trigger"] == "gcs-upload"


def test_objects_outside_the_dataset_prefix_are_ignored(function, vertex, gcs):
    root, fire = function
    before = vertex.calls("pipelineJobs.create")
    storage.write(f"{gcs}/notes/readme.txt", b"hello", if_generation=None)
    assert fire(gcs, "notes/readme.txt")[0] == 200
    assert fire(gcs, f"{_object(root)}/datasets/not-a-hash/manifest.json")[0] == 200
    assert fire("gs://some-other-bucket", f"{_object(root)}/datasets/{'a' * 64}/manifest.json")[0] == 200
    assert vertex.calls("pipelineJobs.create") == before


def test_a_manifest_that_lands_before_its_files_is_retried_until_they_are_there(function, vertex, gcs, tmp_path):
    root, fire = function
    source = _publish(f"{gcs}/staging", tmp_path)  # a complete dataset elsewhere, copied file by file
    dataset_hash = source.rsplit("/", 1)[-1]
    dest = f"{root}/datasets/{dataset_hash}"
    files = storage.list_files(source)
    required = set(gcs_upload.required_files(storage.read_json(f"{source}/manifest.json")[0]))
    assert required < set(files)  # quarantine files are not needed by a run
    storage.write(f"{dest}/manifest.json", storage.read_bytes(f"{source}/manifest.json"), if_generation=None)
    status, lines = fire(root, f"{_object(dest)}/manifest.json")
    assert status >= 500  # raised: Eventarc redelivers it
    assert lines[-1]["severity"] == "WARNING" and "partial upload" in lines[-1]["message"]
    for rel in [f for f in files if f != "manifest.json"]:
        storage.write(f"{dest}/{rel}", storage.read_bytes(f"{source}/{rel}"), if_generation=None)
        assert fire(root, f"{_object(dest)}/{rel}")[1][-1]["action"] == "ignored"
    assert _jobs_for(vertex, dataset_hash) == []
    status, lines = fire(root, f"{_object(dest)}/manifest.json")  # the redelivery
    assert status == 200 and lines[-1]["action"] == "submitted"
    assert len(_jobs_for(vertex, dataset_hash)) == 1


def test_an_abandoned_partial_upload_is_acknowledged_with_the_reason(function, vertex, gcs, tmp_path):
    root, fire = function
    source = _publish(f"{gcs}/staging3", tmp_path)
    dataset_hash = source.rsplit("/", 1)[-1]
    dest = f"{root}/datasets/{dataset_hash}"
    storage.write(f"{dest}/manifest.json", storage.read_bytes(f"{source}/manifest.json"), if_generation=None)
    status, lines = fire(root, f"{_object(dest)}/manifest.json", created=dt.datetime.now(dt.UTC) - dt.timedelta(hours=3))
    assert status == 200 and len(lines) == 1
    assert lines[0]["severity"] == "ERROR" and lines[0]["action"] == "refused"
    assert "abandoned partial upload" in lines[0]["reason"] and "canonical/train.parquet" in lines[0]["reason"]
    assert _jobs_for(vertex, dataset_hash) == []


def test_a_manifest_for_another_dataset_is_not_trusted(function, vertex, gcs, tmp_path):
    root, fire = function
    source = _publish(f"{gcs}/staging2", tmp_path)
    fake_hash = "f" * 64
    dest = f"{root}/datasets/{fake_hash}"
    for rel in storage.list_files(source):
        storage.write(f"{dest}/{rel}", storage.read_bytes(f"{source}/{rel}"), if_generation=None)
    status, lines = fire(root, f"{_object(dest)}/manifest.json")
    assert status == 200 and lines[-1]["action"] == "ignored" and "not the folder's hash" in lines[-1]["reason"]
    assert _jobs_for(vertex, fake_hash) == []


def test_a_permanent_vertex_error_is_logged_once_and_acknowledged(function, vertex, tmp_path):
    root, fire = function
    uri = _publish(root, tmp_path)
    dataset_hash = uri.rsplit("/", 1)[-1]
    vertex.inject("pipelineJobs.create", Fault(403, message="Permission 'aiplatform.pipelineJobs.create' denied"))
    status, lines = fire(root, f"{_object(uri)}/manifest.json")
    assert vertex.server.pending_faults("pipelineJobs.create") == 0
    assert status == 200  # acknowledged: a redelivery would be refused the same way for days
    assert len(lines) == 1
    [line] = lines
    assert line["severity"] == "ERROR" and line["action"] == "refused"
    assert "aiplatform.pipelineJobs.create' denied" in line["reason"]
    assert "roles/aiplatform.user" in line["reason"]  # the fix
    assert _jobs_for(vertex, dataset_hash) == []


def test_a_transient_vertex_error_is_raised_so_the_event_is_redelivered(function, vertex, tmp_path):
    root, fire = function
    uri = _publish(root, tmp_path)
    dataset_hash = uri.rsplit("/", 1)[-1]
    vertex.inject("pipelineJobs.create", Fault(503, message="The service is currently unavailable"))
    status, lines = fire(root, f"{_object(uri)}/manifest.json")
    assert vertex.server.pending_faults("pipelineJobs.create") == 0
    assert status >= 500
    assert lines[-1]["severity"] == "WARNING" and "currently unavailable" in lines[-1]["message"]
    assert _jobs_for(vertex, dataset_hash) == []
    status, lines = fire(root, f"{_object(uri)}/manifest.json")  # Eventarc's redelivery
    assert status == 200 and lines[-1]["action"] == "submitted"
    assert len(_jobs_for(vertex, dataset_hash)) == 1


def test_a_broken_configuration_is_acknowledged_naming_the_variable(function, vertex, monkeypatch, tmp_path):
    root, fire = function
    uri = _publish(root, tmp_path)
    monkeypatch.delenv("TUNELOOP_PROJECT")
    status, lines = fire(root, f"{_object(uri)}/manifest.json")
    assert status == 200 and len(lines) == 1 and lines[0]["severity"] == "ERROR"
    assert "TUNELOOP_PROJECT is not set" in lines[0]["reason"]


def test_a_hosted_provider_without_a_key_in_task_env_is_refused_naming_both_ways(function, monkeypatch, gcs):
    monkeypatch.setenv("TUNELOOP_PARAMS", json.dumps({"registry_uri": f"{gcs}/registry", "provider": "openai"}))
    with pytest.raises(gcs_upload.TriggerConfigError) as info:
        gcs_upload.TriggerConfig.from_env()
    assert "OPENAI_API_KEY" in str(info.value) and "OPENAI_API_KEY_SECRET" in str(info.value)


def test_missing_configuration_names_the_variable(monkeypatch):
    monkeypatch.delenv("TUNELOOP_PROJECT", raising=False)
    with pytest.raises(ValueError, match="TUNELOOP_PROJECT is not set"):
        gcs_upload.TriggerConfig.from_env({"TUNELOOP_DATASET_ROOT": "gs://b/x"})


def _documented_params() -> dict[str, dict]:
    """Every ``TUNELOOP_PARAMS`` example in docs/google-cloud.md, by the provider (and method) it sets up."""
    text = (ROOT / "docs" / "google-cloud.md").read_text()
    found = {}
    for raw in re.findall(r"^TUNELOOP_PARAMS: '(\{.*\})'$", text, flags=re.M):
        params = json.loads(raw.replace("$BUCKET", "my-bucket").replace("$PROJECT", "my-project"))
        method = (params.get("hyperparameters") or {}).get("method")
        found[params.get("provider", "sklearn") + (f":{method}" if method else "")] = params
    return found


def test_the_documented_trigger_parameters_work_for_every_provider():
    from tuneloop.cloud import VertexTarget
    from tuneloop.providers import provider_classes

    names = {c.family or c.name for c in provider_classes().values()}  # what -p provider= says
    documented = _documented_params()
    covered = {k.split(":")[0] for k in documented}
    assert covered == names, f"docs/google-cloud.md lacks TUNELOOP_PARAMS for {names - covered}"
    assert "claude:bedrock" in documented  # both Claude methods
    target = VertexTarget(PROJECT, REGION, "gs://my-bucket/pipeline-root")
    for name, params in documented.items():
        gcs_upload.TriggerConfig("gs://my-bucket/support-intent", target, TEMPLATE, params)  # raises if not
        if name.split(":")[0] in ("openai", "claude"):
            assert "task_env" in params, name
