"""The game ingest as deployed: functions-framework serving the CloudEvent handler, Firestore events built
from the real protobuf types (google-events), rows landing in bqemulator through the real BigQuery client."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from tests.fakes.gcp_emulators import PROJECT
from tests.fakes.http_proxy import FlakyProxy
from tuneloop.triggers import firestore_ingest
from tuneloop.warehouse import WarehouseError, games
from tuneloop.warehouse.bigquery import BigQueryWarehouse

pytest.importorskip("google.events.cloud.firestore_v1")
from google.events.cloud.firestore_v1.types import (  # noqa: E402
    ArrayValue,
    Document,
    DocumentEventData,
    MapValue,
    Value,
)
from google.protobuf import timestamp_pb2  # noqa: E402

T0 = dt.datetime(2026, 3, 1, 20, 0, tzinfo=dt.UTC)
DB = f"projects/{PROJECT}/databases/(default)/documents"


def to_value(v) -> Value:
    """A Python value as a Firestore protobuf ``Value`` (what Firestore puts into the event)."""
    if v is None:
        return Value(null_value=0)
    if isinstance(v, bool):
        return Value(boolean_value=v)
    if isinstance(v, int):
        return Value(integer_value=v)
    if isinstance(v, float):
        return Value(double_value=v)
    if isinstance(v, str):
        return Value(string_value=v)
    if isinstance(v, dt.datetime):
        ts = timestamp_pb2.Timestamp()
        ts.FromDatetime(v)
        return Value(timestamp_value=ts)
    if isinstance(v, dict):
        return Value(map_value=MapValue(fields={k: to_value(x) for k, x in v.items()}))
    if isinstance(v, list):
        return Value(array_value=ArrayValue(values=[to_value(x) for x in v]))
    raise TypeError(type(v))


def game_doc(n_lines: int = 6, **override) -> dict:
    players = ["ana", "ben", "cleo", "dev"]
    doc = {
        "game_id": f"g-{uuid.uuid4().hex[:8]}",
        "ended_at": T0,
        "players": players,
        "ai_seats": [
            {"player": "cleo", "provider": "openai", "model_id": "ft:gpt-4.1-mini:acme::abc", "registry_version": "v3",
             "outcome": "survived"},
            {"player": "dev", "provider": "gemini", "model_id": "projects/p/endpoints/9", "registry_version": 2,
             "outcome": "Voted Out"},
        ],
        "chat_log": [
            {"speaker": players[i % 4], "text": f"line {i} from {players[i % 4]}", "sent_at": T0 - dt.timedelta(minutes=30 - i)}
            for i in range(n_lines)
        ],
        "persona_prompt": "You are a relaxed player who types in lowercase.",
        "client_version": "1.4.2",  # fields the layout does not name are ignored
    }
    doc.update(override)
    return doc


def event_bytes(path: str, fields: dict) -> bytes:
    created = timestamp_pb2.Timestamp()
    created.FromDatetime(T0)
    doc = Document(name=path, fields={k: to_value(v) for k, v in fields.items()}, create_time=created,
                   update_time=created)
    return DocumentEventData.serialize(DocumentEventData(value=doc))


@pytest.fixture
def function(bq_uri, monkeypatch):
    """The deployed function (functions-framework test client) writing into a fresh emulator dataset."""
    import functions_framework

    monkeypatch.setenv("TUNELOOP_WAREHOUSE", bq_uri)
    monkeypatch.setenv("TUNELOOP_BQ_RETRY_DEADLINE_S", "5")
    app = functions_framework.create_app(
        target="on_game_result_created", source=firestore_ingest.__file__, signature_type="cloudevent"
    )
    client = app.test_client()

    def fire(path: str, payload: bytes, event_id: str | None = None) -> int:
        rel = path.split("/documents/", 1)[1]
        headers = {
            "ce-id": event_id or uuid.uuid4().hex,
            "ce-specversion": "1.0",
            "ce-type": firestore_ingest.EVENT_TYPE,
            "ce-source": f"//firestore.googleapis.com/projects/{PROJECT}/databases/(default)",
            "ce-subject": f"documents/{rel}",
            "ce-document": rel,
            "ce-project": PROJECT,
            "ce-database": "(default)",
            "Content-Type": "application/protobuf",
        }
        return client.post("/", headers=headers, data=payload).status_code

    project, dataset = bq_uri.split("://", 1)[1].split("/")
    wh = BigQueryWarehouse(project, dataset)
    yield fire, wh
    wh.close()


def _rows(wh, table):
    return wh.query("SELECT * FROM {{t}} ORDER BY document_path", {}, identifiers={"t": table}).to_pylist()


def test_a_game_lands_once_however_often_its_event_is_delivered(function):
    fire, wh = function
    path = f"{DB}/game_results/{uuid.uuid4().hex[:10]}"
    doc = game_doc()
    payload = event_bytes(path, doc)
    assert fire(path, payload, "evt-1") == 200
    assert fire(path, payload, "evt-1") == 200  # the platform redelivers the same event
    assert fire(path, payload, "evt-2") == 200  # ... or fires a second one for the same document
    [row] = _rows(wh, games.GAMES_TABLE)
    assert row["document_path"] == path and row["game_id"] == doc["game_id"]
    assert row["ended_at"] == T0 and row["players"] == ["ana", "ben", "cleo", "dev"]
    assert [(s["player"], s["outcome"], s["registry_version"]) for s in row["ai_seats"]] == [
        ("cleo", "survived", "v3"), ("dev", "voted_out", "v2")]
    assert [line["text"] for line in row["chat_log"]] == [f"line {i} from {doc['players'][i % 4]}" for i in range(6)]
    assert row["chat_log"][0]["sent_at"] == T0 - dt.timedelta(minutes=30)
    assert row["persona_prompt"].startswith("You are a relaxed")
    assert _rows(wh, games.DEAD_LETTER_TABLE) == []


def test_ten_malformed_documents_give_ten_dead_letters_with_reasons_and_no_retry(function):
    fire, wh = function
    bad = {
        "no-ended-at": ({k: v for k, v in game_doc().items() if k != "ended_at"}, "ended_at: is missing"),
        "camel-case": ({**{k: v for k, v in game_doc().items() if k != "ended_at"}, "endedAt": T0},
                       "rename it to 'ended_at'"),
        "epoch-ms": (game_doc(ended_at=1772395200000), "ended_at: 1772395200000 is a number, not a timestamp"),
        "bad-outcome": (game_doc(ai_seats=[{"player": "cleo", "provider": "openai", "model_id": "m",
                                            "outcome": "won"}]), "ai_seats[0].outcome: 'won' is not an outcome"),
        "players-string": (game_doc(players="ana,ben"), "players: 'ana,ben' is a str; write an array"),
        "seat-not-player": (game_doc(ai_seats=[{"player": "zed", "provider": "openai", "model_id": "m",
                                                "outcome": "survived"}]), "ai_seats[0].player: 'zed' is not one of"),
        "line-no-time": (game_doc(chat_log=[{"speaker": "ana", "text": "hi"}]), "chat_log[0].sent_at: is missing"),
        "text-number": (game_doc(chat_log=[{"speaker": "ana", "text": 42, "sent_at": T0}]),
                        "chat_log[0].text: 42 is a number; write a string"),
        "null-chat": (game_doc(chat_log=None), "chat_log: is null"),
        "dup-player": (game_doc(players=["ana", "ana", "cleo", "dev"]), "players[1]: 'ana' is listed twice"),
    }
    paths = {}
    for name, (doc, _) in bad.items():
        paths[name] = f"{DB}/game_results/{name}-{uuid.uuid4().hex[:6]}"
        assert fire(paths[name], event_bytes(paths[name], doc)) == 200, name  # acknowledged: no retry
    # A redelivery of a dead-lettered document adds nothing.
    assert fire(paths["bad-outcome"], event_bytes(paths["bad-outcome"], bad["bad-outcome"][0])) == 200
    letters = {r["document_path"]: r for r in _rows(wh, games.DEAD_LETTER_TABLE)}
    assert len(letters) == 10 == len(_rows(wh, games.DEAD_LETTER_TABLE))
    for name, (_, reason) in bad.items():
        assert reason in letters[paths[name]]["reason"], (name, letters[paths[name]]["reason"])
        assert letters[paths[name]]["received_at"] is not None
    assert '"client_version": "1.4.2"' in letters[paths["bad-outcome"]]["document"]  # the document, kept
    assert _rows(wh, games.GAMES_TABLE) == []


def test_a_payload_that_is_not_a_document_event_is_dead_lettered(function):
    fire, wh = function
    path = f"{DB}/game_results/garbage"
    assert fire(path, b"\xff\xfe not protobuf at all") == 200
    [letter] = _rows(wh, games.DEAD_LETTER_TABLE)
    assert letter["document_path"] == path and "not a Firestore DocumentEventData" in letter["reason"]


def test_documents_outside_the_collection_are_ignored(function):
    fire, wh = function
    other = f"{DB}/lobbies/abc"
    nested = f"{DB}/game_results/abc/moves/1"
    assert fire(other, event_bytes(other, game_doc())) == 200
    assert fire(nested, event_bytes(nested, game_doc())) == 200
    assert _rows(wh, games.GAMES_TABLE) == [] and _rows(wh, games.DEAD_LETTER_TABLE) == []


def test_a_bigquery_5xx_makes_the_handler_raise_so_the_platform_retries(bq_env, bq_uri, monkeypatch):
    import functions_framework

    proxy = FlakyProxy(bq_env.url).start()
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", proxy.url)
    monkeypatch.setenv("TUNELOOP_WAREHOUSE", bq_uri)
    monkeypatch.setenv("TUNELOOP_BQ_RETRY_DEADLINE_S", "1")
    app = functions_framework.create_app(
        target="on_game_result_created", source=firestore_ingest.__file__, signature_type="cloudevent"
    )
    client = app.test_client()
    path = f"{DB}/game_results/{uuid.uuid4().hex[:10]}"
    payload = event_bytes(path, game_doc())
    headers = {"ce-id": "e1", "ce-specversion": "1.0", "ce-type": firestore_ingest.EVENT_TYPE,
               "ce-source": "//firestore.googleapis.com/x", "ce-subject": "documents/game_results/x",
               "Content-Type": "application/protobuf"}
    try:
        proxy.fail(503)
        assert client.post("/", headers=headers, data=payload).status_code == 500  # the platform will retry
        config = firestore_ingest.IngestConfig(bq_uri, retry_deadline_s=1)
        project, dataset = bq_uri.split("://", 1)[1].split("/")
        wh = BigQueryWarehouse(project, dataset, retry_deadline_s=1)
        with pytest.raises(WarehouseError, match="503|injected"):
            firestore_ingest.handle_game_event(payload, {"id": "e1"}, wh, config)
        assert proxy.refused >= 2
        proxy.ok()  # BigQuery is back: the redelivered event lands, once
        assert client.post("/", headers=headers, data=payload).status_code == 200
        assert client.post("/", headers=headers, data=payload).status_code == 200
        assert [r["document_path"] for r in _rows(wh, games.GAMES_TABLE)] == [path]
        wh.close()
    finally:
        proxy.stop()
        firestore_ingest._OPEN.clear()
