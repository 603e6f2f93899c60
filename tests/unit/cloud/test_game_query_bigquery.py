"""Extract queries on BigQuery (bqemulator, real client): the packaged game query returns the same
conversations as on DuckDB from the same games; BigQuery's own dry run refuses what is not a SELECT."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

from tuneloop import demo_games
from tuneloop.warehouse import duckdb_uri, open_warehouse
from tuneloop.warehouse.extract_query import QueryRefused, iter_query_extract, query_extract_to_files, resolve

LANDED = dt.datetime(2026, 5, 10, 12, 0, tzinfo=dt.UTC)


def _extract(uri, tmp_path, tag, params, watermark=None):
    summary = query_extract_to_files(uri, "ai_survived_games", params, watermark, tmp_path / f"{tag}.parquet",
                                     tmp_path / f"{tag}.jsonl", table="game_results")
    rows = pq.read_table(tmp_path / f"{tag}.parquet").to_pylist() if summary.examples else []
    bad = [json.loads(line) for line in (tmp_path / f"{tag}.jsonl").read_text().splitlines()]
    conversations = sorted((r["id"], json.dumps(r["messages"]), r["meta"], r["created_at"]) for r in rows)
    reasons = sorted((b["row"]["document_path"], b["row"]["seat_player"], b["reason"]) for b in bad)
    return summary, conversations, reasons


def test_the_game_query_returns_the_same_conversations_on_bigquery_and_duckdb(bq_uri, tmp_path):
    duck = duckdb_uri(str(tmp_path / "wh.duckdb"))
    start = dt.datetime(2026, 5, 9, 8, 0, tzinfo=dt.UTC)
    for uri in (duck, bq_uri):  # the same 60 games (with malformed ones), landed at the same time
        demo_games.load_demo_games(uri, 60, seed=21, start=start, ingested_at=LANDED)
    params = {"min_messages": 7.0, "persona_prompt": ""}
    d_sum, d_conv, d_bad = _extract(duck, tmp_path, "duck", params)
    b_sum, b_conv, b_bad = _extract(bq_uri, tmp_path, "bq", params)
    assert len(d_conv) > 15 and d_bad  # a real comparison: many conversations, some quarantined
    assert b_conv == d_conv
    assert b_bad == d_bad
    assert (b_sum.rows_read, b_sum.watermark_to) == (d_sum.rows_read, d_sum.watermark_to) == (
        d_sum.rows_read, "2026-05-10T12:00:00.000000Z")
    # a parameter that changes the result changes it the same way on both
    _, d_short, _ = _extract(duck, tmp_path, "duck2", {"min_messages": 20, "persona_prompt": "Be brief."})
    _, b_short, _ = _extract(bq_uri, tmp_path, "bq2", {"min_messages": 20, "persona_prompt": "Be brief."})
    assert b_short == d_short and 0 < len(d_short) < len(d_conv)
    assert all(json.loads(c[1])[0]["content"] == "Be brief." for c in b_short)
    # and the watermark: nothing is new after it on either engine
    for uri in (duck, bq_uri):
        assert _extract(uri, tmp_path, "again", params, watermark=d_sum.watermark_to)[0].rows_read == 0


def test_your_own_query_reads_a_table_by_its_plain_name_on_both_engines(bq_uri, tmp_path):
    """A .sql file of your own, a one-part table name (BigQuery resolves it in the warehouse's dataset)."""
    sql = tmp_path / "seats.sql"
    sql.write_text("-- which AI seats of a provider survived, as classification examples\n"
                   "SELECT g.game_id AS text, seat.outcome AS label, g.ingested_at AS ingested_at, seat.player AS seat\n"
                   "FROM game_results AS g CROSS JOIN UNNEST(g.ai_seats) AS seat\n"
                   "WHERE seat.provider = @provider AND seat.outcome IN UNNEST(@outcomes)\n")
    duck = duckdb_uri(str(tmp_path / "wh.duckdb"))
    got = []
    for uri in (duck, bq_uri):
        demo_games.load_demo_games(uri, 30, seed=5, ingested_at=LANDED)
        summary = query_extract_to_files(uri, str(sql), {"provider": "openai", "outcomes": ["survived", "voted_out"]},
                                         None, tmp_path / "e.parquet", tmp_path / "q.jsonl")
        rows = pq.read_table(tmp_path / "e.parquet").to_pylist()
        got.append(sorted((r["id"], r["label"], json.loads(r["meta"])["seat"]) for r in rows))
        assert summary.examples == len(rows)
    assert got[0] == got[1] and {label for _, label, _ in got[0]} == {"survived", "voted_out"} and len(got[0]) > 10


def test_bigquery_dry_run_reads_the_statement_type(bq_uri):
    demo_games.load_demo_games(bq_uri, 2, seed=1)
    wh = open_warehouse(bq_uri)
    try:
        assert wh.statement_type("SELECT game_id FROM {{t}}", {}, identifiers={"t": "game_results"}) == "SELECT"
        assert wh.statement_type("DELETE FROM {{t}} WHERE TRUE", {}, identifiers={"t": "game_results"}) == "DELETE"
        assert wh.query("SELECT COUNT(*) AS n FROM {{t}}", {}, identifiers={"t": "game_results"}).to_pylist() == [
            {"n": 2}]  # the dry run deleted nothing
    finally:
        wh.close()


def test_a_query_the_engine_reads_as_a_write_is_refused_before_it_runs(bq_uri):
    """Defence in depth: were the parse checks ever to miss a write, BigQuery's dry run still stops it."""
    demo_games.load_demo_games(bq_uri, 2, seed=1)
    write = ("DELETE FROM {{table}} WHERE ingested_at > @watermark AND ingested_at <= @read_until AND @max_rows > 0 "
             "AND @min_messages >= 0 AND @persona_prompt = ''")
    wh = open_warehouse(bq_uri)
    try:
        with pytest.raises(QueryRefused, match=r"BigQuery reads it as a DELETE statement, not a SELECT"):
            list(iter_query_extract(wh, _Raw(resolve("ai_survived_games"), write), None, table="game_results"))
        assert wh.query("SELECT COUNT(*) AS n FROM {{t}}", {}, identifiers={"t": "game_results"}).to_pylist() == [
            {"n": 2}]
    finally:
        wh.close()


class _Raw:
    """An ExtractQuery whose statement is given verbatim (what a parser bug would let through)."""

    def __init__(self, query, statement):
        self._q, self._s = query, statement

    def statement(self):
        return self._s

    def __getattr__(self, name):
        return getattr(self._q, name)


def test_a_query_file_on_gcs_is_read_and_checked_like_a_local_one(gcs, tmp_path):
    from tuneloop import storage
    from tuneloop.warehouse.extract_query import check_extract_query

    good, bad = f"{gcs}/queries/seats.sql", f"{gcs}/queries/bad.sql"
    storage.write(good, b"SELECT g.game_id AS text, seat.outcome AS label, g.ingested_at AS ingested_at\n"
                        b"FROM {{table}} AS g CROSS JOIN UNNEST(g.ai_seats) AS seat WHERE seat.provider = @provider")
    storage.write(bad, b"SELECT game_id AS text FROM game_results; DROP TABLE game_results")
    assert check_extract_query(good, {"provider": "openai"})["columns"] == ["text", "label", "ingested_at"]
    with pytest.raises(QueryRefused, match=r"2 statements"):
        check_extract_query(bad, {})
    with pytest.raises(QueryRefused, match=r"no such file"):
        check_extract_query(f"{gcs}/queries/missing.sql", {})
    duck = duckdb_uri(str(tmp_path / "wh.duckdb"))
    demo_games.load_demo_games(duck, 20, seed=2)
    got = query_extract_to_files(duck, good, {"provider": "openai"}, None, tmp_path / "e.parquet", tmp_path / "q.jsonl",
                                 table="game_results")
    assert got.rows_read > 3
