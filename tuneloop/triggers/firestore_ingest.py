"""The game ingest: a Cloud Function that streams each finished game from Firestore into the warehouse.

Deployed as a 2nd-gen Cloud Function on Firestore's ``google.cloud.firestore.document.v1.created`` events
for the ``game_results`` collection (``gcloud functions deploy ... --entry-point on_game_result_created``,
docs/google-cloud.md). For each event it:

1. decodes the payload, a protobuf ``google.events.cloud.firestore.v1.DocumentEventData`` (package
   ``google-events``), and reads the created document's path and fields;
2. maps the document to a row of the game table (:func:`tuneloop.warehouse.games.game_from_document`);
3. inserts the row unless the table already holds that document path: the path is the row's identity,
   so a redelivered event inserts nothing new (and the streaming ``insertId`` is derived from it too);
4. a document that does not map (a missing field, a wrong type, an unknown outcome), or that BigQuery
   rejects row by row, goes to the dead-letter table with the reason, once per document path, and the
   event is acknowledged: retrying would not make it map;
5. a warehouse failure (a 5xx, a timeout, a lost connection, missing permissions) raises, so the
   platform redelivers the event when the function is deployed with ``--retry``.

Configuration, from the function's environment at call time::

    TUNELOOP_WAREHOUSE              bigquery://PROJECT/DATASET (duckdb:///path.duckdb works for trials)
    TUNELOOP_GAMES_TABLE            the game table (default game_results)
    TUNELOOP_DEAD_LETTER_TABLE      the dead-letter table (default game_results_dead_letter)
    TUNELOOP_GAMES_COLLECTION       the Firestore collection (default game_results); others are ignored
    TUNELOOP_BQ_RETRY_DEADLINE_S    how long one BigQuery call retries before the event fails (default 30)

Both tables are created on the first event a function instance sees (``CREATE TABLE IF NOT EXISTS``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from tuneloop.warehouse import games

EVENT_TYPE = "google.cloud.firestore.document.v1.created"
DEFAULT_RETRY_DEADLINE_S = 30.0
_DOCUMENTS = "/documents/"


@dataclass(frozen=True)
class IngestConfig:
    """Where games go.

    Attributes:
        warehouse_uri: ``bigquery://PROJECT/DATASET`` (or a ``duckdb://`` file).
        games_table: The game table.
        dead_letter_table: Where documents that do not map are kept, with the reason.
        collection: The Firestore collection of finished games; documents elsewhere are ignored.
        retry_deadline_s: How long one BigQuery call retries a transient failure before the event fails.
    """

    warehouse_uri: str
    games_table: str = games.GAMES_TABLE
    dead_letter_table: str = games.DEAD_LETTER_TABLE
    collection: str = games.GAMES_COLLECTION
    retry_deadline_s: float = DEFAULT_RETRY_DEADLINE_S

    def __post_init__(self) -> None:
        from tuneloop.warehouse.sql import validate_identifier

        if not isinstance(self.warehouse_uri, str) or "://" not in self.warehouse_uri:
            raise ValueError(
                f"TUNELOOP_WAREHOUSE={self.warehouse_uri!r} is not a warehouse URI; write bigquery://PROJECT/DATASET"
            )
        validate_identifier(self.games_table, param="TUNELOOP_GAMES_TABLE")
        validate_identifier(self.dead_letter_table, param="TUNELOOP_DEAD_LETTER_TABLE")
        if self.games_table == self.dead_letter_table:
            raise ValueError("TUNELOOP_DEAD_LETTER_TABLE must differ from TUNELOOP_GAMES_TABLE")
        if not isinstance(self.collection, str) or not self.collection or "/" in self.collection:
            raise ValueError(f"TUNELOOP_GAMES_COLLECTION={self.collection!r} must be a collection id, e.g. game_results")
        if isinstance(self.retry_deadline_s, bool) or not isinstance(self.retry_deadline_s, int | float) or not (
            0 < self.retry_deadline_s <= 600
        ):
            raise ValueError(f"TUNELOOP_BQ_RETRY_DEADLINE_S={self.retry_deadline_s!r} must be seconds in (0, 600]")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngestConfig:
        """Read the ``TUNELOOP_*`` variables (see the module docstring).

        Raises:
            ValueError: naming the missing or malformed variable.
        """
        env = os.environ if env is None else env
        uri = (env.get("TUNELOOP_WAREHOUSE") or "").strip()
        if not uri:
            raise ValueError(
                "TUNELOOP_WAREHOUSE is not set; deploy the function with "
                "--set-env-vars TUNELOOP_WAREHOUSE=bigquery://PROJECT/DATASET"
            )
        raw = (env.get("TUNELOOP_BQ_RETRY_DEADLINE_S") or "").strip()
        try:
            deadline = float(raw) if raw else DEFAULT_RETRY_DEADLINE_S
        except ValueError as exc:
            raise ValueError(f"TUNELOOP_BQ_RETRY_DEADLINE_S={raw!r} is not a number of seconds") from exc
        return cls(
            warehouse_uri=uri,
            games_table=(env.get("TUNELOOP_GAMES_TABLE") or games.GAMES_TABLE).strip(),
            dead_letter_table=(env.get("TUNELOOP_DEAD_LETTER_TABLE") or games.DEAD_LETTER_TABLE).strip(),
            collection=(env.get("TUNELOOP_GAMES_COLLECTION") or games.GAMES_COLLECTION).strip(),
            retry_deadline_s=deadline,
        )


@dataclass(frozen=True)
class IngestOutcome:
    """What one event did.

    ``action``: ``inserted``, ``duplicate`` (the path was already in the table), ``dead-lettered``,
    ``dead-letter-duplicate`` (already dead-lettered) or ``ignored`` (not a game document).
    """

    action: str
    document_path: str
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DecodedEvent:
    """A Firestore event's document: its full resource name and its fields (None: it did not decode)."""

    document_path: str
    fields: dict[str, Any] | None
    problem: str = ""
    raw: str = ""


def _path_from_attributes(attributes: Mapping[str, Any]) -> str:
    """The document's resource name from the event's attributes (for a payload that does not decode)."""
    document = str(attributes.get("document") or "").strip("/")
    project, database = attributes.get("project"), attributes.get("database")
    if document and project and database:
        return f"projects/{project}/databases/{database}/documents/{document}"
    subject = str(attributes.get("subject") or "")
    if subject:
        return subject
    return f"event:{attributes.get('id') or 'unknown'}"


def decode_event(data: Any, attributes: Mapping[str, Any] | None = None) -> DecodedEvent:
    """Decode a ``DocumentEventData`` payload into the created document's path and fields."""
    from google.events.cloud.firestore_v1.types import DocumentEventData

    attributes = attributes or {}
    if isinstance(data, str):
        data = data.encode("latin-1", errors="replace")
    if not isinstance(data, bytes | bytearray) or not data:
        return DecodedEvent(
            _path_from_attributes(attributes), None,
            f"payload: expected protobuf DocumentEventData bytes, got {type(data).__name__} "
            f"{str(data)[:80]!r}; deploy the trigger for {EVENT_TYPE} (protobuf payloads)",
        )
    raw = base64.b64encode(bytes(data[:4096])).decode()
    try:
        event = DocumentEventData.deserialize(bytes(data))
    except Exception as exc:  # protobuf's DecodeError and friends: the payload is not this message
        return DecodedEvent(
            _path_from_attributes(attributes), None,
            f"payload: not a Firestore DocumentEventData protobuf ({type(exc).__name__}: {exc})", raw,
        )
    pb = DocumentEventData.pb(event)
    if not pb.HasField("value") or not pb.value.name:
        return DecodedEvent(
            _path_from_attributes(attributes), None,
            "payload: the event carries no created document (value is empty); is the trigger for "
            f"{EVENT_TYPE}?", raw,
        )
    return DecodedEvent(pb.value.name, games.firestore_fields(pb.value))


def _collection_of(document_path: str) -> tuple[str, int]:
    """``(collection, segments)`` of a document's path relative to ``/documents/``."""
    rel = document_path.split(_DOCUMENTS, 1)[1] if _DOCUMENTS in document_path else document_path
    parts = [p for p in rel.split("/") if p]
    return (parts[0] if parts else ""), len(parts)


def handle_game_event(data: Any, attributes: Mapping[str, Any], warehouse: Any, config: IngestConfig) -> IngestOutcome:
    """Decide on one Firestore event and write the game (or its dead letter) to the warehouse.

    Args:
        data: The event payload (protobuf ``DocumentEventData`` bytes).
        attributes: The CloudEvent's attributes (``id``, ``subject``, ``document``, ...).
        warehouse: An open :class:`tuneloop.warehouse.base.Warehouse` with both tables (:func:`games.ensure_tables`).
        config: The function's configuration.

    Returns:
        What happened; see :class:`IngestOutcome`.

    Raises:
        WarehouseError: the warehouse failed; the event should be redelivered.
    """
    from tuneloop.warehouse.base import InsertError

    event = decode_event(data, attributes)
    if event.fields is not None:
        collection, depth = _collection_of(event.document_path)
        if collection != config.collection or depth != 2:
            return IngestOutcome(
                "ignored", event.document_path, f"not a document of the {config.collection!r} collection"
            )
        try:
            game = games.game_from_document(event.document_path, event.fields)
        except games.GameDocumentError as exc:
            return _dead_letter(warehouse, config, event.document_path, str(exc),
                                games.fields_as_json(event.fields), attributes)
        try:
            inserted = games.insert_games(warehouse, config.games_table, [game])
        except InsertError as exc:
            if exc.failed_rows is None:
                raise  # the request failed as a whole: transient, let the platform retry
            return _dead_letter(warehouse, config, event.document_path, f"the warehouse rejected the row: {exc}",
                                games.fields_as_json(event.fields), attributes)
        if inserted:
            return IngestOutcome("inserted", event.document_path)
        return IngestOutcome("duplicate", event.document_path, "this document path is already in the table")
    return _dead_letter(warehouse, config, event.document_path, event.problem, event.raw, attributes)


def _dead_letter(warehouse: Any, config: IngestConfig, path: str, reason: str, document: str,
                 attributes: Mapping[str, Any]) -> IngestOutcome:
    table = config.dead_letter_table
    if games.paths_present(warehouse, table, [path]):
        return IngestOutcome("dead-letter-duplicate", path, reason)
    row = {
        "document_path": path,
        "event_id": str(attributes.get("id") or "") or None,
        "reason": reason,
        "document": document,
        "received_at": dt.datetime.now(dt.UTC),
    }
    warehouse.insert_records(table, [row], row_ids=[games.row_id_of(path)])
    return IngestOutcome("dead-lettered", path, reason)


# -- the function --------------------------------------------------------------------------------------

_OPEN: dict[tuple[Any, ...], Any] = {}  # one warehouse per function instance (and configuration)


def open_for(config: IngestConfig):
    """The warehouse of ``config`` with both tables ensured, opened once per process."""
    key = (config.warehouse_uri, config.games_table, config.dead_letter_table, config.retry_deadline_s)
    wh = _OPEN.get(key)
    if wh is None:
        if config.warehouse_uri.startswith("bigquery://"):
            from tuneloop.warehouse.bigquery import BigQueryWarehouse, parse_bigquery_uri

            project, dataset, location = parse_bigquery_uri(config.warehouse_uri)
            wh = BigQueryWarehouse(project, dataset, location=location, retry_deadline_s=config.retry_deadline_s)
        else:
            from tuneloop.warehouse import open_warehouse

            wh = open_warehouse(config.warehouse_uri)
        try:
            games.ensure_tables(wh, config.games_table, config.dead_letter_table)
        except BaseException:
            wh.close()
            raise
        _OPEN[key] = wh
    return wh


def _attributes(cloud_event) -> dict[str, Any]:
    get = getattr(cloud_event, "get_attributes", None)
    return dict(get()) if callable(get) else {}


def on_game_result_created(cloud_event) -> None:
    """The Cloud Function entry point (``--entry-point on_game_result_created``), a CloudEvent handler."""
    config = IngestConfig.from_env()
    attributes = _attributes(cloud_event)
    outcome = handle_game_event(cloud_event.data, attributes, open_for(config), config)
    severity = "WARNING" if outcome.action.startswith("dead-letter") else "INFO"
    print(json.dumps({"severity": severity, "message": f"tuneloop game ingest: {outcome.action}",
                      "event_id": attributes.get("id"), **outcome.to_dict()}))


try:  # registers the signature type for `functions-framework --target on_game_result_created`
    import functions_framework

    on_game_result_created = functions_framework.cloud_event(on_game_result_created)
except ImportError:  # pragma: no cover - the gcp extra is not installed; the handler still works
    pass
