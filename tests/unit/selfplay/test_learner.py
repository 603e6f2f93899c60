"""The trainer: loss falls on real hex5 games, split by game, sparse loss, checkpoints and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from tuneloop.selfplay import npz, stages
from tuneloop.selfplay.learner import Batches, TrainConfig, losses, net_config_for, split_by_game
from tuneloop.selfplay.net import PolicyValueNet, load_model, read_checkpoint


def test_training_loss_falls_below_the_goal_on_hex5_games(trained):
    _, metrics = trained
    # start: ~ln(25) policy CE + ~1 per value head; goal: well under that after 300 steps
    assert metrics["first_loss"] > 4.5
    assert metrics["final_train_loss"] < 3.6
    assert metrics["steps"] == 300 and metrics["device"] == "cpu"
    assert 0 <= metrics["data_fraction"] < 1


def test_validation_split_is_by_game(combined, trained):
    data = npz.open_dir(combined)
    val = split_by_game(data.game_ids, 0.1, seed=0)
    train_games, val_games = set(data.game_ids[~val]), set(data.game_ids[val])
    assert train_games and val_games and not (train_games & val_games)
    _, metrics = trained
    assert metrics["val_games"] == len(val_games) and metrics["train_games"] == len(train_games)
    # stable: the same split on every call
    np.testing.assert_array_equal(val, split_by_game(data.game_ids, 0.1, seed=0))


def test_sparse_policy_loss_equals_dense_cross_entropy(combined):
    data = npz.open_dir(combined)
    cfg = TrainConfig(value_weight=0.0, mp_value_weight=0.0)
    torch.manual_seed(0)
    net = PolicyValueNet(net_config_for(data, cfg)).eval()
    rows = np.arange(64)
    batch = Batches(data, rows, torch.device("cpu")).gather(rows)
    sparse = losses(net, batch, cfg)["policy_ce"]
    with torch.no_grad():
        logits, _, _ = net(batch["planes"], batch["globals"])
        target = torch.from_numpy(data.dense_policies()[rows])
        w = torch.from_numpy(np.asarray(data.sample_weights[rows]))
        dense = (w * F.cross_entropy(logits, target, reduction="none")).sum() / w.sum()
    assert float(sparse.detach()) == pytest.approx(float(dense), rel=1e-5)


def test_checkpoint_describes_itself_and_loads_for_play(trained):
    model_dir, metrics = trained
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["board_config"] == "hex5_2p" and meta["step"] == 300
    assert meta["net_config"]["blocks"] == 3 and meta["net_config"]["channels"] == 32
    assert meta["generation"] == 1 and meta["metrics"]["final_train_loss"] == metrics["final_train_loss"]
    net, loaded = load_model(model_dir, "cpu")
    assert not net.training and loaded["schema_version"] == npz.SCHEMA_VERSION
    assert "optimizer" in read_checkpoint(model_dir)


def test_resume_continues_the_same_run_and_refuses_another_shape(combined, tmp_path):
    first = stages.train(
        str(combined), str(tmp_path / "a"), blocks=1, channels=8, steps=4, batch_size=32, threads=1
    )
    assert first["steps"] == 4
    # same run, more steps: restores optimizer and step
    more = stages.train(
        str(combined),
        str(tmp_path / "b"),
        blocks=1,
        channels=8,
        steps=4,
        batch_size=32,
        threads=1,
        resume_from=str(tmp_path / "a"),
    )
    assert more["start_step"] == 4 and more["steps"] == 4  # already at the goal: nothing to do
    longer = stages.train(
        str(combined),
        str(tmp_path / "c"),
        blocks=1,
        channels=8,
        steps=6,
        batch_size=32,
        threads=1,
        resume_from=str(tmp_path / "a"),
    )
    assert longer["start_step"] == 0 and longer["resumed_from"] == str(tmp_path / "a")  # new run: warm start
    a_weights = read_checkpoint(tmp_path / "a")["model"]["stem.weight"]
    assert not torch.equal(read_checkpoint(tmp_path / "c")["model"]["stem.weight"], a_weights)
    with pytest.raises(
        ValueError, match=r"resume_from: .* holds a net .*'channels': 8.*same blocks/channels"
    ):
        stages.train(
            str(combined),
            str(tmp_path / "d"),
            blocks=1,
            channels=16,
            steps=2,
            threads=1,
            resume_from=str(tmp_path / "a"),
        )


def test_training_refuses_a_directory_that_is_not_a_training_set(tmp_path):
    with pytest.raises(npz.SchemaError, match="no metadata.json; pass the directory written by combine"):
        stages.train(str(tmp_path), str(tmp_path / "m"), steps=1, threads=1)


def test_bad_settings_name_the_parameter():
    with pytest.raises(ValueError, match=r"batch_size: 0 must be >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match=r"val_fraction: 1.0 must lie in \[0, 1\)"):
        TrainConfig(val_fraction=1.0)


def test_a_warm_start_continues_from_the_champion_and_a_new_shape_starts_fresh(trained, combined, tmp_path):
    model_dir, fresh = trained
    assert stages.warm_start_dir(str(model_dir), 3, 32) == str(model_dir)
    assert stages.warm_start_dir(str(model_dir), 4, 64) is None  # another shape: random weights
    assert stages.warm_start_dir("", 3, 32) is None  # no champion yet
    warm = stages.train(str(combined), str(tmp_path / "gen2"), blocks=3, channels=32, steps=5, batch_size=128,
                        seed=1, threads=1, resume_from=stages.warm_start_dir(str(model_dir), 3, 32))
    assert warm["resumed_from"] == str(model_dir) and warm["start_step"] == 0  # the weights, a new run
    assert warm["first_loss"] < 0.8 * fresh["first_loss"]  # it starts where the champion ended
