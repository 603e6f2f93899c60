"""Taxonomy files: parsed once into a frozen object, broken files refused naming the field; export quarantine
names the closest label; per-domain metrics roll labels up to their domain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneloop import examples as ex
from tuneloop import taxonomy as tx

SUPPORT = str(Path(__file__).resolve().parents[1] / "testdata" / "taxonomy" / "support.yaml")


def write(tmp_path, text: str, name: str = "t.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_load_yaml_and_json_give_the_same_frozen_taxonomy(tmp_path):
    t = tx.load(SUPPORT)
    assert t.names == ["refund", "invoice", "password_reset", "close_account"]
    assert t.domain_of("invoice") == "billing" and t.domain_of("close_account") == "account"
    assert t.domain_of("nope") is None
    as_json = write(tmp_path, json.dumps(t.to_dict()), "t.json")
    again = tx.load(as_json)
    assert again.labels == t.labels and again.domains == t.domains
    with pytest.raises(AttributeError):
        t.name = "other"  # frozen
    assert tx.load("") is None


@pytest.mark.parametrize(
    "text, field, fix",
    [
        ("domains:\n  a:\n    labels: {x: one}\n  b:\n    labels: {x: two}\n", "domains.b", "one domain"),
        ("domains:\n  a:\n    labels: {x: '  '}\n", "domains.a.labels.x", "is empty"),
        ("domains:\n  a:\n    lables: {x: one}\n", "domains.a", "did you mean 'labels'"),
        ("domain:\n  a: {labels: {x: one}}\n", "top level", "did you mean 'domains'"),
        ("domains:\n  a:\n    labels: {x: 3}\n", "domains.a.labels.x", "must be text"),
        ("domains:\n  a:\n    labels: [x, y]\n", "domains.a.labels", "mapping of label -> description"),
        ("domains:\n  a:\n    labels: {x: {description: one, colour: red}}\n", "domains.a.labels.x", "unknown key 'colour'"),
        ("- a\n- b\n", "mapping with 'domains'", "got list"),
        ("domains: {a: {labels: {x: one}}\n", "not valid YAML", ""),
    ],
)
def test_broken_files_are_refused_naming_the_field(tmp_path, text, field, fix):
    uri = write(tmp_path, text)
    with pytest.raises(tx.TaxonomyError) as err:
        tx.load(uri)
    assert field in str(err.value) and fix in str(err.value) and uri in str(err.value)


def test_missing_file_names_the_parameter(tmp_path):
    with pytest.raises(tx.TaxonomyError, match=r"taxonomy=.*no such file"):
        tx.load(str(tmp_path / "absent.yaml"))


def _extract_files(tmp_path, rows):
    examples_path, quarantine_path = str(tmp_path / "examples.parquet"), str(tmp_path / "quarantine.jsonl")
    ex.write_parquet(examples_path, rows)
    Path(quarantine_path).write_text('{"row": {"id": "x"}, "reason": "messages: earlier"}\n')
    return examples_path, quarantine_path


def test_export_quarantines_unknown_labels_naming_the_closest_and_keeps_the_rest(tmp_path):
    rows = [
        ex.classification_example("money back please", "refund"),
        ex.classification_example("send me a receipt", "invoise"),  # a typo of invoice
        ex.classification_example("delete me", "close_acount"),
        ex.make_example([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]),  # chat: kept
    ]
    examples_path, quarantine_path = _extract_files(tmp_path, rows)
    assert tx.quarantine_unknown(examples_path, quarantine_path, SUPPORT) == 2
    kept = ex.read_parquet(examples_path)
    assert sorted(e.id for e in kept) == sorted([rows[0].id, rows[3].id])
    lines = [json.loads(x) for x in Path(quarantine_path).read_text().splitlines()]
    assert lines[0]["reason"] == "messages: earlier"  # what the extract quarantined stays
    reasons = {ln["row"]["label"]: ln["reason"] for ln in lines[1:]}
    assert "closest valid label is 'invoice'" in reasons["invoise"]
    assert "closest valid label is 'close_account'" in reasons["close_acount"]
    assert ex.Example.from_dict(lines[1]["row"]).id in {rows[1].id, rows[2].id}  # the whole record is kept
    assert tx.quarantine_unknown(examples_path, quarantine_path, "") == 0


def test_system_prompt_carries_the_descriptions():
    text = tx.system_prompt("You are a support classifier.", SUPPORT)
    assert text.startswith("You are a support classifier.")
    assert "- refund: The customer wants money back for an order." in text and "account:" in text
    assert tx.system_prompt("base", "") == "base"


def test_domain_metrics_roll_labels_up():
    t = tx.load(SUPPORT)
    truth = ["refund", "invoice", "refund", "password_reset", "close_account", "password_reset"]
    # invoice->refund is wrong as a label but right as a domain; password_reset->refund is wrong both ways
    pred = ["refund", "refund", None, "password_reset", "close_account", "refund"]
    m = tx.domain_metrics(truth, pred, t)
    assert m["domain_accuracy.billing"] == pytest.approx(2 / 3)
    assert m["domain_accuracy.account"] == pytest.approx(2 / 3)
    # billing: tp 2, fp 1 (password_reset->refund), fn 1 (None) -> f1 2/3; account: tp 2, fp 0, fn 1 -> 0.8
    assert m["domain_f1.billing"] == pytest.approx(2 / 3)
    assert m["domain_f1.account"] == pytest.approx(0.8)
    assert m["domain_macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert m["domains"]["billing"]["support"] == 3
