"""The canonical example: one record type for every loop, its content-hash id, IO and the hash split.

A record is ``{id, messages:[{role, content, weight?}], label?, source, weight, created_at, meta}``.
``id`` is a hash of the content that defines the example (messages and label), so the same
conversation imported twice is one example, and an example keeps its split across runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant")
SOURCES = ("live", "imported", "synthetic", "corrected")
SPLITS = ("train", "validation", "eval")
RECORD_KEYS = ("id", "messages", "label", "source", "weight", "created_at", "meta")
MESSAGE_KEYS = ("role", "content", "weight")

# Weight given to human-corrected examples (support-intent system: corrections count double).
CORRECTED_WEIGHT = 2.0


class ExampleError(ValueError):
    """A record that is not a valid canonical example; the message names the field and the fix."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class Message:
    """One chat turn. ``weight`` 0 excludes an assistant turn from training loss; None = default."""

    role: str
    content: str
    weight: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.weight is not None:
            d["weight"] = self.weight
        return d


def _trusted(cls, values: dict[str, Any]):
    """An instance of a frozen dataclass from values already checked (skips the per-field setattr)."""
    obj = object.__new__(cls)
    obj.__dict__.update(values)
    return obj


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# A timestamp already in the canonical form (years 1000-9999, microseconds, UTC).
_CANONICAL_TS = re.compile(r"[1-9]\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def normalize_timestamp(value: Any, field_name: str = "created_at") -> str:
    """Return an ISO-8601 UTC string (``...Z``) for a datetime or an ISO string."""
    if type(value) is str and len(value) == 27 and _CANONICAL_TS.fullmatch(value):
        try:  # already canonical: a valid date is returned as it is (what parsing and formatting gives)
            dt.datetime.fromisoformat(value[:-1])
            return value
        except ValueError:
            pass  # not a real date: the general path below says why
    if isinstance(value, dt.datetime):
        ts = value
    elif isinstance(value, str) and value.strip():
        try:
            ts = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ExampleError(
                field_name, f"{value!r} is not an ISO-8601 timestamp; write e.g. 2026-01-31T12:00:00Z"
            ) from exc
    else:
        raise ExampleError(field_name, f"{value!r} is not a timestamp; write e.g. 2026-01-31T12:00:00Z")
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_encoder(*, sort_keys: bool = False, separators: tuple[str, str] = (",", ":")) -> Callable[[Any], str]:
    """``obj -> str``, exactly ``json.dumps(obj, ensure_ascii=False, separators=..., sort_keys=...)``.

    ``json.dumps`` with arguments builds a new encoder on every call; this builds the C encoder once
    (used only if it reproduces the public encoder on a probe). For acyclic data (no circular check).
    """
    public = json.JSONEncoder(ensure_ascii=False, separators=separators, sort_keys=sort_keys)
    probe = {"b": [1, 2.5, None, True, False], "a": "é\n\"\\", "c": {"e": [], "d": 0}}
    try:
        from json.encoder import c_make_encoder, encode_basestring

        def default(o: Any) -> Any:
            raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

        item, key = separators
        fast = c_make_encoder(None, default, encode_basestring, None, key, item, sort_keys, False, True)
        join = "".join

        def encode(obj: Any) -> str:
            return join(fast(obj, 0))

        if encode(probe) == public.encode(probe):
            return encode
    except Exception:  # pragma: no cover - another Python's private API
        pass
    return public.encode  # pragma: no cover


_SORTED_JSON = json_encoder(sort_keys=True)
# the meta column: json.dumps(meta, sort_keys=True, ensure_ascii=False), default separators
_META_JSON = json_encoder(sort_keys=True, separators=(", ", ": "))


def content_id(messages: Sequence[Message], label: str | None) -> str:
    """The example id: sha256 over the canonical JSON of messages and label (first 32 hex chars)."""
    payload = _SORTED_JSON({"messages": [m.to_dict() for m in messages], "label": label})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Example:
    """A canonical example. Build with :func:`make_example` or :meth:`from_dict`, which validate."""

    id: str
    messages: tuple[Message, ...]
    label: str | None = None
    source: str = "live"
    weight: float = 1.0
    created_at: str = field(default_factory=utc_now)
    meta: Mapping[str, Any] = field(default_factory=dict)

    # -- convenience views -------------------------------------------------------------
    @property
    def prompt_text(self) -> str:
        """The text a classifier reads: the last user turn."""
        for m in reversed(self.messages):
            if m.role == "user":
                return m.content
        return ""

    @property
    def target(self) -> str | None:
        """The supervised answer: the label if set, else the last assistant turn."""
        if self.label is not None:
            return self.label
        for m in reversed(self.messages):
            if m.role == "assistant":
                return m.content
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "messages": [m.to_dict() for m in self.messages],
            "label": self.label,
            "source": self.source,
            "weight": self.weight,
            "created_at": self.created_at,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Example:
        """Validate a plain mapping into an Example; raises ExampleError naming the bad field.

        ``id`` may be omitted (it is computed); if given it must equal the content hash.
        """
        if not isinstance(d, Mapping):
            raise ExampleError("record", f"expected a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - set(RECORD_KEYS))
        if unknown:
            raise ExampleError(
                unknown[0], f"unknown key(s) {unknown}; a canonical record has only {list(RECORD_KEYS)}"
            )
        ex = make_example(
            d.get("messages"),
            label=d.get("label"),
            source=d.get("source", "live"),
            weight=d.get("weight"),
            created_at=d.get("created_at") or utc_now(),
            meta=d.get("meta") or {},
        )
        given = d.get("id")
        if given not in (None, "") and given != ex.id:
            raise ExampleError(
                "id", f"{given!r} does not match the content hash {ex.id!r}; drop 'id' to have it computed"
            )
        return ex


_MESSAGE_KEY_SET = frozenset(MESSAGE_KEYS)
_ROLE_SET = frozenset(ROLES)


def _parse_messages(raw: Any) -> tuple[Message, ...]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ExampleError("messages", f"not valid JSON ({exc.msg}); store a JSON list of turns") from exc
    if type(raw) is not list and (not isinstance(raw, Sequence) or isinstance(raw, str | bytes)) or not raw:
        raise ExampleError("messages", "must be a non-empty list of {role, content} turns")
    out = []
    for i, m in enumerate(raw):
        if type(m) is not dict:
            if isinstance(m, Message):
                m = m.to_dict()
            if not isinstance(m, Mapping):
                raise ExampleError(f"messages[{i}]", f"expected an object with role and content, got {type(m).__name__}")
        if not _MESSAGE_KEY_SET.issuperset(m):
            extra = sorted(set(m) - _MESSAGE_KEY_SET)
            raise ExampleError(f"messages[{i}].{extra[0]}", f"unknown key; a turn has only {list(MESSAGE_KEYS)}")
        role = m.get("role")
        if type(role) is not str or role not in _ROLE_SET:
            raise ExampleError(f"messages[{i}].role", f"{role!r} is not one of {list(ROLES)}")
        content = m.get("content")
        if not isinstance(content, str):
            raise ExampleError(f"messages[{i}].content", f"must be a string, got {type(content).__name__}")
        if not content.strip():
            raise ExampleError(f"messages[{i}].content", "is empty; drop the turn or fill it")
        weight = m.get("weight")
        if weight is not None:
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
                raise ExampleError(f"messages[{i}].weight", f"{weight!r} must be 0 or 1 (or a number in [0, 1])")
            if role != "assistant":
                raise ExampleError(f"messages[{i}].weight", "only assistant turns carry a weight")
            weight = float(weight)
        out.append(_trusted(Message, {"role": role, "content": content, "weight": weight}))
    return tuple(out)


def make_example(
    messages: Any,
    *,
    label: str | None = None,
    source: str = "live",
    weight: float | None = None,
    created_at: Any = None,
    meta: Mapping[str, Any] | None = None,
) -> Example:
    """Build a validated Example. ``source='corrected'`` defaults the weight to 2.0."""
    msgs = _parse_messages(messages)
    if label is not None:
        if not isinstance(label, str) or not label.strip():
            raise ExampleError("label", f"{label!r} must be a non-empty string or null")
        label = label.strip()
    if source not in SOURCES:
        raise ExampleError("source", f"{source!r} is not one of {list(SOURCES)}")
    if weight is None:
        weight = CORRECTED_WEIGHT if source == "corrected" else 1.0
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
        raise ExampleError("weight", f"{weight!r} must be a positive number")
    if meta is None:
        meta = {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta) if meta.strip() else {}
        except json.JSONDecodeError as exc:
            raise ExampleError("meta", f"not valid JSON ({exc.msg})") from exc
    if not isinstance(meta, Mapping):
        raise ExampleError("meta", f"must be an object, got {type(meta).__name__}")
    return _trusted(Example, {
        "id": content_id(msgs, label),
        "messages": msgs,
        "label": label,
        "source": source,
        "weight": float(weight),
        "created_at": normalize_timestamp(created_at if created_at is not None else utc_now()),
        "meta": dict(meta),
    })


_loads = json.loads
_scan = json.JSONDecoder().scan_once  # the C scanner json.loads runs, without its Python wrapper
_SOURCE_SET = frozenset(SOURCES)
_TURN_KEYS = frozenset(("role", "content"))


def _loads_fast(text: str) -> Any:
    """``json.loads(text)`` for a document with no leading whitespace; raises ValueError where it would
    (or for leading whitespace, which the caller treats as "not the common form")."""
    try:
        obj, end = _scan(text, 0)
    except StopIteration as exc:
        raise ValueError("not a JSON document") from exc
    if end != len(text) and text[end:].strip(" \t\n\r"):
        raise ValueError("extra data")
    return obj


def checked_parts(messages: Any, label: Any, source: Any, weight: Any, created_at: Any, meta: Any,
                  meta_cache: dict[str, tuple[dict[str, Any], str]] | None = None):
    """The fast path of :func:`make_example` for a record in the common form, without building objects.

    Returns ``(id, turns, label, source, weight, created_at, meta, meta_json)`` exactly as
    :func:`make_example` would make them (``turns``: the ``{role, content}`` dicts, ``meta``: a dict,
    ``meta_json``: it as the canonical meta column spells it), or None when the record is not in the
    common form (turn weights, values that are not JSON strings, anything invalid): the caller then
    calls :func:`make_example`, which accepts it or says why not. Never accepts a record
    :func:`make_example` would refuse. ``meta_cache`` (raw meta string -> parsed, spelled) saves
    parsing the same meta again; its dicts are shared: do not change them.
    """
    if type(messages) is not str:
        return None
    try:
        turns = _loads_fast(messages)
    except ValueError:
        return None
    if type(turns) is not list or not turns:
        return None
    for m in turns:
        if type(m) is not dict or len(m) != 2 or m.keys() != _TURN_KEYS:
            return None
        role, content = m["role"], m["content"]
        if type(role) is not str or role not in _ROLE_SET or type(content) is not str or not content.strip():
            return None
    if label is not None:
        if type(label) is not str:
            return None
        label = label.strip()
        if not label:
            return None
    if type(source) is not str or source not in _SOURCE_SET:
        return None
    if weight is None:
        weight = CORRECTED_WEIGHT if source == "corrected" else 1.0
    elif type(weight) not in (float, int) or not weight > 0:
        return None
    if meta is None:
        meta_obj, meta_json = {}, "{}"
    elif type(meta) is str:
        hit = meta_cache.get(meta) if meta_cache is not None else None
        if hit is not None:
            meta_obj, meta_json = hit
        else:
            if not meta.strip():
                meta_obj = {}
            else:
                try:
                    meta_obj = _loads(meta)
                except ValueError:
                    return None
                if type(meta_obj) is not dict:
                    return None
            meta_json = _META_JSON(meta_obj)
            if meta_cache is not None:
                if len(meta_cache) >= 4096:
                    meta_cache.clear()
                meta_cache[meta] = (meta_obj, meta_json)
    else:
        return None
    try:
        created = normalize_timestamp(created_at if created_at is not None else utc_now())
    except ExampleError:
        return None
    example_id = hashlib.sha256(_SORTED_JSON({"messages": turns, "label": label}).encode("utf-8")).hexdigest()[:32]
    return example_id, turns, label, source, float(weight), created, meta_obj, meta_json


def classification_example(
    text: str,
    label: str,
    *,
    source: str = "live",
    created_at: Any = None,
    system: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Example:
    """A label task as chat: optional system turn, the user's text, the label as the assistant's answer."""
    msgs: list[dict[str, Any]] = []
    if system:
        msgs.append({"role": "system", "content": system})
    msgs.append({"role": "user", "content": text})
    msgs.append({"role": "assistant", "content": label})
    return make_example(msgs, label=label, source=source, created_at=created_at, meta=meta)


# -- split --------------------------------------------------------------------------------

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def split_of(example_id: str, fractions: Sequence[float] = DEFAULT_FRACTIONS, salt: str = "") -> str:
    """The split (train / validation / eval) of an id: a pure function of the id, stable across runs."""
    return splitter(fractions, salt)(example_id)


def splitter(fractions: Sequence[float] = DEFAULT_FRACTIONS, salt: str = "") -> Callable[[str], str]:
    """:func:`split_of` with the fractions checked once: ``id -> split`` for many ids."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions={tuple(fractions)} must be three non-negative numbers summing to 1")
    first, second = fractions[0], fractions[0] + fractions[1]
    sha256, from_bytes = hashlib.sha256, int.from_bytes

    def split(example_id: str) -> str:
        h = from_bytes(sha256(f"{salt}{example_id}".encode()).digest()[:8], "big") / 2**64
        if h < first:
            return "train"
        if h < second:
            return "validation"
        return "eval"

    return split


def split_examples(
    examples: Iterable[Example], fractions: Sequence[float] = DEFAULT_FRACTIONS, salt: str = ""
) -> dict[str, list[Example]]:
    out: dict[str, list[Example]] = {s: [] for s in SPLITS}
    split = splitter(fractions, salt)
    for ex in examples:
        out[split(ex.id)].append(ex)
    return out


def dedupe(examples: Iterable[Example]) -> list[Example]:
    """Keep one example per id: the latest ``created_at`` wins (a correction replaces the original)."""
    best: dict[str, Example] = {}
    for ex in examples:
        cur = best.get(ex.id)
        if cur is None or ex.created_at >= cur.created_at:
            best[ex.id] = ex
    return sorted(best.values(), key=lambda e: (e.created_at, e.id))


def dataset_hash(examples: Iterable[Example]) -> str:
    """sha256 over the sorted ids, sources and weights: the identity of a training set."""
    h = hashlib.sha256()
    for ex in sorted(examples, key=lambda e: e.id):
        h.update(f"{ex.id}|{ex.source}|{ex.weight}\n".encode())
    return h.hexdigest()


# -- JSONL ----------------------------------------------------------------------------------


def write_jsonl(path: str | Path, rows: Iterable[Example | Mapping[str, Any]]) -> int:
    """Write examples (or plain dicts) one JSON object per line; returns the row count."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with p.open("w", encoding="utf-8") as f:
        for r in rows:
            d = r.to_dict() if isinstance(r, Example) else r
            f.write(json.dumps(d, ensure_ascii=False, separators=(",", ":")))
            f.write("\n")
            n += 1
    return n


class JsonlWriter:
    """Append examples (or plain dicts) to a JSONL file a batch at a time, as :func:`write_jsonl` spells them."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("w", encoding="utf-8")
        self.rows = 0

    def write(self, rows: Iterable[Example | Mapping[str, Any]]) -> None:
        lines = [
            json.dumps(r.to_dict() if isinstance(r, Example) else r, ensure_ascii=False, separators=(",", ":"))
            for r in rows
        ]
        if lines:
            self._fh.write("\n".join(lines) + "\n")
            self.rows += len(lines)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def iter_jsonl_dicts(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, parsed_or_exception)`` for each non-blank line."""
    with Path(path).open(encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield i, json.loads(line)
            except json.JSONDecodeError as exc:
                yield i, ExampleError("line", f"invalid JSON at column {exc.colno}: {exc.msg}")


def read_jsonl(path: str | Path, *, strict: bool = True) -> list[Example]:
    """Read canonical examples. strict: raise on the first bad line naming it; else skip bad lines."""
    out = []
    for lineno, obj in iter_jsonl_dicts(path):
        try:
            if isinstance(obj, Exception):
                raise obj
            out.append(Example.from_dict(obj))
        except ExampleError as exc:
            if strict:
                raise ExampleError(exc.field, f"{path}:{lineno}: {exc}") from exc
    return out


# -- Parquet --------------------------------------------------------------------------------


def _arrow_schema():
    import pyarrow as pa

    msg = pa.struct([("role", pa.string()), ("content", pa.string()), ("weight", pa.float64())])
    return pa.schema(
        [
            ("id", pa.string()),
            ("messages", pa.list_(msg)),
            ("label", pa.string()),
            ("source", pa.string()),
            ("weight", pa.float64()),
            ("created_at", pa.string()),
            ("meta", pa.string()),
        ]
    )


class ArrowColumns:
    """Canonical examples collected as Arrow columns (messages as flat columns + offsets), then one table.

    :meth:`add` takes an :class:`Example`; :meth:`add_checked` takes the parts of a record already
    validated the way :func:`make_example` validates them (the extract's fast path), so no objects are built.
    """

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.labels: list[str | None] = []
        self.sources: list[str] = []
        self.weights: list[float] = []
        self.created: list[str] = []
        self.metas: list[str] = []
        self.roles: list[str] = []
        self.contents: list[str] = []
        self.turn_weights: list[float | None] = []
        self.offsets: list[int] = [0]

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ex: Example) -> None:
        roles, contents, turn_weights = self.roles, self.contents, self.turn_weights
        for m in ex.messages:
            roles.append(m.role)
            contents.append(m.content)
            turn_weights.append(m.weight)
        self._row(ex.id, ex.label, ex.source, ex.weight, ex.created_at, _META_JSON(dict(ex.meta)))

    def add_checked(self, example_id: str, turns: Sequence[Mapping[str, str]], label: str | None, source: str,
                    weight: float, created_at: str, meta_json: str) -> None:
        """A record whose turns are ``{role, content}`` mappings (no turn weights), all values already valid;
        ``meta_json`` is the meta object as the canonical meta column spells it (``_META_JSON``)."""
        roles, contents, turn_weights = self.roles, self.contents, self.turn_weights
        for m in turns:
            roles.append(m["role"])
            contents.append(m["content"])
            turn_weights.append(None)
        self._row(example_id, label, source, weight, created_at, meta_json)

    def _row(self, example_id, label, source, weight, created_at, meta_json) -> None:
        self.offsets.append(len(self.roles))
        self.ids.append(example_id)
        self.labels.append(label)
        self.sources.append(source)
        self.weights.append(weight)
        self.created.append(created_at)
        self.metas.append(meta_json)

    def table(self):
        """The rows added so far as an Arrow table of the canonical schema."""
        import pyarrow as pa

        schema = _arrow_schema()
        msg_type = schema.field("messages").type
        turns = pa.StructArray.from_arrays(
            [pa.array(self.roles, pa.string()), pa.array(self.contents, pa.string()),
             pa.array(self.turn_weights, pa.float64())],
            fields=list(msg_type.value_type),
        )
        messages = pa.ListArray.from_arrays(pa.array(self.offsets, pa.int32()), turns, type=msg_type)
        columns = [pa.array(self.ids, pa.string()), messages, pa.array(self.labels, pa.string()),
                   pa.array(self.sources, pa.string()), pa.array(self.weights, pa.float64()),
                   pa.array(self.created, pa.string()), pa.array(self.metas, pa.string())]
        return pa.Table.from_arrays(columns, schema=schema)


def to_arrow(examples: Iterable[Example]):
    """Examples as an Arrow table of the canonical schema (messages built as flat columns + offsets)."""
    cols = ArrowColumns()
    for ex in examples:
        cols.add(ex)
    return cols.table()


def from_arrow(table) -> list[Example]:
    return examples_from_batch(table)


def example_from_row(row: Mapping[str, Any]) -> Example:
    """A canonical example from one row of the Parquet schema (trusted: our own files, not re-validated)."""
    return _trusted(Example, {
        "id": row["id"],
        "messages": tuple(
            _trusted(Message, {"role": m["role"], "content": m["content"], "weight": m.get("weight")})
            for m in row["messages"]
        ),
        "label": row["label"],
        "source": row["source"],
        "weight": row["weight"],
        "created_at": row["created_at"],
        "meta": json.loads(row["meta"]) if row["meta"] else {},
    })


def examples_from_batch(batch) -> list[Example]:
    """The examples of an Arrow table or record batch of the canonical schema (trusted, as
    :func:`example_from_row`), read column by column: the turns from the flat message columns, one
    :class:`Message` object per distinct non-user turn of the batch (they are immutable: a label
    answered a thousand times is one object), a meta spelling seen before parsed once."""
    import pyarrow as pa

    msgs = batch.column("messages")
    if isinstance(msgs, pa.ChunkedArray):
        msgs = msgs.combine_chunks() if msgs.num_chunks != 1 else msgs.chunk(0)
    flat = msgs.flatten()  # the turns of these rows only (a slice's offsets start past 0)
    offsets = msgs.offsets.to_pylist()
    base = offsets[0] if offsets else 0
    trusted = _trusted
    shared: dict[tuple, Message] = {}
    turns: list[Message] = []
    add_turn = turns.append
    for role, content, weight in zip(flat.field("role").to_pylist(), flat.field("content").to_pylist(),
                                     flat.field("weight").to_pylist(), strict=True):
        key = (role, content, weight)
        m = shared.get(key) if role != "user" else None
        if m is None:
            m = trusted(Message, {"role": role, "content": content, "weight": weight})
            if role != "user" and len(shared) < 65536:
                shared[key] = m
        add_turn(m)
    cols = [batch.column(name).to_pylist() for name in RECORD_KEYS if name != "messages"]
    metas: dict[str, dict[str, Any]] = {"": {}, "{}": {}}
    out = []
    append, loads = out.append, json.loads
    for i, (example_id, label, source, weight, created_at, meta) in enumerate(zip(*cols, strict=True)):
        parsed = metas.get(meta) if meta is not None else {}
        if parsed is None:
            parsed = loads(meta)
            if len(metas) < 4096:
                metas[meta] = parsed
        append(trusted(Example, {
            "id": example_id,
            "messages": tuple(turns[offsets[i] - base:offsets[i + 1] - base]),
            "label": label,
            "source": source,
            "weight": weight,
            "created_at": created_at,
            "meta": dict(parsed),
        }))
    return out


class ExamplesParquetWriter:
    """Write canonical examples (or Arrow batches of the same schema) to one Parquet file, a batch at a time.

    The file holds the rows :func:`write_parquet` would write for the same examples, in order; an
    empty writer leaves an empty file with the schema.
    """

    def __init__(self, path: str | Path):
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.schema = _arrow_schema()
        self._writer = pq.ParquetWriter(str(self.path), self.schema)
        self.rows = 0

    def write(self, examples: Sequence[Example]) -> None:
        if examples:
            self.write_arrow(to_arrow(examples))

    def write_arrow(self, data) -> None:
        """Append an Arrow table or record batch with the canonical columns (cast to the schema)."""
        import pyarrow as pa

        if data.num_rows:
            table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
            self._writer.write_table(table.select(list(RECORD_KEYS)).cast(self.schema))
            self.rows += data.num_rows

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> ExamplesParquetWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


PARQUET_BATCH_ROWS = 20_000


def iter_parquet(path: str | Path, batch_rows: int = PARQUET_BATCH_ROWS) -> Iterator[list[Example]]:
    """The examples of a canonical Parquet file, ``batch_rows`` at a time (never the whole file)."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(str(path)) as f:
        for batch in f.iter_batches(batch_size=batch_rows):
            yield examples_from_batch(batch)


def write_parquet(path: str | Path, examples: Iterable[Example]) -> int:
    import pyarrow.parquet as pq

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    table = to_arrow(examples)
    pq.write_table(table, p)
    return table.num_rows


def read_parquet(path: str | Path) -> list[Example]:
    import pyarrow.parquet as pq

    return from_arrow(pq.read_table(path))


def read_examples(path: str | Path) -> list[Example]:
    """Read a canonical file by extension (.jsonl / .parquet)."""
    p = str(path)
    if p.endswith(".parquet"):
        return read_parquet(p)
    return read_jsonl(p)
