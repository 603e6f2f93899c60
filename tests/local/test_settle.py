"""settle_seconds, a pipeline parameter: rows that landed in the last N seconds wait for the next run."""

from __future__ import annotations

import datetime as dt

from tuneloop.pipelines.local_runner import run_local_pipeline

from tuneloop import demo_data
from tuneloop.warehouse import duckdb_uri, open_warehouse


def test_rows_younger_than_the_settle_time_wait_for_the_next_export(tmp_path):
    now = dt.datetime.now(dt.UTC)
    rows = demo_data.generate_batch(150, seed=5, start=now - dt.timedelta(hours=6))  # land 5-120 s apart
    landed = sorted(dt.datetime.fromisoformat(r["ingested_at"].replace("Z", "+00:00")) for r in rows)
    assert landed[-1] < now - dt.timedelta(hours=2)
    wh_path = tmp_path / "wh.duckdb"
    wh = open_warehouse(duckdb_uri(str(wh_path)))
    wh.ensure_table("interactions")
    wh.insert_rows("interactions", rows)
    wh.close()
    settle = 5 * 3600  # rows of the last 5 hours are still "in flight"
    settled = sum(1 for t in landed if t <= now - dt.timedelta(seconds=settle))
    assert 10 < settled < 100
    params = {"warehouse_uri": duckdb_uri(str(wh_path)), "dataset_root": str(tmp_path / "datasets"),
              "min_new_examples": 100}

    first = run_local_pipeline("export-dataset", {**params, "settle_seconds": settle}, pipeline_root=tmp_path / "runs",
                               quiet=True)
    assert first.outputs["status"] == "skipped"
    new = int(first.outputs["reason"].split()[0])
    assert settled - 5 <= new <= settled  # a few malformed rows are quarantined, none of the young rows read

    second = run_local_pipeline("export-dataset", params, pipeline_root=tmp_path / "runs", quiet=True)
    assert second.outputs["status"] == "ready" and int(second.outputs["reason"].split()[0]) > 140
