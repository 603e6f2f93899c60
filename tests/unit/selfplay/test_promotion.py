"""Promotion: the pure decision for each branch (distinct numbers each), then the registry CAS."""

from __future__ import annotations

import json

import pytest

from tuneloop.registry import ChampionMoved, FileRegistry
from tuneloop.selfplay import stages
from tuneloop.selfplay.promotion import PromotionThresholds, decide_promotion


def _pairing(wins: int, games: int) -> dict:
    return {
        "games": games,
        "wins": wins,
        "draws": 0,
        "losses": games - wins,
        "win_rate": wins / games,
        "ci_low": 0.0,
        "ci_high": 1.0,
    }


def _results(random, heuristic, best=None, version="v4"):
    pairings = {"random": _pairing(*random), "heuristic": _pairing(*heuristic)}
    if best is not None:
        pairings["previous_best"] = _pairing(*best)
    return {
        "config_name": "hex5_2p",
        "pairings": pairings,
        "elo": {"candidate": 300.0, "random": 0.0},
        "first_generation": best is None,
        "previous_best_version": None if best is None else version,
    }


TH = PromotionThresholds()


def test_pass_blesses_and_names_every_number():
    d = decide_promotion(_results((46, 50), (33, 50), (26, 50)), TH)
    assert d["blessed"] is True and d["first_generation"] is False and d["champion_version"] == "v4"
    assert (
        d["reason"]
        == "blessed: random 0.920 (>= 0.85), heuristic 0.660 (>= 0.60), previous_best 0.520 (>= 0.45)"
    )
    assert [c["passed"] for c in d["checks"]] == [True, True, True]


def test_fail_against_random():
    d = decide_promotion(_results((41, 50), (40, 50), (30, 50)), TH)
    assert d["blessed"] is False
    assert d["reason"] == "not blessed: too weak against random: 0.820 < 0.85 over 50 games"


def test_regression_against_the_previous_best():
    d = decide_promotion(_results((49, 50), (35, 50), (20, 50)), TH)
    assert d["blessed"] is False
    assert d["reason"] == "not blessed: regressed against the previous best: 0.400 < 0.45 over 50 games"
    assert [c["pairing"] for c in d["checks"] if not c["passed"]] == ["previous_best"]


def test_first_generation_has_no_previous_best_and_says_so():
    d = decide_promotion(_results((19, 20), (13, 20)), TH)
    assert d["blessed"] is True and d["first_generation"] is True and d["champion_version"] is None
    assert d["reason"].startswith("blessed: first generation (no previous best to compare); random 0.950")
    weak = decide_promotion(_results((19, 20), (11, 20)), TH)
    assert weak["reason"] == (
        "not blessed: first generation (no previous best to compare); too weak against heuristic: 0.550 < 0.60 over 20 games"
    )


def test_fails_closed_without_thresholds_or_with_a_missing_pairing():
    assert (
        decide_promotion(_results((50, 50), (50, 50)), None)["reason"]
        == "not blessed: no thresholds configured (fail closed)"
    )
    res = _results((50, 50), (50, 50), (30, 50))
    del res["pairings"]["previous_best"]
    d = decide_promotion(res, stages.DEFAULT_THRESHOLDS)
    assert d["blessed"] is False and "no previous_best pairing in the results" in d["reason"]
    with pytest.raises(ValueError, match=r"thresholds: unknown key 'min_vs_randm' \(did you mean 'min_vs_random'\?\)"):
        decide_promotion(res, {"min_vs_randm": 0.9})


def test_thresholds_come_from_the_caller():
    res = _results((40, 50), (25, 50))
    assert decide_promotion(res, TH)["blessed"] is False
    assert decide_promotion(res, {"min_vs_random": 0.8, "min_vs_heuristic": 0.5})["blessed"] is True


def test_promote_moves_the_champion_by_compare_and_set(trained, combined, tmp_path):
    model_dir, _ = trained
    root = str(tmp_path / "registry")
    first = _results((19, 20), (14, 20))
    d1 = decide_promotion(first, TH)
    out = stages.promote(root, "hex5", str(model_dir), first, d1, str(combined))
    assert out["promoted_version"] == "v1" and out["champion_before"] is None and out["first_generation"]
    reg = FileRegistry(root, "hex5")
    champ = reg.champion()
    assert champ.version == "v1" and champ.metrics["win_rate_vs_random"] == 0.95
    assert (
        json.loads((tmp_path / "registry/hex5/versions/v1/model/model.json").read_text())["board_config"]
        == "hex5_2p"
    )
    assert len(reg.example_ids("v1")) == 200  # the training games
    assert stages.champion(root, "hex5") == {"version": "v1", "model_dir": champ.model_uri}

    # not blessed: a recorded no-op
    weak = _results((30, 50), (20, 50), (10, 50), version="v1")
    noop = stages.promote(root, "hex5", str(model_dir), weak, decide_promotion(weak, TH))
    assert noop["promoted_version"] is None and noop["champion_after"] == "v1" and len(reg.versions()) == 1

    # blessed against v1, but the champion moved meanwhile: the CAS refuses
    good = _results((48, 50), (40, 50), (30, 50), version="v1")
    d = decide_promotion(good, TH)
    stages.promote(root, "hex5", str(model_dir), good, d)  # v2 becomes champion (expected v1)
    assert reg.champion().version == "v2"
    with pytest.raises(ChampionMoved) as lost:
        stages.promote(root, "hex5", str(model_dir), good, d)  # still expects v1
    assert reg.champion().version == "v2"
    assert lost.value.registered_version == "v3"  # registered, not promoted
