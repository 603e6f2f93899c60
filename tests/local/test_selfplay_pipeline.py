"""selfplay-training end to end under kfp.local, on hex5: generation 1 is promoted; too few games skip.

Sizes are the unit fixtures' (200 games of rollout MCTS at 200 simulations, a 3x32 net, 300 steps),
which clear the default bars (85% vs random, 60% vs the heuristic) with room to spare: over seeds
0-3 the candidate scored 0.97-1.00 against random and 0.93-1.00 against the heuristic.
"""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest

from tests.local.conftest import run, summaries
from tuneloop.registry import FileRegistry
from tuneloop.selfplay.exports import load_npz, validate_file

HEX5 = {
    "model_name": "hex5-agent",
    "board_config": "hex5_2p",
    "total_games": 200,
    "num_shards": 2,
    "simulations": 200,
    "min_games": 100,
    "blocks": 3,
    "channels": 32,
    "steps": 300,
    "batch_size": 128,
    "gauntlet_games": 30,
}


@pytest.fixture
def env(tmp_path):
    return {
        "params": {"registry_uri": str(tmp_path / "registry"), "reports_uri": str(tmp_path / "reports")},
        "root": tmp_path / "runs",
        "reports": tmp_path / "reports",
    }


def test_generation_one_is_promoted_as_the_first_champion(env):
    from typer.testing import CliRunner

    from tuneloop.cli import app

    run_dir = run("selfplay-training", {**env["params"], **HEX5}, env["root"])
    [summary] = summaries(env["reports"])
    assert summary["promoted_version"] == "v1" and summary["champion_after"] == "v1"
    assert summary["champion_evaluated"] is None
    decision = summary["decision"]
    assert decision["blessed"] and decision["first_generation"]
    assert "first generation" in decision["reason"]
    assert summary["gauntlet"]["win_rate_vs_random"] >= 0.85
    assert summary["gauntlet"]["win_rate_vs_heuristic"] >= 0.60
    assert "win_rate_vs_previous_best" not in summary["gauntlet"]
    training_set = summary["training_set"]
    assert training_set["num_games"] == 200 and training_set["generation"] == 0
    assert training_set["num_positions"] > 200 and training_set["fallback"] is False

    champion = FileRegistry(env["params"]["registry_uri"], "hex5-agent").champion()
    assert champion.version == "v1" and champion.provider == "selfplay"
    assert champion.config["board_config"] == "hex5_2p" and champion.config["generation"] == 1
    assert champion.metrics["win_rate_vs_random"] == summary["gauntlet"]["win_rate_vs_random"]
    assert champion.n_examples == 200  # the training games, by id

    # each shard's export is a schema-valid NPZ, and the CLI says so
    exports = sorted(run_dir.rglob("play-selfplay-shard/export"))
    assert len(exports) == 2 and all(validate_file(p).errors == [] for p in exports)
    out = CliRunner().invoke(app, ["npz", "validate", str(exports[0])])
    assert out.exit_code == 0 and "1 valid, 0 invalid" in out.output


def test_too_few_games_end_as_a_recorded_skip(env):
    small = {**HEX5, "total_games": 8, "simulations": 16, "min_games": 1000}
    run_dir = run("selfplay-training", {**env["params"], **small}, env["root"])
    [summary] = summaries(env["reports"])
    assert summary["skipped"] is True and summary["provider"] == "selfplay"
    assert "only 8 games" in summary["decision"]["reason"]
    assert "min_games=1000" in summary["decision"]["reason"]
    assert summary["promoted_version"] is None and summary["champion_after"] is None
    assert not list(run_dir.rglob("train-policy-value-net"))  # nothing was trained
    assert FileRegistry(env["params"]["registry_uri"], "hex5-agent").champion() is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"board_config": "hex9_2p"}, "board_config='hex9_2p' is invalid"),
        ({"min_vs_random": 85.0}, "min_vs_random: 85.0 must be a score in [0, 1]"),
        (
            {"registry_uri": "vertex://my-project/us-central1?artifact_root=gs://bucket/models"},
            "self-play cannot use Vertex AI Model Registry",
        ),
        ({"settings": {"gauntlet": {"min_games": 2.5}}}, "settings.gauntlet.min_games=2.5 must be an integer"),
        ({"settings": {"validatr": {}}}, "unknown key 'validatr' (did you mean 'validator'?)"),
    ],
)
def test_a_bad_parameter_fails_the_first_task_before_any_game(env, override, message):
    with pytest.raises(RuntimeError) as info:
        run("selfplay-training", {**env["params"], **HEX5, **override}, env["root"])
    assert message in str(info.value)
    assert "check-selfplay-config" in str(info.value)
    assert not list(env["root"].rglob("play-selfplay-shard"))  # no game was played


def test_games_of_earlier_runs_count_toward_the_gate_and_join_the_training_set(env, tmp_path):
    data = {**env["params"], "data_root": str(tmp_path / "selfplay-data"), "history_runs": 3}
    small = {**HEX5, "total_games": 8, "simulations": 16, "min_games": 12, "steps": 10,
             "gauntlet_games": 2, "candidate_simulations": 0, "heuristic_simulations": 8}
    run("selfplay-training", {**data, **small, "seed": 0}, env["root"])
    [first] = summaries(env["reports"])
    assert first["skipped"] is True and "only 8 games" in first["decision"]["reason"]

    # the next run plays 8 new games; with the 8 kept from the first, the gate opens
    run("selfplay-training", {**data, **small, "seed": 1}, env["root"])
    second = summaries(env["reports"])[-1]
    assert not second.get("skipped") and second["training_set"]["num_games"] == 16
    kept = sorted((tmp_path / "selfplay-data" / "exports").glob("*/shard-*.npz"))
    assert len(kept) == 4 and all(validate_file(p).errors == [] for p in kept)


def test_a_two_config_curriculum_run_trains_both_and_applies_the_registry_record(env, tmp_path):
    """hex5 and Connect Four side by side, with the curriculum record of two earlier runs in the registry,
    a damaged export in the history and integer settings (KFP hands them over as 4.0)."""
    from tests.unit.selfplay import damaged
    from tuneloop.selfplay import curriculum

    registry = env["params"]["registry_uri"]
    weights = {"hex5_2p": 1.0, "connect_four_2p": 1.0}
    # Two earlier runs, as the promote tasks recorded them: hex5 gained 50 then 150 Elo, Connect Four 5
    # then 15 (stalled, < 25): Elo accelerates (x1.5) and Connect Four gets 1.5 times the weight.
    base = FileRegistry(registry, "agents").base
    plan = curriculum.RunPlan(curriculum.normalise(weights), 8, curriculum.normalise(weights), 8, "parameters", "")
    for i, (a, b) in enumerate([(0.0, 0.0), (50.0, 5.0), (200.0, 20.0)]):
        for name, elo in (("hex5_2p", a), ("connect_four_2p", b)):
            curriculum.record_result(
                base, model_name="agents", run_name=f"earlier-{i}", config_name=name, elo=elo, generation=i,
                blessed=True, promoted_version=None, run=plan, curriculum=curriculum.CurriculumSettings(),
                momentum=curriculum.MomentumSettings(), at=f"2026-01-0{i + 1}T00:00:00Z",
            )
    # the history: an earlier run kept a truncated export and an intact one; another left a broken run.json
    data_root = tmp_path / "selfplay-data"
    old = data_root / "exports" / "earlier-1"
    old.mkdir(parents=True)
    arrays = damaged.synthetic_arrays(60, seed=7, board="hex5_2p")
    np.savez_compressed(old / "shard-0000.npz", **arrays)
    damaged._truncated(old / "shard-0001.npz", arrays)
    (old / "run.json").write_text(json.dumps({"run": "earlier-1", "created_at": "2026-01-02T00:00:00Z",
                                              "exports": ["shard-0000.npz", "shard-0001.npz"]}))
    (data_root / "exports" / "earlier-0").mkdir()
    (data_root / "exports" / "earlier-0" / "run.json").write_text("{not json")

    params = {
        **env["params"], "model_name": "agents", "board_configs": weights, "total_games": 8, "num_shards": 2,
        "simulations": 8, "min_games": 4, "blocks": 1, "channels": 8, "steps": 4, "batch_size": 32,
        "gauntlet_games": 4, "candidate_simulations": 0, "heuristic_simulations": 4, "data_root": str(data_root),
        "min_vs_random": 0.6, "min_vs_heuristic": 0.3,
        "settings": {"gauntlet": {"min_games": 4, "wave": 2}, "momentum": {"max_games": 30},
                     "validator": {"max_members": 40, "max_total_bytes": 64 << 20}},
    }
    before = builtins.print
    run_dir = run("selfplay-training", params, env["root"])
    # kfp.local's ParallelFor threads swap builtins.print (indenting task logs) and can leave it swapped
    assert builtins.print is before, "the run left the process's print replaced"
    by_config = {s["board_config"]: s for s in summaries(env["reports"])}
    assert sorted(by_config) == ["connect_four_2p", "hex5_2p"]  # one summary per config, both trained
    assert sorted(p.parent.name for p in env["reports"].glob("*/summary.json"))[0].endswith("--connect_four_2p")

    # the plan came from the record: 8 x 1.5 = 12 games, Connect Four 0.6 of them
    for s in by_config.values():
        assert s["plan"]["source"] == "registry" and s["plan"]["total_games"] == 12
    shards = {}
    for export in run_dir.rglob("play-selfplay-shard/export"):
        ps = load_npz(export)
        shards[ps.board_config] = shards.get(ps.board_config, 0) + ps.num_games
    assert shards == {"connect_four_2p": 7, "hex5_2p": 5}

    # the damaged export in the history is skipped and listed; the intact one joins hex5's training set
    hex5 = by_config["hex5_2p"]["training_set"]
    [rejected] = hex5["rejected"]
    assert rejected["path"].endswith("earlier-1/shard-0001.npz") and "truncated" in rejected["reasons"][0]
    assert hex5["num_games"] == 5 + 2 and not hex5["fallback"]  # 60 synthetic positions = 2 games
    c4 = by_config["connect_four_2p"]["training_set"]
    assert c4["num_games"] == 7 and c4["rejected_count"] == 2  # + the hex5 export: another board config
    assert "run.json is unreadable" in hex5["history_notes"][0] and hex5["earlier_exports"] == 2

    # the integer settings arrived as integers, and the gauntlet stopped at the run's own bars
    for results in run_dir.rglob("run-gauntlet/results"):
        cfg = json.loads(results.read_text())["config"]
        assert cfg["min_games"] == 4 and type(cfg["min_games"]) is int and cfg["wave"] == 2
        assert cfg["targets"] == [0.6, 0.3, 0.45]

    # both configs' Elo joined the record, and the next run's plan is recomputed from it
    doc = curriculum.read_record(base)
    assert [p["run"] for p in doc["elo"]["hex5_2p"]][:3] == ["earlier-0", "earlier-1", "earlier-2"]
    assert len(doc["elo"]["hex5_2p"]) == len(doc["elo"]["connect_four_2p"]) == 4
    assert doc["next"]["run_total_games"] == 12 and doc["next"]["after_run"] == by_config["hex5_2p"]["run"]
    assert 2 <= doc["next"]["total_games"] <= 30 and "(bounds 2..30)" in doc["next"]["reason"]  # ints, not 30.0
    for name in ("hex5_2p", "connect_four_2p"):
        champ = FileRegistry(registry, f"agents-{name}")
        assert champ.champion() is None or champ.champion().config["board_config"] == name
