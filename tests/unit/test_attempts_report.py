"""The decision log and attempts in the report (escaped) and in `tuneloop run`'s summary table."""

from __future__ import annotations

from tuneloop.reports import render_evaluation
from tuneloop.runview import summary_table

RECORD = {"blessed": True, "reason": "blessed", "provider": "sklearn", "candidate_metrics": {"macro_f1": 0.74},
          "champion_metrics": None, "model_name": "intents"}
ATTEMPTS = [
    {"attempt": 1, "hyperparameters": {"min_df": 8}, "training_metrics": {"train_accuracy": 0.51},
     "candidate_metrics": {"macro_f1": 0.04}, "blessed": False, "reason": "macro_f1 0.04 < min 0.6",
     "retries": 0, "decision": "go"},
    {"attempt": 2, "hyperparameters": {"min_df": 2}, "training_metrics": {"train_accuracy": 1.0},
     "candidate_metrics": {"macro_f1": 0.74}, "blessed": True, "reason": "blessed", "retries": 1,
     "decision": "stop: blessed"},
]
HOSTILE = "<script>alert('x')</script>"
DECISIONS = [{"stage": "attempt", "decision": "attempt 2: min_df=2", "reasoning": f"underfit {HOSTILE}",
              "confidence": None, "inputs_hash": "sha256:" + "ab" * 32, "details": {"note": HOSTILE}}]


def test_the_report_shows_attempts_and_decisions_escaped():
    html = render_evaluation({**RECORD, "attempts": ATTEMPTS, "decisions": DECISIONS})
    assert 'id="attempts"' in html and 'id="decisions"' in html
    assert "min_df: 8" in html and "attempt 2: min_df=2" in html and "stop: blessed" in html
    assert HOSTILE not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html


def test_without_attempts_the_report_has_neither_section():
    html = render_evaluation(RECORD)
    assert 'id="attempts"' not in html and 'id="decisions"' not in html


def test_the_run_summary_lists_attempts_only_when_there_were_several():
    summary = {"run": "r", "provider": "sklearn", "candidate_metrics": {"macro_f1": 0.74},
               "decision": {"blessed": True, "reason": "blessed"}, "promoted_version": "v1"}
    several = summary_table({**summary, "attempts": ATTEMPTS})
    assert "attempt 1" in several and "min_df=8: not blessed; go" in several
    assert "min_df=2: blessed; stop: blessed" in several
    assert "attempt 1" not in summary_table({**summary, "attempts": ATTEMPTS[1:]})
