"""Bring-your-own-data loads: canonical JSONL and text,label[,corrected] CSV into the warehouse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneloop.examples import read_jsonl
from tuneloop.loading import LoadError, format_report, load_file
from tuneloop.warehouse import extract_new, open_warehouse
from tuneloop.warehouse.base import duckdb_uri

DATA = Path(__file__).parent.parent / "testdata" / "warehouse"
LANDED = "2025-05-03T00:00:00Z"


@pytest.fixture
def uri(tmp_path):
    return duckdb_uri(str(tmp_path / "wh.duckdb"))


def table_rows(uri: str, table: str) -> int:
    with open_warehouse(uri) as w:
        return w.query("SELECT COUNT(*) AS n FROM {{t}}", {}, identifiers={"t": table}).column("n")[0].as_py()


def test_csv_rows_become_labelled_chats_and_corrections_weigh_double(uri):
    report = load_file(DATA / "intents.csv", uri, "support.loop", ingested_at=LANDED)
    assert report.inserted == 5 and report.rejected == [] and report.table == "support.loop"
    got = extract_new(uri, "support.loop", None)
    by_text = {e.prompt_text: e for e in got.examples}
    assert set(by_text) == {
        "where is my order #48213",
        "I was charged twice, please refund $40",
        "how do I cancel my subscription",
        "my card was declined",
        "forgot my password, reset link never came",
    }
    declined = by_text["my card was declined"]
    assert (declined.source, declined.weight, declined.label) == ("corrected", 2.0, "payment_failed")
    assert [m.to_dict() for m in declined.messages] == [
        {"role": "user", "content": "my card was declined"},
        {"role": "assistant", "content": "payment_failed"},
    ]
    refund = by_text["I was charged twice, please refund $40"]
    assert (refund.source, refund.weight) == ("imported", 1.0)
    assert refund.created_at == "2025-05-03T00:00:00.000000Z"  # no created_at column: the load time
    assert refund.meta == {"loaded_from": "intents.csv", "line": 3}
    assert got.watermark_to == "2025-05-03T00:00:00.000000Z"


def test_csv_bad_lines_are_reported_by_line_and_the_good_ones_still_load(uri):
    report = load_file(DATA / "intents_bad_lines.csv", uri, "loop", source="live", ingested_at=LANDED)
    assert report.inserted == 2
    assert [r["line"] for r in report.rejected] == [3, 4, 5, 6, 7]
    fields = [r["reason"].split(":")[0] for r in report.rejected]
    assert fields == ["text", "label", "corrected", "created_at", "line"]
    assert "'maybe'" in report.rejected[2]["reason"] and "has 5 fields" in report.rejected[4]["reason"]
    examples = extract_new(uri, "loop", None).examples
    assert sorted((e.label, e.source, e.created_at) for e in examples) == [
        ("change_address", "corrected", "2025-05-02T06:30:00.000000Z"),
        ("shipping_status", "live", "2025-05-01T10:00:00.000000Z"),
    ]
    assert "line 3: text: is empty" in format_report(report)


def test_wrong_csv_header_names_the_expected_columns_and_inserts_nothing(uri):
    with pytest.raises(LoadError, match="expected columns text,label") as err:
        load_file(DATA / "wrong_header.csv", uri, "loop")
    assert "unknown: ['message', 'intent']" in str(err.value)
    with open_warehouse(uri) as w:
        assert not w.has_table("loop")


def test_canonical_jsonl_loads_valid_records_and_rejects_bad_lines_with_numbers(uri):
    report = load_file(DATA / "canonical.jsonl", uri, "loop", ingested_at=LANDED)
    assert report.inserted == 3
    assert [r["line"] for r in report.rejected] == [5, 6, 7, 8, 9]
    reasons = [r["reason"] for r in report.rejected]
    assert reasons[0].startswith("messages[1].role: 'bot'")
    assert reasons[1].startswith("weight: -1")
    assert reasons[2].startswith("id: 'not-the-hash'")
    assert reasons[3].startswith("line: invalid JSON")
    assert reasons[4].startswith("priority: unknown key")
    got = {e.label: e for e in extract_new(uri, "loop", None).examples}
    # a record without a source takes the load's default (imported); corrections default to weight 2.0
    assert {label: (e.source, e.weight) for label, e in got.items()} == {
        "shipping_status": ("live", 1.0),
        "billing_refund": ("imported", 1.0),
        "payment_failed": ("corrected", 2.0),
    }
    assert got["payment_failed"].meta == {"corrected_from": "billing_refund"}
    assert [m.role for m in got["billing_refund"].messages] == ["system", "user", "assistant"]
    assert got["shipping_status"].created_at == "2025-05-01T09:00:00.000000Z"
    # ids are the content hashes a reader of the same file computes
    assert {e.id for e in got.values()} == {e.id for e in read_jsonl(DATA / "canonical.jsonl", strict=False)}


def test_loading_twice_appends_rows_and_the_second_extract_sees_only_the_second_load(uri):
    first = load_file(DATA / "intents.csv", uri, "loop", ingested_at="2025-05-03T00:00:00Z")
    wm = extract_new(uri, "loop", None).watermark_to
    load_file(DATA / "intents.csv", uri, "loop", ingested_at="2025-05-04T00:00:00Z")
    assert table_rows(uri, "loop") == 2 * first.inserted
    again = extract_new(uri, "loop", wm)
    assert again.rows_read == first.inserted and again.watermark_to == "2025-05-04T00:00:00.000000Z"


def test_bad_arguments_fail_before_anything_is_written(uri, tmp_path):
    with pytest.raises(ValueError, match="^table="):
        load_file(DATA / "intents.csv", uri, "bad-name")
    with pytest.raises(ValueError, match="^source='web'"):
        load_file(DATA / "intents.csv", uri, "loop", source="web")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_file(tmp_path / "missing.csv", uri, "loop")
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(LoadError, match="unknown file type '.xlsx'"):
        load_file(odd, uri, "loop")
    assert not (tmp_path / "wh.duckdb").exists()


def test_report_is_plain_data(uri):
    report = load_file(DATA / "intents_bad_lines.csv", uri, "loop", ingested_at=LANDED)
    assert json.loads(json.dumps(report.to_dict()))["inserted"] == 2
