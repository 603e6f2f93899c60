"""The game table layout: one definition, the document mapping and its errors, both engines' DDL."""

from __future__ import annotations

import datetime as dt

import pytest

from tuneloop.warehouse import games, open_warehouse
from tuneloop.warehouse.sql import transpile

T0 = dt.datetime(2026, 3, 1, 20, 0, tzinfo=dt.UTC)


def doc(**override):
    d = {
        "ended_at": "2026-03-01T20:00:00Z",
        "players": ["ana", {"name": "ben", "avatar": 3}, "cleo"],
        "ai_seats": [{"player": "cleo", "provider": "oss-lora", "model_id": "gs://b/m", "registry_version": 4,
                      "outcome": "SURVIVED"}],
        "chat_log": [{"speaker": "ana", "text": "hi all", "sent_at": T0 - dt.timedelta(seconds=40)},
                     {"speaker": "cleo", "text": "", "sent_at": "2026-03-01T19:59:40+00:00"}],
    }
    d.update(override)
    return d


def test_the_duckdb_ddl_is_what_the_bigquery_ddl_transpiles_to():
    import duckdb

    wh = open_warehouse("duckdb://:memory:")
    games.ensure_tables(wh)  # runs the BigQuery DDL, transpiled
    games.ensure_tables(wh)  # idempotent
    con = duckdb.connect(":memory:")
    for table, ddl, columns in ((games.GAMES_TABLE, games.GAMES_DDL, games.GAME_COLUMNS),
                                (games.DEAD_LETTER_TABLE, games.DEAD_LETTER_DDL, games.DEAD_LETTER_COLUMNS)):
        con.execute(ddl["duckdb"].replace("{{table}}", table))  # the DuckDB DDL, as written
        spelled = dict(con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position", [table]).fetchall())
        assert wh.columns(table) == spelled == {c.name: c.duckdb for c in columns}
    assert "ARRAY<STRUCT<" in games.GAMES_DDL["bigquery"] and "STRUCT(" in games.GAMES_DDL["duckdb"]
    assert "NOT NULL" in transpile(games.GAMES_DDL["bigquery"].replace("{{table}}", "t"), "duckdb")
    wh.close()


def test_a_document_maps_to_a_typed_row():
    row = games.game_from_document("projects/p/databases/(default)/documents/game_results/g42", doc())
    assert row.game_id == "g42" and row.ended_at == T0
    assert row.players == ("ana", "ben", "cleo")
    assert row.ai_seats == (games.AISeat("cleo", "oss-lora", "gs://b/m", "v4", "survived"),)
    assert row.ai_seats[0].survived
    assert [(line.speaker, line.text) for line in row.chat_log] == [("ana", "hi all"), ("cleo", "")]
    assert row.chat_log[1].sent_at == T0 - dt.timedelta(seconds=20)
    assert row.persona_prompt is None
    assert games.game_from_document("game_results/x", doc(game_id="own-id", persona_prompt="be nice")).game_id == "own-id"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"ended_at": None}, "ended_at: is null"),
        ({"ended_at": "last tuesday"}, "ended_at: 'last tuesday' is not an ISO-8601 timestamp"),
        ({"ended_at": 1772395200}, "epoch numbers are ambiguous"),
        ({"players": []}, "players: is empty"),
        ({"players": ["ana", 7]}, "players[1]: 7 is a number; write a string"),
        ({"ai_seats": {"player": "cleo"}}, "ai_seats: {'player': 'cleo'} is a map; write an array"),
        ({"ai_seats": [{"player": "cleo", "provider": "x", "model_id": "m", "outcome": "lost"}]},
         "ai_seats[0].outcome: 'lost' is not an outcome; write one of ['survived', 'voted_out']"),
        ({"ai_seats": [{"player": "cleo", "provider": "x", "outcome": "survived"}]}, "ai_seats[0].model_id: is missing"),
        ({"ai_seats": [{"player": "cleo", "provider": "x", "model_id": "m", "registry_version": -1,
                        "outcome": "survived"}]}, "ai_seats[0].registry_version: -1 is not a registry version"),
        ({"ai_seats": [{"player": "cleo", "provider": "x", "model_id": "m", "outcome": "survived"}] * 2},
         "ai_seats[1].player: 'cleo' has two AI seats"),
        ({"chat_log": ["hello"]}, "chat_log[0]: 'hello' is a str; write a map with speaker, text, sent_at"),
        ({"chat_log": [{"speaker": " ", "text": "x", "sent_at": T0}]}, "chat_log[0].speaker: is empty"),
        ({"persona_prompt": ["a"]}, "persona_prompt: ['a'] is a array"),
        ({"game_id": 12}, "game_id: 12 is a number"),
    ],
)
def test_a_document_that_does_not_map_names_the_field_and_the_fix(override, message):
    with pytest.raises(games.GameDocumentError) as err:
        games.game_from_document("game_results/bad", doc(**override))
    assert message in str(err.value)


def test_a_missing_field_with_a_near_name_says_which_to_rename():
    d = doc()
    d["chatLog"] = d.pop("chat_log")
    with pytest.raises(games.GameDocumentError, match="chat_log: is missing.*'chatLog': rename it to 'chat_log'"):
        games.game_from_document("game_results/x", d)


def test_insert_is_idempotent_by_document_path_and_the_table_reads_with_unnest(tmp_path):
    wh = open_warehouse(f"duckdb:///{tmp_path}/w.duckdb")
    games.ensure_tables(wh)
    a = games.game_from_document("game_results/a", doc())
    b = games.game_from_document("game_results/b", doc(ai_seats=[
        {"player": "ana", "provider": "openai", "model_id": "ft:x", "outcome": "voted out"},
        {"player": "cleo", "provider": "openai", "model_id": "ft:x", "registry_version": "v2", "outcome": "survived"}]))
    assert games.insert_games(wh, games.GAMES_TABLE, [a, a]) == ["game_results/a"]
    assert games.insert_games(wh, games.GAMES_TABLE, [a, b]) == ["game_results/b"]
    assert games.insert_games(wh, games.GAMES_TABLE, [b]) == []
    survived = wh.query(
        "SELECT g.document_path, seat.player, seat.registry_version FROM {{t}} AS g CROSS JOIN UNNEST(g.ai_seats) "
        "AS seat WHERE seat.outcome = 'survived' ORDER BY 1, 2", {}, identifiers={"t": games.GAMES_TABLE},
    ).to_pylist()
    assert survived == [{"document_path": "game_results/a", "player": "cleo", "registry_version": "v4"},
                        {"document_path": "game_results/b", "player": "cleo", "registry_version": "v2"}]
    lines = wh.query(
        "SELECT line.speaker, i FROM {{t}} AS g CROSS JOIN UNNEST(g.chat_log) AS line WITH OFFSET AS i "
        "WHERE g.document_path = @p ORDER BY i", {"p": "game_results/a"}, identifiers={"t": games.GAMES_TABLE},
    ).to_pylist()
    assert [r["speaker"] for r in lines] == ["ana", "cleo"]
    wh.close()


def test_a_table_with_other_columns_is_refused(tmp_path):
    from tuneloop.warehouse import WarehouseError

    wh = open_warehouse("duckdb://:memory:")
    wh.ensure_table("interactions")
    with pytest.raises(WarehouseError, match="lacks columns .*document_path.*not a game table"):
        games.ensure_tables(wh, "interactions", "dead")
    wh.close()
