"""The buffered ingestor: batches by flush_size, loses nothing when a flush fails."""

from __future__ import annotations

import pytest

from tuneloop.examples import classification_example
from tuneloop.warehouse import IngestError, Ingestor, extract_new, open_warehouse


@pytest.fixture
def wh():
    w = open_warehouse("duckdb://:memory:")
    yield w
    w.close()


def count(wh, table: str) -> int:
    return wh.query("SELECT COUNT(*) AS n FROM {{t}}", {}, identifiers={"t": table}).column("n")[0].as_py()


def test_add_flushes_every_flush_size_rows(wh):
    wh.ensure_table("loop")
    ing = Ingestor(wh, "loop", flush_size=3)
    flushed = [ing.add(classification_example(f"msg {i}", "a")) for i in range(7)]
    assert flushed == [0, 0, 3, 0, 0, 3, 0]
    assert count(wh, "loop") == 6 and len(ing) == 1
    with ing:
        pass  # leaving the block flushes the rest
    assert count(wh, "loop") == 7 and len(ing) == 0


def test_failed_flush_keeps_every_row_until_the_table_is_fixed(wh):
    # the table exists with a conflicting schema: every insert fails
    wh.query("CREATE TABLE {{t}} (id STRING, n INT64)", {}, identifiers={"t": "loop"})
    ing = Ingestor(wh, "loop", flush_size=2)
    ing.add(classification_example("where is my parcel", "shipping_status"))
    with pytest.raises(IngestError, match="still|kept in the buffer") as err:
        ing.add({"messages": [{"role": "user", "content": "refund me"}], "label": "billing_refund"})
    assert err.value.__cause__ is not None  # the warehouse's own error is chained
    assert len(ing) == 2
    with pytest.raises(IngestError, match="flush of 3 row"):  # the buffer is full: add retries the flush
        ing.add(classification_example("cancel my plan", "cancel_subscription"))
    with pytest.raises(IngestError):
        ing.flush()
    assert [r["label"] for r in ing.pending] == ["shipping_status", "billing_refund", "cancel_subscription"]

    wh.query("DROP TABLE {{t}}", {}, identifiers={"t": "loop"})
    wh.ensure_table("loop")
    assert ing.flush() == 3 and len(ing) == 0
    got = extract_new(wh, "loop", None)
    assert sorted(e.label for e in got.examples) == [
        "billing_refund",
        "cancel_subscription",
        "shipping_status",
    ]


def test_a_row_that_can_never_be_stored_is_refused_at_add_not_buffered(wh):
    wh.ensure_table("loop")
    ing = Ingestor(wh, "loop", flush_size=10)
    with pytest.raises(ValueError, match="^weight: 'heavy'"):
        ing.add({"messages": "[]", "weight": "heavy"})
    with pytest.raises(ValueError, match="^priority: unknown column"):
        ing.add({"priority": "high"})
    assert len(ing) == 0


def test_ingested_at_is_stamped_at_flush_so_rows_buffered_before_an_extract_are_not_skipped(wh):
    wh.ensure_table("loop")
    ing = Ingestor(wh, "loop", flush_size=100)
    ing.add(classification_example("buffered early", "a"))
    ing.add({"messages": [{"role": "user", "content": "x"}], "ingested_at": "2000-01-01T00:00:00Z"})
    wh.insert_rows("loop", [{"messages": [{"role": "user", "content": "landed directly"}], "label": "b"}])
    first = extract_new(wh, "loop", None)
    assert [e.prompt_text for e in first.examples] == ["landed directly"]
    ing.flush()
    second = extract_new(wh, "loop", first.watermark_to)
    assert sorted(e.prompt_text for e in second.examples) == ["buffered early", "x"]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="flush_size=0"):
        Ingestor(None, "loop", flush_size=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^table="):
        Ingestor(None, "bad name", flush_size=1)  # type: ignore[arg-type]
