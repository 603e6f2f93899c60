"""tuneloop.ingest on the embedded DuckDB warehouse: batches, corrections, an outage, a crash.

The outage is real: another process opens the DuckDB file (DuckDB lets one process hold it), so the
recorder's connections fail until that process lets go.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from tuneloop.ingest import Recorder
from tuneloop.warehouse import extract_new, open_warehouse

FAST = {"flush_size": 100, "max_age_s": 0.2, "retry_attempts": 2, "retry_initial_s": 0.02,
        "replay_interval_s": 0.3, "replay_max_s": 1.0}

LOCKER = """
import duckdb, sys, time
while True:
    try:
        con = duckdb.connect(sys.argv[1]); break
    except duckdb.Error:
        time.sleep(0.01)
print("locked", flush=True)
sys.stdin.readline()
con.close()
"""


def _ids(uri: str, table: str = "interactions") -> list[str]:
    wh = open_warehouse(uri)
    try:
        rows = wh.query("SELECT JSON_VALUE(meta, '$.record_id') AS rid FROM {{t}}", {}, identifiers={"t": table})
        return [r["rid"] for r in rows.to_pylist()]
    finally:
        wh.close()


def _record(rec: Recorder, prefix: str, threads: int, per_thread: int) -> list[str]:
    out: list[list[str]] = [[] for _ in range(threads)]

    def work(t: int) -> None:
        for i in range(per_thread):
            out[t].append(rec.record_interaction(f"{prefix} {t}-{i} where is my parcel", predicted_label="shipping",
                                                 confidence=0.9, model_version="v1"))

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return [i for part in out for i in part]


def _wait(cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_ten_thousand_rows_from_eight_threads_survive_a_locked_warehouse_exactly_once(tmp_path):
    uri = f"duckdb:///{tmp_path}/wh.duckdb"
    rec = Recorder(uri, config={**FAST, "spill_dir": str(tmp_path / "spill")})
    first = _record(rec, "before", 8, 625)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(tmp_path / "wh.duckdb")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"  # the warehouse is down from here
        second = _record(rec, "during", 8, 625)
        _wait(lambda: rec.stats.spilled > 0 and rec.buffered == 0)
    finally:
        locker.stdin.write("\n")
        locker.stdin.flush()
        locker.wait(timeout=30)  # ... and back
    rec.close()
    ids = first + second
    assert len(set(ids)) == 10_000
    landed = _ids(uri)
    assert len(landed) == 10_000 and set(landed) == set(ids)  # every row, each once
    assert rec.stats.spilled > 0 and rec.stats.replayed == rec.stats.spilled
    assert rec.stats.inserted == 10_000 and rec.spilled_files() == []


def test_a_crashed_process_leaves_its_spill_file_and_the_next_recorder_writes_only_what_is_missing(tmp_path):
    uri = f"duckdb:///{tmp_path}/wh.duckdb"
    spill = tmp_path / "spill"
    open_warehouse(uri).close()
    child = f"""
import os, subprocess, sys
sys.path.insert(0, {str(__import__('tests').__path__[0] + '/..')!r})
from tuneloop.ingest import Recorder
locker = subprocess.Popen([sys.executable, "-c", {LOCKER!r}, {str(tmp_path / 'wh.duckdb')!r}],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert locker.stdout.readline().strip() == "locked"
rec = Recorder({uri!r}, config={json.dumps({**FAST, "spill_dir": str(spill)})}, start=False)
for i in range(50):
    rec.record_interaction(f"crash {{i}} cancel my plan", predicted_label="cancel", record_id=f"req-{{i}}")
rec.flush()  # the file is locked: the rows go to the spill file
print(rec.stats.spilled, flush=True)
locker.stdin.write("\\n"); locker.stdin.flush(); locker.wait()
os._exit(9)  # dies: no close(), no atexit
"""
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "50", out.stderr[-2000:]
    assert len(list(spill.glob("*.jsonl"))) == 1
    # Before it died, the first 20 had reached the warehouse another way (the caller retried them).
    with Recorder(uri, config={**FAST, "spill_dir": str(tmp_path / "other")}) as rec:
        for i in range(20):
            rec.record_interaction(f"crash {i} cancel my plan", predicted_label="cancel", record_id=f"req-{i}")
    with Recorder(uri, config={**FAST, "spill_dir": str(spill)}) as rec:
        rec.replay()
    assert rec.stats.replayed == 30 and rec.stats.already_present == 20
    assert sorted(_ids(uri)) == sorted(f"req-{i}" for i in range(50))
    assert list(spill.glob("*")) == []


def test_corrections_train_with_weight_two_and_name_what_they_correct(tmp_path):
    uri = f"duckdb:///{tmp_path}/wh.duckdb"
    with Recorder(uri, config={**FAST, "spill_dir": str(tmp_path / "s")}) as rec:
        rid = rec.record_interaction("i was charged twice", predicted_label="refund", confidence=0.61,
                                     model_version="v3")
        again = rec.record_interaction("i was charged twice", predicted_label="refund", record_id=rid)
        cid = rec.record_correction(rid, "billing", text="i was charged twice", predicted_label="refund",
                                    model_version="v3")
        rec.record_correction(rid, "billing", text="i was charged twice", predicted_label="refund")  # resent
        chat = rec.record_interaction(messages=[{"role": "user", "content": "hi"},
                                                {"role": "assistant", "content": "hello, how can I help?"}])
    assert again == rid and cid == f"{rid}:correction"
    result = extract_new(uri, "interactions", None)
    by_id = {e.meta["record_id"]: e for e in result.examples}
    assert set(by_id) == {rid, cid, chat} and result.quarantined == []
    live, fix = by_id[rid], by_id[cid]
    assert (live.label, live.source, live.weight) == ("refund", "live", 1.0)
    assert (fix.label, fix.source, fix.weight) == ("billing", "corrected", 2.0)
    assert fix.meta["corrects"] == rid and fix.meta["corrected_from"] == "refund"
    assert live.meta["confidence"] == 0.61 and live.meta["model_version"] == "v3"
    assert by_id[chat].label is None and by_id[chat].target == "hello, how can I help?"


def test_a_batch_is_written_by_size_and_by_age(tmp_path):
    uri = f"duckdb:///{tmp_path}/wh.duckdb"
    rec = Recorder(uri, config={"flush_size": 5, "max_age_s": 0.3, "spill_dir": str(tmp_path / "s")})
    for i in range(5):
        rec.record_interaction(f"size {i}", predicted_label="a")
    _wait(lambda: rec.stats.inserted == 5, 10)
    rec.record_interaction("age", predicted_label="a")
    time.sleep(0.05)
    assert rec.stats.inserted == 5  # one row waits for its age limit ...
    _wait(lambda: rec.stats.inserted == 6, 10)  # ... then goes alone
    rec.close()
    assert len(_ids(uri)) == 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": "x", "predicted_label": "a", "confidence": 1.5}, "confidence=1.5 must be a probability"),
        ({"text": "x", "messages": [{"role": "user", "content": "x"}]}, "exactly one of text= .* or messages="),
        ({}, "exactly one of text="),
        ({"text": "  "}, "text='  ' must be the user's non-empty message"),
        ({"text": "x", "record_id": "has space"}, "record_id='has space' is not a record id"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages\\[0\\].role: 'bot' is not one of"),
        ({"text": "x", "meta": {"when": object()}}, "meta: .*JSON values"),
        ({"text": "x", "source": "corrected"}, "record_correction"),
        ({"text": "x", "model_version": ""}, "model_version='' must be a version name"),
    ],
)
def test_bad_records_are_refused_at_once_naming_the_field(tmp_path, kwargs, message):
    with Recorder(f"duckdb:///{tmp_path}/w.duckdb", config={"spill_dir": str(tmp_path / "s")}) as rec:
        with pytest.raises(ValueError, match=message):
            rec.record_interaction(**kwargs)
        assert rec.stats.recorded == 0


def test_bad_settings_are_refused_naming_the_setting(tmp_path):
    from tuneloop.config import ConfigError

    with pytest.raises(ConfigError, match="flush_sise.*did you mean 'flush_size'"):
        Recorder(f"duckdb:///{tmp_path}/w.duckdb", config={"flush_sise": 3})
    with pytest.raises(ConfigError, match=r"config.max_age_s=0(\.0)? must be a number of seconds > 0"):
        Recorder(f"duckdb:///{tmp_path}/w.duckdb", config={"max_age_s": 0})
    with pytest.raises(ValueError, match="not a warehouse URI"):
        Recorder("postgres://x/y")
