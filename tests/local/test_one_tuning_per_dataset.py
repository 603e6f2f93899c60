"""A schedule of continuous-tuning next to the upload trigger on one dataset_root tunes each dataset once.

Both paths claim the dataset under the same job id, derived from the dataset hash: the kfp.local run
(datasets on fake-gcs-server) and the trigger (real storage and aiplatform clients against
fake-gcs-server and the Vertex REST stand-in). Whichever claims first tunes; the other records why not.
"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import ROOT
from tests.fakes import gcp_emulators as emu
from tests.local.conftest import run, summaries
from tuneloop import claims, cloud, datasets, storage
from tuneloop.registry import FileRegistry
from tuneloop.triggers import gcs_upload

TEMPLATE = str(ROOT / "compile" / "tune-and-promote.yaml")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    from tests.fakes.vertex_pipelines_rest import FakeVertex

    gcs = emu.start_fake_gcs(tmp_path_factory.mktemp("fake-gcs"))
    vertex = FakeVertex().start()
    yield gcs, vertex
    vertex.stop()
    gcs.stop()


@pytest.fixture
def env(servers, loop_env, monkeypatch, tmp_path):
    from google.cloud import storage as gcs_lib

    gcs, vertex = servers
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)  # inherited by the kfp.local tasks
    monkeypatch.setenv("TUNELOOP_VERTEX_ENDPOINT", vertex.url)
    monkeypatch.setenv("TUNELOOP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    bucket = f"tl-{uuid.uuid4().hex[:10]}"
    gcs_lib.Client(project=emu.PROJECT).create_bucket(bucket)
    root = f"gs://{bucket}/support-intent"
    params = {**loop_env["params"], "dataset_root": root}
    trigger = gcs_upload.TriggerConfig(
        dataset_root=root,
        target=cloud.VertexTarget(emu.PROJECT, "us-central1", f"gs://{bucket}/pipeline-root"),
        template_path=TEMPLATE,
        params={"registry_uri": params["registry_uri"], "provider": "sklearn"},
    )
    return {"params": params, "root": root, "trigger": trigger, "vertex": vertex, "loop": loop_env}


def _manifest_event(dataset_uri: str) -> dict:
    bucket, name = storage.split_gcs(f"{dataset_uri}/manifest.json")
    return {"bucket": bucket, "name": name}


def _jobs(vertex, dataset_hash: str) -> list[str]:
    return [n.rsplit("/", 1)[-1] for n in vertex.jobs if f"-{dataset_hash[:32]}-" in n]


def test_the_scheduled_run_tunes_first_and_the_upload_trigger_then_stands_down(env):
    run("continuous-tuning", env["params"], env["loop"]["root"])
    [summary] = summaries(env["loop"]["reports"])
    assert summary["promoted_version"] == "v1"
    dataset_uri = summary["dataset_uri"]
    dataset_hash = claims.dataset_hash_of(dataset_uri)

    outcome = gcs_upload.handle_object_event(_manifest_event(dataset_uri), env["trigger"])
    assert outcome.action == "tuned-elsewhere" and "continuous-tuning:" in outcome.reason
    assert outcome.job_id == claims.tuning_id(dataset_hash, env["params"])  # the same id on both paths
    assert _jobs(env["vertex"], dataset_hash) == []  # no second tuning job
    assert [v.version for v in FileRegistry(env["params"]["registry_uri"], "support-intent").versions()] == ["v1"]


def test_the_upload_trigger_tunes_first_and_the_scheduled_run_records_a_skip(env, tmp_path):
    # The same warehouse rows, prepared elsewhere and uploaded by hand under the dataset root (the
    # documented manual upload): a content-addressed dataset, so the same hash the export will compute.
    from tuneloop import stages

    staging = str(tmp_path / "staging")
    stages.extract(warehouse_uri=env["params"]["warehouse_uri"], table="interactions", dataset_root=staging,
                   examples_path=str(tmp_path / "ex.parquet"), quarantine_path=str(tmp_path / "q.jsonl"))
    built = stages.prepare_dataset(examples_path=str(tmp_path / "ex.parquet"), quarantine_path=str(tmp_path / "q.jsonl"),
                                   dataset_root=staging, work_dir=str(tmp_path / "built"), watermark="",
                                   provider="sklearn", min_new_examples=100)
    dataset_uri = datasets.dataset_uri(env["root"], built["dataset_hash"])
    storage.upload_dir(built["dataset_uri"], dataset_uri)  # manifest included; the event is the manifest's
    outcome = gcs_upload.handle_object_event(_manifest_event(dataset_uri), env["trigger"])
    assert outcome.action == "submitted"

    # The schedule's run reaches the same data: its export publishes the same dataset, then stands down.
    run("continuous-tuning", env["params"], env["loop"]["root"])
    [skip] = summaries(env["loop"]["reports"])
    assert skip["skipped"] is True and "gcs-upload" in skip["decision"]["reason"]
    assert outcome.job_id in skip["decision"]["reason"]  # the same id on both paths
    assert _jobs(env["vertex"], built["dataset_hash"]) == [outcome.job_id]  # one tuning job for this dataset
    assert FileRegistry(env["params"]["registry_uri"], "support-intent").versions() == []
