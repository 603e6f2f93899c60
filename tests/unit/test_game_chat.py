"""The packaged game query on the embedded warehouse: games an AI seat survived -> one conversation per
surviving seat, shaped for providers that need alternating roles; malformed games quarantined."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

from tuneloop import demo_games
from tuneloop.warehouse import duckdb_uri, games, open_warehouse
from tuneloop.warehouse.extract_query import query_extract_to_files, resolve
from tuneloop.warehouse.game_chat import DEFAULT_PERSONA

T0 = dt.datetime(2026, 3, 1, 20, 0, tzinfo=dt.UTC)
CHAT = [("ann", "hi all"), ("dana", "hey"), ("dana", "whats up"), ("bob", "sus of carl"), ("carl", "no u"),
        ("dana", "lol carl is so defensive"), ("eve", "   "), ("ann", "vote carl"), ("bob", "ok")]


def _game(path, chat=CHAT, seats=(("dana", "survived"),), persona=None, ended=T0):
    return games.game_from_document(path, {
        "ended_at": ended, "players": ["ann", "bob", "carl", "dana", "eve"],
        "ai_seats": [{"player": p, "provider": "openai", "model_id": "ft:m", "registry_version": "v3", "outcome": o}
                     for p, o in seats],
        "chat_log": [{"speaker": s, "text": t, "sent_at": ended - dt.timedelta(seconds=60 - i)}
                     for i, (s, t) in enumerate(chat)],
        "persona_prompt": persona,
    })


def _extract(uri, tmp_path, params=None, watermark=None, tag="1"):
    summary = query_extract_to_files(uri, "ai_survived_games", params or {}, watermark, tmp_path / f"e{tag}.parquet",
                                     tmp_path / f"q{tag}.jsonl", table="game_results")
    rows = pq.read_table(tmp_path / f"e{tag}.parquet").to_pylist() if summary.examples else []
    bad = [json.loads(line) for line in (tmp_path / f"q{tag}.jsonl").read_text().splitlines()]
    return summary, rows, bad


@pytest.fixture
def warehouse(tmp_path):
    uri = duckdb_uri(str(tmp_path / "wh.duckdb"))
    wh = open_warehouse(uri)
    games.ensure_tables(wh)
    wh.close()
    return uri


def _insert(uri, rows):
    wh = open_warehouse(uri)
    games.insert_games(wh, games.GAMES_TABLE, rows)
    wh.close()


def test_a_surviving_seat_becomes_one_alternating_conversation_ending_on_its_reply(warehouse, tmp_path):
    _insert(warehouse, [_game("game_results/g1", persona="You are Dana, a nurse on a night shift.")])
    summary, rows, bad = _extract(warehouse, tmp_path)
    assert (summary.examples, summary.quarantined, bad) == (1, 0, [])
    msgs = [(m["role"], m["content"]) for m in rows[0]["messages"]]
    assert msgs == [
        ("system", "You are Dana, a nurse on a night shift."),
        ("user", "ann: hi all"),
        ("assistant", "hey\nwhats up"),  # her two lines in a row: one turn
        ("user", "bob: sus of carl\ncarl: no u"),  # two other players in a row: one turn, each line named
        ("assistant", "lol carl is so defensive"),  # the last reply; the trailing lines of others are trimmed
    ]
    meta = json.loads(rows[0]["meta"])
    assert meta == {"query": "ai_survived_games", "game_id": "g1", "document_path": "game_results/g1", "seat": "dana",
                    "provider": "openai", "model_id": "ft:m", "registry_version": "v3",
                    "ended_at": "2026-03-01T20:00:00.000000Z"}
    assert rows[0]["created_at"] == "2026-03-01T20:00:00.000000Z"


def test_each_surviving_seat_gets_its_own_conversation_and_voted_out_seats_none(warehouse, tmp_path):
    chat = CHAT + [("ann", "carl answer me"), ("carl", "i'm not a bot, ann")]
    _insert(warehouse, [
        _game("game_results/two", chat=chat, seats=(("dana", "survived"), ("carl", "survived"))),
        _game("game_results/lost", seats=(("dana", "voted_out"),)),
    ])
    _, rows, bad = _extract(warehouse, tmp_path)
    assert bad == []
    by_seat = {json.loads(r["meta"])["seat"]: r["messages"] for r in rows}
    assert sorted(by_seat) == ["carl", "dana"]  # the voted-out game gives nothing
    assert by_seat["carl"][-1] == {"role": "assistant", "content": "i'm not a bot, ann", "weight": None}
    assert by_seat["carl"][1]["content"] == "ann: hi all\ndana: hey\ndana: whats up\nbob: sus of carl"
    assert by_seat["dana"][-1]["content"] == "lol carl is so defensive"


def test_the_persona_comes_from_the_parameter_then_the_game_then_the_default(warehouse, tmp_path):
    _insert(warehouse, [_game("game_results/own", persona="You are Dana."), _game("game_results/none", persona=None,
                                                                                ended=T0 + dt.timedelta(minutes=5))])
    _, rows, _ = _extract(warehouse, tmp_path)
    assert sorted(r["messages"][0]["content"] for r in rows) == sorted(["You are Dana.", DEFAULT_PERSONA])
    _, rows, _ = _extract(warehouse, tmp_path, {"persona_prompt": "Play it cool."}, tag="2")
    assert [r["messages"][0]["content"] for r in rows] == ["Play it cool.", "Play it cool."]


def test_short_games_are_skipped_and_min_messages_arrives_as_a_float(warehouse, tmp_path):
    _insert(warehouse, [_game("game_results/short", chat=CHAT[:5])])  # 5 lines
    assert _extract(warehouse, tmp_path, {"min_messages": 6.0})[0].rows_read == 0  # 6.0: KFP's float for 6
    summary, rows, _ = _extract(warehouse, tmp_path, {"min_messages": 5.0}, tag="2")
    assert summary.examples == 1 and rows[0]["messages"][-1]["content"] == "hey\nwhats up"


@pytest.mark.parametrize(
    "chat, seats, reason",
    [
        ([], (("dana", "survived"),), r"^chat_log: is empty"),
        (CHAT[:3] + [("bob", None)] + CHAT[4:], (("dana", "survived"),), r"^chat_log\[3\]\.text: is None"),
        (CHAT[:4] + [(None, "who said this")] + CHAT[5:], (("dana", "survived"),), r"^chat_log\[4\]\.speaker: is None"),
        (CHAT, (("dana", "won"),), r"^ai_seats\.outcome: 'won' \(seat 'dana'\) is not an outcome"),
        ([(s, t) for s, t in CHAT if s != "dana"] + [("dana", "hi")] * 0, (("dana", "survived"),),
         r"^chat_log: AI seat 'dana' never answered"),
        ([("dana", "first!")] + [(s, t) for s, t in CHAT if s != "dana"], (("dana", "survived"),),
         r"never answered"),  # her only line came before anyone spoke: nothing it answers
    ],
    ids=["empty-chat", "null-text", "missing-speaker", "unknown-outcome", "silent-seat", "opening-line-only"],
)
def test_a_game_that_makes_no_conversation_is_quarantined_with_the_reason(warehouse, tmp_path, chat, seats, reason):
    row = {**_game("game_results/g1").to_row(), "chat_log": [{"speaker": s, "text": t, "sent_at": T0} for s, t in chat],
           "ai_seats": [{"player": p, "provider": "openai", "model_id": "m", "registry_version": None, "outcome": o}
                        for p, o in seats]}
    wh = open_warehouse(warehouse)
    wh.insert_records(games.GAMES_TABLE, [row])  # straight in, as a backend that bypasses the mapping would
    wh.close()
    summary, rows, bad = _extract(warehouse, tmp_path, {"min_messages": 0})
    assert (summary.examples, summary.quarantined) == (0, 1)
    assert len(bad) == 1
    assert __import__("re").search(reason, bad[0]["reason"]), bad[0]["reason"]
    assert bad[0]["row"]["document_path"] == "game_results/g1"  # the raw row is kept, JSON-safe
    assert summary.watermark_to is not None  # a quarantined game advances the watermark too


def test_reruns_give_the_same_ids_and_the_watermark_reads_only_new_games(warehouse, tmp_path):
    _insert(warehouse, [_game("game_results/g1")])
    first, rows1, _ = _extract(warehouse, tmp_path)
    again, rows_again, _ = _extract(warehouse, tmp_path, tag="again")
    assert [r["id"] for r in rows1] == [r["id"] for r in rows_again]  # same game + seat -> same id
    assert first.watermark_to == again.watermark_to
    _insert(warehouse, [_game("game_results/g1"), _game("game_results/g2", chat=CHAT + [("ann", "hm"), ("dana", "ok")])])
    new, rows2, _ = _extract(warehouse, tmp_path, watermark=first.watermark_to, tag="2")
    assert new.rows_read == 1 and json.loads(rows2[0]["meta"])["game_id"] == "g2"  # g1 again is a redelivery
    assert new.watermark_to > first.watermark_to
    none, _, _ = _extract(warehouse, tmp_path, watermark=new.watermark_to, tag="3")
    assert none.rows_read == 0 and none.watermark_to == new.watermark_to


def test_the_query_refuses_a_table_that_is_not_a_game_table(tmp_path):
    uri = duckdb_uri(str(tmp_path / "wh.duckdb"))
    wh = open_warehouse(uri)
    wh.ensure_table("interactions")
    wh.close()
    with pytest.raises(Exception, match=r"table='interactions' .* lacks .*pass table=game_results"):
        query_extract_to_files(uri, resolve("ai_survived_games"), None, None, tmp_path / "e.parquet",
                               tmp_path / "q.jsonl", table="interactions")


def test_generated_demo_games_give_conversations_and_every_malformed_kind_a_reason(tmp_path):
    uri = duckdb_uri(str(tmp_path / "wh.duckdb"))
    loaded = demo_games.load_demo_games(uri, 200, seed=3)
    assert loaded["survived"] > 80 and loaded["voted_out"] > 50 and loaded["short"] > 5
    assert set(loaded["malformed"]) == set(demo_games.MALFORMED_KINDS)
    summary, rows, bad = _extract(uri, tmp_path)
    assert summary.examples > 80
    reasons = " ".join(b["reason"] for b in bad)
    for fragment in ("chat_log: is empty", ".text: is None", ".speaker: is ", "is not an outcome"):
        assert fragment in reasons
    for r in rows:
        roles = [m["role"] for m in r["messages"]]
        assert roles[0] == "system" and roles[1] == "user" and roles[-1] == "assistant"
        assert all(a != b for a, b in zip(roles[1:], roles[2:], strict=False))  # alternating after the system turn
    assert len({r["id"] for r in rows}) == len(rows)


def test_demo_games_are_a_pure_function_of_the_seed():
    a, b = demo_games.generate_games(40, seed=9), demo_games.generate_games(40, seed=9)
    assert a == b and a != demo_games.generate_games(40, seed=10)
    speakers = {line["speaker"] for g in a for line in g["chat_log"]}
    assert len(speakers) > 10  # many players, not a handful of names
