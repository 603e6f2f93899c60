"""Heavier checks (``-m slow``): a second game family and a second generation of the loop."""

from __future__ import annotations

import pytest
import torch

from tuneloop.selfplay import npz, stages


@pytest.mark.slow
def test_connect_four_generation_one_beats_random(tmp_path):
    shard = stages.selfplay_shard(
        "connect_four_2p", 300, simulations=200, uct_c=0.5, seed=0, out_npz=str(tmp_path / "g0.npz")
    )
    stages.combine([shard["out_npz"]], str(tmp_path / "set"))
    stages.train(
        str(tmp_path / "set"),
        str(tmp_path / "m"),
        blocks=3,
        channels=32,
        steps=400,
        batch_size=128,
        threads=1,
    )
    res = stages.gauntlet(
        str(tmp_path / "m"),
        "connect_four_2p",
        None,
        games=40,
        min_games=40,
        candidate_simulations=32,
        threads=1,
    )
    assert res["pairings"]["random"]["win_rate"] >= 0.85


@pytest.mark.slow
def test_second_generation_from_net_guided_self_play_does_not_regress(
    train_export, combined, trained, tmp_path
):
    gen1, _ = trained
    shard = stages.selfplay_shard(
        "hex5_2p",
        150,
        simulations=64,
        seed=21,
        generation=1,
        model_dir=str(gen1),
        out_npz=str(tmp_path / "g1.npz"),
        threads=1,
    )
    stages.combine([str(train_export), shard["out_npz"]], str(tmp_path / "set"))
    stages.train(
        str(tmp_path / "set"),
        str(tmp_path / "gen2"),
        steps=300,
        batch_size=128,
        threads=1,
        resume_from=str(gen1),
    )
    res = stages.gauntlet(
        str(tmp_path / "gen2"),
        "hex5_2p",
        str(gen1),
        games=60,
        min_games=30,
        previous_best_version="v1",
        threads=1,
    )
    decision = stages.decide_promotion(res, stages.DEFAULT_THRESHOLDS)
    assert decision["blessed"], decision["reason"]
    assert decision["champion_version"] == "v1" and not decision["first_generation"]


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_runs_on_the_gpu_and_the_checkpoint_loads_on_cpu(combined, tmp_path):
    metrics = stages.train(str(combined), str(tmp_path / "m"), steps=50, batch_size=256, device="cuda")
    assert metrics["device"].startswith("cuda") and metrics["final_train_loss"] < metrics["first_loss"]
    res = stages.gauntlet(
        str(tmp_path / "m"), "hex5_2p", None, games=10, min_games=10, candidate_simulations=0, device="cpu"
    )
    assert res["pairings"]["random"]["games"] == 10
    assert npz.open_dir(combined).num_positions == metrics["train_positions"] + metrics["val_positions"]
