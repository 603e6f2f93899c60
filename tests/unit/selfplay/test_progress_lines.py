"""Self-play and the gauntlet report games (and the running win rate) as progress lines."""

from __future__ import annotations

import pytest

from tuneloop import progress

pytest.importorskip("pyspiel")


def test_selfplay_reports_games_and_the_gauntlet_its_running_win_rate(capsys, monkeypatch):
    from tuneloop.selfplay.games import load_game
    from tuneloop.selfplay.gauntlet import GauntletConfig, RandomPlayer, play_pairing
    from tuneloop.selfplay.selfplay import SelfPlayConfig, play

    monkeypatch.setenv(progress.INTERVAL_ENV, "0")
    play(SelfPlayConfig("hex5_2p", games=3, simulations=8, seed=2))
    tally = play_pairing(load_game("hex5_2p"), RandomPlayer(), RandomPlayer(), target=0.5,
                         config=GauntletConfig(games=8, min_games=8, wave=4, seed=1), seed=1)
    events = [e for e in map(progress.parse, capsys.readouterr().out.splitlines()) if e]
    games = [e for e in events if e.label == "self-play"]
    assert [e.done for e in games] == [1, 2, 3] and games[-1].finished
    pairing = [e for e in events if e.label == "gauntlet/random"]
    assert [e.done for e in pairing] == [4, 8] and {e.total for e in pairing} == {8}
    assert pairing[-1].values["win_rate"] == pytest.approx(tally["win_rate"], abs=1e-3)
