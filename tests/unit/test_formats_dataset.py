"""format_dataset: split files, quarantine, the too-few failure, reports, stable splits."""

from __future__ import annotations

import json
import random

import pytest

from tuneloop.examples import make_example, split_examples, split_of
from tuneloop.formats import (
    QUARANTINE_FILE,
    REPORT_FILE,
    SPLIT_FILES,
    Limits,
    TooFewExamplesError,
    format_dataset,
    get_format,
)
from tuneloop.formats.hf import HFFormat

SYSTEM = "You are Nova, Brightline's support bot."


def support(i: int, *, double_user: bool = False, source: str = "live"):
    turns = [{"role": "user", "content": f"Where is order #{100000 + i}?"}]
    if double_user:
        turns.append({"role": "user", "content": "hello??"})
    turns.append({"role": "assistant", "content": f"Order #{100000 + i} ships on day {i % 7 + 1}."})
    return make_example(turns, source=source, created_at="2026-11-01T00:00:00Z")


def read_jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_writes_every_split_and_accounts_for_every_example(tmp_path):
    examples = [support(i) for i in range(60)] + [support(1000 + i, double_user=True) for i in range(6)]
    splits = split_examples(examples)
    report = format_dataset(splits, "gemini", tmp_path, min_examples=5, system_prompt=SYSTEM)

    quarantine = read_jsonl(tmp_path / QUARANTINE_FILE)
    written = {s: read_jsonl(tmp_path / SPLIT_FILES[s]) for s in SPLIT_FILES}
    # every input example is in exactly one place: a split file or quarantine
    for s, rows in written.items():
        assert len(rows) == report.counts[s]
        assert report.counts[s] + report.quarantined_by_split[s] == len(splits[s]) == report.input_counts[s]
    assert report.quarantined == sum(report.quarantined_by_split.values()) == len(quarantine) == 6
    bad_ids = {e.id for e in examples[60:]}
    assert {q["id"] for q in quarantine} == bad_ids
    for q in quarantine:
        assert list(q) == ["id", "split", "reasons", "row"]
        assert q["split"] == split_of(q["id"])
        assert q["reasons"] == [
            "contents[1].role: 'user' follows another 'user' turn; user and model turns must alternate "
            "(merge the two turns)"
        ]
        assert q["row"]["contents"][1]["parts"][0]["text"] == "hello??"  # the rendered row is kept
    # accepted rows are the provider rows, with the system prompt applied
    assert written["train"][0]["systemInstruction"] == {"parts": [{"text": SYSTEM}]}
    assert report.top_reasons[0][1] == 6 and "must alternate" in report.top_reasons[0][0]


def test_report_has_tokens_and_a_cost_from_the_catalog(tmp_path):
    splits = split_examples([support(i) for i in range(40)])
    report = format_dataset(splits, "openai", tmp_path, model="gpt-4o-mini-2024-07-18", epochs=2)
    fmt = get_format("openai")
    train_rows = read_jsonl(tmp_path / "train.jsonl")
    assert report.tokens["train"] == sum(fmt.count_tokens(train_rows))
    assert report.tokens_exact and report.tokenizer == "o200k_base (exact)"
    assert report.model == "gpt-4o-mini-2024-07-18" and report.price_per_1m_training_tokens == 3.0
    assert report.epochs == 2
    assert report.estimated_cost_usd == pytest.approx(3.0 * report.tokens["train"] * 2 / 1e6)
    on_disk = json.loads((tmp_path / REPORT_FILE).read_text())
    assert on_disk["ok"] is True and on_disk["counts"] == dict(report.counts)
    assert on_disk["estimated_cost_usd"] == report.estimated_cost_usd


def test_default_epochs_follow_the_providers_rule(tmp_path):
    splits = split_examples([support(i) for i in range(40)])
    openai = format_dataset(splits, "openai", tmp_path / "o")
    assert openai.epochs == 4  # ~30 training rows: auto rule raises epochs to reach ~100 passes
    bedrock = format_dataset(splits, "bedrock", tmp_path / "b", limits=Limits(min_examples=1))
    assert bedrock.epochs == 2  # Bedrock's published epochCount default


def test_too_few_survivors_fail_with_a_message_that_says_why(tmp_path):
    examples = [support(i) for i in range(8)] + [support(100 + i, double_user=True) for i in range(30)]
    splits = {"train": examples, "validation": [], "eval": []}
    with pytest.raises(TooFewExamplesError) as info:
        format_dataset(splits, "bedrock", tmp_path, min_examples=5)
    err = info.value
    msg = str(err)
    assert err.survived == 8 and err.minimum == 32  # Claude 3 Haiku's own minimum beats min_examples=5
    assert msg.startswith("bedrock: only 8 of 38 training examples survived validation, fewer than the minimum of 32")
    assert str(tmp_path / QUARANTINE_FILE) in msg
    assert "messages[i].role: '…' follows another '…' turn" in msg and "(30 rows)" in msg
    # the evidence is on disk even though the step failed
    assert len(read_jsonl(tmp_path / QUARANTINE_FILE)) == 30
    assert len(read_jsonl(tmp_path / "train.jsonl")) == 8
    assert json.loads((tmp_path / REPORT_FILE).read_text())["ok"] is False


def test_callers_minimum_applies_when_above_the_providers(tmp_path):
    splits = {"train": [support(i) for i in range(12)]}
    with pytest.raises(TooFewExamplesError, match="openai: only 12 of 12 .* minimum of 50"):
        format_dataset(splits, "openai", tmp_path, min_examples=50)


def test_token_limit_rejects_long_examples_into_quarantine(tmp_path):
    long = make_example([{"role": "user", "content": "why? " * 300}, {"role": "assistant", "content": "ok"}])
    splits = {"train": [support(i) for i in range(12)] + [long]}
    report = format_dataset(splits, "openai", tmp_path, limits=Limits(max_tokens_per_example=200, model="tiny"))
    (q,) = read_jsonl(tmp_path / QUARANTINE_FILE)
    assert q["id"] == long.id
    assert q["reasons"][0].startswith("tokens: ") and "200-token example limit of tiny" in q["reasons"][0]
    assert report.counts["train"] == 12 and report.max_example_tokens <= 200


def test_duplicate_ids_across_splits_are_quarantined_not_leaked(tmp_path):
    examples = [support(i) for i in range(12)]
    splits = {"train": examples, "validation": [], "eval": [examples[0]]}
    report = format_dataset(splits, "openai", tmp_path)
    (q,) = read_jsonl(tmp_path / QUARANTINE_FILE)
    assert q["split"] == "eval" and q["id"] == examples[0].id
    assert q["reasons"] == ["id: duplicate example already in split 'train'; each example may appear once "
                            "(no split leakage)"]
    assert report.counts == {"train": 12, "validation": 0, "eval": 0}


def test_lossy_conversions_are_reported_not_silent(tmp_path):
    weighted = make_example([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "wrong answer", "weight": 0},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "right answer", "weight": 1},
    ])
    corrected = make_example([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
                             source="corrected")
    splits = {"train": [support(i) for i in range(10)] + [weighted, corrected]}
    report = format_dataset(splits, "gemini", tmp_path)
    assert any(w.startswith("1 assistant turns had a weight below 1") for w in report.warnings)
    assert any(w.startswith("1 examples have an example weight other than 1") for w in report.warnings)
    openai = format_dataset(splits, "openai", tmp_path / "o")
    assert not any("turns had a weight" in w for w in openai.warnings)  # OpenAI keeps turn weights


def test_file_limits_become_warnings(tmp_path):
    splits = {"train": [support(i) for i in range(40)], "validation": [support(100 + i) for i in range(5)]}
    report = format_dataset(
        splits, "bedrock", tmp_path,
        limits=Limits(min_examples=1, max_examples=30, max_validation_examples=3, max_file_bytes=1000, model="m"),
    )
    assert report.warnings[:2] == ("train: 40 rows, more than the 30 allowed for m",
                                   f"train: file is {(tmp_path / 'train.jsonl').stat().st_size:,} bytes, "
                                   "over the 1,000-byte limit for m")
    assert "validation: 5 rows, more than the 3 allowed for m" in report.warnings


def test_output_is_deterministic_and_splits_are_stable(tmp_path):
    examples = [support(i) for i in range(200)]
    shuffled = examples[:]
    random.Random(3).shuffle(shuffled)
    a = split_examples(examples)
    b = split_examples(shuffled)
    assert {s: {e.id for e in a[s]} for s in a} == {s: {e.id for e in b[s]} for s in b}
    # adding new data never moves an old example to another split
    grown = split_examples(examples + [support(1000 + i) for i in range(100)])
    for s in a:
        assert {e.id for e in a[s]} <= {e.id for e in grown[s]}
    # the same input gives byte-identical files
    format_dataset(a, "hf", tmp_path / "1")
    format_dataset(a, "hf", tmp_path / "2")
    for name in [*SPLIT_FILES.values(), QUARANTINE_FILE]:
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes()


def test_render_failures_are_quarantined_with_the_error(tmp_path):
    fmt = HFFormat("{{ raise_exception('roles must alternate') }}", end_token="</s>")
    splits = {"train": [support(i) for i in range(3)]}
    with pytest.raises(TooFewExamplesError):
        format_dataset(splits, fmt, tmp_path, min_examples=1)
    rows = read_jsonl(tmp_path / QUARANTINE_FILE)
    assert len(rows) == 3 and rows[0]["row"] is None
    assert rows[0]["reasons"] == ["render: TemplateError: roles must alternate"]


def test_bad_arguments_are_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="unknown split"):
        format_dataset({"test": []}, "openai", tmp_path / "x")
    with pytest.raises(ValueError, match="fmt='csv' is not one of openai, gemini, bedrock, hf"):
        format_dataset({"train": []}, "csv", tmp_path / "x")
    with pytest.raises(ValueError, match="model='gpt-9' is not in the catalog for provider 'openai'"):
        format_dataset({"train": []}, "openai", tmp_path / "x", model="gpt-9")
    assert not (tmp_path / "x").exists()
