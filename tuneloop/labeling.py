"""Zero-shot labelling: unlabelled rows -> a chat model's label with a confidence -> examples or a review table.

:func:`label_examples` (the ``label-examples`` step) reads unlabelled rows (the interaction table's rows whose
``label`` is NULL, or a JSONL/CSV file of ``text`` or ``messages``), asks the ``labeler`` (``PROVIDER:MODEL``,
any provider that declares chat; ``gemini:gemini-2.5-flash`` on Vertex is the documented default) to pick one
label of the label set (a taxonomy file, or a plain list / mapping of label -> description), and decides per row:

* ``confidence >= min_confidence``: the row goes to the examples table as ``source=synthetic`` with its
  confidence in ``meta`` (``confidence``, ``confidence_source``, ``labeler``, ``labelled_from``);
* otherwise, and for every answer that is not a valid label or cannot be parsed: the review table, with the
  reason. A person (or the support system's correction flow) fills in ``corrected_label``; the next run (or
  :func:`apply_corrections`) brings those rows back as ``source=corrected``, weight 2.

Confidence (``confidence_source`` per row):

* ``logprob``: where the provider returns token log-probabilities (a provider with ``predict_scored``: OpenAI
  chat completions asked with ``logprobs=true, top_logprobs``; Gemini on Vertex with ``response_logprobs``,
  ``logprobs``), the probability the model gave the label's tokens in its answer, ``exp(sum of their logprobs)``.
* ``self_reported``: else the ``confidence`` the model wrote in its JSON answer, shrunk toward the uniform prior
  (:func:`calibrate_self_reported`). That is a fixed, conservative rule, not a calibration fitted to data: a model's
  stated confidence is known to run high, so a stated 1.0 never counts as certain; fitting the rule on reviewed
  rows (corrected vs. kept) is how it would become a measured calibration.

Requests are bounded like evaluation (``eval_options``: ``concurrency``, ``max_requests``, ``retry``; more rows
than the request cap allows are refused before anything is sent). Every row's decision is a
:class:`tuneloop.decisions.Decision` (stage ``label``), plus one summary record. Idempotent: a row whose content
id is already in the review table, or whose labelled example (any label of the set) is already in the
examples table, is not asked again nor inserted twice.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuneloop import examples as ex
from tuneloop.config import ConfigError
from tuneloop.decisions import Decision, inputs_hash

DEFAULT_LABELER = "gemini:gemini-2.5-flash"
DEFAULT_MIN_CONFIDENCE = 0.8
DEFAULT_REVIEW_TABLE = "label_review"
LABEL_MAX_OUTPUT_TOKENS = 64  # the JSON answer {"label": ..., "confidence": ...}
TOP_LOGPROBS = 5
SELF_REPORT_WEIGHT = 0.8  # calibrate_self_reported: how much of a stated confidence is kept
ANSWER_KEPT_CHARS = 500
ID_CHUNK = 5000
STATUSES = ("labelled", "review")
CONFIDENCE_SOURCES = ("logprob", "self_reported")

_EXISTING_IDS = "SELECT DISTINCT t.id FROM {{table}} AS t INNER JOIN UNNEST(@ids) AS new_id ON t.id = new_id"
_UNLABELLED = "SELECT id, messages, created_at, meta FROM {{table}} WHERE label IS NULL ORDER BY ingested_at, id"
_CORRECTED = (
    "SELECT id, messages, corrected_label, created_at, meta FROM {{table}} WHERE corrected_label IS NOT NULL "
    "ORDER BY id"
)


def review_columns():
    """The review table's columns (BigQuery and DuckDB types): the row, what the labeller said, why, the fix."""
    from tuneloop.warehouse.games import Column

    ts = ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE")
    return (
        Column("id", "STRING", "VARCHAR", True, "content id of the unlabelled row (messages, no label)"),
        Column("messages", "STRING", "VARCHAR", True, "JSON list of the row's {role, content} turns"),
        Column("proposed_label", "STRING", "VARCHAR", False, "the labeller's label (NULL: none valid)"),
        Column("confidence", "FLOAT64", "DOUBLE", False, "its confidence 0-1 (NULL: none)"),
        Column("confidence_source", "STRING", "VARCHAR", False, "logprob or self_reported"),
        Column("reason", "STRING", "VARCHAR", True, "why the row needs a person: low confidence, not a label, ..."),
        Column("answer", "STRING", "VARCHAR", False, "the labeller's raw answer (cut)"),
        Column("labeler", "STRING", "VARCHAR", True, "PROVIDER:MODEL that answered"),
        Column("created_at", *ts, False, "when the row was written"),
        Column("meta", "STRING", "VARCHAR", False, "the row's meta (JSON)"),
        Column("queued_at", *ts, True, "when it entered the review table"),
        Column("corrected_label", "STRING", "VARCHAR", False, "filled by a person: the right label"),
        Column("reviewed_at", *ts, False, "filled by a person: when"),
    )


# -- parameters ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Labeler:
    """The model that labels: a provider that declares chat, and the model it asks."""

    provider: str
    model: str

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.model}"


def parse_labeler(value: Any) -> Labeler:
    """``"PROVIDER:MODEL"`` (or ``{"provider", "model"}``) -> :class:`Labeler`, checked against the registry.

    Raises:
        ConfigError: not that shape, an unknown provider, one that does not declare chat, or not installed.
    """
    from tuneloop.providers.registry import (
        ProviderNotFound,
        install_hint,
        missing_requirements,
        provider_class,
    )

    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"provider", "model"})
        if unknown:
            raise ConfigError(f"labeler: unknown key {unknown[0]!r}; write {{'provider': ..., 'model': ...}}")
        provider, model = value.get("provider"), value.get("model")
    elif isinstance(value, str):
        provider, _, model = value.strip().partition(":")
    else:
        provider = model = None
    if not isinstance(provider, str) or not isinstance(model, str) or not provider.strip() or not model.strip():
        raise ConfigError(
            f"labeler={value!r} must be 'PROVIDER:MODEL', e.g. {DEFAULT_LABELER!r} or 'openai:gpt-4.1-mini'"
        )
    try:
        cls = provider_class(provider.strip())
    except ProviderNotFound as exc:
        raise ConfigError(f"labeler: {exc}") from exc
    if "chat" not in cls.tasks:
        from tuneloop.chat_eval import providers_for

        raise ConfigError(
            f"labeler={value!r}: provider {cls.name!r} does not declare chat; a labeller answers a prompt: use one of "
            f"{providers_for('chat')}"
        )
    missing = missing_requirements(cls)
    if missing:
        raise ConfigError(f"labeler provider {cls.name!r} needs {missing}, which is not installed; {install_hint(cls)}")
    return Labeler(cls.name, model.strip())


@dataclass(frozen=True)
class LabelSet:
    """The labels a labeller may answer, each with its description ("" when a plain list gave none)."""

    labels: tuple[tuple[str, str], ...]
    source: str  # the taxonomy's URI, or "labels"

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.labels]

    def prompt_text(self) -> str:
        return "\n".join(f"- {n}: {d}" if d else f"- {n}" for n, d in self.labels)


def label_set(taxonomy: str = "", labels: Any = None) -> LabelSet:
    """The label set from a taxonomy file, or ``labels`` (a list of names, a mapping name -> description, or its JSON).

    Raises:
        ConfigError: neither or both given, an empty or repeated label, a description that is not text.
    """
    from tuneloop import taxonomy as tx

    if isinstance(labels, str):
        text = labels.strip()
        if text.startswith(("[", "{")):
            try:
                labels = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"labels={text[:80]!r} is not valid JSON: {exc}") from exc
        else:
            labels = [s.strip() for s in text.split(",") if s.strip()]
    has_labels = bool(labels)
    if taxonomy and taxonomy.strip() and has_labels:
        raise ConfigError("taxonomy and labels are both set; give the label set once (a taxonomy file, or labels)")
    tax = tx.load(taxonomy)
    if tax is not None:
        return LabelSet(tuple((lb.name, lb.description) for lb in tax.labels), tax.uri)
    if not has_labels:
        raise ConfigError(
            "no label set: pass taxonomy (a YAML/JSON file of domains -> labels -> description) or labels "
            "(e.g. ['refund', 'invoice'] or {'refund': 'wants money back'})"
        )
    if isinstance(labels, Mapping):
        pairs = list(labels.items())
    elif isinstance(labels, Sequence):
        pairs = [(n, "") for n in labels]
    else:
        raise ConfigError(f"labels={labels!r} must be a list of names or a mapping name -> description")
    seen: set[str] = set()
    out = []
    for i, (n, d) in enumerate(pairs):
        if not isinstance(n, str) or not n.strip():
            raise ConfigError(f"labels[{i}]={n!r} must be a non-empty string")
        if not isinstance(d, str):
            raise ConfigError(f"labels.{n}: description {d!r} must be text")
        if n.strip() in seen:
            raise ConfigError(f"labels: {n.strip()!r} is listed twice; list each label once")
        seen.add(n.strip())
        out.append((n.strip(), " ".join(d.split())))
    return LabelSet(tuple(out), "labels")


def check_min_confidence(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"min_confidence={value!r} must be a number in [0, 1] (e.g. {DEFAULT_MIN_CONFIDENCE})")
    return float(value)


# -- input rows -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One unlabelled row: its turns (user text, or a conversation), its content id, when, and its meta."""

    id: str
    messages: tuple[ex.Message, ...]
    created_at: str
    meta: Mapping[str, Any]


def make_row(messages: Any, created_at: Any = None, meta: Any = None) -> Row:
    """A validated :class:`Row` (an example without a label); raises ``ExampleError`` naming the field."""
    e = ex.make_example(messages, created_at=created_at, meta=meta)
    return Row(e.id, e.messages, e.created_at, e.meta)


def read_file_rows(uri: str) -> tuple[list[Row], list[dict[str, Any]]]:
    """Rows of a JSONL (``text`` or ``messages``, optional ``created_at``, ``meta``) or CSV (``text``) file.

    Returns the rows and the lines refused (``{"line", "reason"}``), which are reported, never guessed.
    """
    from tuneloop import storage

    data = storage.read_bytes(uri).decode("utf-8")
    rows, bad = [], []
    if uri.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(data))
        if "text" not in (reader.fieldnames or []):
            raise ConfigError(f"input_file={uri!r}: a CSV needs a 'text' column; its header is {reader.fieldnames}")
        for i, rec in enumerate(reader, 2):
            try:
                rows.append(make_row([{"role": "user", "content": rec.get("text") or ""}], rec.get("created_at") or None))
            except ex.ExampleError as exc:
                bad.append({"line": i, "reason": str(exc)})
        return rows, bad
    for i, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ex.ExampleError("line", "is not a JSON object")
            unknown = sorted(set(rec) - {"text", "messages", "created_at", "meta", "id"})
            if unknown:
                raise ex.ExampleError(unknown[0], "unknown key; a row has text or messages, created_at, meta")
            if ("text" in rec) == ("messages" in rec):
                raise ex.ExampleError("text", "give exactly one of text or messages")
            msgs = rec["messages"] if "messages" in rec else [{"role": "user", "content": rec["text"]}]
            if not isinstance(msgs, str | list) and "text" in rec:
                raise ex.ExampleError("text", "must be a string")
            rows.append(make_row(msgs, rec.get("created_at"), rec.get("meta")))
        except json.JSONDecodeError as exc:
            bad.append({"line": i, "reason": f"line: not valid JSON ({exc.msg})"})
        except ex.ExampleError as exc:
            bad.append({"line": i, "reason": str(exc)})
    return rows, bad


def read_warehouse_rows(wh, table: str) -> tuple[list[Row], list[dict[str, Any]]]:
    """The table's rows whose ``label`` is NULL (interaction-table columns)."""
    result = wh.query(_UNLABELLED, {}, identifiers={"table": table})
    rows, bad = [], []
    for r in result.to_pylist():
        try:
            rows.append(make_row(r["messages"], r["created_at"], r["meta"]))
        except ex.ExampleError as exc:
            bad.append({"id": r.get("id"), "reason": str(exc)})
    return rows, bad


# -- prompt and answers ----------------------------------------------------------------------------------


def instruction(labels: LabelSet) -> str:
    """The labeller's system text: the labels with their descriptions, and the answer's JSON shape."""
    return (
        "You label messages for a training set. Pick the one label below that fits the message best.\n"
        f"Labels:\n{labels.prompt_text()}\n\n"
        'Answer with JSON only, on one line: {"label": "<one label above, spelled exactly>", "confidence": '
        "<a number from 0 to 1: how likely your label is right>}."
    )


def prompt_example(row: Row, labels: LabelSet) -> ex.Example:
    """The request for one row: the instruction as the system turn, the row's text (or transcript) as the user turn."""
    turns = [m for m in row.messages if m.role != "system"]
    if len(turns) == 1 and turns[0].role == "user":
        text = turns[0].content
    else:
        text = "Label this conversation:\n" + "\n".join(f"{m.role}: {m.content}" for m in turns)
    return ex.make_example([{"role": "system", "content": instruction(labels)}, {"role": "user", "content": text}])


def _norm(s: str) -> str:
    return re.sub(r"[\s_\-]+", " ", s.strip().strip("'\"`").strip().rstrip(".").lower()).strip()


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_LABEL_VALUE = re.compile(r'"label"\s*:\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Parsed:
    """A parsed answer: the label (None when not a valid one), the stated confidence, and why not when None."""

    label: str | None
    stated: float | None
    reason: str = ""
    span: tuple[int, int] | None = None  # where the label's text is in the answer (for its log-probabilities)


def parse_answer(answer: str | None, names: Sequence[str]) -> Parsed:
    """The label and stated confidence in an answer; never a guess.

    Accepted: a JSON object ``{"label": ..., "confidence": ...}`` (optionally in a code fence), or an answer that
    is exactly one label. The label must be one of ``names`` (case, ``_``/``-``/space and quotes ignored).
    """
    index = {_norm(n): n for n in names}
    text = (answer or "").strip()
    if not text:
        return Parsed(None, None, "empty answer (or the request failed: see the summary's requests)")
    m = _FENCE.match(text)
    body = m.group(1) if m else text
    start = body.find("{")
    if start >= 0:
        try:
            obj, _ = json.JSONDecoder().raw_decode(body[start:])
        except json.JSONDecodeError:
            return Parsed(None, None, f"answer is not valid JSON: {text[:80]!r}")
        if not isinstance(obj, dict) or not isinstance(obj.get("label"), str):
            return Parsed(None, None, f"answer has no string 'label': {text[:80]!r}")
        got = obj["label"]
        label = index.get(_norm(got))
        if label is None:
            return Parsed(None, None, f"{got!r} is not one of the labels")
        stated = obj.get("confidence")
        if isinstance(stated, bool) or not isinstance(stated, int | float) or not 0 <= stated <= 1 \
                or not math.isfinite(stated):
            stated = None
        offset = (answer or "").find(body) + start
        lv = _LABEL_VALUE.search(body[start:])
        span = (offset + lv.start(1), offset + lv.end(1)) if lv else None
        return Parsed(label, None if stated is None else float(stated), span=span)
    label = index.get(_norm(body))
    if label is None:
        return Parsed(None, None, f"answer is neither JSON nor a label: {text[:80]!r}")
    at = (answer or "").find(body)
    return Parsed(label, None, span=(at, at + len(body)))


def logprob_confidence(answer: str, tokens: Sequence[Mapping[str, Any]] | None, span: tuple[int, int] | None) -> float | None:
    """``exp(sum of the logprobs of the tokens that make up the label)``; None when they cannot be lined up.

    ``tokens`` are the API's ``logprobs.content`` entries (``token``, ``logprob``) in order; their texts must
    join to the answer, else the positions cannot be trusted and None is returned.
    """
    if not tokens or span is None or "".join(str(t.get("token", "")) for t in tokens) != answer:
        return None
    total, pos, hit = 0.0, 0, False
    for t in tokens:
        end = pos + len(t["token"])
        if end > span[0] and pos < span[1]:
            lp = t.get("logprob")
            if isinstance(lp, bool) or not isinstance(lp, int | float) or not math.isfinite(lp):
                return None
            total += min(float(lp), 0.0)
            hit = True
        pos = end
    return math.exp(total) if hit else None


def calibrate_self_reported(stated: float, n_labels: int, weight: float = SELF_REPORT_WEIGHT) -> float:
    """A stated confidence, clipped to [0, 1] and shrunk toward the uniform prior ``1/n_labels``.

    ``weight * stated + (1 - weight) / n_labels``: with 5 labels a stated 1.0 becomes 0.84 and 0.5 becomes 0.44.
    A fixed rule (not fitted): it keeps order and never lets a stated certainty reach 1.
    """
    prior = 1.0 / max(n_labels, 1)
    return weight * min(max(stated, 0.0), 1.0) + (1.0 - weight) * prior


# -- asking ---------------------------------------------------------------------------------------------


def ask(labeler: Labeler, prompts: Sequence[ex.Example], policy) -> tuple[list[str], list[Any], Any]:
    """Every prompt's raw answer, the token log-probabilities where the provider returns them, and the provider.

    A provider with ``predict_scored`` (OpenAI, Gemini) is asked for log-probabilities; any other chat provider through
    its ``predict``. Both go through the hosted prediction bounds (concurrency, request cap, retries).
    """
    from tuneloop.providers.registry import provider_class

    cls = provider_class(labeler.provider)
    prov = cls(predict=policy) if cls.hosted else cls()
    scored = getattr(prov, "predict_scored", None)
    if scored is not None:
        answers, tokens = scored(labeler.model, list(prompts), top_logprobs=TOP_LOGPROBS)
    else:
        answers, tokens = prov.predict(labeler.model, list(prompts)), [None] * len(prompts)
    if len(answers) != len(prompts):
        raise ValueError(f"labeler {labeler.label}: {len(answers)} answers for {len(prompts)} prompts")
    return [a if isinstance(a, str) else "" for a in answers], list(tokens), prov


# -- decisions -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What was decided for one row."""

    row: Row
    status: str  # labelled | review
    label: str | None
    confidence: float | None
    confidence_source: str | None
    reason: str
    answer: str
    unparseable: bool


def decide(row: Row, answer: str, tokens: Any, labels: LabelSet, min_confidence: float) -> Outcome:
    """One row's outcome from its answer: labelled when its confidence reaches ``min_confidence``, else review."""
    p = parse_answer(answer, labels.names)
    if p.label is None:
        return Outcome(row, "review", None, None, None, f"unparseable: {p.reason}", answer, True)
    conf = logprob_confidence(answer, tokens, p.span)
    source = "logprob"
    if conf is None and p.stated is not None:
        conf, source = calibrate_self_reported(p.stated, len(labels.labels)), "self_reported"
    if conf is None:
        return Outcome(row, "review", p.label, None, None, "no confidence: the answer states none and the provider "
                       "returned no log-probabilities", answer, False)
    if conf >= min_confidence:
        return Outcome(row, "labelled", p.label, conf, source,
                       f"{source} confidence {conf:.3f} >= min_confidence {min_confidence}", answer, False)
    return Outcome(row, "review", p.label, conf, source,
                   f"low confidence: {source} {conf:.3f} < min_confidence {min_confidence}", answer, False)


def labelled_example(row: Row, label: str, *, source: str = "synthetic", meta: Mapping[str, Any] | None = None) -> ex.Example:
    """The row as a labelled example: its turns up to the last non-assistant turn, then the label as the answer."""
    turns = list(row.messages)
    while turns and turns[-1].role == "assistant":
        turns.pop()
    msgs = [m.to_dict() for m in turns] + [{"role": "assistant", "content": label}]
    return ex.make_example(msgs, label=label, source=source, created_at=row.created_at,
                           meta={**dict(row.meta), **dict(meta or {})})


def decision_record(o: Outcome, labeler: Labeler, labels: LabelSet) -> Decision:
    h = inputs_hash({"row": o.row.id, "labeler": labeler.label, "labels": labels.names})
    details = {"id": o.row.id, "status": o.status, "confidence_source": o.confidence_source, "label": o.label}
    if o.status == "labelled":
        what = f"label={o.label}"
    elif o.unparseable:
        what = "review: unparseable"
    else:
        what = f"review: proposed {o.label}"
    conf = None if o.confidence is None else min(max(o.confidence, 0.0), 1.0)
    return Decision("label", what, o.reason, conf, h, details)


# -- the warehouse side ------------------------------------------------------------------------------------


def ensure_review_table(wh, table: str) -> None:
    """Create the review table if missing; refuse one without its columns."""
    from tuneloop.warehouse.base import WarehouseError
    from tuneloop.warehouse.games import create_table_sql
    from tuneloop.warehouse.sql import validate_identifier

    validate_identifier(table)
    if getattr(wh, "ensure_schema", None) is not None:
        wh.ensure_schema(table)
    cols = review_columns()
    wh.query(create_table_sql(cols), {}, identifiers={"table": table})
    have = wh.columns(table)
    missing = [c.name for c in cols if c.name not in have]
    if missing:
        raise WarehouseError(
            f"review_table={table!r} exists in {wh.uri} but lacks columns {missing}; name another review table"
        )


def existing_ids(wh, table: str, ids: Sequence[str]) -> set[str]:
    """The subset of ``ids`` already in ``table`` (its ``id`` column)."""
    out: set[str] = set()
    ids = list(dict.fromkeys(ids))
    for i in range(0, len(ids), ID_CHUNK):
        found = wh.query(_EXISTING_IDS, {"ids": ids[i:i + ID_CHUNK]}, identifiers={"table": table})
        out |= set(found.column("id").to_pylist()) if found.num_rows else set()
    return out


def apply_corrections(wh, review_table: str, examples_table: str, labels: LabelSet | None = None) -> dict[str, Any]:
    """Review rows a person filled in (``corrected_label``) -> the examples table as ``source=corrected``, weight 2.

    Idempotent: a corrected example already in the examples table is not inserted again. A corrected label
    outside ``labels`` (when given) is refused and reported, not inserted.
    """
    from tuneloop.warehouse.base import example_to_row, utc_datetime

    rows = wh.query(_CORRECTED, {}, identifiers={"table": review_table}).to_pylist()
    todo, refused = [], []
    for r in rows:
        label = (r["corrected_label"] or "").strip()
        if labels is not None and label not in labels.names:
            refused.append({"id": r["id"], "reason": f"corrected_label {label!r} is not one of {labels.names}"})
            continue
        try:
            row = make_row(r["messages"], r["created_at"], r["meta"])
            todo.append(labelled_example(row, label, source="corrected", meta={"corrected_in": review_table}))
        except ex.ExampleError as exc:
            refused.append({"id": r["id"], "reason": str(exc)})
    present = existing_ids(wh, examples_table, [e.id for e in todo])
    new = list({e.id: e for e in todo if e.id not in present}.values())
    if new:
        now = utc_datetime()
        wh.insert_rows(examples_table, [example_to_row(e, ingested_at=now) for e in new])
    return {"corrected": len(new), "already_loaded": len(todo) - len(new), "refused": refused}


def _review_record(o: Outcome, labeler: Labeler, now: dt.datetime) -> dict[str, Any]:
    return {
        "id": o.row.id,
        "messages": json.dumps([m.to_dict() for m in o.row.messages], ensure_ascii=False, separators=(",", ":")),
        "proposed_label": o.label,
        "confidence": o.confidence,
        "confidence_source": o.confidence_source,
        "reason": o.reason,
        "answer": o.answer[:ANSWER_KEPT_CHARS],
        "labeler": labeler.label,
        "created_at": dt.datetime.fromisoformat(o.row.created_at.replace("Z", "+00:00")),
        "meta": json.dumps(dict(o.row.meta), ensure_ascii=False, sort_keys=True),
        "queued_at": now,
        "corrected_label": None,
        "reviewed_at": None,
    }


def label_examples(
    *,
    warehouse_uri: str,
    examples_table: str,
    labeler: str = DEFAULT_LABELER,
    source_table: str = "",
    input_file: str = "",
    review_table: str = DEFAULT_REVIEW_TABLE,
    taxonomy: str = "",
    labels: Any = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    eval_options: Mapping[str, Any] | None = None,
    decisions_path: str = "",
    log=print,
) -> dict[str, Any]:
    """Label the unlabelled rows of ``source_table`` (or ``input_file``) and file them: examples or review.

    Corrections a person made in the review table since the last run come back first (:func:`apply_corrections`).

    Returns:
        Counts (``rows``, ``already_done``, ``labelled``, ``review``, ``unparseable``, ``refused_rows``,
        ``corrected``, ``confidence_sources``), ``labeler``, ``requests`` (the provider's predict stats).

    Raises:
        ConfigError: a bad parameter (named), before anything is sent.
        RequestCapReached: more rows than ``eval_options.max_requests`` allows (nothing sent).
    """
    from tuneloop.stages import eval_policy
    from tuneloop.warehouse.base import example_to_row, open_warehouse, utc_datetime

    who = parse_labeler(labeler)
    lset = label_set(taxonomy, labels)
    min_confidence = check_min_confidence(min_confidence)
    if bool(source_table) == bool(input_file):
        raise ConfigError(
            f"source_table={source_table!r}, input_file={input_file!r}: give exactly one (the warehouse table of "
            "unlabelled rows, or a JSONL/CSV file)"
        )
    opts = dict(eval_options or {})
    policy = eval_policy(opts)
    if "max_output_tokens" not in opts:
        policy = dataclasses.replace(policy, max_output_tokens=max(policy.max_output_tokens, LABEL_MAX_OUTPUT_TOKENS))
    wh = open_warehouse(warehouse_uri)
    try:
        wh.ensure_table(examples_table)
        ensure_review_table(wh, review_table)
        corrections = apply_corrections(wh, review_table, examples_table, lset)
        rows, refused = read_warehouse_rows(wh, source_table) if source_table else read_file_rows(input_file)
        rows = list({r.id: r for r in rows}.values())
        done = existing_ids(wh, review_table, [r.id for r in rows])
        candidates = {labelled_example(r, n).id: r.id for r in rows if r.id not in done for n in lset.names}
        done |= {candidates[i] for i in existing_ids(wh, examples_table, list(candidates))}
        todo = [r for r in rows if r.id not in done]
        log(f"[label] {len(rows)} unlabelled rows, {len(rows) - len(todo)} already labelled or in review, "
            f"{len(todo)} to ask {who.label}")
        answers, tokens, prov = ask(who, [prompt_example(r, lset) for r in todo], policy) if todo else ([], [], None)
        outcomes = [decide(r, a, t, lset, min_confidence) for r, a, t in zip(todo, answers, tokens, strict=True)]
        now = utc_datetime()
        good = [
            labelled_example(o.row, o.label, meta={"confidence": round(o.confidence, 6), "confidence_source":
                             o.confidence_source, "labeler": who.label, "labelled_from": o.row.id})
            for o in outcomes if o.status == "labelled"
        ]
        if good:
            wh.insert_rows(examples_table, [example_to_row(e, ingested_at=now) for e in good])
        review = [_review_record(o, who, now) for o in outcomes if o.status == "review"]
        if review:
            wh.insert_records(review_table, review, row_ids=[r["id"] for r in review])
    finally:
        wh.close()
    from tuneloop.reports.evaluation import predict_facts

    sources = {s: sum(o.confidence_source == s for o in outcomes) for s in CONFIDENCE_SOURCES}
    summary = {
        "labeler": who.label,
        "label_set": lset.source,
        "min_confidence": min_confidence,
        "rows": len(rows),
        "already_done": len(rows) - len(todo),
        "labelled": len(good),
        "review": len(review),
        "unparseable": sum(o.unparseable for o in outcomes),
        "refused_rows": refused[:20],
        "refused_count": len(refused),
        "corrected": corrections["corrected"],
        "corrections_refused": corrections["refused"][:20],
        "confidence_sources": sources,
        "requests": predict_facts(prov) if prov is not None else None,
    }
    if decisions_path:
        from tuneloop import decisions

        records = [decision_record(o, who, lset) for o in outcomes]
        records.append(Decision(
            "label", f"labelled {len(good)}, review {len(review)}",
            f"{who.label} labelled {len(todo)} new rows from {lset.source}: {len(good)} reached min_confidence "
            f"{min_confidence} ({sources['logprob']} by log-probability, {sources['self_reported']} self-reported, "
            f"calibrated), {len(review)} went to {review_table} ({summary['unparseable']} unparseable); "
            f"{summary['already_done']} were already done; {corrections['corrected']} corrections came back",
            None, inputs_hash({"rows": sorted(r.id for r in todo), "labeler": who.label, "labels": lset.names}),
            {k: v for k, v in summary.items() if k not in ("refused_rows", "corrections_refused")},
        ))
        decisions.append(decisions_path, records)
    log(f"[label] {summary['labelled']} labelled (source=synthetic), {summary['review']} to review "
        f"({summary['unparseable']} unparseable), {summary['corrected']} corrections loaded")
    return summary
