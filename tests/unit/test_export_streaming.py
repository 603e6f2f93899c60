"""The export data path streams: extract -> merge -> split -> render -> publish in bounded chunks.

Small chunk sizes (a few rows) give the same published dataset as one big chunk, the Python heap
does not grow with the number of rows, ``min_new_examples`` counts distinct new ids, and a published
dataset holds only its data (no lock files).
"""

from __future__ import annotations

import datetime as dt
import json
import tracemalloc
from pathlib import Path

from tests.datapath_golden import digest
from tuneloop import datasets, demo_data, stages
from tuneloop.examples import classification_example, read_parquet
from tuneloop.warehouse import extract_new, extract_to_files, open_warehouse
from tuneloop.warehouse.base import duckdb_uri, example_to_row, iso

TABLE = "interactions"
T0 = dt.datetime(2025, 6, 2, 9, 0, tzinfo=dt.UTC)


def warehouse(tmp: Path, rows) -> str:
    uri = duckdb_uri(str(tmp / "wh.duckdb"))
    with open_warehouse(uri) as wh:
        wh.ensure_table(TABLE)
        wh.insert_rows(TABLE, rows)
    return uri


def export(uri: str, root: Path, work: Path, *, formats=("openai",), min_new_examples=1, min_examples=1):
    work.mkdir(parents=True)
    got = stages.extract(
        warehouse_uri=uri, table=TABLE, dataset_root=str(root),
        examples_path=str(work / "examples.parquet"), quarantine_path=str(work / "quarantine.jsonl"),
    )
    return got, stages.prepare_dataset(
        examples_path=str(work / "examples.parquet"), quarantine_path=str(work / "quarantine.jsonl"),
        dataset_root=str(root), work_dir=str(work / "dataset"), watermark=got["watermark_to"],
        formats=formats, min_new_examples=min_new_examples, min_examples=min_examples,
    )


def small_chunks(monkeypatch, rows: int) -> None:
    monkeypatch.setattr("tuneloop.warehouse.extract.BATCH_ROWS", rows)
    monkeypatch.setattr("tuneloop.warehouse.duckdb.BATCH_ROWS", rows)
    monkeypatch.setattr("tuneloop.merge.BATCH_ROWS", rows)
    monkeypatch.setattr("tuneloop.formats.render.FLUSH_ROWS", max(1, rows // 2))


def test_tiny_chunks_publish_the_same_dataset_as_one_chunk(tmp_path, monkeypatch):
    rows = demo_data.generate_batch(300, seed=4, start=T0)
    uri = warehouse(tmp_path, rows)
    _, whole = export(uri, tmp_path / "a-root", tmp_path / "a", formats=("openai", "gemini", "hf"))
    small_chunks(monkeypatch, 7)
    _, chunked = export(uri, tmp_path / "b-root", tmp_path / "b", formats=("openai", "gemini", "hf"))
    assert whole["dataset_hash"] == chunked["dataset_hash"] and whole["counts"] == chunked["counts"]
    a = digest(Path(whole["dataset_uri"]), tmp_path / "a")
    b = digest(Path(chunked["dataset_uri"]), tmp_path / "b")
    a.pop("manifest.json"), b.pop("manifest.json")  # the reports name their own folders
    assert a == b and len(a) == 4 + 3 * 5


def test_extract_to_files_holds_what_extract_new_returns(tmp_path, monkeypatch):
    uri = warehouse(tmp_path, demo_data.generate_batch(120, seed=9, start=T0))
    monkeypatch.setattr("tuneloop.warehouse.duckdb.BATCH_ROWS", 11)
    streamed = extract_to_files(uri, TABLE, None, tmp_path / "ex.parquet", tmp_path / "q.jsonl", batch_rows=11)
    whole = extract_new(uri, TABLE, None)
    assert read_parquet(tmp_path / "ex.parquet") == whole.examples
    assert [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()] == whole.quarantined
    assert (streamed.rows_read, streamed.examples, streamed.quarantined) == (
        whole.rows_read, len(whole.examples), len(whole.quarantined))
    assert streamed.watermark_to == whole.watermark_to and streamed.quarantined > 0


def _peak_python_heap(tmp: Path, n: int) -> int:
    uri = warehouse(tmp, demo_data.generate_batch(n, seed=1, start=T0, malformed_fraction=0))
    tracemalloc.start()
    try:
        export(uri, tmp / "root", tmp / "work")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_python_heap_does_not_grow_with_the_number_of_rows(tmp_path, monkeypatch):
    small_chunks(monkeypatch, 30)
    monkeypatch.setattr("tuneloop.formats.tokens.CACHE_LIMIT", 64)  # the caches are bounded; keep them small
    monkeypatch.setattr("tuneloop.formats.base.MEMO_LIMIT", 64)
    uri = warehouse(tmp_path, demo_data.generate_batch(50, seed=1, start=T0))
    export(uri, tmp_path / "warm-root", tmp_path / "warm")  # imports modules, loads the tokenizer: untraced
    few = _peak_python_heap(tmp_path / "few", 200)
    many = _peak_python_heap(tmp_path / "many", 1000)
    assert many < 1.6 * few, (few, many)  # 5x the rows, about the same peak (held whole, it would be 5x)


def test_min_new_examples_counts_distinct_ids_the_dataset_does_not_hold(tmp_path):
    def rows(texts, minute):
        at = T0 + dt.timedelta(minutes=minute)
        return [example_to_row(classification_example(t, "intent_a", created_at=at), ingested_at=iso(at)) for t in texts]

    uri = warehouse(tmp_path, rows([f"question {i}" for i in range(5)], 0))
    _, first = export(uri, tmp_path / "root", tmp_path / "1", formats=(), min_new_examples=5)
    assert first["status"] == "ready" and first["new_ids"] == 5
    # 6 rows land: 3 already published, one new example twice, one new example once -> 2 new ids
    with open_warehouse(uri) as wh:
        wh.insert_rows(TABLE, rows(["question 0", "question 1", "question 2", "fresh", "fresh", "other"], 10))
    got, second = export(uri, tmp_path / "root", tmp_path / "2", formats=(), min_new_examples=3)
    assert got["new_examples"] == 6 and second["status"] == "skipped"
    assert (second["new_examples"], second["new_ids"]) == (6, 2)
    assert second["reason"].startswith("2 new examples since watermark") and "min_new_examples=3" in second["reason"]
    # the next run reads from the same watermark (nothing was published); with the bar at 2 it publishes
    _, third = export(uri, tmp_path / "root", tmp_path / "3", formats=(), min_new_examples=2)
    assert third["status"] == "ready" and third["new_ids"] == 2
    manifest = json.loads((Path(third["dataset_uri"]) / "manifest.json").read_text())
    assert manifest["total"] == 7 and manifest["previous"] == first["dataset_hash"]


def test_a_published_dataset_holds_only_its_data(tmp_path):
    uri = warehouse(tmp_path, demo_data.generate_batch(150, seed=2, start=T0))
    _, ready = export(uri, tmp_path / "root", tmp_path / "w", formats=("openai", "bedrock"), min_examples=1)
    published = Path(ready["dataset_uri"])
    files = sorted(p.relative_to(published).as_posix() for p in published.rglob("*") if p.is_file())
    assert files == sorted(datasets.data_files(tmp_path / "w" / "dataset"))
    assert not [f for f in files if f.endswith((".lock", ".tmp")) or "/." in f or f.startswith(".")]
    assert {"manifest.json", "canonical/train.parquet", "openai/train.jsonl", "bedrock/report.json"} <= set(files)
    root_files = sorted(p.name for p in (tmp_path / "root").iterdir())
    assert root_files == ["datasets", "state.json"]  # the compare-and-set left no lock file either
