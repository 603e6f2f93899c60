"""Answer parsing, metrics, the paired test and the blessing decision (every branch)."""

from __future__ import annotations

import math

import pytest

from tuneloop.evaluation import (
    METRIC_KEYS,
    Blessing,
    Thresholds,
    compute_metrics,
    decide,
    mcnemar,
    parse_label,
)

INTENTS = ["billing", "shipping", "account", "refund", "refund_status"]


# -- parse_label ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("billing", "billing"),
        ("  Billing.\n", "billing"),
        ('"SHIPPING"', "shipping"),
        ("`account`!", "account"),
        ("label: refund", "refund"),
        ("Intent: Refund Status", "refund_status"),
        ("The intent is: shipping.", "shipping"),
        ("category = account", "account"),
        ("refund-status", "refund_status"),
        ("billing\nThe customer mentions an invoice that was charged twice.", "billing"),
        ("Reasoning first.\nIntent: account", "account"),
        ("This looks like a shipping question to me.", "shipping"),
        ("The customer asks about refund status.", "refund_status"),  # 'refund' inside it is not a 2nd label
        ("Either billing or shipping, hard to say.", None),
        ("I don't know.", None),
        ("", None),
        (None, None),
        ("billingshipping", None),
    ],
)
def test_parse_label(answer, expected):
    assert parse_label(answer, INTENTS) == expected


def test_parse_label_returns_the_label_as_spelled_in_the_label_set():
    assert parse_label("complaint", ["Complaint", "Praise"]) == "Complaint"


def test_parse_label_rejects_labels_that_collide_after_normalising():
    with pytest.raises(ValueError, match="same label"):
        parse_label("x", ["refund_status", "Refund Status"])


# -- compute_metrics ------------------------------------------------------------------------------


def test_compute_metrics_counts_unparseable_as_wrong():
    y_true = ["a", "a", "b", "b", "c"]
    y_pred = ["a", "b", "b", None, "c"]
    m = compute_metrics(y_true, y_pred, ["a", "b", "c"])
    # a: P 1/1 R 1/2 F 2/3; b: P 1/2 R 1/2 F 1/2; c: P 1 R 1 F 1 (worked by hand).
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_label"]["a"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["per_label"]["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["macro_precision"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["macro_recall"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert m["weighted_f1"] == pytest.approx((2 * 2 / 3 + 2 * 0.5 + 1 * 1) / 5)
    assert m["unparseable"] == 1 and m["n"] == 5
    assert m["confusion_matrix"] == {
        "labels": ["a", "b", "c"],
        "rows": [[1, 1, 0], [0, 1, 0], [0, 0, 1]],
        "unparseable": [0, 1, 0],
    }
    assert set(METRIC_KEYS) <= set(m)


def test_a_prediction_outside_the_label_set_is_unparseable():
    m = compute_metrics(["a", "b"], ["a", "zzz"], ["a", "b"])
    assert m["unparseable"] == 1 and m["accuracy"] == 0.5


@pytest.mark.parametrize(
    ("y_true", "y_pred", "labels", "match"),
    [
        (["a"], ["a", "b"], ["a", "b"], "same eval rows"),
        ([], [], ["a"], "no rows"),
        (["a", "x"], ["a", "a"], ["a", "b"], r"\['x'\] not in labels"),
        (["a"], ["a"], ["a", "a"], "distinct"),
    ],
)
def test_compute_metrics_refuses_bad_input(y_true, y_pred, labels, match):
    with pytest.raises(ValueError, match=match):
        compute_metrics(y_true, y_pred, labels)


# -- mcnemar --------------------------------------------------------------------------------------


def test_mcnemar_exact_branch():
    y = ["a"] * 10
    a = ["a"] * 10  # right everywhere
    b = ["a"] * 5 + ["b"] * 4 + [None]  # wrong on the last 5
    r = mcnemar(y, champion=a, candidate=b)
    assert (r["b"], r["c"], r["both_right"], r["both_wrong"]) == (5, 0, 5, 0)
    assert (r["only_champion_right"], r["only_candidate_right"]) == (5, 0)
    assert r["method"] == "exact binomial"
    assert r["p_value"] == pytest.approx(2 * 0.5**5)


def test_mcnemar_chi_square_branch_is_symmetric():
    y = ["a"] * 60
    a = ["a"] * 30 + ["b"] * 10 + ["a"] * 20
    b = ["b"] * 30 + ["a"] * 10 + ["a"] * 20
    r = mcnemar(y, champion=a, candidate=b)
    assert (r["b"], r["c"], r["both_right"]) == (30, 10, 20)
    assert r["method"] == "chi-square with continuity correction"
    stat = (abs(30 - 10) - 1) ** 2 / 40
    assert r["statistic"] == pytest.approx(stat)
    assert r["p_value"] == pytest.approx(math.erfc(math.sqrt(stat / 2)))  # chi2(1) survival function
    swapped = mcnemar(y, champion=b, candidate=a)
    assert (swapped["b"], swapped["c"]) == (10, 30) and swapped["p_value"] == pytest.approx(r["p_value"])


def test_mcnemar_identical_models():
    r = mcnemar(["a", "b"], champion=["a", "a"], candidate=["a", "a"])
    assert r["p_value"] == 1.0 and r["b"] == r["c"] == 0


def test_mcnemar_needs_paired_rows():
    with pytest.raises(ValueError, match="same rows"):
        mcnemar(["a", "b"], champion=["a"], candidate=["a", "b"])


# -- Thresholds -----------------------------------------------------------------------------------


def test_thresholds_default_is_the_support_intent_rule():
    t = Thresholds()
    assert t.to_dict() == {"min_values": {}, "max_drop": {"macro_f1": 0.05}}
    assert Thresholds.from_json('{"min_values": {"accuracy": 0.8}}').to_dict() == {
        "min_values": {"accuracy": 0.8},
        "max_drop": {"macro_f1": 0.05},
    }
    assert Thresholds.from_dict(t.to_dict()) == t


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"min_values": {"f1": 0.7}}', "'f1' is not a metric"),
        ('{"max_drop": {"macro_f1": 1.5}}', r"max_drop\['macro_f1'\]=1.5 must be a number in \[0, 1\]"),
        ('{"min_values": {"macro_f1": true}}', "must be a number"),
        ('{"min_value": {"macro_f1": 0.7}}', "unknown key"),
        ("macro_f1 >= 0.7", "not valid JSON"),
        ("[1]", "must be an object"),
    ],
)
def test_thresholds_refuse_bad_config(text, match):
    with pytest.raises(ValueError, match=match):
        Thresholds.from_json(text)


# -- decide: every branch, candidate and champion always differ ---------------------------------------------


def metrics(macro_f1: float, accuracy: float, n: int = 200) -> dict:
    return {"macro_f1": macro_f1, "accuracy": accuracy, "n": n}


BOTH = Thresholds(min_values={"macro_f1": 0.7}, max_drop={"macro_f1": 0.05})


@pytest.mark.parametrize("thresholds", [None, Thresholds(min_values={}, max_drop={})])
@pytest.mark.parametrize("champion", [None, metrics(0.61, 0.64)])
def test_no_thresholds_blesses_nothing(thresholds, champion):
    b = decide(metrics(0.95, 0.97), champion, thresholds, champion_version="v1")
    assert not b.blessed
    assert "no thresholds configured" in b.reason
    assert b.checks == ()


def test_first_run_passing_value_thresholds_is_blessed():
    b = decide(metrics(0.812, 0.85), None, BOTH)
    assert b.blessed and b.first_run
    assert "no champion: judged on value thresholds alone" in b.reason
    assert "macro_f1 0.812 >= min 0.700" in b.reason
    assert [c["kind"] for c in b.checks] == ["min"]  # the change threshold is not applied
    assert b.champion_metrics is None


def test_first_run_below_value_threshold_is_not_blessed():
    b = decide(metrics(0.65, 0.9), None, BOTH)
    assert not b.blessed and b.first_run
    assert "macro_f1 0.650 < min 0.700" in b.reason


def test_first_run_with_change_thresholds_only_becomes_the_baseline():
    b = decide(metrics(0.42, 0.5), None, Thresholds())
    assert b.blessed and b.first_run
    assert "no champion: judged on value thresholds alone" in b.reason and "baseline" in b.reason


def test_small_drop_within_allowance_is_blessed_and_reason_names_both_numbers():
    b = decide(metrics(0.812, 0.80), metrics(0.830, 0.84), BOTH, champion_version="v1")
    assert b.blessed and not b.first_run
    assert "macro_f1 0.812 >= min 0.700" in b.reason
    assert "macro_f1 0.812 >= champion v1 0.830 - 0.050 = 0.780" in b.reason
    drop = next(c for c in b.checks if c["kind"] == "max_drop")
    assert drop["candidate"] == 0.812 and drop["bound"] == pytest.approx(0.78)
    assert b.candidate_metrics["macro_f1"] == 0.812 and b.champion_metrics["macro_f1"] == 0.830
    assert b.champion_version == "v1"


def test_drop_beyond_allowance_is_not_blessed_even_above_the_minimum():
    b = decide(metrics(0.76, 0.80), metrics(0.83, 0.84), BOTH, champion_version="v1")
    assert not b.blessed
    assert "macro_f1 0.760 < champion v1 0.830 - 0.050 = 0.780" in b.reason
    assert [c["passed"] for c in b.checks] == [True, True, False]  # min, same_rows n, max_drop


def test_champion_metrics_come_from_the_champion_not_the_candidate():
    """The Vertex-sample bug: reading the champion's numbers from the challenger blesses everything."""
    weak, strong = metrics(0.71, 0.75), metrics(0.90, 0.92)
    assert not decide(weak, strong, BOTH, champion_version="v3").blessed
    assert decide(strong, weak, BOTH, champion_version="v3").blessed
    check = next(c for c in decide(weak, strong, BOTH).checks if c["kind"] == "max_drop")
    assert check["bound"] == pytest.approx(0.90 - 0.05)


def test_better_candidate_below_the_minimum_is_not_blessed():
    b = decide(metrics(0.66, 0.7), metrics(0.50, 0.55), BOTH, champion_version="v2")
    assert not b.blessed
    assert "macro_f1 0.660 < min 0.700" in b.reason
    assert "macro_f1 0.660 >= champion v2 0.500 - 0.050 = 0.450" in b.reason


def test_exact_boundary_passes_despite_float_rounding():
    # 0.83 - 0.05 is 0.7800000000000001 in binary floating point.
    assert decide(metrics(0.78, 0.8), metrics(0.83, 0.84), Thresholds()).blessed


def test_every_configured_metric_must_pass():
    t = Thresholds(min_values={"accuracy": 0.8}, max_drop={"macro_f1": 0.05, "accuracy": 0.0})
    b = decide(metrics(0.85, 0.81), metrics(0.84, 0.83), t, champion_version="v4")
    assert not b.blessed
    assert "accuracy 0.810 < champion v4 0.830 - 0.000 = 0.830" in b.reason


def test_different_eval_rows_are_not_compared():
    b = decide(metrics(0.9, 0.9, n=180), metrics(0.8, 0.8, n=200), BOTH, champion_version="v1")
    assert not b.blessed
    assert "not the same eval rows" in b.reason
    cand = {**metrics(0.9, 0.9), "eval_hash": "aaa"}
    champ = {**metrics(0.8, 0.8), "eval_hash": "bbb"}
    assert not decide(cand, champ, BOTH).blessed


def test_value_thresholds_alone_do_not_compare_rows_with_the_champion():
    only_min = Thresholds(min_values={"macro_f1": 0.7}, max_drop={})
    b = decide(metrics(0.75, 0.8, n=180), metrics(0.95, 0.96, n=200), only_min, champion_version="v1")
    assert b.blessed and not b.first_run
    assert [c["kind"] for c in b.checks] == ["min"]
    assert b.reason == (
        "blessed: champion v1 not compared (no max_drop thresholds configured); macro_f1 0.750 >= min 0.700"
    )


def test_missing_metric_fails_closed_and_says_what_to_do():
    b = decide(metrics(0.9, 0.9), {"accuracy": 0.8, "n": 200}, BOTH, champion_version="v1")
    assert not b.blessed
    assert "champion v1 has no macro_f1" in b.reason and "re-evaluate the champion" in b.reason
    b = decide({"accuracy": 0.9}, None, BOTH)
    assert not b.blessed and "candidate has no macro_f1" in b.reason


def test_paired_test_is_recorded_and_quoted():
    paired = {"b": 3, "c": 11, "p_value": 0.0574, "method": "exact binomial"}
    b = decide(metrics(0.85, 0.86), metrics(0.80, 0.81), BOTH, champion_version="v1", paired=paired)
    assert b.blessed and b.paired == paired
    assert "McNemar p=0.0574 (b=3, c=11" in b.reason


def test_blessing_round_trips_through_a_dict():
    b = decide(metrics(0.85, 0.86), metrics(0.80, 0.81), BOTH, champion_version="v1")
    assert Blessing.from_dict(b.to_dict()).to_dict() == b.to_dict()
