"""The multi-player value path on maedn (3 players, dice): export, train, search with chance nodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tuneloop.selfplay import npz, stages
from tuneloop.selfplay.exports import load_npz
from tuneloop.selfplay.games import load_game
from tuneloop.selfplay.mcts import PuctConfig, puct_search
from tuneloop.selfplay.net import NetEvaluator, load_model


@pytest.fixture(scope="module")
def maedn(tmp_path_factory):
    root = tmp_path_factory.mktemp("maedn")
    shard = stages.selfplay_shard(
        "maedn_3p", 2, simulations=20, uct_c=0.5, seed=0, generation=0, out_npz=str(root / "g0.npz")
    )
    stages.combine([shard["out_npz"]], str(root / "set"))
    return root


def test_maedn_values_rank_the_winner_first_for_every_seat(maedn):
    ps = load_npz(maedn / "g0.npz")
    assert (ps.num_players == 3).all() and set(np.unique(ps.current_player)) == {0, 1, 2}
    assert (ps.victory_types == npz.VICTORY_TYPES.index("race")).all()
    np.testing.assert_allclose(ps.values_mp.sum(1), 0.0, atol=1e-6)  # zero-sum
    assert (ps.values_mp[:, 3] == 0).all()  # seat 4 is padding
    for gid in np.unique(ps.game_ids):
        rows = np.flatnonzero(ps.game_ids == gid)
        # one winner per game: +1 for the winner, -1/2 for the two others
        for r in rows:
            assert sorted(ps.values_mp[r, :3]) == [-0.5, -0.5, 1.0]
        # the winner's absolute seat is the same from every player-to-move's view
        winners = {(int(ps.current_player[r]) + int(np.argmax(ps.values_mp[r, :3]))) % 3 for r in rows}
        assert len(winners) == 1
    np.testing.assert_array_equal(ps.values, ps.values_mp[:, 0])


def test_maedn_trains_the_multi_player_head_and_searches_through_dice(maedn, tmp_path):
    metrics = stages.train(
        str(maedn / "set"),
        str(tmp_path / "m"),
        blocks=1,
        channels=16,
        steps=40,
        batch_size=64,
        lr=3e-3,
        threads=1,
    )
    assert metrics["final_train_loss"] < metrics["first_loss"]
    net, _ = load_model(tmp_path / "m", "cpu")
    evaluate = NetEvaluator(net, 3)
    data = npz.open_dir(maedn / "set")
    _, values = evaluate(np.asarray(data.features[:8]), np.asarray(data.globals[:8]))
    assert values.shape == (8, 4) and (values[:, 3] == 0).all() and np.abs(values).max() <= 1
    # learned something about the multi-player outcome: the mp head is closer to the targets than 0
    with torch.no_grad():
        _, _, vmp = net(
            torch.from_numpy(np.array(data.features, dtype=np.float32)),
            torch.from_numpy(np.array(data.globals)),
        )
    err = ((vmp[:, :3].numpy() - data.values_mp[:, :3]) ** 2).mean()
    assert err < (np.asarray(data.values_mp[:, :3]) ** 2).mean()

    adapter = load_game("maedn_3p")
    state, rng = adapter.new_state(), np.random.default_rng(0)
    while state.is_chance_node() or len(state.legal_actions()) < 2:
        if state.is_chance_node():
            state.apply_action(int(rng.choice([a for a, _ in state.chance_outcomes()])))
        else:
            state.apply_action(state.legal_actions()[0])
    counts = puct_search(adapter, [state], evaluate, PuctConfig(simulations=24), rng)[0]
    assert counts.sum() == 24 and set(np.flatnonzero(counts)) <= set(state.legal_actions())


def test_net_guided_self_play_on_maedn_writes_a_valid_export(maedn, tmp_path):
    stages.train(
        str(maedn / "set"), str(tmp_path / "m"), blocks=1, channels=8, steps=2, batch_size=32, threads=1
    )
    out = stages.selfplay_shard(
        "maedn_3p",
        2,
        simulations=4,
        seed=5,
        generation=1,
        model_dir=str(tmp_path / "m"),
        out_npz=str(tmp_path / "g1.npz"),
        max_moves=60,
        threads=1,
    )
    assert out["search"] == "puct" and out["positions"] > 0
    ps = load_npz(tmp_path / "g1.npz")
    assert (ps.victory_types == npz.VICTORY_TYPES.index("truncated")).all() and (ps.values_mp == 0).all()
    assert ps.metadata["generation"] == 1
