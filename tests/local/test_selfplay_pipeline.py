"""selfplay-training end to end under kfp.local, on hex5: generation 1 is promoted; too few games skip.

Sizes are the unit fixtures' (200 games of rollout MCTS at 200 simulations, a 3x32 net, 300 steps),
which clear the default bars (85% vs random, 60% vs the heuristic) with room to spare: over seeds
0-3 the candidate scored 0.97-1.00 against random and 0.93-1.00 against the heuristic.
"""

from __future__ import annotations

import pytest

from tests.local.conftest import run, summaries
from tuneloop.registry import FileRegistry
from tuneloop.selfplay.exports import validate_file

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
