"""Zero-shot labelling against the OpenAI stand-in: log-probability and self-reported confidences, review rows,
malformed answers counted (never guessed), corrections back as source=corrected, re-runs insert nothing twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.fixtures import gcs, openai_fake, vertex_fake  # noqa: F401 - fixtures
from tuneloop import decisions, labeling
from tuneloop.config import ConfigError
from tuneloop.warehouse import open_warehouse
from tuneloop.warehouse.base import duckdb_uri

SUPPORT = str(Path(__file__).resolve().parents[1] / "testdata" / "taxonomy" / "support.yaml")
FAST = {"concurrency": 2, "retry": {"attempts": 2, "initial_s": 0.0, "max_s": 0.01}}
MODEL = "gpt-4.1-mini-2025-04-14"


def answer(text: str):
    """A deterministic labeller: (answer text, probability of its label tokens; None = no logprobs)."""
    if "money back" in text:
        return '{"label": "refund", "confidence": 0.9}', 0.97
    if "receipt" in text:
        return '{"label": "invoice", "confidence": 0.9}', 0.55  # logprob says unsure
    if "password" in text:
        return '{"label": "password_reset", "confidence": 0.95}', None  # self-reported only
    if "delete" in text:
        return '{"label": "close_account", "confidence": 0.4}', None  # self-reported, low
    if "weather" in text:
        return '{"label": "weather", "confidence": 0.99}', 0.99  # not a label
    return "I am not sure, it could be anything.", None  # malformed


TEXTS = ["I want my money back", "send me a receipt", "forgot my password", "please delete everything",
         "what is the weather", "hmm"]


@pytest.fixture
def setup(tmp_path, openai_fake):  # noqa: F811
    openai_fake.add_labeler(MODEL, answer)
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS) + "not json\n")
    return {"warehouse_uri": duckdb_uri(str(tmp_path / "w.duckdb")), "input_file": str(src),
            "examples_table": "interactions", "labeler": f"openai:{MODEL}", "taxonomy": SUPPORT,
            "min_confidence": 0.8, "eval_options": FAST, "log": lambda _: None}, openai_fake


def rows(uri, table):
    wh = open_warehouse(uri)
    try:
        return wh.query("SELECT * FROM {{t}} ORDER BY id", {}, identifiers={"t": table}).to_pylist()
    finally:
        wh.close()


def test_labels_file_rows_into_examples_and_review(tmp_path, setup):
    params, fake = setup
    out = labeling.label_examples(**params, decisions_path=str(tmp_path / "decisions.jsonl"))
    assert (out["rows"], out["labelled"], out["review"], out["unparseable"], out["refused_count"]) == (6, 2, 4, 2, 1)
    assert out["confidence_sources"] == {"logprob": 2, "self_reported": 2}
    assert all(r["logprobs"] and r["top_logprobs"] == labeling.TOP_LOGPROBS for r in fake.labelled)
    assert "- refund: The customer wants money back for an order." in fake.labelled[0]["system"]

    good = {r["label"]: r for r in rows(params["warehouse_uri"], "interactions")}
    assert set(good) == {"refund", "password_reset"}
    meta = json.loads(good["refund"]["meta"])
    assert good["refund"]["source"] == "synthetic" and meta["confidence_source"] == "logprob"
    assert meta["confidence"] == pytest.approx(0.97, abs=1e-4)
    pw = json.loads(good["password_reset"]["meta"])
    # self-reported 0.95 shrunk toward the prior of 4 labels: 0.8 * 0.95 + 0.2 / 4
    assert pw["confidence_source"] == "self_reported" and pw["confidence"] == pytest.approx(0.81)

    review = {json.loads(r["messages"])[0]["content"]: r for r in rows(params["warehouse_uri"], "label_review")}
    assert review["send me a receipt"]["proposed_label"] == "invoice"
    assert review["send me a receipt"]["reason"].startswith("low confidence: logprob 0.550")
    assert review["please delete everything"]["confidence"] == pytest.approx(0.8 * 0.4 + 0.05)
    assert review["what is the weather"]["proposed_label"] is None
    assert "'weather' is not one of the labels" in review["what is the weather"]["reason"]
    assert review["hmm"]["reason"].startswith("unparseable") and review["hmm"]["answer"].startswith("I am not sure")

    log = decisions.read(tmp_path / "decisions.jsonl")
    assert len(log) == 7 and all(d.stage == "label" for d in log)
    assert {d.decision for d in log[:-1]} >= {"label=refund", "review: unparseable", "review: proposed invoice"}
    assert log[-1].decision == "labelled 2, review 4" and log[-1].details["unparseable"] == 2


def test_rerun_inserts_nothing_twice_and_corrections_come_back_weighted(setup):
    params, fake = setup
    labeling.label_examples(**params)
    asked = len(fake.labelled)
    again = labeling.label_examples(**params)
    assert (again["already_done"], again["labelled"], again["review"]) == (6, 0, 0)
    assert len(fake.labelled) == asked  # nothing asked again
    assert len(rows(params["warehouse_uri"], "interactions")) == 2
    assert len(rows(params["warehouse_uri"], "label_review")) == 4

    wh = open_warehouse(params["warehouse_uri"])
    wh.query("UPDATE {{t}} SET corrected_label = 'invoice' WHERE proposed_label = 'invoice'", {}, identifiers={"t": "label_review"})
    wh.query("UPDATE {{t}} SET corrected_label = 'spam' WHERE proposed_label IS NULL", {}, identifiers={"t": "label_review"})
    wh.close()
    third = labeling.label_examples(**params)
    assert third["corrected"] == 1 and len(third["corrections_refused"]) == 2  # 'spam' is not a label
    corrected = [r for r in rows(params["warehouse_uri"], "interactions") if r["source"] == "corrected"]
    assert [(r["label"], r["weight"]) for r in corrected] == [("invoice", 2.0)]
    assert labeling.label_examples(**params)["corrected"] == 0  # not loaded twice


def test_request_cap_refuses_before_sending(setup):
    params, fake = setup
    from tuneloop.providers.hosted import RequestCapReached

    with pytest.raises(RequestCapReached, match="nothing was sent"):
        labeling.label_examples(**{**params, "eval_options": {**FAST, "max_requests": 3}})
    assert fake.labelled == []


def test_warehouse_source_rows_with_null_labels(tmp_path, setup):
    params, _ = setup
    from tuneloop.examples import classification_example, make_example
    from tuneloop.warehouse.base import example_to_row

    wh = open_warehouse(params["warehouse_uri"])
    wh.ensure_table("raw")
    wh.insert_rows("raw", [example_to_row(make_example([{"role": "user", "content": "I want my money back"}])),
                           example_to_row(classification_example("already labelled receipt", "invoice"))])
    wh.close()
    out = labeling.label_examples(**{**params, "input_file": "", "source_table": "raw"})
    assert (out["rows"], out["labelled"]) == (1, 1)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"labeler": "openai"}, "must be 'PROVIDER:MODEL'"),
        ({"labeler": "sklearn:x"}, "does not declare chat"),
        ({"labeler": "opnai:x"}, "labeler"),
        ({"min_confidence": 1.5}, "min_confidence=1.5"),
        ({"labels": ["a"]}, "both set"),
        ({"taxonomy": ""}, "no label set"),
        ({"source_table": "raw"}, "give exactly one"),
        ({"eval_options": {"concurency": 2}}, "concurrency"),
    ],
)
def test_bad_parameters_are_refused_before_any_request(setup, change, message):
    params, fake = setup
    with pytest.raises((ConfigError, ValueError), match=message):
        labeling.label_examples(**{**params, **change})
    assert fake.labelled == []


def test_parse_answer_never_guesses():
    names = ["refund", "invoice", "password_reset"]
    assert labeling.parse_answer('```json\n{"label": "Password-Reset", "confidence": 0.7}\n```', names).label == "password_reset"
    assert labeling.parse_answer("invoice", names).label == "invoice"
    assert labeling.parse_answer("refund or invoice", names).label is None
    assert labeling.parse_answer('{"label": "refund", "confidence": 7}', names).stated is None
    assert labeling.parse_answer('{"label": ', names).reason.startswith("answer is not valid JSON")


def test_gemini_on_vertex_labels_with_logprobs(tmp_path, vertex_fake):  # noqa: F811
    """The documented default: Gemini on Vertex, asked with responseLogprobs; confidence from the label tokens."""
    vertex_fake.add_labeler("gemini-2.5-flash", answer)
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    wh = duckdb_uri(str(tmp_path / "w.duckdb"))
    out = labeling.label_examples(warehouse_uri=wh, input_file=str(src), examples_table="interactions",
                                  taxonomy=SUPPORT, eval_options=FAST, log=lambda _: None)  # default labeler
    assert out["labeler"] == labeling.DEFAULT_LABELER == "gemini:gemini-2.5-flash"
    assert (out["labelled"], out["review"], out["unparseable"]) == (2, 4, 2)
    assert out["confidence_sources"] == {"logprob": 2, "self_reported": 2}
    assert all(r["logprobs"] and r["top_logprobs"] == labeling.TOP_LOGPROBS for r in vertex_fake.labelled)
    assert "- invoice: The customer asks for an invoice or a receipt." in vertex_fake.labelled[0]["system"]
    refund = next(r for r in rows(wh, "interactions") if r["label"] == "refund")
    assert json.loads(refund["meta"])["confidence"] == pytest.approx(0.97, abs=1e-4)
