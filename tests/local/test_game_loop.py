"""The game loop end to end under kfp.local: finished games in the warehouse -> ``ai_survived_games`` ->
a chat tuner -> chat evaluation -> the registry, twice (first alone, then against the champion).

- openai: the stand-in tuner, and the stand-in judge (prefers casual replies) asked in both orders;
- oss-lora: the demo's own game loop (``tuneloop.demo.game_loop``) on a tiny base, reference metrics only.
"""

from __future__ import annotations

import json

import pytest

from tests.fakes import fixtures as stand_ins
from tests.fakes.chat_data import prefer_casual
from tests.fakes.fixtures import stand_in_hyperparameters
from tests.local.conftest import run, summaries
from tests.local.test_hosted_pipelines import task_output
from tuneloop import datasets, demo_games
from tuneloop.registry import FileRegistry
from tuneloop.warehouse import duckdb_uri

openai_fake = stand_ins.openai_fake

JUDGE = "judge-human-likeness"


@pytest.mark.slow
def test_the_game_loop_for_openai_reads_the_survived_games_and_judges_the_second_run(openai_fake, tmp_path):
    openai_fake.add_judge(JUDGE, prefer_casual)
    wh = duckdb_uri(str(tmp_path / "games.duckdb"))
    loaded = demo_games.load_demo_games(wh, 200, seed=3)
    base_model, hp = stand_in_hyperparameters("openai")
    params = {
        **demo_games.GAME_LOOP_PARAMS, "warehouse_uri": wh, "dataset_root": str(tmp_path / "datasets"),
        "registry_uri": str(tmp_path / "registry"), "reports_uri": str(tmp_path / "reports"),
        "model_name": "impostor", "provider": "openai", "base_model": base_model, "hyperparameters": hp,
        "judge": f"openai:{JUDGE}", "min_new_examples": 20, "max_drop": {"win_rate": 0.5},
        "eval_options": {"concurrency": 4, "retry": {"attempts": 2, "initial_s": 0.0, "max_s": 0.01}},
    }
    run("continuous-tuning", params, tmp_path / "runs")
    [first] = summaries(tmp_path / "reports")
    assert first["task"] == "chat" and first["promoted_version"] == "v1"
    ds = datasets.load_dataset(first["dataset_uri"], splits=("train",))
    assert ds.manifest["task"] == "chat" and not ds.labels
    # every training conversation is a surviving AI seat's side of a game: its lines are the assistant's
    metas = [e.meta for e in ds.splits["train"]]
    assert all(m["game_id"].startswith("demo-s3-") and m["seat"] for m in metas)
    assert all(e.messages[-1].role == "assistant" for e in ds.splits["train"])
    assert sum(ds.manifest["counts"].values()) <= loaded["survived"]  # voted-out seats never train
    assert ds.manifest.get("quarantined_at_extract", 0) > 0  # the malformed games, with reasons
    assert datasets.RootState.read(params["dataset_root"]).watermark  # the extract moved the watermark

    demo_games.load_demo_games(wh, 120, seed=4)
    second_dir = run("continuous-tuning", params, tmp_path / "runs")
    second = summaries(tmp_path / "reports")[-1]
    blessing = task_output(second_dir, "evaluate-model", "blessing")
    judge = blessing["judge"]
    n = blessing["eval_rows"]
    assert blessing["champion_version"] == "v1" and judge is not None
    assert judge["win"] + judge["tie"] + judge["loss"] + judge["inconsistent"] + judge["malformed"] == n
    assert len(openai_fake.judged) == 2 * n  # both orders of every eval row
    assert second["decision"]["reason"] and "win_rate" in json.dumps(blessing["checks"])
    assert FileRegistry(params["registry_uri"], "impostor").champion().config["task"] == "chat"


@pytest.mark.slow
def test_the_demo_game_loop_tunes_oss_lora_twice_and_judges_run_two_against_v1(tmp_path):
    from tuneloop.demo import GAME_MODEL, game_loop

    game_loop(tmp_path / "game", seed=1)  # the demo's sizes: 300 games, then 200 new ones (>= min_new_examples)
    first, second = summaries(tmp_path / "game" / "reports")
    assert first["task"] == second["task"] == "chat" and first["provider"] == "oss-lora"
    assert first["promoted_version"] == "v1" and "value thresholds alone" in first["decision"]["reason"]
    assert second["champion_evaluated"] == "v1" and "no judge configured" in second["decision"]["reason"]
    for s in (first, second):
        assert 0.0 < s["candidate_metrics"]["chrf"] <= 1.0 and s["candidate_metrics"]["empty"] == 0
    assert second["champion_metrics"]["chrf"] > 0.0  # v1 answered the same eval prompts
    champion = FileRegistry(str(tmp_path / "game" / "registry"), GAME_MODEL).champion()
    assert champion.config["task"] == "chat" and champion.version == (second["promoted_version"] or "v1")
