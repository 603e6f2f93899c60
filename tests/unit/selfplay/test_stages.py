"""The loop through the stage functions the pipeline components call: generation 1 gets promoted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tuneloop.registry import FileRegistry
from tuneloop.selfplay import run, stages
from tuneloop.selfplay.exports import validate_file


def test_generation_one_is_promoted_and_then_plays_the_next_generation(
    train_export, combined, trained, tmp_path
):
    model_dir, _ = trained
    registry = str(tmp_path / "registry")
    assert stages.gate(str(combined), min_games=100)["status"] == "ready"
    champ = stages.champion(registry, "hex5")
    assert champ == {"version": None, "model_dir": None}
    results = stages.gauntlet(
        str(model_dir),
        "hex5_2p",
        champ["model_dir"],
        games=30,
        min_games=20,
        candidate_simulations=32,
        heuristic_simulations=50,
        previous_best_version=champ["version"],
        seed=0,
        threads=1,
        out_json=str(tmp_path / "gauntlet.json"),
    )
    assert json.loads((tmp_path / "gauntlet.json").read_text())["pairings"].keys() == {"random", "heuristic"}
    decision = stages.decide_promotion(results, stages.DEFAULT_THRESHOLDS)
    assert decision["blessed"], decision["reason"]
    assert decision["first_generation"] and "first generation" in decision["reason"]
    promoted = stages.promote(registry, "hex5", str(model_dir), results, decision, str(combined))
    assert promoted["promoted_version"] == "v1" and promoted["champion_after"] == "v1"
    record = FileRegistry(registry, "hex5").champion()
    assert record.config["generation"] == 1 and record.data_hash == stages.data_hash(str(combined))

    # the champion plays generation 1's games (net-guided PUCT), which combine ahead of generation 0
    champ = stages.champion(registry, "hex5")
    shard = stages.selfplay_shard(
        "hex5_2p",
        4,
        simulations=16,
        seed=9,
        generation=1,
        model_dir=champ["model_dir"],
        out_npz=str(tmp_path / "g1.npz"),
        threads=1,
    )
    assert shard["search"] == "puct" and validate_file(tmp_path / "g1.npz").errors == []
    report = stages.combine(
        [str(train_export), shard["out_npz"]], str(tmp_path / "set1"), freshness_half_life=1.0
    )
    assert [(s["generation"], s["freshness"]) for s in report["sources"]] == [(1, 1.0), (0, 0.5)]
    assert report["num_games"] == 204
    # every stage returns plain JSON (component outputs)
    for out in (results, decision, promoted, shard, report, stages.gate(str(combined), 1)):
        assert json.loads(json.dumps(out)) == out


def test_importing_the_stages_does_not_import_torch():
    code = "import sys, tuneloop.selfplay.stages, tuneloop.selfplay.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_pipeline_defaults_are_the_engines():
    import importlib

    selfplay_training = importlib.import_module("tuneloop.pipelines.selfplay_training")

    assert selfplay_training.DEFAULT_MIN_GAMES == stages.DEFAULT_MIN_GAMES == 1000
    engine = {k: stages.DEFAULT_THRESHOLDS[k] for k in selfplay_training.DEFAULT_THRESHOLDS}
    assert selfplay_training.DEFAULT_THRESHOLDS == engine


def test_earlier_runs_exports_are_found_newest_first_and_half_written_ones_ignored(train_export, tmp_path):
    root = str(tmp_path / "data")
    for name in ("run-a", "run-b", "run-c"):
        run.archive_exports([str(train_export)], root, name)
    (tmp_path / "data" / "exports" / "run-d").mkdir()  # an archive cut short: no run.json
    (tmp_path / "data" / "exports" / "run-d" / "shard-0000.npz").write_bytes(b"partial")
    found = run.earlier_exports(root, 2, exclude_run="run-c")
    assert [p.split("/")[-2] for p in found] == ["run-b", "run-a"]
    assert run.earlier_exports(root, 0) == [] and run.earlier_exports("", 3) == []
    with pytest.raises(ValueError, match="history_runs"):
        run.earlier_exports(root, -1)
    with pytest.raises(ValueError, match="run_name"):
        run.archive_exports([str(train_export)], root, "a/b")
