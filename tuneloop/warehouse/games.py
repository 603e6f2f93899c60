"""The game table: finished games as a game backend writes them, defined once for every reader and writer.

A social-deduction chat game writes each finished game as a Firestore document to the ``game_results``
collection; the Firestore Cloud Function (:mod:`tuneloop.triggers.firestore_ingest`) maps the document
to one row of this table with :func:`game_from_document` and inserts it, idempotently by document path.
The packaged queries (the game loop's ``ai_survived_games`` extract, the per-model views) read it on
BigQuery and on the embedded DuckDB warehouse.

The table (``game_results``), BigQuery types; DuckDB runs the same DDL transpiled (``LIST``/``STRUCT``):

==============  ======================================================  ===================================
column          type                                                    meaning
==============  ======================================================  ===================================
document_path   STRING NOT NULL                                         Firestore document path: the row's
                                                                        identity (a redelivery is no new row)
game_id         STRING NOT NULL                                         the game's id (field ``game_id``, or
                                                                        the document id)
ended_at        TIMESTAMP NOT NULL                                      when the game ended
players         ARRAY<STRING>                                           every player's name, in seat order
ai_seats        ARRAY<STRUCT<player, provider, model_id,                one entry per AI seat: the player
                registry_version, outcome STRING>>                      name it played, the model behind it
                                                                        and ``survived`` / ``voted_out``
chat_log        ARRAY<STRUCT<speaker STRING, text STRING,               the chat, in order
                sent_at TIMESTAMP>>
persona_prompt  STRING                                                  the persona the AI seats played
                                                                        (NULL when the game has none)
ingested_at     TIMESTAMP NOT NULL                                      when the row landed (a watermark)
==============  ======================================================  ===================================

Query it with ``UNNEST``: ``FROM game_results AS g CROSS JOIN UNNEST(g.ai_seats) AS seat WHERE
seat.outcome = 'survived'``; the chat in order with ``UNNEST(g.chat_log) AS line WITH OFFSET AS i``.
Arrays keep the document's order on both engines.

Documents that do not map (a missing field, a wrong type, an unknown outcome) go to the dead-letter
table (:data:`DEAD_LETTER_COLUMNS`) with the reason :class:`GameDocumentError` gives, which names the
field path (``chat_log[3].sent_at``), the bad value and the fix.

This module imports only the standard library.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GAMES_TABLE = "game_results"
DEAD_LETTER_TABLE = "game_results_dead_letter"
GAMES_COLLECTION = "game_results"

OUTCOME_SURVIVED = "survived"
OUTCOME_VOTED_OUT = "voted_out"
OUTCOMES = (OUTCOME_SURVIVED, OUTCOME_VOTED_OUT)


@dataclass(frozen=True)
class Column:
    """One column: its name, BigQuery type, DuckDB type (what the transpiled DDL creates) and meaning."""

    name: str
    bigquery: str
    duckdb: str
    required: bool
    help: str


_SEAT_FIELDS = (("player", "STRING"), ("provider", "STRING"), ("model_id", "STRING"),
                ("registry_version", "STRING"), ("outcome", "STRING"))
_LINE_FIELDS = (("speaker", "STRING"), ("text", "STRING"), ("sent_at", "TIMESTAMP"))
_DUCK = {"STRING": "VARCHAR", "TIMESTAMP": "TIMESTAMP WITH TIME ZONE"}


def _bq_struct(fields: Sequence[tuple[str, str]]) -> str:
    return "ARRAY<STRUCT<" + ", ".join(f"{n} {t}" for n, t in fields) + ">>"


def _duck_struct(fields: Sequence[tuple[str, str]]) -> str:
    # DuckDB quotes a field name that is also a type or keyword (``text``) when it reports the type.
    names = {"text": '"text"'}
    return "STRUCT(" + ", ".join(f"{names.get(n, n)} {_DUCK[t]}" for n, t in fields) + ")[]"


GAME_COLUMNS: tuple[Column, ...] = (
    Column("document_path", "STRING", "VARCHAR", True, "Firestore document path; the row's identity"),
    Column("game_id", "STRING", "VARCHAR", True, "the game's id (field game_id, else the document id)"),
    Column("ended_at", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", True, "when the game ended"),
    Column("players", "ARRAY<STRING>", "VARCHAR[]", False, "every player's name, in seat order"),
    Column("ai_seats", _bq_struct(_SEAT_FIELDS), _duck_struct(_SEAT_FIELDS), False,
           "per AI seat: player name, provider, model id, registry version, outcome"),
    Column("chat_log", _bq_struct(_LINE_FIELDS), _duck_struct(_LINE_FIELDS), False,
           "the chat in order: speaker, text, sent_at"),
    Column("persona_prompt", "STRING", "VARCHAR", False, "the persona prompt of the AI seats (or NULL)"),
    Column("ingested_at", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", True, "when the row landed"),
)
GAME_COLUMN_NAMES = tuple(c.name for c in GAME_COLUMNS)

DEAD_LETTER_COLUMNS: tuple[Column, ...] = (
    Column("document_path", "STRING", "VARCHAR", True, "Firestore document path (or the event's subject)"),
    Column("event_id", "STRING", "VARCHAR", False, "the CloudEvent id of the first delivery"),
    Column("reason", "STRING", "VARCHAR", True, "why the document does not map: field, value, fix"),
    Column("document", "STRING", "VARCHAR", False, "the document's fields as JSON (or the raw payload)"),
    Column("received_at", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", True, "when the function saw it"),
)
DEAD_LETTER_COLUMN_NAMES = tuple(c.name for c in DEAD_LETTER_COLUMNS)


def create_table_sql(columns: Sequence[Column] = GAME_COLUMNS, *, dialect: str = "bigquery") -> str:
    """``CREATE TABLE IF NOT EXISTS {{table}} (...)`` for ``bigquery`` or ``duckdb``.

    Run the BigQuery form through :meth:`tuneloop.warehouse.base.Warehouse.query` on either backend (the
    DuckDB backend transpiles it to exactly the DuckDB form, which a test pins).
    """
    if dialect not in ("bigquery", "duckdb"):
        raise ValueError(f"dialect={dialect!r} must be 'bigquery' or 'duckdb'")
    cols = []
    for c in columns:
        typ = c.bigquery if dialect == "bigquery" else c.duckdb
        cols.append(f"  {c.name} {typ}{' NOT NULL' if c.required else ''}")
    return "CREATE TABLE IF NOT EXISTS {{table}} (\n" + ",\n".join(cols) + "\n)"


GAMES_DDL = {d: create_table_sql(GAME_COLUMNS, dialect=d) for d in ("bigquery", "duckdb")}
DEAD_LETTER_DDL = {d: create_table_sql(DEAD_LETTER_COLUMNS, dialect=d) for d in ("bigquery", "duckdb")}


# -- the typed row ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatLine:
    """One chat message: who wrote it, what, when."""

    speaker: str
    text: str
    sent_at: dt.datetime


@dataclass(frozen=True)
class AISeat:
    """An AI seat: the player name it played, the model behind it, and whether it survived."""

    player: str
    provider: str
    model_id: str
    registry_version: str | None
    outcome: str

    @property
    def survived(self) -> bool:
        return self.outcome == OUTCOME_SURVIVED


@dataclass(frozen=True)
class GameRow:
    """One row of the game table (see the module docstring); build with :func:`game_from_document`."""

    document_path: str
    game_id: str
    ended_at: dt.datetime
    players: tuple[str, ...]
    ai_seats: tuple[AISeat, ...]
    chat_log: tuple[ChatLine, ...]
    persona_prompt: str | None = None
    ingested_at: dt.datetime | None = None

    def to_row(self, *, ingested_at: dt.datetime | None = None) -> dict[str, Any]:
        """The row as Python values (datetimes stay datetimes); ``ingested_at`` defaults to now."""
        row = dataclasses.asdict(self)
        row["players"] = list(self.players)
        row["ai_seats"] = [dataclasses.asdict(s) for s in self.ai_seats]
        row["chat_log"] = [dataclasses.asdict(line) for line in self.chat_log]
        row["ingested_at"] = ingested_at or self.ingested_at or dt.datetime.now(dt.UTC)
        return {c: row[c] for c in GAME_COLUMN_NAMES}

    @property
    def row_id(self) -> str:
        """A stable id of the row's identity (the document path), e.g. a streaming ``insertId``."""
        return row_id_of(self.document_path)


def row_id_of(document_path: str) -> str:
    """The stable id of a document path (sha256, 32 hex)."""
    return hashlib.sha256(document_path.encode("utf-8")).hexdigest()[:32]


# -- the mapping: a Firestore document -> a row ---------------------------------------------------------


class GameDocumentError(ValueError):
    """A document that does not map to a game row; ``field`` is the path of the bad field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


DOCUMENT_FIELDS = ("game_id", "ended_at", "players", "ai_seats", "chat_log", "persona_prompt")
REQUIRED_FIELDS = ("ended_at", "players", "ai_seats", "chat_log")
SEAT_KEYS = tuple(n for n, _ in _SEAT_FIELDS)
LINE_KEYS = tuple(n for n, _ in _LINE_FIELDS)


def _near(name: str, present: Sequence[str]) -> str:
    from tuneloop.config import close_match

    hit = close_match(name, [p for p in present if isinstance(p, str)])
    return f" (the document has {hit!r}: rename it to {name!r})" if hit else ""


def _need(d: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in d or d[key] is None:
        what = "missing" if key not in d else "null"
        raise GameDocumentError(f"{where}{key}", f"is {what}; every game needs it{_near(key, list(d))}")
    return d[key]


def _text(value: Any, field: str, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise GameDocumentError(field, f"{_show(value)} is a {_kind(value)}; write a string")
    if not empty_ok and not value.strip():
        raise GameDocumentError(field, "is empty; write a non-empty string")
    return value


def _timestamp(value: Any, field: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        ts = value
    elif isinstance(value, str) and value.strip():
        try:
            ts = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise GameDocumentError(
                field, f"{_show(value)} is not an ISO-8601 timestamp; write a Firestore timestamp or e.g. "
                "2026-01-31T12:00:00Z"
            ) from exc
    else:
        hint = " (epoch numbers are ambiguous: seconds or milliseconds?)" if isinstance(value, int | float) else ""
        raise GameDocumentError(
            field, f"{_show(value)} is a {_kind(value)}, not a timestamp{hint}; write a Firestore timestamp or "
            "an ISO-8601 string such as 2026-01-31T12:00:00Z"
        )
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts.astimezone(dt.UTC)


def _list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise GameDocumentError(field, f"{_show(value)} is a {_kind(value)}; write an array")
    return list(value)


def _map(value: Any, field: str, keys: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise GameDocumentError(
            field, f"{_show(value)} is a {_kind(value)}; write a map with {', '.join(keys)}"
        )
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, bytes):
        return "bytes value"
    return type(value).__name__


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _outcome(value: Any, field: str) -> str:
    if isinstance(value, str):
        norm = value.strip().lower().replace("-", "_").replace(" ", "_")
        if norm in OUTCOMES:
            return norm
    raise GameDocumentError(field, f"{_show(value)} is not an outcome; write one of {list(OUTCOMES)}")


def _version(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return f"v{value}"
    if isinstance(value, float) and value.is_integer() and value > 0:
        return f"v{int(value)}"
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise GameDocumentError(
        field, f"{_show(value)} is not a registry version; write e.g. 'v3' (or null for a model not in a registry)"
    )


def _player_name(value: Any, field: str) -> str:
    if isinstance(value, Mapping):  # {name: ..., ...}: backends often store player objects
        return _text(_need(value, "name", f"{field}."), f"{field}.name").strip()
    return _text(value, field).strip()


def game_from_document(document_path: str, fields: Mapping[str, Any]) -> GameRow:
    """Map one game document (its fields as plain Python values) to a :class:`GameRow`.

    The document's fields (other fields are ignored)::

        game_id         string, optional (default: the document id)
        ended_at        timestamp (a Firestore timestamp or an ISO-8601 string)
        players         array of names (strings, or maps with a ``name``), unique
        ai_seats        array of maps {player, provider, model_id, registry_version?, outcome}:
                        ``player`` is one of ``players``; ``outcome`` ``survived`` or ``voted_out``
                        (``voted out`` / ``Voted-Out`` are read the same); ``registry_version`` ``v3``
                        (or 3), or null for a model not in a registry
        chat_log        array of maps {speaker, text, sent_at}, in the order the chat happened
        persona_prompt  string, optional

    Args:
        document_path: The document's path (``game_results/<id>`` or the full resource name).
        fields: The document's fields (:func:`firestore_fields` decodes a Firestore ``Document``).

    Raises:
        GameDocumentError: naming the field path, the bad value and the fix.
    """
    if not isinstance(document_path, str) or not document_path.strip("/"):
        raise GameDocumentError("document_path", f"{_show(document_path)} is not a document path")
    if not isinstance(fields, Mapping):
        raise GameDocumentError("document", f"its fields are a {_kind(fields)}, not a map")
    doc_id = document_path.rstrip("/").rsplit("/", 1)[-1]
    game_id = fields.get("game_id")
    game_id = doc_id if game_id is None else _text(game_id, "game_id").strip()
    ended_at = _timestamp(_need(fields, "ended_at", ""), "ended_at")

    players: list[str] = []
    for i, p in enumerate(_list(_need(fields, "players", ""), "players")):
        name = _player_name(p, f"players[{i}]")
        if name in players:
            raise GameDocumentError(f"players[{i}]", f"{name!r} is listed twice; player names must be unique")
        players.append(name)
    if not players:
        raise GameDocumentError("players", "is empty; a game has at least one player")

    seats: list[AISeat] = []
    for i, raw in enumerate(_list(_need(fields, "ai_seats", ""), "ai_seats")):
        where = f"ai_seats[{i}]"
        s = _map(raw, where, SEAT_KEYS)
        player = _player_name(_need(s, "player", f"{where}."), f"{where}.player")
        if player not in players:
            raise GameDocumentError(
                f"{where}.player", f"{player!r} is not one of players {players[:10]}; name the seat's player"
            )
        if any(seat.player == player for seat in seats):
            raise GameDocumentError(f"{where}.player", f"{player!r} has two AI seats; one seat per player")
        seats.append(AISeat(
            player=player,
            provider=_text(_need(s, "provider", f"{where}."), f"{where}.provider").strip(),
            model_id=_text(_need(s, "model_id", f"{where}."), f"{where}.model_id").strip(),
            registry_version=_version(s.get("registry_version"), f"{where}.registry_version"),
            outcome=_outcome(_need(s, "outcome", f"{where}."), f"{where}.outcome"),
        ))

    lines: list[ChatLine] = []
    for i, raw in enumerate(_list(_need(fields, "chat_log", ""), "chat_log")):
        where = f"chat_log[{i}]"
        m = _map(raw, where, LINE_KEYS)
        lines.append(ChatLine(
            speaker=_text(_need(m, "speaker", f"{where}."), f"{where}.speaker").strip(),
            text=_text(_need(m, "text", f"{where}."), f"{where}.text", empty_ok=True),
            sent_at=_timestamp(_need(m, "sent_at", f"{where}."), f"{where}.sent_at"),
        ))

    persona = fields.get("persona_prompt")
    persona = None if persona is None else _text(persona, "persona_prompt", empty_ok=True) or None
    return GameRow(
        document_path=document_path,
        game_id=game_id,
        ended_at=ended_at,
        players=tuple(players),
        ai_seats=tuple(seats),
        chat_log=tuple(lines),
        persona_prompt=persona,
    )


# -- Firestore values -> Python -----------------------------------------------------------------------


def firestore_value(value: Any) -> Any:
    """One Firestore ``Value`` (protobuf, e.g. from ``google.events.cloud.firestore_v1``) as Python.

    map -> dict, array -> list, timestamp -> aware UTC datetime, integer -> int, double -> float,
    string / reference -> str, bytes -> bytes, geo point -> ``{"latitude", "longitude"}``, null -> None.
    """
    pb = getattr(type(value), "pb", None)
    pb = pb(value) if callable(pb) and not hasattr(value, "WhichOneof") else value
    kind = pb.WhichOneof("value_type")
    if kind is None or kind == "null_value":
        return None
    if kind == "map_value":
        return {k: firestore_value(v) for k, v in pb.map_value.fields.items()}
    if kind == "array_value":
        return [firestore_value(v) for v in pb.array_value.values]
    if kind == "timestamp_value":
        return pb.timestamp_value.ToDatetime(tzinfo=dt.UTC)
    if kind == "geo_point_value":
        return {"latitude": pb.geo_point_value.latitude, "longitude": pb.geo_point_value.longitude}
    return getattr(pb, kind)  # boolean, integer, double, string, bytes, reference


def firestore_fields(document: Any) -> dict[str, Any]:
    """The fields of a Firestore ``Document`` message as plain Python (see :func:`firestore_value`)."""
    pb = getattr(type(document), "pb", None)
    pb = pb(document) if callable(pb) and not hasattr(document, "ListFields") else document
    return {k: firestore_value(v) for k, v in pb.fields.items()}


def fields_as_json(fields: Mapping[str, Any], limit: int = 200_000) -> str:
    """A document's fields as JSON text for the dead-letter table (timestamps ISO, bytes as a note)."""

    def plain(v: Any) -> Any:
        if isinstance(v, dt.datetime):
            return v.isoformat()
        if isinstance(v, bytes):
            return f"<{len(v)} bytes>"
        if isinstance(v, float) and not math.isfinite(v):
            return repr(v)
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    text = json.dumps(plain(fields), ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "...(cut)"


# -- the tables in a warehouse ----------------------------------------------------------------------------

PATHS_PRESENT_QUERY = "document_paths_present"


def ensure_tables(warehouse: Any, games_table: str = GAMES_TABLE, dead_letter_table: str = DEAD_LETTER_TABLE) -> None:
    """Create the game table and its dead-letter table if missing; check their columns if present.

    Raises:
        WarehouseError: a table exists without the columns of this layout (name the right table).
    """
    from tuneloop.warehouse.base import WarehouseError
    from tuneloop.warehouse.sql import validate_identifier

    for table, columns in ((games_table, GAME_COLUMNS), (dead_letter_table, DEAD_LETTER_COLUMNS)):
        validate_identifier(table)
        ensure_schema = getattr(warehouse, "ensure_schema", None)
        if ensure_schema is not None:
            ensure_schema(table)
        warehouse.query(create_table_sql(columns), {}, identifiers={"table": table})
        have = warehouse.columns(table)
        missing = [c.name for c in columns if c.name not in have]
        if missing:
            raise WarehouseError(
                f"table={table!r} exists in {warehouse.uri} but lacks columns {missing}; it is not a "
                f"{'game' if columns is GAME_COLUMNS else 'dead-letter'} table (tuneloop.warehouse.games). "
                "Name another table or add the columns"
            )


def paths_present(warehouse: Any, table: str, paths: Sequence[str]) -> set[str]:
    """The subset of ``paths`` already in ``table`` (its ``document_path`` column)."""
    from tuneloop.warehouse.sql import load_query

    if not paths:
        return set()
    result = warehouse.query(load_query(PATHS_PRESENT_QUERY), {"paths": list(paths)}, identifiers={"table": table})
    return {r["document_path"] for r in result.to_pylist()}


def insert_games(warehouse: Any, table: str, games: Sequence[GameRow]) -> list[str]:
    """Insert the games whose document path the table does not hold yet; returns the paths inserted.

    Idempotent by document path: a game already present is skipped (its path is not returned), and
    the streaming ``insertId`` is derived from the path, so BigQuery also drops a retried insert.

    Raises:
        WarehouseError: the warehouse failed (nothing is known to have landed; retry).
    """
    unique: dict[str, GameRow] = {}
    for g in games:
        unique.setdefault(g.document_path, g)
    present = paths_present(warehouse, table, list(unique))
    todo = [g for p, g in unique.items() if p not in present]
    if todo:
        now = dt.datetime.now(dt.UTC)
        warehouse.insert_records(table, [g.to_row(ingested_at=now) for g in todo], row_ids=[g.row_id for g in todo])
    return [g.document_path for g in todo]
