"""The upload trigger as deployed: functions-framework serving the CloudEvent handler, GCS events in,
Vertex pipeline jobs out (fake-gcs-server and the Vertex REST stand-in behind real clients)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import ROOT
from tuneloop import datasets, storage
from tuneloop.examples import classification_example
from tuneloop.triggers import gcs_upload

PROJECT, REGION = "tuneloop-test", "us-central1"
TEMPLATE = str(ROOT / "compile" / "tune-and-promote.yaml")


@pytest.fixture
def function(vertex, gcs, monkeypatch):
    """The function served by functions-framework (as Cloud Functions runs it) + its dataset root."""
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

    def fire(bucket_uri: str, name: str) -> int:
        bucket = storage.split_gcs(bucket_uri)[0]
        headers = {
            "ce-id": uuid.uuid4().hex,
            "ce-specversion": "1.0",
            "ce-type": "google.cloud.storage.object.v1.finalized",
            "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "ce-subject": f"objects/{name}",
            "Content-Type": "application/json",
        }
        data = {"bucket": bucket, "name": name, "generation": "1", "metageneration": "1", "size": "10"}
        return client.post("/", headers=headers, data=json.dumps(data)).status_code

    return root, fire


def _publish(root: str, tmp_path, n: int = 30) -> str:
    examples = [
        classification_example(f"where is my invoice number {i}", ["billing", "refund"][i % 2])
        for i in range(n)
    ]
    built = tmp_path / f"built-{uuid.uuid4().hex[:6]}"
    datasets.build_dataset(examples, built, previous=None, formats=["openai"], min_examples=5)
    return datasets.publish(built, root, expected=datasets.RootState.read(root))


def _object(uri: str) -> str:
    return storage.split_gcs(uri)[1]


def test_the_event_fired_twice_for_the_same_dataset_submits_one_run(function, vertex, tmp_path):
    root, fire = function
    uri = _publish(root, tmp_path)
    manifest = f"{_object(uri)}/manifest.json"
    before = len(vertex.jobs)
    assert fire(root, manifest) == 200
    assert fire(root, manifest) == 200  # a retried delivery / a second notification
    assert fire(root, f"{_object(uri)}/canonical/eval.parquet") == 200  # another file of the same dataset
    new = list(vertex.jobs.values())[before:]
    assert len(new) == 1
    job = new[0]
    dataset_hash = uri.rsplit("/", 1)[-1]
    assert job["name"].rsplit("/", 1)[-1].startswith(f"tune-and-promote-{dataset_hash[:32]}")
    assert job["runtimeConfig"]["parameterValues"]["dataset_uri"] == uri
    assert job["runtimeConfig"]["parameterValues"]["provider"] == "sklearn"
    assert job["labels"]["dataset"] == dataset_hash[:63] and job["labels"]["trigger"] == "gcs-upload"


def test_objects_outside_the_dataset_prefix_are_ignored(function, vertex, gcs):
    root, fire = function
    before = vertex.calls("pipelineJobs.create")
    storage.write(f"{gcs}/notes/readme.txt", b"hello", if_generation=None)
    assert fire(gcs, "notes/readme.txt") == 200
    assert fire(gcs, f"{_object(root)}/datasets/not-a-hash/manifest.json") == 200
    assert fire("gs://some-other-bucket", f"{_object(root)}/datasets/{'a' * 64}/manifest.json") == 200
    assert vertex.calls("pipelineJobs.create") == before


def test_a_partial_upload_waits_for_its_last_file(function, vertex, gcs, tmp_path):
    root, fire = function
    source = _publish(f"{gcs}/staging", tmp_path)  # a complete dataset elsewhere, copied file by file
    dataset_hash = source.rsplit("/", 1)[-1]
    dest = f"{root}/datasets/{dataset_hash}"
    files = storage.list_files(source)
    order = ["manifest.json", *[f for f in files if f != "manifest.json"]]  # manifest first: worst case
    required = set(gcs_upload.required_files(storage.read_json(f"{source}/manifest.json")[0]))
    assert required < set(files)  # quarantine files are not needed by a run
    before = vertex.calls("pipelineJobs.create")
    landed: set[str] = set()
    actions = []
    for rel in order:
        storage.write(f"{dest}/{rel}", storage.read_bytes(f"{source}/{rel}"), if_generation=None)
        landed.add(rel)
        out = gcs_upload.handle_object_event(
            {"bucket": storage.split_gcs(dest)[0], "name": _object(f"{dest}/{rel}")},
            gcs_upload.TriggerConfig.from_env(),
        )
        actions.append(out.action)
        if not required <= landed:
            assert out.action == "ignored" and "partial upload" in out.reason, rel
    first = actions.index("submitted")
    assert required <= set(order[: first + 1]) and not required <= set(order[:first])
    assert set(actions[first + 1 :]) <= {"already-submitted"}
    assert vertex.calls("pipelineJobs.create") == before + len(actions) - first


def test_a_manifest_for_another_dataset_is_not_trusted(function, vertex, gcs, tmp_path):
    root, _ = function
    source = _publish(f"{gcs}/staging2", tmp_path)
    fake_hash = "f" * 64
    dest = f"{root}/datasets/{fake_hash}"
    for rel in storage.list_files(source):
        storage.write(f"{dest}/{rel}", storage.read_bytes(f"{source}/{rel}"), if_generation=None)
    out = gcs_upload.handle_object_event(
        {"bucket": storage.split_gcs(dest)[0], "name": _object(f"{dest}/manifest.json")},
        gcs_upload.TriggerConfig.from_env(),
    )
    assert out.action == "ignored" and "not the folder's hash" in out.reason


def test_missing_configuration_names_the_variable(monkeypatch):
    monkeypatch.delenv("TUNELOOP_PROJECT", raising=False)
    with pytest.raises(ValueError, match="TUNELOOP_PROJECT is not set"):
        gcs_upload.TriggerConfig.from_env({"TUNELOOP_DATASET_ROOT": "gs://b/x"})
