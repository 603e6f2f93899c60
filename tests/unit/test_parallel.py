"""The data path across processes: same output as one process, errors at their turn, any caller script."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.datapath_golden import digest
from tests.unit.test_export_streaming import T0, export, small_chunks, warehouse
from tuneloop import demo_data
from tuneloop.parallel import ENV, Pool, default_workers, ordered_map

ROOT = Path(__file__).resolve().parents[2]


def slow_square(x: int) -> int:
    if x == 7:
        raise ValueError(f"item {x} is bad")
    return x * x


def test_results_come_back_in_order_from_the_workers():
    assert list(ordered_map(slow_square, range(6), workers=2, min_items=1)) == [0, 1, 4, 9, 16, 25]
    assert list(ordered_map(slow_square, range(6), workers=1)) == [0, 1, 4, 9, 16, 25]
    assert list(ordered_map(slow_square, [], workers=2)) == []


def test_an_error_in_a_worker_is_raised_at_its_item_and_nothing_after_it_is_yielded():
    got = []
    with pytest.raises(ValueError, match="item 7 is bad"):
        for r in ordered_map(slow_square, range(12), workers=2, min_items=0):
            got.append(r)
    assert got == [x * x for x in range(7)]


def test_a_caller_script_without_a_main_guard_works(tmp_path):
    # multiprocessing's spawn would run this script again in every worker (and fail); the workers do not
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.unit.test_parallel import slow_square
        from tuneloop.parallel import ordered_map
        print(list(ordered_map(slow_square, range(5), workers=2, min_items=0)))
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0, 1, 4, 9, 16]"


def test_the_worker_count_setting_is_checked(monkeypatch):
    monkeypatch.setenv(ENV, "3")
    assert default_workers() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(ENV, bad)
        with pytest.raises(ValueError, match=f"{ENV}={bad!r} must be an integer >= 1"):
            default_workers()


def test_an_export_across_worker_processes_publishes_the_same_dataset(tmp_path, monkeypatch):
    rows = demo_data.generate_batch(240, seed=5, start=T0)  # includes every malformed kind: quarantined rows
    uri = warehouse(tmp_path, rows)
    small_chunks(monkeypatch, 20)  # 12 batches: the first two here, the rest in the workers
    monkeypatch.setenv(ENV, "1")
    got1, one = export(uri, tmp_path / "a-root", tmp_path / "a", formats=("openai", "gemini"))
    monkeypatch.setenv(ENV, "2")
    got2, two = export(uri, tmp_path / "b-root", tmp_path / "b", formats=("openai", "gemini"))
    assert got1 == got2 and got1["quarantined"] > 0
    assert one["dataset_hash"] == two["dataset_hash"] and one["counts"] == two["counts"]
    a, b = digest(Path(one["dataset_uri"]), tmp_path / "a"), digest(Path(two["dataset_uri"]), tmp_path / "b")
    a.pop("manifest.json"), b.pop("manifest.json")  # the reports name their own folders
    assert a == b
    q1 = (tmp_path / "a" / "quarantine.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in q1] == [json.loads(x) for x in (tmp_path / "b" / "quarantine.jsonl").read_text().splitlines()]


def test_a_started_pool_maps_in_order_raises_at_the_item_and_closes_once():
    with Pool(2, preload=(__name__,)) as pool:
        assert list(pool.map(slow_square, range(7))) == [x * x for x in range(7)]
        got = []
        with pytest.raises(ValueError, match="item 7 is bad"):
            for r in pool.map(slow_square, range(5, 12), min_items=1):
                got.append(r)
        assert got == [25, 36]
        # the results still in flight at the error are not handed to the next map
        assert list(pool.map(slow_square, [1, 2, 3, 4, 5, 6])) == [1, 4, 9, 16, 25, 36]
        stopped = pool.map(slow_square, range(20, 40))
        assert next(stopped) == 400
        stopped.close()  # the caller stops early
        assert list(pool.map(slow_square, range(3))) == [0, 1, 4]
    pool.close()  # idempotent
    with Pool(1) as one:  # one worker = this process, no child
        assert one.workers == 1 and list(one.map(slow_square, range(3))) == [0, 1, 4]


def test_a_worker_that_cannot_preload_a_module_still_serves_and_names_the_error_at_the_item():
    with Pool(2, preload=("tuneloop.no_such_module",)) as pool:
        assert list(pool.map(slow_square, range(4))) == [0, 1, 4, 9]
