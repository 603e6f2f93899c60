"""Records the report tests render: built with the evaluator's own functions, hostile text included.

``XSS`` is the payload every record carries somewhere a user's text goes (a label, a reply, a
reason, a rubric): a report must show it as text.
"""

from __future__ import annotations

from typing import Any

XSS = "<script>alert(1)</script>"
ESCAPED_XSS = "&lt;script&gt;alert(1)&lt;/script&gt;"


def classification_record(*, with_champion: bool = True) -> dict[str, Any]:
    """A blessing record as ``stages.evaluate`` writes it, from real metrics on 3 labels.

    F1 per label, champion -> candidate: billing 0.33 -> 0.89 (moved most), ``XSS`` 0.75 -> 1.00, refund
    0.80 -> 0.67 (the one that got worse); ``XSS`` is a label.
    """
    from tuneloop.evaluation import Thresholds, compute_metrics, decide, mcnemar

    labels = ["billing", "refund", XSS]
    truth = ["billing"] * 4 + ["refund"] * 4 + [XSS] * 4
    cand = ["billing"] * 4 + ["refund", "refund", "billing", None] + [XSS] * 4
    champ = ["billing", "refund", "refund", XSS] + ["refund"] * 4 + [XSS, XSS, XSS, "billing"]
    cm = compute_metrics(truth, cand, labels)
    hm = compute_metrics(truth, champ, labels) if with_champion else None
    paired = mcnemar(truth, champion=champ, candidate=cand) if with_champion else None
    blessing = decide(cm, hm, Thresholds.from_dict({"min_values": {"macro_f1": 0.5}}),
                      champion_version="v3" if with_champion else None, paired=paired)
    return {
        **blessing.to_dict(),
        "provider": "openai",
        "model_name": "support-intent",
        "task": "classification",
        "dataset_uri": "/data/datasets/abc",
        "dataset_hash": "abc123def4567890",
        "eval_rows": len(truth),
        "paired_test": paired,
        "unparseable_examples": [f"I think {XSS}"],
        "dataset": {
            "uri": "/data/datasets/abc", "hash": "abc123def4567890", "counts": {"train": 80, "validation": 8,
                                                                                  "eval": 12},
            "total": 100, "new_examples": 37, "quarantined_at_extract": 5, "superseded_by_corrections": 2,
            "extract_reasons": [["label: empty; give every row a label", 3], [f"text: {XSS} is not allowed", 2]],
            "formats": {"openai": {"quarantined": 1, "top_reasons": [["messages[i].content: empty", 1]]}},
        },
        "spend": {
            "hosted": True, "job_id": "ftjob-123", "trained_tokens": 41230,
            "preflight": {"provider": "openai", "base_model": "gpt-4.1-mini-2025-04-14", "examples": 80,
                          "training_tokens": 13744, "estimated_cost_usd": 0.1237,
                          "notes": ["estimated cost $0.1237 within budget $5.00"]},
            "predict": {"candidate": {"requests": 14, "answers": 12, "failed": 0, "errors": []},
                        "champion": {"requests": 12, "answers": 12, "failed": 0, "errors": []}},
        },
    }


def chat_blessing(n_samples: int = 25) -> dict[str, Any]:
    """A chat blessing as the chat evaluator is to write it (issue 10, point 4): the keys the report reads."""
    per_row = []
    for i in range(30):
        per_row.append({"id": f"row-{i}", "candidate": {"chrf": 30.0 + i, "rouge_l": 0.2 + i / 100},
                        "champion": {"chrf": 28.0 + i * 0.5, "rouge_l": 0.25}})
    samples = []
    for i in range(n_samples):
        samples.append({
            "id": f"game-{i}-seat-2",
            "prompt": [{"role": "system", "content": "You are a player in a social-deduction game."},
                       {"role": "user", "content": f"Mara: who voted for {XSS}?"}],
            "reference": "not me, I was typing lol",
            "candidate": f"not me!! {XSS}" if i == 0 else f"candidate reply {i}",
            "champion": f"champion reply {i}",
            "verdicts": {"candidate_first": "A", "champion_first": "B"},
            "outcome": "win" if i % 3 else "inconsistent",
        })
    return {
        "blessed": False,
        "reason": "not blessed: judge win rate 0.583, one-sided 95% lower bound 0.421 < 0.5 - 0.05 = 0.450",
        "task": "chat",
        "provider": "oss-lora",
        "model_name": "impostor-chat",
        "champion_version": "v7",
        "dataset_uri": "/data/datasets/chat",
        "dataset_hash": "c0ffee",
        "eval_rows": 30,
        "checks": [{"metric": "chrf", "kind": "min", "candidate": 44.5, "bound": 30.0, "passed": True}],
        "candidate_metrics": {"chrf": 44.5, "rouge_l": 0.345, "win_rate": 0.583, "n": 30},
        "champion_metrics": {"chrf": 35.25, "rouge_l": 0.25, "n": 30},
        "per_row": per_row,
        "judge": {"judge": "openai/gpt-4.1-mini", "win": 14, "tie": 3, "loss": 7, "inconsistent": 5, "malformed": 1,
                  "win_rate": 0.583, "lower_bound": 0.421, "bar": 0.45,
                  "rubric": f"Which reply reads more like a human player? {XSS}"},
        "samples": samples,
    }


def gauntlet_inputs(*, registered: bool = True) -> tuple[dict, dict, list[dict]]:
    """Gauntlet results, the promote step's summary and the registry's versions (3 generations before)."""
    cfg = {"games": 40, "min_games": 10, "sprt_alpha": 0.05, "sprt_beta": 0.05, "sprt_delta": 0.05}

    def pairing(name, wins, draws, losses, lo, hi, target, stopped):
        n = wins + draws + losses
        return {"opponent": name, "games": n, "wins": wins, "draws": draws, "losses": losses,
                "score": wins + draws / 2, "win_rate": (wins + draws / 2) / n, "ci_low": lo, "ci_high": hi,
                "target": target, "sprt_llr": 3.1 if stopped else 0.4, "sprt": "above" if stopped else "undecided",
                "stopped_early": stopped}

    results = {
        "config_name": "hex5_2p",
        "pairings": {"random": pairing("random", 19, 0, 1, 0.76, 0.99, 0.85, True),
                     "heuristic": pairing("heuristic", 22, 2, 16, 0.43, 0.72, 0.60, False),
                     "previous_best": pairing("previous_best", 21, 0, 19, 0.37, 0.67, 0.45, False)},
        "elo": {"candidate": 412.0, "random": 0.0, "heuristic": 371.0, "previous_best": 395.0},
        "first_generation": False,
        "config": cfg,
        "previous_best_version": "v3",
    }
    checks = [{"pairing": "random", "score": 0.95, "threshold": 0.85, "games": 20, "passed": True},
              {"pairing": "heuristic", "score": 0.575, "threshold": 0.60, "games": 40, "passed": False},
              {"pairing": "previous_best", "score": 0.525, "threshold": 0.45, "games": 40, "passed": True}]
    blessed = registered
    summary = {
        "run": "selfplay-training-xyz", "board_config": "hex5_2p", "champion_evaluated": "v3",
        "training_set": {"num_games": 1200, "num_positions": 30111, "generation": 3, "fallback": False},
        "decision": {"blessed": blessed, "checks": checks,
                     "reason": "blessed: ..." if blessed else f"not blessed: too weak against heuristic {XSS}"},
        "registered_version": "v4" if registered else None,
        "promoted_version": "v4" if registered else None,
        "champion_after": "v4" if registered else "v3",
    }
    versions = [{"version": f"v{g}", "config": {"generation": g},
                 "metrics": {"elo_candidate": 150.0 * g, "elo_heuristic": 370.0, "win_rate_vs_random": 0.9}}
                for g in (1, 2, 3)]
    if registered:
        versions.append({"version": "v4", "config": {"generation": 4},
                         "metrics": {"elo_candidate": 412.0, "elo_heuristic": 371.0}})
    return results, summary, versions
