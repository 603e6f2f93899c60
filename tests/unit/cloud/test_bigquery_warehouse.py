"""The BigQuery warehouse against bqemulator with the real google-cloud-bigquery client.

Same templates and ``@parameters`` as the DuckDB default; ingest by streaming insert; the
incremental watermark; values never become SQL.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tuneloop.examples import classification_example
from tuneloop.warehouse import IngestError, Ingestor, extract_new, open_warehouse
from tuneloop.warehouse.bigquery import BigQueryWarehouse, parse_bigquery_uri, query_parameter

INJECTION = "x' OR '1'='1'; DROP TABLE interactions; --"


def _examples(prefix: str, n: int, label: str = "billing"):
    return [classification_example(f"{prefix} question {i}", label) for i in range(n)]


def test_ingest_then_extract_reads_only_what_is_new(bq_uri):
    wh = open_warehouse(bq_uri)
    assert isinstance(wh, BigQueryWarehouse)
    wh.ensure_table("interactions")
    with Ingestor(wh, "interactions", flush_size=3) as ing:
        flushed = sum(ing.add(e) for e in _examples("first", 5))
    assert flushed == 3  # one automatic flush of 3; the context manager flushed the other 2
    first = extract_new(wh, "interactions", None)
    assert sorted(e.id for e in first.examples) == sorted(e.id for e in _examples("first", 5))
    assert first.quarantined == [] and first.watermark_to is not None

    Ingestor(wh, "interactions").add(_examples("second", 1, "refund")[0])
    with Ingestor(wh, "interactions") as ing:
        ing.add(_examples("third", 1, "refund")[0])
    second = extract_new(wh, "interactions", first.watermark_to)
    assert [e.label for e in second.examples] == ["refund"]  # the un-flushed "second" row never landed
    assert second.watermark_from == first.watermark_to and second.watermark_to > first.watermark_to
    again = extract_new(wh, "interactions", second.watermark_to)
    assert again.examples == [] and not again.advanced
    wh.close()


def test_a_failed_flush_keeps_every_row_and_the_retry_lands_them_once(bq_uri):
    wh = open_warehouse(bq_uri)
    ing = Ingestor(wh, "late_table", flush_size=100)
    for e in _examples("kept", 4):
        ing.add(e)
    with pytest.raises(IngestError, match="4 kept in the buffer"):
        ing.flush()  # the table does not exist yet: nothing landed
    assert len(ing.pending) == 4
    wh.ensure_table("late_table")
    assert ing.flush() == 4 and ing.pending == []
    assert len(extract_new(wh, "late_table", None).examples) == 4
    wh.close()


def test_an_injection_attempt_through_a_parameter_stays_a_value(bq_uri):
    wh = open_warehouse(bq_uri)
    wh.ensure_table("interactions")
    with Ingestor(wh, "interactions") as ing:
        ing.add(classification_example("normal", "billing"))
        ing.add(classification_example("tricky", INJECTION))
    count = "SELECT COUNT(*) AS n FROM {{table}} WHERE label = @label"
    assert wh.query(count, {"label": INJECTION}, identifiers={"table": "interactions"}).to_pylist() == [
        {"n": 1}
    ]
    assert wh.query(count, {"label": "x' OR '1'='1"}, identifiers={"table": "interactions"}).to_pylist() == [
        {"n": 0}
    ]
    assert wh.has_table("interactions")  # the DROP inside the value never ran
    with pytest.raises(ValueError, match="not an identifier"):
        wh.query(count, {"label": "x"}, identifiers={"table": "interactions; DROP TABLE interactions"})
    with pytest.raises(ValueError, match="needs @label"):
        wh.query(count, {}, identifiers={"table": "interactions"})
    wh.close()


def test_results_stream_into_parquet(bq_uri, tmp_path):
    wh = open_warehouse(bq_uri)
    wh.ensure_table("interactions")
    with Ingestor(wh, "interactions") as ing:
        for e in _examples("p", 6):
            ing.add(e)
    n = wh.query_to_parquet(
        "SELECT id, label, ingested_at FROM {{table}} WHERE weight >= @w",
        tmp_path / "out.parquet",
        {"w": 1.0},
        identifiers={"table": "interactions"},
    )
    table = pq.read_table(tmp_path / "out.parquet")
    assert n == 6 == table.num_rows and table.schema.field("ingested_at").type.tz == "UTC"
    wh.close()


def test_an_existing_table_without_the_columns_is_refused(bq_uri):
    wh = open_warehouse(bq_uri)
    wh.ensure_table("interactions")  # creates the dataset
    wh.query("CREATE TABLE {{table}} (x INT64)", identifiers={"table": "other"})
    with pytest.raises(Exception, match="lacks columns"):
        wh.ensure_table("other")
    wh.close()


@pytest.mark.parametrize(
    "uri, message",
    [
        ("bigquery://proj/ds", "not a Google Cloud project id"),
        ("bigquery://my-project", "bigquery://PROJECT/DATASET"),
        ("bigquery://my-project/bad-dataset", "not a BigQuery dataset id"),
        ("bigquery://my-project/ds?region=EU", r"only option is \?location"),
    ],
)
def test_bad_bigquery_uris_say_what_to_write(uri, message):
    with pytest.raises(ValueError, match=message):
        parse_bigquery_uri(uri)


def test_parameters_take_the_bigquery_type_of_the_value():
    import datetime as dt

    assert query_parameter("a", "x").type_ == "STRING"
    assert query_parameter("b", 3).type_ == "INT64"
    assert query_parameter("c", True).type_ == "BOOL"
    assert query_parameter("d", dt.datetime(2026, 1, 1)).value.tzinfo is dt.UTC
    assert query_parameter("e", ["a", "b"]).array_type == "STRING"
    with pytest.raises(ValueError, match="params\\['f'\\]"):
        query_parameter("f", object())


def test_loading_a_file_twice_into_bigquery_inserts_each_example_once(bq_uri, tmp_path):
    from tuneloop.loading import load_file

    path = tmp_path / "intents.csv"
    path.write_text("text,label,corrected\nwhere is my parcel,shipping_status,\nrefund me,billing_refund,yes\n"
                    "where is my parcel,shipping_status,\n")
    first = load_file(path, bq_uri, "interactions", ingested_at="2025-05-03T00:00:00Z", chunk_rows=2)
    assert (first.inserted, first.duplicates, first.duplicate_lines) == (2, 1, [4])  # line 4 repeats line 2
    path.write_text(path.read_text() + "a new question,new_label,\n")
    again = load_file(path, bq_uri, "interactions", ingested_at="2025-05-04T00:00:00Z")
    assert (again.inserted, again.duplicates) == (1, 3)
    got = extract_new(bq_uri, "interactions", None)
    assert sorted(e.prompt_text for e in got.examples) == ["a new question", "refund me", "where is my parcel"]
