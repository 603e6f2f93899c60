"""The gauntlet: a trained net beats random; seats swap; early stop; intervals and Elo."""

from __future__ import annotations

import numpy as np
import pytest

from tuneloop.selfplay import stages
from tuneloop.selfplay.games import load_game
from tuneloop.selfplay.gauntlet import (
    GauntletConfig,
    RandomPlayer,
    _play_wave,
    elo_ratings,
    play_pairing,
    sprt,
    wilson,
)


def test_a_trained_net_beats_random_in_a_short_gauntlet(trained):
    model_dir, _ = trained
    res = stages.gauntlet(
        str(model_dir), "hex5_2p", None, games=20, min_games=20, candidate_simulations=0, seed=1, threads=1
    )
    vs_random = res["pairings"]["random"]
    assert vs_random["games"] == 20 and vs_random["win_rate"] >= 0.85
    assert vs_random["ci_low"] <= vs_random["win_rate"] <= vs_random["ci_high"]
    assert res["first_generation"] is True and "previous_best" not in res["pairings"]
    assert res["elo"]["random"] == 0.0 and res["elo"]["candidate"] > 100


def test_a_decided_pairing_stops_early_after_the_minimum(trained):
    model_dir, _ = trained
    res = stages.gauntlet(
        str(model_dir),
        "hex5_2p",
        str(model_dir),
        games=200,
        min_games=10,
        candidate_simulations=0,
        seed=2,
        threads=1,
    )
    vs_random = res["pairings"]["random"]
    assert vs_random["stopped_early"] and vs_random["sprt"] == "above" and 10 <= vs_random["games"] < 200
    # the net against itself: seat-swapped pairs of identical openings, so about even
    vs_self = res["pairings"]["previous_best"]
    assert 0.3 <= vs_self["win_rate"] <= 0.7


def test_seats_alternate_so_random_against_random_is_even():
    adapter = load_game("hex5_2p")
    scores = _play_wave(
        adapter, RandomPlayer(), RandomPlayer(), list(range(40)), limit=100, seed=0, opening_plies=0
    )
    # seat 0 (first mover) wins more in hex, but the candidate sits there only in even games
    assert 0.3 <= np.mean(scores) <= 0.7
    first_mover = np.mean(scores[0::2])
    second_mover = np.mean(scores[1::2])
    assert first_mover != second_mover


def test_pairing_plays_every_game_when_undecided():
    adapter = load_game("hex5_2p")
    cfg = GauntletConfig(games=12, min_games=4, wave=4, seed=3)
    tally = play_pairing(adapter, RandomPlayer(), RandomPlayer(), target=0.5, config=cfg, seed=3)
    assert tally["games"] == 12 and not tally["stopped_early"] and tally["sprt"] == "undecided"
    assert tally["wins"] + tally["draws"] + tally["losses"] == 12


def test_wilson_interval_and_sprt_verdicts():
    lo, hi = wilson(17, 20)
    assert lo == pytest.approx(0.6396, abs=1e-3) and hi == pytest.approx(0.9476, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)
    assert sprt(30, 0, 0.85, 0.05, 0.05, 0.05)[1] == "above"
    assert sprt(10, 10, 0.85, 0.05, 0.05, 0.05)[1] == "below"
    assert sprt(3, 1, 0.85, 0.05, 0.05, 0.05)[1] == "undecided"


def test_elo_orders_players_by_results():
    pairings = {
        "random": {"wins": 19, "draws": 0, "losses": 1},
        "heuristic": {"wins": 12, "draws": 0, "losses": 8},
    }
    elo = elo_ratings(pairings)
    assert elo["random"] == 0.0 and elo["candidate"] > elo["heuristic"] > elo["random"]


def test_gauntlet_refuses_a_net_of_another_board(trained):
    model_dir, _ = trained
    with pytest.raises(ValueError, match=r"model_dir: .* plays 'hex5_2p', the gauntlet is 'hex8_2p'"):
        stages.gauntlet(str(model_dir), "hex8_2p", None, games=2, min_games=1, threads=1)


def test_bad_gauntlet_settings_name_the_parameter():
    with pytest.raises(ValueError, match=r"min_games: 50 must lie in \[1, games=10\]"):
        GauntletConfig(games=10, min_games=50)


def test_empty_strings_from_pipeline_parameters_mean_none(trained):
    model_dir, _ = trained
    res = stages.gauntlet(
        str(model_dir),
        "hex5_2p",
        "",
        games=2,
        min_games=2,
        candidate_simulations=0,
        previous_best_version="",
        threads=1,
    )
    assert res["first_generation"] is True and res["previous_best_version"] is None
    assert (
        stages.decide_promotion(res, {"min_vs_random": 0.0, "min_vs_heuristic": 0.0})["champion_version"]
        is None
    )
