"""Games adapter, search and self-play: real OpenSpiel games, checked against the rules of the game."""

from __future__ import annotations

import numpy as np
import pytest

from tuneloop.selfplay import npz
from tuneloop.selfplay.games import BOARD_CONFIGS, absolute, load_game, relative
from tuneloop.selfplay.mcts import RolloutConfig, RolloutSearch, choose_move
from tuneloop.selfplay.selfplay import SelfPlayConfig, plan_shards, play


@pytest.mark.parametrize("name", sorted(BOARD_CONFIGS))
def test_every_board_config_encodes_planes_globals_and_a_legal_mask(name):
    adapter = load_game(name)
    state = adapter.new_state()
    while state.is_chance_node():
        state.apply_action(state.chance_outcomes()[0][0])
    planes, globs = adapter.encode(state, 0)
    assert planes.dtype == np.uint8 and planes.shape == adapter.planes_shape
    assert globs.dtype == np.float32 and globs.shape == (adapter.num_globals,)
    assert globs[adapter.to_move(state)] == 1.0 and globs[:4].sum() == 1.0
    mask = adapter.legal_mask(state)
    assert mask.shape == (adapter.policy_size,) and mask.sum() == len(state.legal_actions())
    assert adapter.num_players == BOARD_CONFIGS[name].num_players


def test_hex_planes_show_the_stone_just_played():
    adapter = load_game("hex5_2p")
    state = adapter.new_state()
    before, _ = adapter.encode(state, 0)
    state.apply_action(12)  # centre
    after, g = adapter.encode(state, 1)
    changed = np.argwhere(before != after)
    assert {(r, c) for _, r, c in changed} == {(2, 2)}
    assert g[1] == 1.0  # player 1 to move


def test_unknown_board_config_names_the_known_ones():
    with pytest.raises(
        ValueError, match=r"config_name: 'hex9_2p' is not a board config; use one of \[.*'hex8_2p'"
    ):
        SelfPlayConfig("hex9_2p", games=1)


def test_relative_and_absolute_seat_order_are_inverse():
    v = np.array([1.0, -0.5, -0.5, 0.0], dtype=np.float32)
    rel = relative(v, player=2, num_players=3)
    np.testing.assert_array_equal(rel, [-0.5, 1.0, -0.5, 0.0])
    np.testing.assert_array_equal(absolute(rel, 2, 3), v)


def test_self_play_values_follow_the_game_result():
    ps = play(SelfPlayConfig("hex5_2p", games=4, simulations=40, seed=3))
    assert npz.validate_arrays(ps.to_arrays()) == []
    for gid in np.unique(ps.game_ids):
        rows = np.flatnonzero(ps.game_ids == gid)
        last = rows[np.argmax(ps.move_numbers[rows])]
        assert ps.values[last] == 1.0  # in hex the player who makes the last move wins
        # the two players alternate, and their outcomes are opposite
        assert set(ps.values[rows]) == {1.0, -1.0}
        movers = ps.current_player[rows]
        np.testing.assert_array_equal(ps.values[rows][movers == movers[0]], ps.values[rows[0]])
        assert (ps.total_game_moves[rows] == ps.move_numbers[rows].max() + 1).all()


def test_self_play_is_reproducible_from_its_seed_and_varies_with_it():
    a = play(SelfPlayConfig("connect_four_2p", games=2, simulations=30, seed=5))
    b = play(SelfPlayConfig("connect_four_2p", games=2, simulations=30, seed=5))
    c = play(SelfPlayConfig("connect_four_2p", games=2, simulations=30, seed=6))
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.policy_values, b.policy_values)
    assert not np.array_equal(a.game_ids, c.game_ids)


def test_low_uct_constant_gives_sharper_policy_targets_than_c2():
    """The original system's finding: UCT c=2 visit counts are nearly flat, c~0.5 sharp."""
    adapter = load_game("hex5_2p")
    rng = np.random.default_rng(0)
    states = []
    for _ in range(6):
        s = adapter.new_state()
        for _ in range(int(rng.integers(0, 6))):
            s.apply_action(int(rng.choice(s.legal_actions())))
        states.append(s)

    def mean_top_share(c):
        search = RolloutSearch(
            adapter, RolloutConfig(simulations=200, uct_c=c, prune_exploration=False), seed=1
        )
        return np.mean([(v := search.visit_counts(s)).max() / v.sum() for s in states])

    assert mean_top_share(0.5) > 1.5 * mean_top_share(2.0)


@pytest.mark.parametrize("name", ["hex5_2p", "connect_four_2p"])
def test_one_simulation_still_plays_only_legal_moves(name):
    """One simulation only expands the root (no child visited): the counts are the legal moves, tied."""
    adapter = load_game(name)
    search = RolloutSearch(adapter, RolloutConfig(simulations=1), seed=3)
    rng = np.random.default_rng(0)
    state = adapter.new_state()
    for _ in range(3):
        state.apply_action(int(rng.choice(state.legal_actions())))
    counts = search.visit_counts(state)
    legal = state.legal_actions()
    assert set(np.flatnonzero(counts)) == set(legal) and len(set(counts[legal].tolist())) == 1
    while not state.is_terminal():  # a whole game at one simulation: every chosen move is legal
        state.apply_action(choose_move(search.visit_counts(state), 0.0, rng))


def test_temperature_zero_plays_the_most_visited_move():
    counts = np.array([0, 3, 9, 1], dtype=np.float32)
    rng = np.random.default_rng(0)
    assert {choose_move(counts, 0.0, rng) for _ in range(20)} == {2}
    sampled = {choose_move(counts, 1.0, rng) for _ in range(200)}
    assert sampled == {1, 2, 3}  # never the unvisited move


def test_truncated_games_are_recorded_as_such_with_value_zero():
    ps = play(SelfPlayConfig("hex5_2p", games=2, simulations=20, max_moves=3, seed=1))
    assert (ps.victory_types == npz.VICTORY_TYPES.index("truncated")).all()
    assert (ps.values == 0).all() and (ps.total_game_moves == 3).all()


def test_curriculum_weights_split_games_over_board_configs_and_shards():
    plan = plan_shards(
        {"hex5_2p": 3.0, "connect_four_2p": 1.0, "hex8_2p": 0.0}, total_games=100, num_shards=4, seed=2
    )
    by_config = {}
    for p in plan:
        by_config[p["config_name"]] = by_config.get(p["config_name"], 0) + p["games"]
    assert by_config == {"hex5_2p": 75, "connect_four_2p": 25}
    assert len({p["seed"] for p in plan}) == len(plan) == 4
    with pytest.raises(ValueError, match=r"curriculum\['hex5_2p'\]: weight -1"):
        plan_shards({"hex5_2p": -1}, 10, 2)
