"""Incremental extract: watermarks, late arrivals, batching by landing time, quarantine."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tuneloop.examples import classification_example, content_id, make_example
from tuneloop.warehouse import WarehouseError, example_to_row, extract_new, open_warehouse
from tuneloop.warehouse.base import duckdb_uri

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def row(
    text: str, label: str | None = "intent_a", *, landed: dt.datetime, created: dt.datetime | None = None
):
    if label is None:
        ex = make_example([{"role": "user", "content": text}], created_at=created or landed)
    else:
        ex = classification_example(text, label, created_at=created or landed)
    return example_to_row(ex, ingested_at=landed)


@pytest.fixture
def uri(tmp_path):
    u = duckdb_uri(str(tmp_path / "wh.duckdb"))
    with open_warehouse(u) as w:
        w.ensure_table("loop")
    return u


def insert(uri: str, rows) -> None:
    with open_warehouse(uri) as w:
        w.insert_rows("loop", rows)


def test_second_extract_reads_only_rows_that_landed_after_the_watermark(uri):
    insert(uri, [row("first", landed=at(0)), row("second", landed=at(1))])
    first = extract_new(uri, "loop", None)
    assert [e.prompt_text for e in first.examples] == ["first", "second"]
    assert first.watermark_from is None and first.watermark_to == "2025-03-01T12:01:00.000000Z"

    again = extract_new(uri, "loop", first.watermark_to)
    assert again.rows_read == 0 and again.examples == [] and not again.advanced
    assert again.watermark_to == first.watermark_to

    # new traffic, plus a row created two days ago that only landed now (a late arrival)
    insert(uri, [row("third", landed=at(5)), row("late", landed=at(6), created=at(-2 * 24 * 60))])
    second = extract_new(uri, "loop", first.watermark_to)
    assert [e.prompt_text for e in second.examples] == ["third", "late"]
    assert second.examples[1].created_at == "2025-02-27T12:00:00.000000Z"  # keeps its own created_at
    assert (
        second.watermark_from == first.watermark_to and second.watermark_to == "2025-03-01T12:06:00.000000Z"
    )


def test_watermark_accepts_other_iso_spellings_and_refuses_garbage(uri):
    insert(uri, [row("a", landed=at(0)), row("b", landed=at(1))])
    got = extract_new(uri, "loop", "2025-03-01T13:00:30+01:00")  # = 12:00:30Z
    assert [e.prompt_text for e in got.examples] == ["b"]
    with pytest.raises(ValueError, match="^watermark: 'last run'"):
        extract_new(uri, "loop", "last run")


def test_max_rows_never_splits_rows_that_landed_together(uri):
    insert(
        uri, [row(f"m{i}", landed=at(0)) for i in range(3)] + [row(f"n{i}", landed=at(1)) for i in range(3)]
    )
    first = extract_new(uri, "loop", None, max_rows=2)
    assert sorted(e.prompt_text for e in first.examples) == ["m0", "m1", "m2"]  # the whole landing
    second = extract_new(uri, "loop", first.watermark_to, max_rows=2)
    assert sorted(e.prompt_text for e in second.examples) == ["n0", "n1", "n2"]
    assert extract_new(uri, "loop", second.watermark_to, max_rows=2).rows_read == 0
    with pytest.raises(ValueError, match="max_rows=0"):
        extract_new(uri, "loop", None, max_rows=0)


def test_settle_seconds_leaves_just_landed_rows_for_the_next_run(uri):
    now = dt.datetime.now(dt.UTC)
    insert(uri, [row("old", landed=now - dt.timedelta(hours=1)), row("fresh", landed=now)])
    got = extract_new(uri, "loop", None, settle_seconds=600)
    assert [e.prompt_text for e in got.examples] == ["old"]
    assert [e.prompt_text for e in extract_new(uri, "loop", got.watermark_to).examples] == ["fresh"]


def test_malformed_rows_are_quarantined_with_reasons_and_advance_the_watermark(uri):
    good = row("where is my order", landed=at(0))
    msgs = json.loads(good["messages"])
    bad = [
        {**good, "messages": good["messages"][:25], "ingested_at": at(1)},
        {**good, "messages": json.dumps([msgs[0], {"role": "bot", "content": "x"}]), "ingested_at": at(2)},
        {**good, "messages": json.dumps([{"role": "user", "content": "  "}]), "ingested_at": at(3)},
        {**good, "weight": -1.0, "ingested_at": at(4)},
        {**good, "source": "webhook", "ingested_at": at(5)},
        {**good, "meta": "{not json", "ingested_at": at(6)},
    ]
    insert(uri, [good, *bad])
    got = extract_new(uri, "loop", None)
    assert got.rows_read == 7 and len(got.examples) == 1
    reasons = [q["reason"] for q in got.quarantined]
    assert [r.split(":")[0] for r in reasons] == [
        "messages",
        "messages[1].role",
        "messages[0].content",
        "weight",
        "source",
        "meta",
    ]
    assert "not valid JSON" in reasons[0] and "'bot'" in reasons[1] and "-1.0" in reasons[3]
    raw = got.quarantined[0]["row"]
    assert raw["messages"] == good["messages"][:25] and raw["ingested_at"] == "2025-03-01T12:01:00.000000Z"
    json.dumps(got.quarantined)  # JSON-safe, ready for the quarantine file
    assert got.watermark_to == "2025-03-01T12:06:00.000000Z"
    assert extract_new(uri, "loop", got.watermark_to).rows_read == 0


def test_the_content_hash_wins_over_a_stored_id(uri):
    good = row("hi", "greeting", landed=at(0))
    insert(uri, [{**good, "id": "legacy-42"}, {**good, "id": None, "ingested_at": at(1)}])
    got = extract_new(uri, "loop", None)
    assert [e.id for e in got.examples] == [good["id"], good["id"]]
    assert got.examples[0].meta["warehouse_id"] == "legacy-42" and "warehouse_id" not in got.examples[1].meta
    assert got.ids_recomputed == 1 and got.notes


def test_unlabelled_rows_and_null_columns_take_defaults(uri):
    r = row("anyone there?", None, landed=at(0))
    nulls = {"weight": None, "created_at": None, "meta": None}
    insert(uri, [{**r, **nulls, "source": "corrected"}, {**r, **nulls, "source": None, "ingested_at": at(1)}])
    fix, live = extract_new(uri, "loop", None).examples
    assert fix.label is None and fix.weight == 2.0 and fix.created_at == "2025-03-01T12:00:00.000000Z"
    assert (live.source, live.weight, live.meta) == ("live", 1.0, {})
    assert fix.id == live.id == content_id(fix.messages, None)


def test_missing_table_names_the_fix(uri):
    with pytest.raises(WarehouseError, match="tuneloop load FILE"):
        extract_new(uri, "other", None)
    with pytest.raises(ValueError, match="^table="):
        extract_new(uri, "loop; DROP TABLE loop", None)


def test_landing_times_become_the_canonical_strings_for_every_year_and_fraction():
    import pyarrow as pa
    import pyarrow.compute as pc

    from tuneloop.warehouse.base import iso
    from tuneloop.warehouse.extract import _columns

    utc = dt.UTC
    values = [dt.datetime(2025, 6, 1, tzinfo=utc), dt.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=utc),
              dt.datetime(2024, 2, 29, 12, 0, 0, 1, tzinfo=utc), dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=utc),
              dt.datetime(1000, 1, 1, tzinfo=utc), None, dt.datetime(999, 12, 31, tzinfo=utc), dt.datetime(1, 1, 1, tzinfo=utc)]
    for tz in ("UTC", None):
        col = pa.array(values, type=pa.timestamp("us", tz=tz))
        got = _columns(pa.record_batch([col, col], names=["created_at", "ingested_at"]))
        assert got["created_at"] == got["ingested_at"]
        assert got["created_at"][:5] == [iso(v) for v in values[:5]]  # what the row-at-a-time path writes
        assert got["created_at"][5] is None
        # before year 1000 zero-padded, as Arrow's strftime writes it (make_example then reads it as ISO)
        assert got["created_at"] == pc.strftime(col, format="%Y-%m-%dT%H:%M:%SZ").to_pylist()
        assert got["created_at"][6:] == ["0999-12-31T00:00:00.000000Z", "0001-01-01T00:00:00.000000Z"]
