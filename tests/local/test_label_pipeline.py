"""label-examples under kfp.local against the OpenAI stand-in: the parameters as KFP passes them."""

from __future__ import annotations

import json
from pathlib import Path

from tuneloop.pipelines.label_examples import DEFAULT_LABELER

from tests.fakes import fixtures as stand_ins
from tests.local.conftest import run
from tests.unit.test_labeling import FAST, MODEL, SUPPORT, TEXTS, answer, rows
from tuneloop import decisions, labeling
from tuneloop.warehouse.base import duckdb_uri

openai_fake = stand_ins.openai_fake


def test_default_labeler_is_the_engine_default():
    assert DEFAULT_LABELER == labeling.DEFAULT_LABELER


def test_label_pipeline_labels_reviews_and_counts_malformed(openai_fake, tmp_path):
    openai_fake.add_labeler(MODEL, answer)
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    wh = duckdb_uri(str(tmp_path / "w.duckdb"))
    params = {
        "warehouse_uri": wh, "input_file": str(src), "labeler": f"openai:{MODEL}", "taxonomy": SUPPORT,
        "min_confidence": 0.5,  # 0.55 (logprob) passes now, 0.37 (self-reported 0.4, shrunk) does not
        "eval_options": {**FAST, "max_requests": 6},  # ints through KFP (6 -> 6.0) still parse
    }
    run("label-examples", params, tmp_path / "runs")
    labelled = sorted(r["label"] for r in rows(wh, "interactions"))
    assert labelled == ["invoice", "password_reset", "refund"]
    assert len(rows(wh, "label_review")) == 3  # low confidence, not a label, malformed
    [path] = list((tmp_path / "runs").rglob("decisions"))
    log = decisions.read(path)
    assert log[-1].details["unparseable"] == 2 and log[-1].details["labelled"] == 3
    summary = json.loads(next(Path(tmp_path / "runs").rglob("summary")).read_text())
    assert summary["requests"]["requests"] == 6


def test_label_pipeline_with_a_plain_label_list(openai_fake, tmp_path):
    openai_fake.add_labeler(MODEL, answer)
    src = tmp_path / "rows.csv"
    src.write_text("text\nI want my money back\nwhat is the weather\n")
    wh = duckdb_uri(str(tmp_path / "w.duckdb"))
    params = {"warehouse_uri": wh, "input_file": str(src), "labeler": f"openai:{MODEL}",
              "labels": [{"refund": "wants money back", "weather": "asks about the weather"}], "eval_options": FAST}
    run("label-examples", params, tmp_path / "runs")
    assert sorted(r["label"] for r in rows(wh, "interactions")) == ["refund", "weather"]
    assert "- weather: asks about the weather" in openai_fake.labelled[0]["system"]
