"""Your own extract query: refused before it runs unless it is one read-only SELECT over declared
parameters returning the canonical columns; an accepted one runs on the embedded warehouse."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

from tuneloop.config import ConfigError
from tuneloop.stages import check_config
from tuneloop.warehouse import duckdb_uri
from tuneloop.warehouse.duckdb import DuckDBWarehouse
from tuneloop.warehouse.extract_query import (
    RESERVED_PARAMS,
    QueryRefused,
    check_extract_query,
    query_extract_to_files,
    resolve,
)

GOOD = "SELECT txt AS text, intent AS label, landed AS ingested_at FROM tickets WHERE queue = @queue"

# (name, SQL, what the message must say). Each is a kind of query that must never run.
HOSTILE = [
    ("insert", "INSERT INTO tickets (txt) VALUES ('x')", r"INSERT"),
    ("drop", "DROP TABLE tickets", r"DROP"),
    ("create", "CREATE TABLE t2 AS SELECT txt AS text FROM tickets", r"CREATE"),
    ("update", "UPDATE tickets SET txt = 'x' WHERE TRUE", r"UPDATE"),
    ("delete", "DELETE FROM tickets WHERE TRUE", r"DELETE"),
    ("merge", "MERGE tickets t USING tickets s ON t.txt = s.txt WHEN MATCHED THEN DELETE", r"MERGE"),
    ("truncate", "TRUNCATE TABLE tickets", r"TRUNCATE"),
    ("two statements", GOOD + "; DROP TABLE tickets", r"2 statements"),
    ("comment then statement", "SELECT txt AS text /* harmless */ FROM tickets;\n-- and now\nDELETE FROM tickets WHERE TRUE",
     r"2 statements"),
    ("delete in a CTE", "WITH gone AS (DELETE FROM tickets WHERE TRUE RETURNING *) SELECT txt AS text, intent AS label, "
     "landed AS ingested_at FROM gone", r"DELETE|not valid"),
    ("insert in a CTE", "WITH x AS (INSERT INTO tickets (txt) VALUES ('x')) SELECT 1 AS text", r"INSERT|not valid"),
    ("select into", "SELECT txt AS text, intent AS label, landed AS ingested_at INTO copy_t FROM tickets",
     r"SELECT \.\.\. INTO"),
    ("copy", "COPY tickets TO '/tmp/out.csv'", r"COPY|not a query"),
    ("attach", "ATTACH '/tmp/other.duckdb' AS other", r"not valid BigQuery|not a query"),
    ("pragma", "PRAGMA table_info('tickets')", r"PRAGMA|not a query"),
    ("export data", "EXPORT DATA OPTIONS(uri='gs://b/*.csv', format='CSV') AS SELECT txt FROM tickets",
     r"EXPORT|not a query"),
    ("call", "CALL ds.proc()", r"not a query|cannot parse"),
    ("execute immediate", "EXECUTE IMMEDIATE 'DROP TABLE tickets'", r"not a query|cannot parse"),
    ("for update", "SELECT txt AS text, intent AS label, landed AS ingested_at FROM tickets FOR UPDATE",
     r"FOR UPDATE"),
    ("read_csv", "SELECT column0 AS text, column1 AS label, CURRENT_TIMESTAMP() AS ingested_at "
     "FROM read_csv('/etc/passwd')", r"table functions|read_csv"),
    ("read_parquet in an expression", "SELECT (SELECT COUNT(*) FROM read_parquet('/data/x.parquet')) AS text, "
     "intent AS label, landed AS ingested_at FROM tickets", r"read_parquet|READ_PARQUET|table functions"),
    ("file path as a table", "SELECT a AS text, b AS label, c AS ingested_at FROM `/etc/passwd`", r"not a table name"),
    ("external query", "SELECT a AS text, b AS label, c AS ingested_at FROM EXTERNAL_QUERY('conn', 'SELECT 1')",
     r"table functions"),
    ("ml predict", "SELECT a AS text, b AS label, c AS ingested_at FROM ML.PREDICT(MODEL ds.m, TABLE tickets)",
     r"PREDICT|table functions"),
    ("udf through a dataset", "SELECT ds.remote_fn(txt) AS text, intent AS label, landed AS ingested_at FROM tickets",
     r"called through a dataset"),
    ("getenv", "SELECT getenv('HOME') AS text, intent AS label, landed AS ingested_at FROM tickets", r"getenv"),
    ("duckdb query()", "SELECT query('DROP TABLE tickets') AS text, intent AS label, landed AS ingested_at FROM tickets",
     r"query\(\)"),
    ("system variable", "SELECT @@session.time_zone AS text, intent AS label, landed AS ingested_at FROM tickets",
     r"system variable"),
    ("positional placeholder", "SELECT txt AS text, intent AS label, landed AS ingested_at FROM tickets WHERE q = ?",
     r"placeholder|not valid"),
]


@pytest.fixture
def tickets(tmp_path):
    """A DuckDB warehouse with a team's own table (not tuneloop's layout): 3 rows of queue 'billing', 1 'other'."""
    path = tmp_path / "wh.duckdb"
    t0 = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    with DuckDBWarehouse(path) as wh:
        wh.query("CREATE TABLE tickets (txt STRING, intent STRING, queue STRING, landed TIMESTAMP, agent STRING)")
        rows = [("where is my refund", "refund", "billing", 0, "a1"), ("charged twice", "refund", "billing", 1, "a2"),
                ("", "refund", "billing", 2, "a1"), ("reset my password", "account", "other", 3, "a3")]
        for text, label, queue, hour, agent in rows:
            wh.query("INSERT INTO tickets VALUES (@t, @l, @q, @at, @a)",
                     {"t": text, "l": label, "q": queue, "at": t0 + dt.timedelta(hours=hour), "a": agent})
    return path


def _sql(tmp_path, text, name="q.sql"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _count(path) -> int:
    with DuckDBWarehouse(path) as wh:
        return wh.query("SELECT COUNT(*) AS n FROM tickets").to_pylist()[0]["n"]


@pytest.mark.parametrize("name, sql, message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_query_that_is_not_one_read_only_select_is_refused_before_it_runs(tickets, tmp_path, name, sql, message):
    path = _sql(tmp_path, sql)
    with pytest.raises(QueryRefused, match=message) as info:
        check_extract_query(path, {})
    assert path in str(info.value)  # the message names the query
    with pytest.raises(QueryRefused, match=message):  # and the extract refuses it too, before running anything
        query_extract_to_files(duckdb_uri(str(tickets)), path, {}, None, tmp_path / "e.parquet",
                               tmp_path / "q.jsonl", table="tickets")
    assert not (tmp_path / "e.parquet").exists()
    assert _count(tickets) == 4
    with DuckDBWarehouse(tickets) as wh:
        assert wh.has_table("tickets") and not wh.has_table("copy_t") and not wh.has_table("t2")


@pytest.mark.parametrize(
    "sql, params, message",
    [
        (GOOD, {}, r"uses @queue .*query_params does not declare; add query_params=\{'queue'"),
        (GOOD, {"queue": "billing", "region": "eu"}, r"declares \['region'\] but .* never uses it"),
        (GOOD, {"queue": "billing", "watermark": "2020-01-01"}, r"@watermark is reserved and bound by tuneloop"),
        (GOOD, {"queue": {"nested": 1}}, r"query_params.queue=.* is a dict"),
        (GOOD, {"bad name": 1}, r"not a parameter name"),
    ],
    ids=["undeclared", "declared-unused", "reserved", "nested-value", "bad-name"],
)
def test_parameters_must_be_exactly_the_declared_ones(tmp_path, sql, params, message):
    with pytest.raises(QueryRefused, match=message):
        check_extract_query(_sql(tmp_path, sql), params)


@pytest.mark.parametrize(
    "sql, message",
    [
        ("SELECT txt AS text, intent AS label FROM tickets", r"lacks the watermark column 'ingested_at'"),
        ("SELECT intent AS label, landed AS ingested_at FROM tickets", r"lacks 'messages' .* or 'text' \+ 'label'"),
        ("SELECT txt AS text, landed AS ingested_at FROM tickets", r"lacks 'label'"),
        ("SELECT * FROM tickets", r"selects \*: name the output columns"),
        ("SELECT txt AS text, intent AS label, landed AS ingested_at, agent AS creatd_at FROM tickets",
         r"'creatd_at': did you mean the canonical column 'created_at'"),
        ("SELECT txt AS text, intent AS label, landed AS ingested_at, UPPER(txt) FROM tickets", r"has no name"),
        ("SELECT txt AS text, intent AS label, landed AS ingested_at, agent AS text FROM tickets", r"twice"),
        ("SELECT txt AS text, intent AS label, landed AS ingested_at FROM {{other}}", r"the only slot is \{\{table\}\}"),
    ],
    ids=["no-watermark", "no-content", "text-without-label", "star", "typo", "unnamed", "duplicate", "slot"],
)
def test_the_output_must_hold_the_canonical_columns(tmp_path, sql, message):
    with pytest.raises(QueryRefused, match=message):
        check_extract_query(_sql(tmp_path, sql), {})


def test_a_chat_task_needs_messages_and_a_classification_task_a_label(tmp_path):
    path = _sql(tmp_path, "SELECT msgs AS messages, landed AS ingested_at FROM chats")
    assert check_extract_query(path, {}, task="chat")["task"] == "chat"
    with pytest.raises(QueryRefused, match=r"lacks 'label' \(task='classification'\)"):
        check_extract_query(path, {}, task="classification")
    with pytest.raises(QueryRefused, match=r"makes chat examples, but task='classification'"):
        check_extract_query("ai_survived_games", {}, task="classification")


@pytest.mark.parametrize(
    "extract_query, params, message",
    [
        ("ai_survived_gmes", {}, r"not a packaged extract query \(did you mean 'ai_survived_games'\?\)"),
        ("create_table", {}, r"not a packaged extract query"),
        ("SELECT 1 AS text", {}, r"SQL is not accepted inline"),
        ("/no/such/dir/q.sql", {}, r"no such file"),
        ("ai_survived_games", {"min_mesages": 4}, r"unknown key 'min_mesages' .*did you mean 'min_messages'"),
        ("ai_survived_games", {"min_messages": 2.5}, r"min_messages=2.5 must be an integer"),
        ("ai_survived_games", {"min_messages": -1}, r"min_messages=-1 must be an integer >= 0"),
        ("", {"queue": "x"}, r"query_params=.* is set but extract_query is empty"),
    ],
    ids=["typo", "not-an-extract", "inline", "missing-file", "param-typo", "fraction", "negative", "params-no-query"],
)
def test_naming_the_query_wrongly_says_what_to_write(extract_query, params, message):
    with pytest.raises(QueryRefused, match=message):
        check_extract_query(extract_query, params)


def test_the_first_task_refuses_the_query_before_any_work(tmp_path):
    base = dict(provider="sklearn", registry_uri=str(tmp_path / "reg"), model_name="m", thresholds={},
                hyperparameters={})
    assert check_config(**base)["provider"] == "sklearn"  # no query: unchanged
    chat = {**base, "provider": "oss-lora", "task": "chat"}
    assert check_config(**chat, extract_query="ai_survived_games", query_params={"min_messages": 4.0})
    with pytest.raises(ConfigError, match=r"makes chat examples, but task='classification'"):
        check_config(**base, extract_query="ai_survived_games", query_params={"min_messages": 4.0})
    with pytest.raises(ConfigError, match=r"2 statements"):
        check_config(**base, extract_query=_sql(tmp_path, GOOD + "; DROP TABLE tickets"), query_params={"queue": "b"})
    with pytest.raises(ConfigError, match=r"uses @queue"):
        check_config(**base, extract_query=_sql(tmp_path, GOOD), query_params={})


def test_an_accepted_query_runs_with_bound_values_and_quarantines_bad_rows(tickets, tmp_path):
    path = _sql(tmp_path, "-- the billing queue, as classification examples\n"
                          "SELECT txt AS text, intent AS label, landed AS ingested_at, agent AS agent_id\n"
                          "FROM tickets WHERE queue = @queue AND LENGTH(txt) >= @min_len;\n")
    uri = duckdb_uri(str(tickets))
    first = query_extract_to_files(uri, path, {"queue": "billing", "min_len": 0.0}, None, tmp_path / "e1.parquet",
                                   tmp_path / "q1.jsonl")  # 0.0: KFP's float for the JSON number 0
    rows = pq.read_table(tmp_path / "e1.parquet").to_pylist()
    assert (first.rows_read, first.examples, first.quarantined) == (3, 2, 1)
    assert sorted(r["label"] for r in rows) == ["refund", "refund"]
    assert {json.loads(r["meta"])["agent_id"] for r in rows} == {"a1", "a2"}  # other columns land in meta
    bad = [json.loads(line) for line in (tmp_path / "q1.jsonl").read_text().splitlines()]
    assert [b["reason"] for b in bad] == ["text: '': a classification row needs the text a person wrote"]
    assert first.watermark_to == "2026-04-01T02:00:00.000000Z"  # the newest landed row read
    # a value is bound, never SQL: an injection attempt matches nothing and changes nothing
    hostile = query_extract_to_files(uri, path, {"queue": "x' OR '1'='1", "min_len": 0}, None,
                                     tmp_path / "e2.parquet", tmp_path / "q2.jsonl")
    assert hostile.rows_read == 0 and _count(tickets) == 4
    again = query_extract_to_files(uri, path, {"queue": "billing", "min_len": 0}, first.watermark_to,
                                   tmp_path / "e3.parquet", tmp_path / "q3.jsonl")
    assert again.rows_read == 0 and again.watermark_to == first.watermark_to


def test_max_rows_never_splits_rows_that_landed_together(tickets, tmp_path):
    with DuckDBWarehouse(tickets) as wh:  # 'other' lands at 03:00, the three billing rows together at 05:00
        wh.query("UPDATE tickets SET landed = TIMESTAMP '2026-04-01 05:00:00+00' WHERE queue = 'billing'")
    path = _sql(tmp_path, "SELECT txt AS text, intent AS label, landed AS ingested_at FROM tickets")
    uri = duckdb_uri(str(tickets))
    one = query_extract_to_files(uri, path, {}, None, tmp_path / "e1.parquet", tmp_path / "q1.jsonl", max_rows=1)
    two = query_extract_to_files(uri, path, {}, None, tmp_path / "e2.parquet", tmp_path / "q2.jsonl", max_rows=2)
    assert (one.rows_read, one.watermark_to) == (1, "2026-04-01T03:00:00.000000Z")
    assert (two.rows_read, two.watermark_to) == (4, "2026-04-01T05:00:00.000000Z")


def test_the_embedded_warehouse_runs_extract_queries_read_only_whatever_the_sql(tickets, tmp_path):
    """Defence in depth: even SQL that got past the checks cannot write, read files or attach databases."""
    (tmp_path / "secret.csv").write_text("a\n1\n")
    with DuckDBWarehouse(tickets, read_only=True) as wh:
        assert wh.query("SELECT COUNT(*) AS n FROM tickets").to_pylist() == [{"n": 4}]
        for statement in ("DELETE FROM tickets WHERE TRUE", f"SELECT * FROM read_csv('{tmp_path}/secret.csv')",
                          f"ATTACH '{tmp_path}/x.duckdb' AS x", f"COPY tickets TO '{tmp_path}/out.csv'"):
            with pytest.raises(Exception, match=r"read-only|disabled|Permission|Cannot"):
                wh._con.execute(statement).fetchall()
    assert _count(tickets) == 4 and not (tmp_path / "out.csv").exists()


def test_the_reserved_parameters_are_documented_and_bound_whether_or_not_the_query_uses_them(tickets, tmp_path):
    from pathlib import Path

    from tuneloop.warehouse import extract_query

    docs = (Path(__file__).parents[2] / "docs" / "extract-queries.md").read_text()
    for name in RESERVED_PARAMS:
        assert f"``@{name}``" in extract_query.__doc__ and f"| `@{name}` |" in docs
    assert resolve("") is None  # "" = the interaction-table extract
    uses = _sql(tmp_path, "SELECT txt AS text, intent AS label, landed AS ingested_at FROM tickets "
                          "WHERE landed > @watermark AND landed <= @read_until LIMIT @max_rows", "uses.sql")
    got = query_extract_to_files(duckdb_uri(str(tickets)), uses, {}, "2026-04-01T00:30:00Z", tmp_path / "e.parquet",
                                 tmp_path / "q.jsonl")
    assert got.rows_read == 3  # the hour-0 row is before the watermark


SELECT_BILLING = "SELECT txt AS text, intent AS label, landed AS ingested_at FROM tickets WHERE queue = 'billing'"


@pytest.mark.parametrize(
    "sql",
    [
        SELECT_BILLING + " -- a trailing comment",
        SELECT_BILLING + " # a BigQuery comment",
        SELECT_BILLING + ";;",
        SELECT_BILLING + "; -- bye",
        "WITH b AS (" + SELECT_BILLING + ") SELECT text, label, ingested_at FROM b",
        SELECT_BILLING + " AND txt != '' UNION ALL " + SELECT_BILLING + " AND txt = ''",
        "SELECT SUBSTR(txt, 1, 200) AS text, intent AS label, landed AS ingested_at\n"
        "FROM tickets WHERE queue = 'billing' AND txt NOT LIKE '%DROP TABLE%'  /* ; DELETE FROM tickets */",
    ],
    ids=["dash-comment", "hash-comment", "semicolons", "comment-after-semicolon", "cte", "union", "comments"],
)
def test_read_only_queries_in_every_ordinary_form_are_accepted_and_run(tickets, tmp_path, sql):
    got = query_extract_to_files(duckdb_uri(str(tickets)), _sql(tmp_path, sql), {}, None, tmp_path / "e.parquet",
                                 tmp_path / "q.jsonl")
    assert (got.rows_read, got.examples, got.quarantined) == (3, 2, 1)
    assert _count(tickets) == 4
