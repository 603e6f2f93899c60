"""tuneloop.ingest on BigQuery (bqemulator behind a proxy that goes down and comes back, real client)."""

from __future__ import annotations

import threading
import time

import pytest

from tests.fakes.http_proxy import FlakyProxy
from tuneloop.ingest import Recorder
from tuneloop.warehouse.bigquery import BigQueryWarehouse

CONFIG = {"flush_size": 500, "max_age_s": 0.3, "retry_attempts": 2, "retry_initial_s": 0.05,
          "replay_interval_s": 0.5, "replay_max_s": 1.0, "retry_deadline_s": 1.0}


def _record(rec, prefix, threads=8, per_thread=625):
    out = [[] for _ in range(threads)]

    def work(t):
        for i in range(per_thread):
            out[t].append(rec.record_interaction(f"{prefix} {t}-{i} my card was declined",
                                                 predicted_label="payment", model_version="v2"))

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return [i for part in out for i in part]


@pytest.mark.parametrize("per_thread", [pytest.param(125, id="1k"), pytest.param(625, id="10k", marks=pytest.mark.slow)])
def test_rows_from_eight_threads_survive_a_bigquery_outage_exactly_once(bq_env, bq_uri, monkeypatch, tmp_path,
                                                                        per_thread):
    """10k rows (``-m slow``, ~20 s on the emulator) or 1k in the default run; the same outage either way."""
    total = 8 * 2 * per_thread
    proxy = FlakyProxy(bq_env.url).start()
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", proxy.url)
    try:
        rec = Recorder(bq_uri, config={**CONFIG, "spill_dir": str(tmp_path / "spill")})
        first = _record(rec, "before", per_thread=per_thread)
        deadline = time.monotonic() + 60
        while rec.stats.inserted < total // 5:  # some of it landed: then BigQuery goes away mid-stream
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proxy.down()
        second = _record(rec, "during", per_thread=per_thread)
        while rec.stats.spilled == 0 or rec.buffered:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proxy.up()
        rec.close()
        project, dataset = bq_uri.split("://", 1)[1].split("/")
        wh = BigQueryWarehouse(project, dataset)
        rows = wh.query("SELECT JSON_VALUE(meta, '$.record_id') AS rid FROM {{t}}", {},
                        identifiers={"t": "interactions"}).to_pylist()
        wh.close()
    finally:
        proxy.stop()
    landed = [r["rid"] for r in rows]
    assert len(set(first + second)) == total
    assert len(landed) == total and set(landed) == set(first + second)  # every row, each once
    assert rec.stats.spilled > 0 and rec.stats.replayed > 0 and rec.spilled_files() == []
