"""The taxonomy parameter under kfp.local: checked by the first task, off-taxonomy rows quarantined at export
naming the closest label, descriptions in the rendered system turn, per-domain metrics in the summary."""

from __future__ import annotations

import json

import pytest

from tests.local.conftest import run, summaries

TAXONOMY = """
name: demo-support
domains:
  billing:
    labels:
      billing_refund: The customer wants money back.
      payment_failed: A payment did not go through.
      upgrade_plan: The customer wants a bigger plan.
      cancel_subscription: The customer wants to stop paying.
  account:
    labels:
      password_reset: The customer cannot log in.
      change_address: The customer moved.
      account_delete: The customer wants the account removed.
  product:
    labels:
      shipping_status: Where is my order.
      technical_bug: Something in the product is broken.
"""  # greeting_smalltalk is left out: those rows must be quarantined, not trained on


def _check_dataset(datasets_dir):
    [ds] = (datasets_dir / "datasets").glob("*/")
    manifest = json.loads((ds / "manifest.json").read_text())
    assert "greeting_smalltalk" not in manifest["labels"] and "billing_refund" in manifest["labels"]
    quarantined = [json.loads(x) for x in next(ds.rglob("quarantine*.jsonl")).read_text().splitlines()]
    off = [q for q in quarantined if "not in the taxonomy" in q["reason"]]
    assert off and all(q["row"]["label"] == "greeting_smalltalk" and "closest valid label is '" in q["reason"]
                       for q in off)
    first = json.loads((ds / "openai" / "train.jsonl").read_text().splitlines()[0])
    assert "- billing_refund: The customer wants money back." in first["messages"][0]["content"]


def test_export_dataset_quarantines_off_taxonomy_rows(loop_env, tmp_path):
    tax = tmp_path / "taxonomy.yaml"
    tax.write_text(TAXONOMY)
    p = loop_env["params"]
    params = {"warehouse_uri": p["warehouse_uri"], "dataset_root": p["dataset_root"], "taxonomy": str(tax),
              "formats": "openai"}
    run("export-dataset", params, loop_env["root"])
    _check_dataset(loop_env["reports"].parent / "datasets")


@pytest.mark.slow  # ~20-35 s: the whole loop (export, check, claim, tune, evaluate, promote) under kfp.local
def test_continuous_tuning_with_a_taxonomy(loop_env, tmp_path):
    tax = tmp_path / "taxonomy.yaml"
    tax.write_text(TAXONOMY)
    params = {**loop_env["params"], "taxonomy": str(tax), "formats": "openai"}
    run("continuous-tuning", params, loop_env["root"])
    [summary] = summaries(loop_env["reports"])
    m = summary["candidate_metrics"]
    assert set(m["domains"]) == {"billing", "account", "product"}
    assert 0 < m["domain_f1.billing"] <= 1 and m["domain_accuracy.account"] >= m["accuracy"] - 1e-9
    _check_dataset(loop_env["reports"].parent / "datasets")


def test_a_broken_taxonomy_fails_the_first_task_naming_the_field(loop_env, tmp_path):
    tax = tmp_path / "taxonomy.yaml"
    tax.write_text("domains:\n  a:\n    labels: {x: one}\n  b:\n    labels: {x: two}\n")
    with pytest.raises(RuntimeError) as info:
        run("tune-and-promote", {"dataset_uri": str(tmp_path / "none"), "registry_uri": str(tmp_path / "reg"),
                                 "taxonomy": str(tax)}, loop_env["root"])
    assert "label 'x' is under domains.a and domains.b" in str(info.value)
