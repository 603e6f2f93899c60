"""The demo's support-intent traffic: deterministic, realistic, and dirty in the ways real traffic is."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest

from tuneloop.demo_data import DEMO_TABLE, add_traffic, build_demo_warehouse, generate_batch
from tuneloop.examples import SOURCES
from tuneloop.warehouse import TABLE_COLUMNS, extract_new
from tuneloop.warehouse.base import duckdb_uri

START = dt.datetime(2025, 6, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def batch():
    return generate_batch(1200, seed=0, start=START)


@pytest.fixture(scope="module")
def extracted(batch):
    from tuneloop.warehouse import open_warehouse

    w = open_warehouse("duckdb://:memory:")
    w.ensure_table("t")
    w.insert_rows("t", batch)
    got = extract_new(w, "t", None)
    w.close()
    return got


def clean_examples(seed: int):
    from tuneloop.warehouse.extract import row_to_example

    return [row_to_example(r)[0] for r in generate_batch(600, seed=seed, start=START, malformed_fraction=0)]


def test_same_seed_same_rows_other_seed_other_rows(batch):
    assert generate_batch(1200, seed=0, start=START) == batch
    assert generate_batch(1200, seed=1, start=START) != batch
    assert generate_batch(5, seed=0, start="2025-06-02T09:00:00Z") == generate_batch(5, seed=0, start=START)


def test_rows_match_the_table_schema_and_land_in_order(batch):
    assert all(list(r) == list(TABLE_COLUMNS) for r in batch)
    landed = [r["ingested_at"] for r in batch]
    assert landed == sorted(landed) and landed[0] == "2025-06-02T09:00:00.000000Z"
    assert all(isinstance(r["messages"], str) and isinstance(r["meta"], str) for r in batch)


def test_at_least_eight_intents_with_uneven_shares(extracted):
    counts = Counter(e.label for e in extracted.examples)
    assert len(counts) >= 8
    assert max(counts.values()) > 2 * min(counts.values())  # like real traffic, not a balanced toy set
    for ex in extracted.examples:
        assert [m.role for m in ex.messages] == ["user", "assistant"] and ex.messages[1].content == ex.label


def test_corrections_carry_double_weight_and_the_label_they_replaced(extracted):
    fixes = [e for e in extracted.examples if e.source == "corrected"]
    assert 0.03 < len(fixes) / 1200 < 0.08
    assert all(e.weight == 2.0 and e.meta["corrected_from"] != e.label for e in fixes)
    assert {e.source for e in extracted.examples} <= set(SOURCES)


def test_malformed_rows_are_realistic_and_all_quarantined(batch, extracted):
    assert extracted.rows_read == len(batch)
    assert 0.01 < len(extracted.quarantined) / len(batch) < 0.04
    fields = {q["reason"].split(":")[0].split("[")[0].split(".")[0] for q in extracted.quarantined}
    assert {"messages", "weight", "source"} <= fields
    reasons = " ".join(q["reason"] for q in extracted.quarantined)
    assert "not valid JSON" in reasons and "'bot'" in reasons and "is empty" in reasons


def test_some_rows_arrive_late(batch):
    late = [
        r
        for r in batch
        if dt.datetime.fromisoformat(r["ingested_at"]) - dt.datetime.fromisoformat(r["created_at"])
        > dt.timedelta(hours=1)
    ]
    assert 10 < len(late) < 100


def test_a_text_classifier_learns_it_but_not_perfectly(extracted):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    test = [e for e in clean_examples(seed=7) if e.label]
    train = extracted.examples
    clf = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LinearSVC())
    clf.fit([e.prompt_text for e in train], [e.label for e in train])
    f1 = f1_score([e.label for e in test], clf.predict([e.prompt_text for e in test]), average="macro")
    assert 0.8 <= f1 <= 0.96, f1  # ambiguous messages and router mistakes keep it off 1.0


def test_demo_warehouse_then_new_traffic_is_read_incrementally(tmp_path):
    path = tmp_path / "demo.duckdb"
    info = build_demo_warehouse(path, n_initial=200, seed=0)
    assert info["table"] == DEMO_TABLE and info["rows"] == 200 and len(info["intents"]) >= 8
    first = extract_new(info["uri"], DEMO_TABLE, None)
    assert first.rows_read == 200 and first.watermark_to == info["ingested_to"]

    assert add_traffic(path, 150, seed=1) == 150
    second = extract_new(duckdb_uri(str(path)), DEMO_TABLE, first.watermark_to)
    assert second.rows_read == 150
    assert all(q["row"]["ingested_at"] > first.watermark_to for q in second.quarantined)
    assert min(e.created_at for e in second.examples) < first.watermark_to  # late arrivals still read

    with pytest.raises(FileExistsError, match="overwrite=True"):
        build_demo_warehouse(path, n_initial=10)
    again = build_demo_warehouse(path, n_initial=10, overwrite=True)
    assert extract_new(again["uri"], DEMO_TABLE, None).rows_read == 10


def test_malformed_messages_json_is_kept_verbatim_for_the_quarantine(batch):
    broken = []
    for r in batch:
        try:
            json.loads(r["messages"])
        except json.JSONDecodeError:
            broken.append(r)
    assert broken and all(r["messages"].startswith("[{") for r in broken)
