"""The warehouse interface on the embedded DuckDB backend: identifiers, URIs, parameters, transpiling."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from tuneloop.examples import classification_example
from tuneloop.warehouse import (
    TABLE_COLUMNS,
    WarehouseError,
    example_to_row,
    load_query,
    open_warehouse,
    validate_identifier,
)
from tuneloop.warehouse.base import COLUMN_TYPES, Warehouse, coerce_row, duckdb_uri
from tuneloop.warehouse.duckdb import DuckDBWarehouse
from tuneloop.warehouse.sql import parameter_names, render


@pytest.fixture
def wh():
    w = open_warehouse("duckdb://:memory:")
    w.ensure_table("loop")
    yield w
    w.close()


def _row(text: str, label: str, **kw) -> dict:
    return example_to_row(classification_example(text, label, created_at="2025-01-01T00:00:00Z"), **kw)


# -- identifiers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, parts",
    [
        ("loop", ("loop",)),
        ("_t1", ("_t1",)),
        ("support.interactions", ("support", "interactions")),
        ("my-project-42.support.interactions", ("my-project-42", "support", "interactions")),
    ],
)
def test_valid_identifiers_split_into_parts(name, parts):
    assert validate_identifier(name) == parts


@pytest.mark.parametrize(
    "name",
    [
        "",
        "1table",
        "my table",
        "t;drop",
        "t`x",
        't"x',
        "a.b.c.d",
        "ds.my-table",
        "a..b",
        "x'; DROP TABLE t; --",
    ],
)
def test_invalid_identifiers_name_the_parameter_and_rule(name):
    with pytest.raises(ValueError) as err:
        validate_identifier(name, param="table")
    msg = str(err.value)
    assert msg.startswith("table=")
    assert "[A-Za-z_][A-Za-z0-9_]*" in msg or "dotted parts" in msg


def test_duckdb_refuses_a_three_part_bigquery_name(wh):
    with pytest.raises(ValueError, match="dotted parts"):
        wh.ensure_table("proj.ds.t")


def test_identifier_slots_must_match_exactly():
    with pytest.raises(ValueError, match="needs"):
        render("SELECT * FROM {{table}}", {})
    with pytest.raises(ValueError, match="no \\{\\{slot\\}\\}"):
        render("SELECT 1", {"table": "t"})
    assert render("SELECT * FROM {{ table }}", {"table": "ds.t"}) == "SELECT * FROM `ds`.`t`"


# -- URIs ------------------------------------------------------------------------------------------


def test_duckdb_uri_round_trips_relative_and_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel = open_warehouse("duckdb:///sub/rel.duckdb")
    rel.ensure_table("t")
    rel.close()
    assert (tmp_path / "sub" / "rel.duckdb").is_file()
    absolute = tmp_path / "abs.duckdb"
    w = open_warehouse(duckdb_uri(str(absolute)))
    assert isinstance(w, DuckDBWarehouse) and isinstance(w, Warehouse)
    w.close()
    assert absolute.is_file() and duckdb_uri(str(absolute)).startswith("duckdb:////")


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("bigquery://proj", "bigquery://PROJECT/DATASET"),
        ("bigquery://proj/ds", "not a Google Cloud project id"),
        ("postgres://host/db", "valid schemes"),
        ("warehouse.duckdb", "not a warehouse URI"),
        ("duckdb://rel.duckdb", "three slashes"),
    ],
)
def test_bad_uris_say_what_to_write(uri, expected):
    with pytest.raises(ValueError, match=expected) as err:
        open_warehouse(uri)
    assert f"warehouse={uri!r}" in str(err.value) or "duckdb:///" in str(err.value)


def test_importing_the_package_does_not_import_duckdb_or_sqlglot():
    code = (
        "import sys, tuneloop.warehouse, tuneloop.loading, tuneloop.demo_data;"
        "print(sorted(m for m in ('duckdb', 'sqlglot', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- queries -------------------------------------------------------------------------------------


def test_injection_attempt_stays_a_value(wh):
    evil = "x'; DROP TABLE loop; --"
    wh.insert_rows("loop", [_row("hello", "greeting"), {**_row("bye", "greeting"), "label": evil}])
    got = wh.query(
        "SELECT label FROM {{table}} WHERE label = @label", {"label": evil}, identifiers={"table": "loop"}
    )
    assert got.column("label").to_pylist() == [evil]
    count = wh.query("SELECT COUNT(*) AS n FROM {{table}}", {}, identifiers={"table": "loop"})
    assert count.column("n").to_pylist() == [2]  # the table is still there, both rows in it


def test_bigquery_only_constructs_run_on_duckdb(wh):
    old = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    wh.insert_rows("loop", [_row("a", "x", ingested_at=old), _row("b", "y")])
    got = wh.query(
        "SELECT label, SAFE_CAST(@n AS INT64) AS n, COUNTIF(weight > 0) OVER () AS c FROM {{table}} "
        "WHERE ingested_at > TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)",
        {"n": "not a number"},
        identifiers={"table": "loop"},
    )
    assert got.to_pylist() == [{"label": "y", "n": None, "c": 1}]


def test_query_parameters_are_checked_by_name(wh):
    sql = "SELECT 'support@example.com' AS e, @a AS a"
    assert parameter_names(sql) == {"a"}  # an @ inside a string literal is no parameter
    with pytest.raises(ValueError, match="needs @a"):
        wh.query(sql, {})
    with pytest.raises(ValueError, match="not used"):
        wh.query(sql, {"a": 1, "b": 2})
    with pytest.raises(ValueError, match="params\\['a'\\]"):
        wh.query(sql, {"a": object()})
    assert wh.query(sql, {"a": 7}).to_pylist() == [{"e": "support@example.com", "a": 7}]


def test_multiple_statements_and_system_variables_are_refused(wh):
    with pytest.raises(ValueError, match="exactly one SQL statement"):
        wh.query("SELECT 1; DROP TABLE {{table}}", {}, identifiers={"table": "loop"})
    with pytest.raises(ValueError, match="system variables"):
        wh.query("SELECT @@dataset_id", {})
    assert wh.has_table("loop")


def test_missing_table_error_says_how_to_create_it(wh):
    with pytest.raises(WarehouseError, match="tuneloop load"):
        wh.query("SELECT * FROM {{table}}", {}, identifiers={"table": "nope"})


def test_ensure_table_creates_the_schema_and_refuses_a_foreign_table(wh):
    wh.ensure_table("support.loop")
    assert wh.has_table("support.loop") and not wh.has_table("support.other")
    assert list(wh.columns("support.loop")) == list(TABLE_COLUMNS)
    wh.query("CREATE TABLE {{table}} (id STRING, n INT64)", {}, identifiers={"table": "foreign_t"})
    with pytest.raises(WarehouseError, match="lacks columns"):
        wh.ensure_table("foreign_t")


def test_packaged_templates_cover_the_schema():
    create = load_query("create_table")
    for col, typ in COLUMN_TYPES.items():
        assert f"{col} {typ}" in create
    with pytest.raises(ValueError, match="extract_examples"):
        load_query("../../etc/passwd")


def test_coerce_row_refuses_what_cannot_be_stored_and_keeps_what_extract_judges():
    with pytest.raises(ValueError, match="^weight: '1.5'"):
        coerce_row({"weight": "1.5"})
    with pytest.raises(ValueError, match="^colour: unknown column"):
        coerce_row({"colour": "red"})
    with pytest.raises(ValueError, match="^created_at: 'yesterday'"):
        coerce_row({"created_at": "yesterday"})
    kept = coerce_row({"messages": "[{broken", "weight": -1, "meta": {"b": 1, "a": 2}})
    assert kept["messages"] == "[{broken" and kept["weight"] == -1.0 and kept["meta"] == '{"a":2,"b":1}'
    assert kept["ingested_at"].tzinfo is not None
