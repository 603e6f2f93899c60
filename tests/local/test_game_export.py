"""export-dataset with extract_query / query_params, through kfp.local: the game loop's data on DuckDB."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tuneloop.pipelines.local_runner import LocalRunFailed, run_local_pipeline

from tuneloop import demo_games, storage
from tuneloop.warehouse import duckdb_uri


def _state(root: Path) -> dict:
    return json.loads((root / "state.json").read_text())


def test_export_dataset_publishes_game_conversations_and_skips_when_no_new_games(tmp_path):
    wh = tmp_path / "wh.duckdb"
    loaded = demo_games.load_demo_games(duckdb_uri(str(wh)), 160, seed=11)
    root = tmp_path / "datasets"
    params = {
        "warehouse_uri": duckdb_uri(str(wh)), "dataset_root": str(root), **demo_games.GAME_LOOP_PARAMS,
        "formats": "openai,gemini,bedrock", "min_new_examples": 40,
    }
    first = run_local_pipeline("export-dataset", params, pipeline_root=tmp_path / "runs", quiet=True)
    assert first.outputs["status"] == "ready", first.outputs["reason"]
    uri = first.outputs["dataset_uri"]
    manifest, _ = storage.read_json(storage.join(uri, "manifest.json"))
    train = pq.read_table(Path(uri) / "canonical" / "train.parquet").to_pylist()
    assert manifest["total"] == sum(manifest["counts"].values()) > 40
    assert all(r["label"] is None and r["messages"][-1]["role"] == "assistant" for r in train)
    assert all(json.loads(r["meta"])["query"] == "ai_survived_games" for r in train)
    quarantine = [json.loads(line) for line in (Path(uri) / "quarantine.jsonl").read_text().splitlines()]
    reasons = " ".join(q["reason"] for q in quarantine)
    assert len(quarantine) >= len(loaded["malformed"])  # every malformed game is set aside with its reason
    assert "chat_log: is empty" in reasons and "is not an outcome" in reasons
    rendered = (Path(uri) / "gemini" / "train.jsonl").read_text().splitlines()
    assert rendered and json.loads(rendered[0])["contents"][0]["role"] == "user"
    watermark = _state(root)["watermark"]
    assert watermark
    # min_messages=6 reached the query (KFP hands it over as 6.0): no game shorter than 6 lines is in the data
    short = {g["game_id"] for g in demo_games.generate_games(160, seed=11)  # the same games: a function of the seed
             if 0 < len(g["chat_log"]) < 6 and any(s["outcome"] == "survived" for s in g["ai_seats"])}
    published = [json.loads(r["meta"])["game_id"] for split in ("train", "validation", "eval")
                 for r in pq.read_table(Path(uri) / "canonical" / f"{split}.parquet").to_pylist()]
    assert short and not short & set(published)

    again = run_local_pipeline("export-dataset", params, pipeline_root=tmp_path / "runs", quiet=True)
    assert again.outputs["status"] == "skipped" and again.outputs["reason"].startswith("0 new examples")
    assert _state(root)["watermark"] == watermark  # nothing new: the watermark stays

    demo_games.load_demo_games(duckdb_uri(str(wh)), 120, seed=12)  # new games land
    third = run_local_pipeline("export-dataset", params, pipeline_root=tmp_path / "runs", quiet=True)
    assert third.outputs["status"] == "ready", third.outputs["reason"]
    assert _state(root)["watermark"] > watermark
    later, _ = storage.read_json(storage.join(third.outputs["dataset_uri"], "manifest.json"))
    assert later["total"] > manifest["total"]  # merged with the first dataset


def test_a_refused_query_fails_the_extract_task_naming_the_problem(tmp_path):
    wh = tmp_path / "wh.duckdb"
    demo_games.load_demo_games(duckdb_uri(str(wh)), 10, seed=1)
    bad = tmp_path / "bad.sql"
    bad.write_text("SELECT game_id AS text FROM game_results; DROP TABLE game_results")
    params = {"warehouse_uri": duckdb_uri(str(wh)), "dataset_root": str(tmp_path / "datasets"),
              "extract_query": str(bad), "query_params": {}}
    with pytest.raises(LocalRunFailed, match=r"2 statements") as info:
        run_local_pipeline("export-dataset", params, pipeline_root=tmp_path / "runs", quiet=True)
    assert info.value.task.startswith("extract")
    from tuneloop.warehouse import open_warehouse

    with open_warehouse(duckdb_uri(str(wh))) as w:
        assert w.has_table("game_results")


def test_continuous_tuning_refuses_the_query_in_its_first_task(tmp_path):
    wh = tmp_path / "wh.duckdb"
    demo_games.load_demo_games(duckdb_uri(str(wh)), 10, seed=1)
    params = {"warehouse_uri": duckdb_uri(str(wh)), "dataset_root": str(tmp_path / "datasets"),
              "registry_uri": str(tmp_path / "registry"), "table": "game_results",
              "extract_query": "ai_survived_games", "query_params": {"min_mesages": 4}}
    with pytest.raises(LocalRunFailed, match=r"unknown key 'min_mesages'.*did you mean 'min_messages'") as info:
        run_local_pipeline("continuous-tuning", params, pipeline_root=tmp_path / "runs", quiet=True)
    assert info.value.task == "check-config"
    assert not (tmp_path / "datasets").exists()  # nothing was extracted or published
