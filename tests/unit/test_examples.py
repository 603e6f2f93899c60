"""The canonical example: validation names the field, ids are content hashes, splits are stable, IO round-trips."""

from __future__ import annotations

import json

import pytest

from tuneloop import examples as ex


def _chat(text="where is my parcel?", answer="shipping_status"):
    return [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]


def test_id_is_a_content_hash_independent_of_source_time_and_meta():
    a = ex.make_example(_chat(), label="shipping_status", source="live", created_at="2026-01-01T00:00:00Z")
    b = ex.make_example(_chat(), label="shipping_status", source="imported", meta={"x": 1})
    c = ex.make_example(_chat("where is my order?"), label="shipping_status")
    assert a.id == b.id
    assert a.id != c.id
    assert len(a.id) == 32


def test_corrected_examples_default_to_double_weight():
    assert ex.make_example(_chat(), label="x", source="corrected").weight == 2.0
    assert ex.make_example(_chat(), label="x").weight == 1.0


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"messages": []}, "messages"),
        ({"messages": "not json"}, "messages"),
        ({"messages": [{"role": "bot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "  "}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "hi", "weight": 0}]}, "messages[0].weight"),
        ({"messages": [{"role": "user", "content": "hi", "name": "x"}]}, "messages[0].name"),
        ({"messages": _chat(), "source": "scraped"}, "source"),
        ({"messages": _chat(), "weight": -1}, "weight"),
        ({"messages": _chat(), "created_at": "yesterday"}, "created_at"),
        ({"messages": _chat(), "label": ""}, "label"),
        ({"messages": _chat(), "colour": "red"}, "colour"),
        ({"messages": _chat(), "id": "0" * 32}, "id"),
    ],
)
def test_invalid_records_name_the_field(record, field):
    with pytest.raises(ex.ExampleError) as info:
        ex.Example.from_dict(record)
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_split_is_stable_and_close_to_the_fractions():
    ids = [ex.content_id((ex.Message("user", f"m{i}"),), None) for i in range(5000)]
    first = [ex.split_of(i) for i in ids]
    assert first == [ex.split_of(i) for i in ids]
    share = {s: first.count(s) / len(first) for s in ex.SPLITS}
    assert 0.77 < share["train"] < 0.83 and 0.08 < share["eval"] < 0.12
    with pytest.raises(ValueError, match="fractions"):
        ex.split_of(ids[0], (0.5, 0.5, 0.5))


def test_split_of_an_example_does_not_change_when_the_dataset_grows():
    small = [ex.classification_example(f"text {i}", "a") for i in range(50)]
    grown = small + [ex.classification_example(f"more {i}", "b") for i in range(500)]
    before = {e.id: s for s, rows in ex.split_examples(small).items() for e in rows}
    after = {e.id: s for s, rows in ex.split_examples(grown).items() for e in rows}
    assert all(after[i] == s for i, s in before.items())


def test_jsonl_and_parquet_round_trip(tmp_path):
    rows = [
        ex.make_example(_chat(), label="shipping_status", meta={"game": 3}),
        ex.make_example(
            [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello", "weight": 0},
                {"role": "user", "content": "refund?"},
                {"role": "assistant", "content": "billing_refund", "weight": 1},
            ],
            source="corrected",
        ),
    ]
    ex.write_jsonl(tmp_path / "a.jsonl", rows)
    ex.write_parquet(tmp_path / "a.parquet", rows)
    assert ex.read_jsonl(tmp_path / "a.jsonl") == rows
    assert ex.read_parquet(tmp_path / "a.parquet") == rows


def test_read_jsonl_names_the_bad_line(tmp_path):
    good = json.dumps(ex.make_example(_chat(), label="x").to_dict())
    (tmp_path / "f.jsonl").write_text(good + "\n" + '{"messages": [{"role": "bot", "content": "x"}]}\n')
    with pytest.raises(ex.ExampleError, match=r"f\.jsonl:2: messages\[0\]\.role"):
        ex.read_jsonl(tmp_path / "f.jsonl")
    assert len(ex.read_jsonl(tmp_path / "f.jsonl", strict=False)) == 1


def test_dedupe_keeps_latest_and_dataset_hash_ignores_order():
    a1 = ex.make_example(_chat(), label="x", created_at="2026-01-01T00:00:00Z")
    a2 = ex.make_example(_chat(), label="x", created_at="2026-02-01T00:00:00Z", meta={"v": 2})
    b = ex.make_example(_chat("other"), label="x")
    kept = ex.dedupe([a2, b, a1])
    assert len(kept) == 2 and a2 in kept
    assert ex.dataset_hash([a1, b]) == ex.dataset_hash([b, a1])
    assert ex.dataset_hash([a1, b]) != ex.dataset_hash([a1])


# -- the extract's fast path agrees with make_example ------------------------------------------

_FAST_CASES = [
    # (messages, label, source, weight, created_at, meta)
    ('[{"role":"user","content":"where is my order"},{"role":"assistant","content":"shipping"}]',
     "shipping", "live", None, "2025-06-01T00:00:00.000000Z", None),
    ('[{"content":"é \\u2028 😀","role":"user"}]', "  billing ", "corrected", None, "2025-06-01T00:00:00Z", ""),
    ('[{"role":"user","content":"x"}]', None, "imported", 3, "2025-06-01 10:00:00+02:00", '{"b": [1, 2.5], "a": "é"}'),
    ('[{"role":"user","content":"x"}]', "a", "live", 0.5, "2025-06-01T00:00:00.000000Z", '{"channel":"chat"}'),
    # every one of these is refused by make_example (or takes its slow path): the fast path must not accept it
    ('[{"role":"user","content":"   "}]', "a", "live", None, "2025-06-01T00:00:00Z", None),
    ('[{"role":"user","content":"\\u001c"}]', "a", "live", None, "2025-06-01T00:00:00Z", None),
    ('[{"role":"robot","content":"x"}]', "a", "live", None, "2025-06-01T00:00:00Z", None),
    ('[{"role":["user"],"content":"x"}]', "a", "live", None, "2025-06-01T00:00:00Z", None),
    ('[{"role":"user","content":5}]', "a", "live", None, "2025-06-01T00:00:00Z", None),
    ('[{"role":"user","content":"x","extra":1}]', "a", "live", None, "2025-06-01T00:00:00Z", None),
    ('[{"role":"assistant","content":"x","weight":0}]', None, "live", None, "2025-06-01T00:00:00Z", None),
    ('[]', "a", "live", None, "2025-06-01T00:00:00Z", None),
    ('{"role":"user","content":"x"}', "a", "live", None, "2025-06-01T00:00:00Z", None),
    ('[{"role":"user","content":"x"}', "a", "live", None, "2025-06-01T00:00:00Z", None),
    ('[{"role":"user","content":"x"}]', "   ", "live", None, "2025-06-01T00:00:00Z", None),
    ('[{"role":"user","content":"x"}]', 7, "live", None, "2025-06-01T00:00:00Z", None),
    ('[{"role":"user","content":"x"}]', "a", "bot", None, "2025-06-01T00:00:00Z", None),
    ('[{"role":"user","content":"x"}]', "a", "live", 0, "2025-06-01T00:00:00Z", None),
    ('[{"role":"user","content":"x"}]', "a", "live", float("nan"), "2025-06-01T00:00:00Z", None),
    ('[{"role":"user","content":"x"}]', "a", "live", True, "2025-06-01T00:00:00Z", None),
    ('[{"role":"user","content":"x"}]', "a", "live", None, "yesterday", None),
    ('[{"role":"user","content":"x"}]', "a", "live", None, "2025-02-30T00:00:00.000000Z", None),
    ('[{"role":"user","content":"x"}]', "a", "live", None, "2025-06-01T00:00:00Z", "[1]"),
    ('[{"role":"user","content":"x"}]', "a", "live", None, "2025-06-01T00:00:00Z", "{oops"),
]


@pytest.mark.parametrize("case", _FAST_CASES)
def test_fast_path_gives_make_examples_example_or_leaves_the_row_to_it(case):
    messages, label, source, weight, created_at, meta = case
    parts = ex.checked_parts(messages, label, source, weight, created_at, meta)
    try:
        slow = ex.make_example(messages, label=label, source=source, weight=weight, created_at=created_at, meta=meta)
    except ex.ExampleError:
        assert parts is None  # refused rows always take the slow path, which names the field
        return
    if parts is None:  # a valid row in an uncommon form (turn weights): the slow path handles it
        assert any(m.weight is not None for m in slow.messages)
        return
    cols = ex.ArrowColumns()
    example_id, turns, lab, src, w, created, meta_obj, meta_json = parts
    cols.add_checked(example_id, turns, lab, src, w, created, meta_json)
    assert meta_json == ex._META_JSON(meta_obj)
    assert cols.table().to_pylist() == ex.to_arrow([slow]).to_pylist()


@pytest.mark.parametrize("messages", [' [{"role":"user","content":"x"}]', '[{"role":"user","content":"x"}] \n',
                                      '\ufeff[{"role":"user","content":"x"}]', '[{"role":"user","content":"x"}] []'])
def test_fast_path_and_make_example_agree_on_whitespace_and_trailing_data(messages):
    parts = ex.checked_parts(messages, "a", "live", None, "2025-06-01T00:00:00Z", None, {})
    try:
        slow = ex.make_example(messages, label="a", created_at="2025-06-01T00:00:00Z")
    except ex.ExampleError:
        assert parts is None
        return
    assert parts is None or parts[0] == slow.id
