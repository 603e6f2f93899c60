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


def test_loading_twice_stores_each_row_once_and_the_second_extract_sees_only_new_rows(uri, tmp_path):
    first = load_file(DATA / "intents.csv", uri, "loop", ingested_at="2025-05-03T00:00:00Z")
    wm = extract_new(uri, "loop", None).watermark_to
    again = load_file(DATA / "intents.csv", uri, "loop", ingested_at="2025-05-04T00:00:00Z")
    assert (again.inserted, again.duplicates, again.duplicate_lines) == (0, 5, [2, 3, 4, 5, 6])
    assert table_rows(uri, "loop") == first.inserted == 5
    assert extract_new(uri, "loop", wm).rows_read == 0  # nothing new landed
    more = tmp_path / "more.csv"
    more.write_text("text,label\nwhere is my order #48213,shipping_status\nnew question,new_label\n"
                    "another one,other_label\n")
    third = load_file(more, uri, "loop", ingested_at="2025-05-05T00:00:00Z")
    assert (third.inserted, third.duplicates, third.duplicate_lines) == (2, 1, [2])
    newer = extract_new(uri, "loop", wm)
    assert sorted(e.prompt_text for e in newer.examples) == ["another one", "new question"]


def test_a_row_repeated_in_one_file_is_inserted_once_across_chunks(uri, tmp_path):
    path = tmp_path / "repeats.csv"
    rows = [f"message {i % 4},label_{i % 4}" for i in range(11)]  # 4 distinct examples, 7 repeats
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    report = load_file(path, uri, "loop", ingested_at=LANDED, chunk_rows=3)
    assert (report.inserted, report.duplicates) == (4, 7)
    assert report.duplicate_lines == [6, 7, 8, 9, 10, 11, 12]
    assert table_rows(uri, "loop") == 4
    got = extract_new(uri, "loop", None).examples
    assert sorted(e.meta["line"] for e in got) == [2, 3, 4, 5]  # the first line of each example landed


def test_a_label_in_the_corrected_column_names_the_column_and_line_and_loses_no_good_row(uri, tmp_path):
    path = tmp_path / "corrections.csv"
    path.write_text(
        "text,label,corrected\n"
        "where is my parcel,shipping_status,no\n"
        "refund me,billing_refund,payment_failed\n"  # the corrected label typed into 'corrected'
        "cancel it,cancel_subscription,cancel_subscription\n"
        "my card was declined,payment_failed,yes\n"
    )
    report = load_file(path, uri, "loop", ingested_at=LANDED)
    assert report.inserted == 2 and [r["line"] for r in report.rejected] == [3, 4]
    first, second = (r["reason"] for r in report.rejected)
    assert first.startswith("corrected: 'payment_failed' is not yes/no")
    assert "put it in the label column and write corrected=yes" in first
    assert second.startswith("corrected: 'cancel_subscription' is not yes/no") and "it repeats the label" in second
    assert "line 3: corrected: 'payment_failed'" in format_report(report)
    # the fixed file loads the two lines that failed; the two that landed are duplicates now
    path.write_text(path.read_text().replace("billing_refund,payment_failed", "payment_failed,yes")
                    .replace("cancel_subscription,cancel_subscription", "cancel_subscription,yes"))
    fixed = load_file(path, uri, "loop", ingested_at="2025-05-04T00:00:00Z")
    assert (fixed.inserted, fixed.duplicates, fixed.rejected) == (2, 2, [])
    by_text = {e.prompt_text: e for e in extract_new(uri, "loop", None).examples}
    assert (by_text["refund me"].label, by_text["refund me"].source) == ("payment_failed", "corrected")
    assert len(by_text) == 4


def test_the_cli_explains_the_columns_and_writes_the_report(uri, tmp_path):
    from typer.testing import CliRunner

    from tuneloop.cli import app
    from tuneloop.loading import CSV_COLUMNS

    runner = CliRunner()
    shown = " ".join(runner.invoke(app, ["load", "--help"], terminal_width=200).output.split())
    for column, meaning in CSV_COLUMNS.items():
        assert f"{column}: {' '.join(meaning.split())}" in shown
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert all(f"| `{column}` |" in readme for column in CSV_COLUMNS)
    out = tmp_path / "reports" / "load.json"
    result = runner.invoke(app, ["load", str(DATA / "intents_bad_lines.csv"), "--warehouse", uri, "--table", "loop",
                                 "--report", str(out)])
    assert result.exit_code == 1, result.output  # rejected lines: exit 1, after the report is written
    written = json.loads(out.read_text())
    assert written["inserted"] == 2 and written["duplicates"] == 0
    assert [r["line"] for r in written["rejected"]] == [3, 4, 5, 6, 7]
    again = runner.invoke(app, ["load", str(DATA / "intents_bad_lines.csv"), "--warehouse", uri, "--table", "loop"])
    assert "inserted 0 row(s) into loop, 2 duplicate(s) already loaded" in again.output


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
