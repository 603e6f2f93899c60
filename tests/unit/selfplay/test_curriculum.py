"""Curriculum and momentum: stalled configs get more games, the budget follows the Elo trend, bounded."""

from __future__ import annotations

import threading

import pytest

from tuneloop.selfplay import curriculum as cur
from tuneloop.selfplay.curriculum import CurriculumSettings, MomentumSettings, RunPlan

CS, MS = CurriculumSettings(), MomentumSettings()


def _plan(weights, total=1000, base_total=1000):
    w = cur.normalise(weights)
    return RunPlan(w, total, w, base_total, "parameters", "")


@pytest.mark.parametrize(
    ("series", "trend"),
    [
        ({"a": [100.0, 150.0, 260.0]}, "accelerating"),  # gains 50 then 110
        ({"a": [100.0, 210.0, 260.0]}, "steady"),  # gains 110 then 50: decelerating, still rising
        ({"a": [300.0, 260.0]}, "regressing"),
        ({"a": [300.0]}, "unknown"),
    ],
)
def test_the_trend_of_the_elo_series(series, trend):
    assert cur.elo_trend(series)[0] == trend


def test_the_trend_is_over_the_mean_of_the_configs():
    # a: +200 (after +100), b: -300: the mean last gain is -50, so the run regressed
    assert cur.elo_trend({"a": [0.0, 100.0, 300.0], "b": [500.0, 200.0]}) == ("regressing", -50.0)
    # a: +200 after +100, b: +40 after +10 -> both accelerate; mean +120
    assert cur.elo_trend({"a": [0.0, 100.0, 300.0], "b": [0.0, 10.0, 50.0]}) == ("accelerating", 120.0)


def test_momentum_multiplies_the_budget_and_stays_within_its_bounds():
    run = _plan({"a": 1.0}, total=1000, base_total=1000)
    up = cur.next_plan({"a": [100.0, 150.0, 260.0]}, run, CS, MS)
    down = cur.next_plan({"a": [300.0, 260.0]}, run, CS, MS)
    hold = cur.next_plan({"a": [100.0, 210.0, 260.0]}, run, CS, MS)
    assert (up["total_games"], up["factor"]) == (1500, 1.5)
    assert (down["total_games"], down["factor"]) == (750, 0.75)
    assert (hold["total_games"], hold["factor"]) == (1000, 1.0)
    assert "accelerating" in up["reason"] and "1000 x 1.5 -> 1500 games" in up["reason"]
    # bounded: 3000 x 1.5 would be 4500, the default ceiling is 4 x 1000; the floor 1000 // 4
    assert cur.next_plan({"a": [100.0, 150.0, 260.0]}, _plan({"a": 1}, 3000, 1000), CS, MS)["total_games"] == 4000
    assert cur.next_plan({"a": [300.0, 260.0]}, _plan({"a": 1}, 300, 1000), CS, MS)["total_games"] == 250
    own = MomentumSettings(min_games=600, max_games=1200)
    assert cur.next_plan({"a": [100.0, 150.0, 260.0]}, run, CS, own)["total_games"] == 1200
    assert cur.next_plan({"a": [300.0, 260.0]}, run, CS, own)["total_games"] == 750
    assert cur.next_plan({"a": [300.0, 100.0]}, _plan({"a": 1}, 700, 1000), CS, own)["total_games"] == 600


def test_a_stalled_config_gets_more_games_within_the_share_bounds():
    run = _plan({"hex8_2p": 1.0, "connect_four_2p": 1.0})
    # hex8 rose by 10 Elo (< 25: stalled), connect four by 80
    nxt = cur.next_plan({"hex8_2p": [400.0, 410.0], "connect_four_2p": [300.0, 380.0]}, run, CS, MS)
    assert nxt["stalled"] == ["hex8_2p"]
    assert nxt["weights"] == pytest.approx({"hex8_2p": 0.6, "connect_four_2p": 0.4})  # 1.5 : 1
    # repeated stalls compound but stop at max_share
    tight = CurriculumSettings(max_share=0.7)
    w = run
    for _ in range(5):
        w = _plan(cur.next_plan({"hex8_2p": [400.0, 410.0], "connect_four_2p": [0.0, 100.0]}, w, tight, MS)["weights"])
    assert w.weights == pytest.approx({"hex8_2p": 0.7, "connect_four_2p": 0.3})
    # a config without two points yet keeps its weight
    first = cur.next_plan({"hex8_2p": [400.0]}, run, CS, MS)
    assert first["stalled"] == [] and first["weights"] == pytest.approx(run.weights)


def test_clip_shares_keeps_every_share_in_bounds():
    shares = cur.clip_shares({"a": 0.97, "b": 0.02, "c": 0.01}, 0.05, 0.9)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert all(0.05 - 1e-9 <= v <= 0.9 + 1e-9 for v in shares.values())
    assert shares["a"] == pytest.approx(0.9) and shares["b"] == shares["c"] == pytest.approx(0.05)


def _record(base, run_name, config, elo, run):
    return cur.record_result(
        base, model_name="agents", run_name=run_name, config_name=config, elo=elo, generation=1, blessed=True,
        promoted_version="v1", run=run, curriculum=CS, momentum=MS, at="2026-01-01T00:00:00Z",
    )


def test_the_record_is_applied_by_the_next_run_and_reset_when_the_parameters_change(tmp_path):
    base = str(tmp_path / "registry" / "agents")
    params = {"hex8_2p": 1.0, "connect_four_2p": 1.0}
    first = cur.plan_for_run(base, params, 1000)
    assert first.source == "parameters" and "first run" in first.reason
    for run, (a, b) in enumerate([(100.0, 100.0), (150.0, 200.0), (260.0, 300.0)]):
        plan = cur.plan_for_run(base, params, 1000)
        _record(base, f"run-{run}", "hex8_2p", a, plan)
        _record(base, f"run-{run}", "connect_four_2p", b, plan)
    doc = cur.read_record(base)
    assert [p["elo"] for p in doc["elo"]["hex8_2p"]] == [100.0, 150.0, 260.0]
    # run-1: gains 50 / 100 (steady, none stalled); run-2: gains 110 / 100 after 50 / 100 -> accelerating
    nxt = cur.plan_for_run(base, params, 1000)
    assert nxt.source == "registry" and "run-2" in nxt.reason
    assert nxt.total_games == 1500 and nxt.weights == pytest.approx({"hex8_2p": 0.5, "connect_four_2p": 0.5})
    # a retried task replaces its own point
    _record(base, "run-2", "hex8_2p", 260.0, nxt)
    assert len(cur.read_record(base)["elo"]["hex8_2p"]) == 3
    assert cur.plan_for_run(base, params, 1000, adaptive=False).total_games == 1000
    changed = cur.plan_for_run(base, {"hex8_2p": 2.0, "connect_four_2p": 1.0}, 1000)
    assert changed.source == "parameters" and "differ from the ones the record started from" in changed.reason
    assert changed.weights == pytest.approx({"hex8_2p": 2 / 3, "connect_four_2p": 1 / 3})


def test_configs_recording_at_once_keep_each_others_points(tmp_path):
    base = str(tmp_path / "registry" / "agents")
    names = ["hex5_2p", "hex8_2p", "connect_four_2p", "maedn_2p"]
    plan = _plan(dict.fromkeys(names, 1.0))
    threads = [threading.Thread(target=_record, args=(base, "run-0", n, 100.0 + i, plan)) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    doc = cur.read_record(base)
    assert sorted(doc["elo"]) == sorted(names)
    assert sorted(h["config_name"] for h in doc["history"]) == sorted(names)
