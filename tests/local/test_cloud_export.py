"""The export pipeline under kfp.local on stand-in Google Cloud: BigQuery (bqemulator) -> GCS (fake-gcs-server).

The same compiled components as on Vertex; only the URIs change (``bigquery://``, ``gs://``), and the
clients find the stand-ins through the environment the task subprocesses inherit.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from tests.fakes import gcp_emulators as emu
from tests.local.conftest import run
from tuneloop import datasets, demo_data, storage
from tuneloop.warehouse import open_warehouse
from tuneloop.warehouse.base import to_utc


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    why = emu.bq_emulator_available()
    if why:
        pytest.skip(why)
    gcs = emu.start_fake_gcs(tmp_path_factory.mktemp("fake-gcs"))
    bq = emu.start_bqemulator(tmp_path_factory.mktemp("bqemulator"))
    yield gcs, bq
    bq.stop()
    gcs.stop()


@pytest.fixture
def cloud_env(servers, monkeypatch, tmp_path):
    from google.cloud import storage as gcs_lib

    gcs, bq = servers
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bq.url)
    monkeypatch.setenv("TUNELOOP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # kfp.local tasks run in the current directory
    bucket = f"tl-{uuid.uuid4().hex[:10]}"
    gcs_lib.Client(project=emu.PROJECT).create_bucket(bucket)
    return {
        "warehouse": f"bigquery://{emu.PROJECT}/support_{uuid.uuid4().hex[:8]}",
        "dataset_root": f"gs://{bucket}/support-intent",
        "root": tmp_path / "runs",
    }


def test_export_reads_bigquery_and_publishes_content_addressed_datasets_on_gcs(cloud_env):
    wh = open_warehouse(cloud_env["warehouse"])
    wh.ensure_table("interactions")
    first_rows = demo_data.generate_batch(240, seed=7)
    wh.insert_rows("interactions", first_rows)
    params = {
        "warehouse_uri": cloud_env["warehouse"],
        "dataset_root": cloud_env["dataset_root"],
        "table": "interactions",
        "formats": "openai",
        "min_new_examples": 100,
    }
    run("export-dataset", params, cloud_env["root"])

    root = cloud_env["dataset_root"]
    state, generation = storage.read_json(f"{root}/state.json")
    assert generation.isdigit()  # an object generation: the next publish is a compare-and-set on it
    first = datasets.load_dataset(datasets.dataset_uri(root, state["latest"]))
    assert first.uri.endswith(f"/datasets/{first.hash}") and first.hash == state["latest"]
    files = storage.list_files(first.uri)
    assert {"manifest.json", "canonical/train.parquet", "openai/train.jsonl", "quarantine.jsonl"} <= set(
        files
    )
    assert not [f for f in storage.list_files(root) if f.endswith((".lock", ".tmp"))]  # only data is published
    quarantined = first.manifest["quarantined_at_extract"]
    assert quarantined >= 1  # the demo batch holds malformed rows; they are set aside with a reason
    assert first.manifest["new_examples"] + quarantined == 240
    newest = max(to_utc(r["ingested_at"], "ingested_at") for r in first_rows)
    assert dt.datetime.fromisoformat(state["watermark"].replace("Z", "+00:00")) == newest

    # New traffic lands; the next export reads only it and merges it into the previous dataset.
    start = newest + dt.timedelta(minutes=1)
    wh.insert_rows("interactions", demo_data.generate_batch(120, seed=8, start=start, malformed_fraction=0))
    run("export-dataset", params, cloud_env["root"])
    state2, _ = storage.read_json(f"{root}/state.json")
    second = datasets.load_dataset(datasets.dataset_uri(root, state2["latest"]))
    assert second.hash != first.hash and second.manifest["previous"] == first.hash
    assert second.manifest["new_examples"] == 120
    first_ids = {e.id for split in first.splits.values() for e in split}
    second_ids = {e.id for split in second.splits.values() for e in split}
    assert first_ids <= second_ids  # the old dataset's rows stay; the old folder is untouched
    assert storage.read_json(f"{first.uri}/manifest.json")[0] == dict(first.manifest)
    wh.close()
