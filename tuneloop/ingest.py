"""Recording from a live service: interactions and human corrections into the warehouse, nothing lost, nothing twice.

A support assistant (or any service) keeps one :class:`Recorder` for its lifetime::

    from tuneloop.ingest import Recorder

    recorder = Recorder("bigquery://my-project/tuneloop", "interactions")   # or duckdb:///wh.duckdb
    rid = recorder.record_interaction("where is my refund?", predicted_label="refund", confidence=0.83,
                                      model_version="v7")
    ...
    recorder.record_correction(rid, "billing", text="where is my refund?", predicted_label="refund")

``record_*`` validates the row (a bad one raises at once, naming the field), gives it an idempotent
``record_id`` (yours, or a fresh one) and returns; it never waits for the network. A background thread
writes the rows in batches, when ``flush_size`` rows are buffered or the oldest has waited
``max_age_s``, and at exit (:meth:`Recorder.close`, also registered with ``atexit``).

What happens when the warehouse is unreachable (BigQuery down, the DuckDB file locked by another process):

1. a failed batch is retried with exponential backoff (``retry_attempts`` times);
2. then it is *spilled*: appended to a local file under ``spill_dir`` (fsync'd), and while the
   warehouse stays down later batches go straight there, so memory does not grow;
3. every ``replay_interval_s`` (backing off while it keeps failing) the spilled rows are replayed, and
   at :meth:`Recorder.close`; a file a crashed process left behind is replayed by the next recorder
   of the same table and spill folder.

Nothing is inserted twice: a batch whose attempt failed may still have landed (a lost response), so
before it is written again the recorder asks the warehouse which of its ``record_id`` s are already
there (:data:`PRESENT_QUERY`, bounded by ``ingested_at``) and writes only the others; BigQuery's
streaming ``insertId`` is the ``record_id`` as well. A batch that failed cleanly is not re-checked.

The rows go to the interaction table (:mod:`tuneloop.warehouse.base`), so the pipelines read them as
they are: an interaction is ``[user: text, assistant: predicted label]`` with source ``live`` and
weight 1; a correction is the same text with the corrected label, source ``corrected`` and weight 2
(corrections count double in training, :data:`tuneloop.examples.CORRECTED_WEIGHT`). ``meta`` carries
``record_id``, ``model_version``, ``predicted_label``, ``confidence`` and, on a correction,
``corrects`` (the interaction's ``record_id``) and ``corrected_from`` (the label it replaces); the
per-model views (:mod:`tuneloop.warehouse.views`) read them.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import json
import logging
import math
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.config import ConfigError, from_mapping, setting
from tuneloop.examples import CORRECTED_WEIGHT, classification_example, make_example
from tuneloop.warehouse.base import (
    COL_INGESTED_AT,
    COL_META,
    InsertError,
    Warehouse,
    WarehouseError,
    coerce_row,
    example_to_row,
    iso,
    to_utc,
)

log = logging.getLogger(__name__)

PRESENT_QUERY = "ingest_present_ids"
META_RECORD_ID = "record_id"
META_MODEL_VERSION = "model_version"
META_PREDICTED = "predicted_label"
META_CONFIDENCE = "confidence"
META_CORRECTS = "corrects"
META_CORRECTED_FROM = "corrected_from"
SPILL_SUFFIX = ".jsonl"
_CLAIM = ".replay-"
_RECORD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
_ENDED: set[str] = set()  # recorders of this process that were closed: their spill files are free to replay
# Rows landed at least this long before a failed attempt began are not looked at by the presence check.
CLOCK_MARGIN = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class RecorderConfig:
    """How a :class:`Recorder` batches, retries and spills."""

    flush_size: int = setting(20, help="rows per batch: a full buffer is written at once")
    max_age_s: float = setting(5.0, help="a buffered row waits at most this long before its batch is written")
    retry_attempts: int = setting(3, help="tries of one batch before it is spilled to the local file")
    retry_initial_s: float = setting(0.2, help="first backoff between tries (doubles, with jitter)")
    retry_max_s: float = setting(5.0, help="longest backoff between tries")
    replay_interval_s: float = setting(10.0, help="how often spilled rows are replayed (backs off while failing)")
    replay_max_s: float = setting(300.0, help="longest wait between replays while the warehouse stays down")
    spill_dir: str = setting("", help="folder of the spill files (default $TUNELOOP_CACHE_DIR/ingest)")
    retry_deadline_s: float = setting(10.0, help="BigQuery: how long one request retries before a try fails")
    create_table: bool = setting(True, help="create the interaction table on the first write if missing")

    def __post_init__(self) -> None:
        for name in ("flush_size", "retry_attempts"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name}={v!r} must be an integer >= 1")
        for name in ("max_age_s", "retry_initial_s", "retry_max_s", "replay_interval_s", "replay_max_s",
                     "retry_deadline_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"{name}={v!r} must be a number of seconds > 0")
        if not isinstance(self.spill_dir, str):
            raise ConfigError(f"spill_dir={self.spill_dir!r} must be a folder path (or '' for the default)")


@dataclass
class RecorderStats:
    """Counters since the recorder started (rows)."""

    recorded: int = 0
    inserted: int = 0
    failed_tries: int = 0
    spilled: int = 0
    replayed: int = 0
    already_present: int = 0


def default_spill_dir() -> Path:
    from tuneloop.storage import CACHE_ENV

    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tuneloop") / "ingest"


def new_record_id() -> str:
    """A fresh idempotent row id (uuid4 hex)."""
    return uuid.uuid4().hex


def _check_record_id(record_id: Any, name: str = "record_id") -> str:
    if not isinstance(record_id, str) or not _RECORD_ID.match(record_id):
        raise ValueError(
            f"{name}={record_id!r} is not a record id: 1-128 letters, digits, '.', '_', ':' or '-', e.g. your "
            "request id (or leave it out for a fresh one)"
        )
    return record_id


def _confidence(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"confidence={value!r} must be a probability in [0, 1] (or None)")
    return float(value)


def _messages(text: Any, messages: Any, label: str | None) -> Any:
    if (text is None) == (messages is None):
        raise ValueError("pass exactly one of text= (the user's message) or messages= (the conversation)")
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text={text!r} must be the user's non-empty message")
        return None
    return messages


class Recorder:
    """Buffered, idempotent recording of interactions and corrections into an interaction table.

    Args:
        warehouse: A warehouse URI (``duckdb:///path.duckdb``: opened for each batch and closed again,
            so other processes can use the file in between; ``bigquery://project/dataset``: one client
            whose requests retry for ``retry_deadline_s``), or an open :class:`Warehouse` (used as is).
        table: The interaction table (``interactions`` by default), created on first write if missing.
        config: A :class:`RecorderConfig`, or its fields as a mapping.
        start: Start the background writer now (False: only :meth:`flush` / :meth:`close` write).
    """

    def __init__(self, warehouse: str | Warehouse, table: str = "interactions", *,
                 config: RecorderConfig | Mapping[str, Any] | None = None, start: bool = True):
        from tuneloop.warehouse.sql import validate_identifier

        validate_identifier(table)
        if not isinstance(config, RecorderConfig):
            config = from_mapping(RecorderConfig, config, what="config", owner="the recorder")
        if not isinstance(warehouse, str) and not isinstance(warehouse, Warehouse):
            raise ValueError(f"warehouse={warehouse!r} must be a warehouse URI or an open Warehouse")
        if isinstance(warehouse, str):
            _check_uri(warehouse)  # now, not at the first flush
        self.config = config
        self.table = table
        self.uri = warehouse if isinstance(warehouse, str) else warehouse.uri
        self._given = None if isinstance(warehouse, str) else warehouse
        self._shared: Warehouse | None = None  # the BigQuery client, kept across batches
        self._table_ready = False
        self.spill_dir = Path(config.spill_dir) if config.spill_dir else default_spill_dir()
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.]", "_", table)
        self._spill_prefix = f"{stem}-"
        self._instance = uuid.uuid4().hex[:12]
        self._spill_path: Path | None = None
        self.stats = RecorderStats()
        self._buffer: list[dict[str, Any]] = []
        self._oldest: float | None = None
        self._cond = threading.Condition()
        self._io = threading.Lock()  # one writer at a time: the worker, or a caller's flush()
        self._closing = False
        self._closed = False
        self._degraded = False  # the warehouse failed: batches go straight to the spill file
        self._next_replay = time.monotonic()
        self._replay_wait = config.replay_interval_s
        self._rng = random.Random()
        self._worker: threading.Thread | None = None
        atexit.register(self.close)
        if start:
            self._worker = threading.Thread(target=self._run, name=f"tuneloop-recorder-{table}", daemon=True)
            self._worker.start()

    # -- recording ---------------------------------------------------------------------------------------
    def record_interaction(
        self,
        text: str | None = None,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        predicted_label: str | None = None,
        confidence: float | None = None,
        model_version: str | None = None,
        source: str = "live",
        record_id: str | None = None,
        created_at: dt.datetime | str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> str:
        """Record what the service answered; returns the row's ``record_id``.

        Args:
            text: The user's message (a classifier's input); or ``messages``, the whole conversation
                (a chat model's, ending with its reply).
            messages: ``[{role, content}]`` turns, instead of ``text``.
            predicted_label: The label the model gave (the assistant turn of a classification row).
            confidence: The model's probability for it, in [0, 1].
            model_version: The registry version that answered (e.g. ``v7``), for the per-model views.
            source: ``live`` (default), ``imported`` or ``synthetic``.
            record_id: Your idempotency key (e.g. the request id): recording the same id twice stores
                one row; default a fresh id.
            created_at: When it happened (default now).
            meta: More JSON-able context, stored in ``meta``.

        Raises:
            ValueError: a field that cannot be stored, named (nothing is recorded).
        """
        if source == "corrected":
            raise ValueError("source='corrected': record a correction with record_correction(...)")
        extra = {META_PREDICTED: predicted_label, META_CONFIDENCE: _confidence(confidence)}
        return self._record(text, messages, predicted_label, source, None, record_id, created_at, model_version,
                            extra, meta)

    def record_correction(
        self,
        corrects: str,
        corrected_label: str,
        *,
        text: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        predicted_label: str | None = None,
        model_version: str | None = None,
        record_id: str | None = None,
        created_at: dt.datetime | str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> str:
        """Record a human's label for an interaction; it trains with weight 2. Returns its ``record_id``.

        Args:
            corrects: The ``record_id`` of the interaction being corrected.
            corrected_label: The right label (the same as the prediction records a confirmation).
            text: The user's message, as in the interaction (or ``messages``).
            messages: The conversation, instead of ``text`` (its last assistant turn is replaced).
            predicted_label: The label the model had given (``meta.corrected_from``).
            model_version: The version that had answered.
            record_id: Idempotency key of the correction (default ``<corrects>:correction``, so the same
                correction sent twice is one row; pass your own to record a second opinion).
            created_at: When the human corrected it (default now).
            meta: More JSON-able context.

        Raises:
            ValueError: a field that cannot be stored, named (nothing is recorded).
        """
        _check_record_id(corrects, "corrects")
        if not isinstance(corrected_label, str) or not corrected_label.strip():
            raise ValueError(f"corrected_label={corrected_label!r} must be a non-empty label")
        if messages is not None:
            turns = [dict(m) for m in messages]
            if turns and turns[-1].get("role") == "assistant":
                turns = turns[:-1]
            messages = [*turns, {"role": "assistant", "content": corrected_label.strip()}]
        extra = {META_CORRECTS: corrects, META_CORRECTED_FROM: predicted_label}
        rid = record_id if record_id is not None else f"{corrects}:correction"
        return self._record(text, messages, corrected_label, "corrected", CORRECTED_WEIGHT, rid, created_at,
                            model_version, extra, meta)

    def _record(self, text, messages, label, source, weight, record_id, created_at, model_version, extra,
                meta) -> str:
        if self._closed:
            raise RuntimeError("the recorder is closed; create a new one")
        msgs = _messages(text, messages, label)
        rid = _check_record_id(record_id) if record_id is not None else new_record_id()
        if model_version is not None and (not isinstance(model_version, str) or not model_version.strip()):
            raise ValueError(f"model_version={model_version!r} must be a version name such as 'v7' (or None)")
        if meta is not None and not isinstance(meta, Mapping):
            raise ValueError(f"meta={meta!r} must be a mapping of JSON values")
        info = {**(meta or {}), **{k: v for k, v in extra.items() if v is not None},
                META_RECORD_ID: rid}
        if model_version is not None:
            info[META_MODEL_VERSION] = model_version.strip()
        try:
            json.dumps(info, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"meta: {exc}; pass JSON values (str, number, bool, None, list, dict)") from exc
        when = iso(to_utc(created_at, "created_at")) if created_at is not None else None
        if msgs is None:
            example = (classification_example(text, label, source=source, created_at=when, meta=info)
                       if label is not None else
                       make_example([{"role": "user", "content": text}], source=source, created_at=when, meta=info))
        else:
            example = make_example(msgs, label=label, source=source, weight=weight, created_at=when, meta=info)
        row = example_to_row(example)
        row.pop(COL_INGESTED_AT, None)
        coerce_row(row)  # the storage types, as the warehouse will check them
        with self._cond:
            self._buffer.append({"row": row, "id": rid, "checked_since": None, "queued_at": iso(dt.datetime.now(dt.UTC))})
            self.stats.recorded += 1
            if self._oldest is None:  # the worker may be waiting without a deadline: give it one
                self._oldest = time.monotonic()
                self._cond.notify_all()
            elif len(self._buffer) >= self.config.flush_size:
                self._cond.notify_all()
        return rid

    # -- state -------------------------------------------------------------------------------------------
    @property
    def buffered(self) -> int:
        """Rows recorded but not yet written or spilled."""
        with self._cond:
            return len(self._buffer)

    def spilled_files(self) -> list[Path]:
        """Spill files of this table in the spill folder (this recorder's and ones left by others)."""
        return sorted(p for p in self.spill_dir.glob(f"{self._spill_prefix}*{SPILL_SUFFIX}") if p.is_file())

    def spilled_rows(self) -> int:
        """Rows waiting in spill files (not yet replayed)."""
        n = 0
        for p in self.spilled_files():
            with contextlib.suppress(OSError), p.open(encoding="utf-8") as f:
                n += sum(1 for line in f if line.strip())
        return n

    # -- writing -----------------------------------------------------------------------------------------
    def flush(self) -> int:
        """Write every buffered row now (or spill it when the warehouse is down); returns rows written."""
        with self._io:
            return self._write(self._take(all_rows=True))

    def replay(self) -> int:
        """Replay the spill files now; returns rows written (0 when the warehouse is still down)."""
        with self._io:
            return self._replay(force=True)

    def close(self) -> None:
        """Flush, replay what was spilled if the warehouse is back, and stop (idempotent).

        Rows still spilled stay in their file; the next recorder of this table and spill folder
        replays them.
        """
        if self._closed:
            return
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join()
        with self._io:
            self._write(self._take(all_rows=True))
            self._replay(force=True)
            if self._shared is not None:
                self._shared.close()
                self._shared = None
        self._closed = True
        _ENDED.add(self._instance)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        left = self.spilled_rows()
        if left:
            log.warning("tuneloop recorder: %d row(s) stay spilled in %s; the next recorder replays them",
                        left, self.spill_dir)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self, *, all_rows: bool = False) -> list[dict[str, Any]]:
        with self._cond:
            n = len(self._buffer) if all_rows else min(len(self._buffer), self.config.flush_size)
            batch, self._buffer = self._buffer[:n], self._buffer[n:]
            self._oldest = time.monotonic() if self._buffer else None
            return batch

    def _run(self) -> None:
        cfg = self.config
        while True:
            with self._cond:
                while not self._closing:
                    now = time.monotonic()
                    if len(self._buffer) >= cfg.flush_size:
                        break
                    if self._oldest is not None and now - self._oldest >= cfg.max_age_s:
                        break
                    if self._spill_pending() and now >= self._next_replay:
                        break
                    waits = [self._next_replay - now] if self._spill_pending() else []
                    if self._oldest is not None:
                        waits.append(self._oldest + cfg.max_age_s - now)
                    self._cond.wait(timeout=max(0.01, min(waits)) if waits else None)
                if self._closing:
                    return
            try:
                with self._io:
                    self._write(self._take())
                    if time.monotonic() >= self._next_replay:
                        self._replay()
            except Exception:  # never let the writer die: the rows are spilled or still buffered
                log.exception("tuneloop recorder: writer error")
                time.sleep(0.1)

    def _spill_pending(self) -> bool:
        return self._degraded or bool(self.spilled_files())

    # -- the warehouse -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _warehouse(self):
        if self._given is not None:
            wh = self._given
        elif self._shared is not None:
            wh = self._shared
        elif self.uri.startswith("bigquery://"):
            from tuneloop.warehouse.bigquery import BigQueryWarehouse, parse_bigquery_uri

            project, dataset, location = parse_bigquery_uri(self.uri)
            wh = self._shared = BigQueryWarehouse(project, dataset, location=location,
                                                  retry_deadline_s=self.config.retry_deadline_s)
        else:
            from tuneloop.warehouse.base import open_warehouse

            wh = open_warehouse(self.uri)  # DuckDB: one batch per connection, the file free in between
            try:
                yield self._ready(wh)
            finally:
                wh.close()
            return
        yield self._ready(wh)

    def _ready(self, wh: Warehouse) -> Warehouse:
        if not self._table_ready:
            if self.config.create_table:
                wh.ensure_table(self.table)
            self._table_ready = True
        return wh

    def _present(self, wh: Warehouse, items: Sequence[Mapping[str, Any]]) -> set[str]:
        """Which record ids of ``items`` (rows that may have landed) the table already holds."""
        from tuneloop.warehouse.sql import load_query

        since = min(dt.datetime.fromisoformat(i["checked_since"]) for i in items) - CLOCK_MARGIN
        found: set[str] = set()
        ids = [i["id"] for i in items]
        for s in range(0, len(ids), 1000):
            result = wh.query(load_query(PRESENT_QUERY), {"since": since, "ids": ids[s : s + 1000]},
                              identifiers={"table": self.table})
            found.update(r[META_RECORD_ID] for r in result.to_pylist())
        return found

    def _insert(self, items: list[dict[str, Any]]) -> int:
        """One try: drop rows already present (for rows that may have landed), insert the rest."""
        with self._warehouse() as wh:
            uncertain = [i for i in items if i["checked_since"] is not None]
            if uncertain:
                present = self._present(wh, uncertain)
                if present:
                    self.stats.already_present += sum(1 for i in items if i["id"] in present)
                    items[:] = [i for i in items if i["id"] not in present]
            # One row per id in a batch (the same record_id recorded twice is one row).
            seen: set[str] = set()
            unique = []
            for i in items:
                if i["id"] in seen:
                    self.stats.already_present += 1
                    continue
                seen.add(i["id"])
                unique.append(i)
            items[:] = unique
            if not items:
                return 0
            return wh.insert_rows(self.table, [i["row"] for i in items], row_ids=[i["id"] for i in items])

    def _try(self, items: list[dict[str, Any]]) -> bool:
        """Insert ``items`` once; on failure mark which may have landed, and return False."""
        started = iso(dt.datetime.now(dt.UTC))
        try:
            self.stats.inserted += self._insert(items)
            return True
        except InsertError as exc:
            self.stats.failed_tries += 1
            if exc.failed_rows is not None:  # BigQuery said which rows did not land: the others did
                failed = set(exc.failed_rows)
                self.stats.inserted += len(items) - len(failed)
                items[:] = [it for k, it in enumerate(items) if k in failed]
            else:
                for it in items:
                    it["checked_since"] = it["checked_since"] or started
            log.warning("tuneloop recorder: write of %d row(s) to %s failed: %s", len(items), self.table, exc)
        except (WarehouseError, OSError) as exc:  # could not open / query: nothing was inserted by this try
            self.stats.failed_tries += 1
            log.warning("tuneloop recorder: warehouse %s unreachable: %s", self.uri, exc)
        except ValueError:
            raise  # a row the backend cannot store: a bug, never retried into the spill file
        return False

    def _write(self, items: list[dict[str, Any]]) -> int:
        if not items:
            return 0
        before = self.stats.inserted
        if not self._degraded:
            delay = self.config.retry_initial_s
            for attempt in range(self.config.retry_attempts):
                if self._try(items):
                    return self.stats.inserted - before
                if attempt + 1 < self.config.retry_attempts and not self._closing:
                    time.sleep(min(self.config.retry_max_s, delay) * (0.5 + self._rng.random() / 2))
                    delay *= 2
        self._spill(items)
        return self.stats.inserted - before

    def _spill(self, items: list[dict[str, Any]]) -> None:
        if self._spill_path is None:
            name = f"{self._spill_prefix}{os.getpid()}-{self._instance}-{uuid.uuid4().hex[:8]}{SPILL_SUFFIX}"
            self._spill_path = self.spill_dir / name
        with self._spill_path.open("a", encoding="utf-8") as f:
            for it in items:
                row = {k: (iso(v) if isinstance(v, dt.datetime) else v) for k, v in it["row"].items()}
                f.write(json.dumps({"row": row, "id": it["id"], "checked_since": it["checked_since"],
                                    "queued_at": it["queued_at"]}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.stats.spilled += len(items)
        if not self._degraded:
            log.warning("tuneloop recorder: warehouse down; spilling rows to %s", self._spill_path)
            self._next_replay = time.monotonic() + self._replay_wait
        self._degraded = True

    # -- replay ----------------------------------------------------------------------------------------------
    def _owner(self, name: str) -> tuple[int, str] | None:
        """``(pid, instance)`` of a spill file name ``<table>-<pid>-<instance>-<n>.jsonl``."""
        rest = name[len(self._spill_prefix):].split("-")
        if len(rest) < 3 or not rest[0].isdigit():
            return None
        return int(rest[0]), rest[1]

    def _claimable(self) -> list[Path]:
        """Spill files this recorder may replay: its own, and those of recorders that ended or died.

        A file of another live recorder is left alone (it may be appending to it); a claim of a process
        that died mid-replay is given back first.
        """
        for stale in self.spill_dir.glob(f"{self._spill_prefix}*{SPILL_SUFFIX}{_CLAIM}*"):
            pid = stale.name.rsplit(_CLAIM, 1)[1].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    stale.rename(stale.with_name(stale.name.rsplit(_CLAIM, 1)[0]))
        out = []
        for path in self.spilled_files():
            owner = self._owner(path.name)
            if owner is None:
                continue
            pid, instance = owner
            mine = pid == os.getpid() and (instance == self._instance or instance in _ENDED)
            if mine or (pid != os.getpid() and not _alive(pid)):
                out.append(path)
        return out

    def _replay(self, *, force: bool = False) -> int:
        if not force and time.monotonic() < self._next_replay:
            return 0
        self._spill_path = None  # new spills go to a new file; the current one is replayed now
        written = 0
        for path in self._claimable():
            claimed = path.with_name(f"{path.name}{_CLAIM}{os.getpid()}-{uuid.uuid4().hex[:8]}")
            try:
                path.rename(claimed)  # atomic: of two recorders replaying one folder, one gets each file
            except OSError:
                continue
            items = []
            with claimed.open(encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        it = json.loads(line)
                        # A spilled row may have landed in an earlier try (or a process died after
                        # inserting and before deleting its file): check before writing it again.
                        it["checked_since"] = it.get("checked_since") or it.get("queued_at") or iso(
                            dt.datetime.now(dt.UTC) - dt.timedelta(days=7))
                        items.append(it)
            ok = True
            for s in range(0, len(items), max(self.config.flush_size, 500)):
                chunk = items[s : s + max(self.config.flush_size, 500)]
                before = self.stats.inserted
                if not self._try(chunk):
                    ok = False
                    rest = chunk + items[s + len(chunk):]
                    _rewrite(claimed, rest)
                    break
                self.stats.replayed += self.stats.inserted - before
                written += self.stats.inserted - before
            if ok:
                claimed.unlink()
            else:
                claimed.rename(path)  # back for the next replay
                self._replay_wait = min(self.config.replay_max_s, self._replay_wait * 2)
                self._next_replay = time.monotonic() + self._replay_wait
                return written
        self._degraded = False
        self._replay_wait = self.config.replay_interval_s
        self._next_replay = time.monotonic() + self._replay_wait
        return written


def _check_uri(uri: str) -> None:
    from tuneloop.warehouse.base import URI_FORMS, _duckdb_path

    if uri.startswith("bigquery://"):
        from tuneloop.warehouse.bigquery import parse_bigquery_uri

        parse_bigquery_uri(uri)
    elif uri.startswith("duckdb://"):
        _duckdb_path(uri, uri.split("://", 1)[1])
    else:
        raise ValueError(f"warehouse={uri!r} is not a warehouse URI; write one of {list(URI_FORMS)}")


def _rewrite(path: Path, items: Sequence[Mapping[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps({"row": it["row"], "id": it["id"], "checked_since": it["checked_since"],
                                "queued_at": it.get("queued_at")}, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["COL_META", "Recorder", "RecorderConfig", "RecorderStats", "new_record_id"]
