"""Evaluation with a taxonomy against the OpenAI stand-in: the model is asked with the label descriptions as
its system turn, and the metrics gain per-domain roll-ups for candidate and champion."""

from __future__ import annotations

import json

import pytest

from tests.fakes.data import KEYWORDS
from tests.unit.hosted.conftest import FAST_PREDICT
from tuneloop import stages

TAXONOMY = """
domains:
  money:
    labels:
      billing: Invoices, charges, payments and refunds.
      cancellation: Ending a subscription or an account.
  help:
    labels:
      account: Logging in and account settings.
      technical: Crashes, errors and bugs.
  delivery:
    labels:
      shipping: Parcels and deliveries.
"""
MODEL = "ft:gpt-4.1-mini-2025-04-14:labels"


def keyword_labeler(text: str):
    """Knows billing/account/technical by keyword; calls shipping 'account' (wrong domain) and cancellation
    'billing' (wrong label, right domain). Bare labels, no log-probabilities (evaluation parses the text)."""
    for label in ("billing", "account", "technical"):
        if any(k in text for k in KEYWORDS[label]):
            return label, None
    if any(k in text for k in KEYWORDS["shipping"]):
        return "account", None
    return "billing", None


def test_evaluate_asks_with_descriptions_and_rolls_up_domains(openai_fake, dataset, tmp_path):  # noqa: F811
    openai_fake.add_labeler(MODEL, keyword_labeler)
    tax = tmp_path / "taxonomy.yaml"
    tax.write_text(TAXONOMY)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / stages.RESULT_CARD).write_text(json.dumps({"model_ref": MODEL}))
    r = stages.evaluate(
        provider="openai", model_dir=str(model_dir), dataset_uri=dataset.uri, registry_uri=str(tmp_path / "reg"),
        model_name="m", thresholds={"min_values": {"accuracy": 0.1}}, blessing_path=str(tmp_path / "b.json"),
        eval_options=FAST_PREDICT, taxonomy=str(tax),
    )
    assert openai_fake.labelled and all("- billing: Invoices, charges, payments and refunds." in q["system"]
                                        for q in openai_fake.labelled)
    m = r["candidate_metrics"]
    rows = dataset.splits["eval"]
    truth = [e.label for e in rows]
    money = sum(t in ("billing", "cancellation") for t in truth)
    assert m["domains"]["money"]["support"] == money
    assert m["domain_accuracy.money"] == pytest.approx(1.0)  # cancellation->billing stays in its domain
    assert m["accuracy"] < m["domain_accuracy.money"]
    ship = sum(t == "shipping" for t in truth)
    helped = sum(t in ("account", "technical") for t in truth)
    assert m["domain_accuracy.delivery"] == 0.0 and m["domain_f1.delivery"] == 0.0  # shipping->account: other domain
    assert m["domain_accuracy.help"] == pytest.approx(1.0)
    # help: every help row right, plus the shipping rows as false positives
    assert m["domain_f1.help"] == pytest.approx(2 * helped / (2 * helped + ship))
    assert r["scalar_metrics"]["domain_f1.money"] == pytest.approx(1.0)
