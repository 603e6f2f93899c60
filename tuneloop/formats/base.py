"""What every provider format shares: the Format interface, limits, reports, and the two entry points.

* :func:`format_dataset` renders canonical splits into a provider's training files, validates every
  row with that provider's rules, sends rejected rows to ``quarantine.jsonl`` (a reason each), counts
  tokens, estimates the training bill, and fails with :class:`TooFewExamplesError` when too few rows
  survive. Every input example ends up in exactly one output file: a split file or quarantine.
* :func:`validate_file` runs the same validator on a user's JSONL (``tuneloop validate``), reporting
  broken JSON lines and rule violations by line number.

Reasons are strings ``"<field path>: <what is wrong>[; fix]"``, e.g.
``"messages[2].role: 'bot' is not one of system, user, assistant, tool"``.
"""

from __future__ import annotations

import abc
import contextlib
import gc
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tuneloop.catalog import Catalog, ModelInfo, load_catalog
from tuneloop.examples import SPLITS, Example

FORMAT_NAMES = ("openai", "gemini", "bedrock", "hf")

# tuneloop provider -> the training format it uploads (None: reads canonical examples directly).
PROVIDER_FORMATS: Mapping[str, str | None] = {
    "openai": "openai",
    "gemini": "gemini",
    "claude": "bedrock",
    "oss-lora": "hf",
    "sklearn": None,
}
# format -> the catalog provider whose limits and prices apply.
FORMAT_PROVIDERS: Mapping[str, str] = {"openai": "openai", "gemini": "gemini", "bedrock": "claude", "hf": "oss-lora"}

SPLIT_FILES: Mapping[str, str] = {s: f"{s}.jsonl" for s in SPLITS}
QUARANTINE_FILE = "quarantine.jsonl"
REPORT_FILE = "report.json"
QUARANTINE_KEYS = ("id", "split", "reasons", "row")

TOP_REASONS = 5

# One encoder for every line written: compact, UTF-8 (not \\u escapes), C-accelerated.
_LINE_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _line_encoder():
    """``row -> compact JSON``, identical to ``_LINE_ENCODER.encode``.

    ``JSONEncoder.encode`` builds a new C encoder on every call; building it once saves ~1-2 us per
    row. The C constructor is private, so it is used only if it reproduces the public encoder on a
    probe; otherwise the public one is used. Rows are built here and acyclic, so no circular check.
    """
    probe = {"a": [1, 2.5, None, True, False], "b": "é\n\"\\", "c": {"d": []}}
    try:
        from json.encoder import c_make_encoder, encode_basestring

        def default(o: Any) -> Any:
            raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

        fast = c_make_encoder(None, default, encode_basestring, None, ":", ",", False, False, True)
        join = "".join

        def encode(row: Any) -> str:
            return join(fast(row, 0))

        if encode(probe) == _LINE_ENCODER.encode(probe):
            return encode
    except Exception:  # pragma: no cover - another Python's private API
        pass
    return _LINE_ENCODER.encode  # pragma: no cover


encode_line = _line_encoder()


class TooFewExamplesError(ValueError):
    """Fewer training rows survived validation than the minimum; nothing was uploaded.

    Attributes:
        format: the format name.
        survived: training rows that passed validation.
        minimum: the minimum that applied (the larger of the caller's and the provider's).
        quarantine_path: where the rejected rows and their reasons are.
        top_reasons: ``(reason, rows)`` pairs, most frequent first.
    """

    def __init__(
        self,
        format: str,
        survived: int,
        minimum: int,
        quarantine_path: str,
        top_reasons: Sequence[tuple[str, int]],
        total: int,
    ):
        self.format = format
        self.survived = survived
        self.minimum = minimum
        self.quarantine_path = quarantine_path
        self.top_reasons = tuple(top_reasons)
        reasons = "; ".join(f"{r} ({n} rows)" for r, n in self.top_reasons) or "none (the input was short)"
        super().__init__(
            f"{format}: only {survived} of {total} training examples survived validation, fewer than the "
            f"minimum of {minimum}. Rejected rows are in {quarantine_path} with a reason each; top reasons: "
            f"{reasons}. Fix the source data, or lower min_examples (it cannot go below the provider's minimum)."
        )


@dataclass(frozen=True)
class Limits:
    """The provider limits a validator enforces (usually built from the catalog by :meth:`from_model`).

    Attributes:
        max_tokens_per_example: tokens one row may have (input + output); None = unchecked.
        min_examples: fewest training rows the provider accepts.
        max_examples: most training rows the provider accepts; None = unchecked.
        max_validation_examples: most validation rows accepted; None = unchecked.
        max_file_bytes: largest training file accepted; None = unchecked.
        model: the model the limits belong to (named in reasons).
    """

    max_tokens_per_example: int | None = None
    min_examples: int = 1
    max_examples: int | None = None
    max_validation_examples: int | None = None
    max_file_bytes: int | None = None
    model: str = ""

    def __post_init__(self) -> None:
        for key in ("max_tokens_per_example", "max_examples", "max_validation_examples", "max_file_bytes"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"Limits.{key}={value!r} must be a positive integer or None (unchecked)")
        if isinstance(self.min_examples, bool) or not isinstance(self.min_examples, int) or self.min_examples < 1:
            raise ValueError(f"Limits.min_examples={self.min_examples!r} must be an integer >= 1")

    @classmethod
    def from_model(cls, info: ModelInfo) -> Limits:
        """The limits a catalog entry publishes."""
        return cls(
            max_tokens_per_example=info.max_tokens_per_example,
            min_examples=info.min_examples,
            max_examples=info.max_examples,
            max_validation_examples=info.max_validation_examples,
            max_file_bytes=info.max_file_bytes,
            model=info.name,
        )


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic rows, then restore it.

    Rendering 100k+ rows creates millions of small dicts and lists that live until written; each
    automatic collection would re-walk all of them (and every canonical example), which made
    bulk formatting several times slower. Rows hold no cycles, so nothing leaks while paused.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def type_name(value: Any) -> str:
    """JSON-ish type name for messages ("null", "list", "object", ...)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


_INDEX = re.compile(r"\[\d+\]")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\d[\d,]*")


def reason_kind(reason: str) -> str:
    """A reason with its specifics (indices, quoted values, numbers) blanked, for counting kinds."""
    return _NUMBER.sub("N", _QUOTED.sub("'…'", _INDEX.sub("[i]", reason)))


def top_reasons(reason_lists: Iterable[Sequence[str]], n: int = TOP_REASONS) -> list[tuple[str, int]]:
    """The ``n`` most frequent reason kinds (counted once per row), most frequent first."""
    counts: Counter[str] = Counter()
    for reasons in reason_lists:
        counts.update({reason_kind(r) for r in reasons})
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


class Format(abc.ABC):
    """A provider training format: render canonical examples, validate rows, count tokens.

    Subclasses set ``name`` (one of FORMAT_NAMES) and ``provider`` (the catalog provider).
    ``tokens_exact`` says whether :meth:`count_tokens` is the provider's own count or an estimate.
    """

    name: ClassVar[str]
    provider: ClassVar[str]
    keeps_turn_weights: ClassVar[bool] = False  # False: per-turn weights cannot be expressed (dropped)
    tokens_exact: bool = False

    @abc.abstractmethod
    def render(self, example: Example, *, system_prompt: str | None = None) -> dict[str, Any]:
        """One canonical example as one provider row (a JSON object).

        ``system_prompt`` is used when the example does not start with a system turn of its own.
        """

    def render_many(self, examples: Iterable[Example], *, system_prompt: str | None = None) -> list[dict]:
        """Render many examples (in order)."""
        render = self.render
        with paused_gc():
            return [render(ex, system_prompt=system_prompt) for ex in examples]

    @abc.abstractmethod
    def check_row(self, row: Any) -> list[str]:
        """The structural rules of the format (keys, roles, order, content); token limits excluded."""

    @abc.abstractmethod
    def count_tokens(self, rows: Sequence[Any]) -> list[int]:
        """Tokens per row, in order (exact if ``tokens_exact``, else an estimate). Never raises on bad rows."""

    def validate(self, row: Any, limits: Limits, *, tokens: int | None = None) -> list[str]:
        """Every rule ``row`` breaks, as reasons naming the field; ``[]`` means the row is accepted.

        Args:
            row: a parsed JSON row.
            limits: the limits to enforce (see :meth:`Limits.from_model`).
            tokens: the row's token count if already known (from a batch :meth:`count_tokens`).
        """
        reasons = self.check_row(row)
        limit = limits.max_tokens_per_example
        if limit is not None and isinstance(row, dict):
            if tokens is None:
                tokens = self.count_tokens([row])[0]
            if tokens > limit:
                label = "tokens" if self.tokens_exact else "tokens (estimated)"
                model = f" of {limits.model}" if limits.model else ""
                reasons.append(
                    f"{label}: {tokens:,} exceed the {limit:,}-token example limit{model}; "
                    "shorten or split the conversation"
                )
        return reasons

    def validate_many(
        self, rows: Sequence[Any], limits: Limits, tokens: Sequence[int] | None = None
    ) -> list[list[str]]:
        """:meth:`validate` for many rows (tokens counted in one batch if not given)."""
        if tokens is None:
            tokens = self.count_tokens(rows)
        validate = self.validate
        with paused_gc():
            return [validate(row, limits, tokens=t) for row, t in zip(rows, tokens, strict=True)]

    def file_issues(self, split: str, n_rows: int, n_bytes: int, limits: Limits) -> list[str]:
        """File-level rules (row counts, file size) for one split file."""
        issues = []
        model = f" for {limits.model}" if limits.model else ""
        if split == "train":
            if n_rows < limits.min_examples:
                issues.append(f"train: {n_rows} rows, fewer than the {limits.min_examples} required{model}")
            if limits.max_examples is not None and n_rows > limits.max_examples:
                issues.append(f"train: {n_rows:,} rows, more than the {limits.max_examples:,} allowed{model}")
            if limits.max_file_bytes is not None and n_bytes > limits.max_file_bytes:
                issues.append(
                    f"train: file is {n_bytes:,} bytes, over the {limits.max_file_bytes:,}-byte limit{model}"
                )
        elif split == "validation":
            cap = limits.max_validation_examples
            if cap is not None and n_rows > cap:
                issues.append(f"validation: {n_rows:,} rows, more than the {cap:,} allowed{model}")
        return issues

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# -- registry --------------------------------------------------------------------------------


def format_for_provider(provider: str) -> str | None:
    """The training format a provider uploads: openai->openai, gemini->gemini, claude->bedrock,
    oss-lora->hf, sklearn->None (it reads canonical examples)."""
    if provider not in PROVIDER_FORMATS:
        raise ValueError(f"provider={provider!r} is not one of {', '.join(PROVIDER_FORMATS)}")
    return PROVIDER_FORMATS[provider]


def get_format(name: str, *, model: str | None = None, catalog: Catalog | None = None, **options: Any) -> Format:
    """A Format by name.

    Args:
        name: one of FORMAT_NAMES.
        model: for ``openai``, picks the exact tokenizer the model uses (from the catalog).
        catalog: the catalog to read the tokenizer from (default: the packaged one).
        **options: format options, e.g. ``template=`` / ``end_token=`` for ``hf``.

    Raises:
        ValueError: unknown format name (the message lists the valid ones).
    """
    if name == "openai":
        from tuneloop.formats.openai import OpenAIFormat

        if model is not None and "encoding" not in options:
            info = (catalog or load_catalog()).model("openai", model)
            options["encoding"] = info.tokenizer or "o200k_base"
        return OpenAIFormat(**options)
    if name == "gemini":
        from tuneloop.formats.gemini import GeminiFormat

        return GeminiFormat(**options)
    if name == "bedrock":
        from tuneloop.formats.bedrock import BedrockFormat

        return BedrockFormat(**options)
    if name == "hf":
        from tuneloop.formats.hf import HFFormat

        return HFFormat(**options)
    raise ValueError(f"format={name!r} is not one of {', '.join(FORMAT_NAMES)}")


# -- reports ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormatReport:
    """What :func:`format_dataset` wrote and what the training run will cost.

    Attributes:
        format: the format name.
        provider: the catalog provider whose limits and price applied.
        model: the model priced (the provider's default if none was given).
        out_dir: where the files are.
        files: split -> path of the rendered JSONL.
        quarantine_path: path of quarantine.jsonl (always written, possibly empty).
        report_path: path of report.json.
        input_counts: split -> canonical examples given.
        counts: split -> rows accepted and written.
        quarantined: rows rejected, all splits (each is a line of quarantine.jsonl).
        quarantined_by_split: split -> rows rejected.
        tokens: split -> total tokens of the accepted rows.
        max_example_tokens: the largest accepted row's tokens.
        tokens_exact: True if counts are the model's own tokenizer, False if estimates.
        tokenizer: how tokens were counted.
        min_examples: the minimum that applied to the train split.
        epochs: epochs priced (given, the model's default, or the auto rule).
        price_per_1m_training_tokens: USD per 1M training tokens, None if unpublished.
        estimated_cost_usd: price x train tokens x epochs, None if unpriced.
        top_reasons: ``(reason kind, rows)``, most frequent first.
        warnings: file-level issues and lossy conversions (never silent).
        limits: the limits enforced.
    """

    format: str
    provider: str
    model: str
    out_dir: str
    files: Mapping[str, str]
    quarantine_path: str
    report_path: str
    input_counts: Mapping[str, int]
    counts: Mapping[str, int]
    quarantined: int
    quarantined_by_split: Mapping[str, int]
    tokens: Mapping[str, int]
    max_example_tokens: int
    tokens_exact: bool
    tokenizer: str
    min_examples: int
    epochs: int
    price_per_1m_training_tokens: float | None
    estimated_cost_usd: float | None
    top_reasons: tuple[tuple[str, int], ...] = ()
    warnings: tuple[str, ...] = ()
    limits: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (what report.json holds, plus ``ok`` there)."""
        d = asdict(self)
        d["top_reasons"] = [list(x) for x in self.top_reasons]
        d["warnings"] = list(self.warnings)
        return d


@dataclass(frozen=True)
class RowProblem:
    """One rejected line of a validated file (1-based line number)."""

    line: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ValidationReport:
    """The result of :func:`validate_file`.

    Attributes:
        path: the file checked.
        format: the format it was checked against.
        model: whose limits applied.
        split: which split's file rules applied (train: min/max rows, file size).
        rows_total: non-blank lines.
        rows_ok: lines that passed every rule.
        problems: rejected lines with their reasons (broken JSON included), in file order.
        file_errors: file-level problems (row counts, size).
        tokens_total / tokens_max: over the accepted rows.
        tokens_exact: True if counts are the model's own tokenizer, False if estimates.
        estimated_cost_usd: the training bill if this file were the train split, None if unpriced.
        epochs: epochs priced.
    """

    path: str
    format: str
    model: str
    split: str
    rows_total: int
    rows_ok: int
    problems: tuple[RowProblem, ...]
    file_errors: tuple[str, ...]
    tokens_total: int
    tokens_max: int
    tokens_exact: bool
    estimated_cost_usd: float | None
    epochs: int

    @property
    def ok(self) -> bool:
        """True if every line passed and the file-level rules hold."""
        return not self.problems and not self.file_errors

    @property
    def rows_rejected(self) -> int:
        """Lines rejected (broken JSON included)."""
        return len(self.problems)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (for ``tuneloop validate --json``)."""
        d = asdict(self)
        d["problems"] = [{"line": p.line, "reasons": list(p.reasons)} for p in self.problems]
        d["file_errors"] = list(self.file_errors)
        d["ok"] = self.ok
        return d

    def summary(self, max_lines: int = 20) -> str:
        """Human-readable report for the CLI (first ``max_lines`` problems)."""
        kind = "exact" if self.tokens_exact else "estimated"
        cost = "unpriced" if self.estimated_cost_usd is None else f"${self.estimated_cost_usd:,.2f}"
        model = "any local model" if self.model == "*" else self.model
        out = [
            f"{self.path}: {self.format} rows for {model}: {self.rows_ok}/{self.rows_total} ok, "
            f"{self.rows_rejected} rejected",
            f"tokens ({kind}): total {self.tokens_total:,}, max per row {self.tokens_max:,}; "
            f"training cost at {self.epochs} epochs: {cost}",
        ]
        out += [f"file: {e}" for e in self.file_errors]
        for p in self.problems[:max_lines]:
            out += [f"line {p.line}: {r}" for r in p.reasons]
        if len(self.problems) > max_lines:
            out.append(f"... and {len(self.problems) - max_lines} more rejected lines")
        out.append("OK" if self.ok else "FAILED")
        return "\n".join(out)


# -- entry points ----------------------------------------------------------------------------


def _resolve(
    fmt: str | Format, model: str | None, catalog: Catalog | None, options: Mapping[str, Any]
) -> tuple[Format, ModelInfo]:
    cat = catalog or load_catalog()
    if isinstance(fmt, Format):
        f = fmt
    else:
        if fmt not in FORMAT_NAMES:
            raise ValueError(f"fmt={fmt!r} is not one of {', '.join(FORMAT_NAMES)}")
        f = get_format(fmt, model=model, catalog=cat, **options)
    info = cat.model(FORMAT_PROVIDERS[f.name], model)
    return f, info


def _tokenizer_label(f: Format) -> str:
    return getattr(f, "tokenizer_label", "exact" if f.tokens_exact else "estimate")


def _render_split(
    f: Format, examples: Sequence[Example], split: str, seen: dict[str, str], system_prompt: str | None
) -> tuple[list[Any], list[list[str] | None]]:
    """Render one split. Returns the rows (None where rendering failed) and, per row, the reasons
    found before validation (a duplicate id, a render error) or None. ``seen`` maps id -> split."""
    n = len(examples)
    pre: list[list[str] | None] = [None] * n
    ids = [ex.id for ex in examples]
    if seen.keys().isdisjoint(ids) and len(set(ids)) == n:  # the usual case: no duplicates
        seen.update(dict.fromkeys(ids, split))
    else:
        for i, ex_id in enumerate(ids):
            first = seen.get(ex_id)
            if first is None:
                seen[ex_id] = split
            else:
                where = "earlier in this split" if first == split else f"already in split {first!r}"
                pre[i] = [f"id: duplicate example {where}; each example may appear once (no split leakage)"]
    render = f.render
    try:
        rows: list[Any] = [render(ex, system_prompt=system_prompt) for ex in examples]
    except Exception:  # some example does not render: do them one by one, keeping the others
        rows = []
        for i, ex in enumerate(examples):
            try:
                rows.append(render(ex, system_prompt=system_prompt))
            except Exception as exc:
                rows.append(None)
                pre[i] = (pre[i] or []) + [f"render: {type(exc).__name__}: {exc}"]
    return rows, pre


def _write_lines(path: Path, lines: Sequence[str]) -> int:
    """Write lines (each + newline) via a temp file + rename; returns bytes written."""
    tmp = path.with_name(path.name + ".tmp")
    data = ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
    with tmp.open("wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return len(data)


def format_dataset(
    splits: Mapping[str, Sequence[Example]],
    fmt: str | Format,
    out_dir: str | os.PathLike[str],
    *,
    min_examples: int = 10,
    system_prompt: str | None = None,
    model: str | None = None,
    limits: Limits | None = None,
    epochs: int | None = None,
    catalog: Catalog | None = None,
    format_options: Mapping[str, Any] | None = None,
) -> FormatReport:
    """Render canonical splits into a provider's training files, validated, with a quarantine.

    Writes ``train.jsonl``, ``validation.jsonl``, ``eval.jsonl`` (accepted rows, input order),
    ``quarantine.jsonl`` (one ``{"id", "split", "reasons", "row"}`` per rejected example) and
    ``report.json`` into ``out_dir``. Every input example is in exactly one of them. An example whose
    id already appeared (in the same or an earlier split) is quarantined, so eval never leaks into train.

    Args:
        splits: ``{"train": [...], "validation": [...], "eval": [...]}`` (missing splits = empty),
            e.g. from ``tuneloop.examples.split_examples`` (hash of id, stable across runs).
        fmt: one of FORMAT_NAMES, or a Format instance (e.g. ``HFFormat(template=...)``).
        out_dir: output directory (created).
        min_examples: fewest accepted training rows to go on with; the provider's own minimum from
            the catalog applies if higher.
        system_prompt: system text for examples that do not start with a system turn.
        model: the base model whose limits and price apply (default: the catalog's default for
            the format's provider).
        limits: override the catalog limits.
        epochs: epochs to price (default: the model's default, else the provider's auto rule).
        catalog: another catalog (default: the packaged one).
        format_options: options for :func:`get_format` (e.g. ``{"template": ...}`` for hf).

    Returns:
        A FormatReport (also written to ``report.json``).

    Raises:
        TooFewExamplesError: fewer than the minimum training rows survived. The split files,
            quarantine and report.json (``"ok": false``) are written first, so the reasons can be read.
        ValueError: an unknown format, split name or model.
    """
    if isinstance(min_examples, bool) or not isinstance(min_examples, int) or min_examples < 1:
        raise ValueError(f"min_examples={min_examples!r} must be an integer >= 1")
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"splits has unknown split(s) {unknown}; use {', '.join(SPLITS)}")
    f, info = _resolve(fmt, model, catalog, format_options or {})
    limits = limits or Limits.from_model(info)
    minimum = max(min_examples, limits.min_examples)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encode = encode_line
    seen: dict[str, str] = {}
    quarantine_lines: list[str] = []
    all_reasons: list[list[str]] = []
    files: dict[str, str] = {}
    input_counts: dict[str, int] = {}
    counts: dict[str, int] = {}
    quarantined_by_split: dict[str, int] = {}
    tokens_by_split: dict[str, int] = {}
    sizes: dict[str, int] = {}
    max_tokens = 0
    weighted_turns = 0
    weighted_examples = 0

    with paused_gc():  # many small acyclic objects; see paused_gc
        for split in SPLITS:
            examples = list(splits.get(split, ()))
            input_counts[split] = len(examples)
            rows, pre = _render_split(f, examples, split, seen, system_prompt)
            weighted_examples += sum(ex.weight != 1.0 for ex in examples)
            if not f.keeps_turn_weights:  # weight 1 is the default; anything else cannot be expressed
                weighted_turns += sum(
                    1 for ex in examples for m in ex.messages if m.weight is not None and m.weight != 1.0
                )

            tokens = f.count_tokens(rows)  # None rows (render failed) count 0
            kept: list[str] = []
            total = 0
            validate = f.validate
            for ex, row, t, early in zip(examples, rows, tokens, pre, strict=True):
                reasons = validate(row, limits, tokens=t) if row is not None else []
                if early:
                    reasons = early + reasons
                if reasons:
                    all_reasons.append(reasons)
                    quarantine_lines.append(encode({"id": ex.id, "split": split, "reasons": reasons, "row": row}))
                else:
                    kept.append(encode(row))
                    total += t
                    if t > max_tokens:
                        max_tokens = t
            path = out / SPLIT_FILES[split]
            sizes[split] = _write_lines(path, kept)
            files[split] = str(path)
            counts[split] = len(kept)
            quarantined_by_split[split] = len(examples) - len(kept)
            tokens_by_split[split] = total
            if counts[split] + quarantined_by_split[split] != input_counts[split]:  # pragma: no cover - invariant
                raise RuntimeError(f"{split}: rows lost while formatting; this is a tuneloop bug")

    qpath = out / QUARANTINE_FILE
    _write_lines(qpath, quarantine_lines)

    warnings: list[str] = []
    for split in SPLITS:
        warnings += f.file_issues(split, counts[split], sizes[split], limits)
    if weighted_turns:
        warnings.append(
            f"{weighted_turns} assistant turns had a weight below 1 that the {f.name} format cannot express "
            "(no per-turn weight); they are trained on like any other turn"
        )
    if weighted_examples:
        warnings.append(
            f"{weighted_examples} examples have an example weight other than 1 (e.g. corrections at 2.0); "
            f"the {f.name} format has no example weight, so they train at weight 1"
        )

    n_epochs = info.epochs_for(counts["train"], epochs)
    cost = info.training_cost_usd(tokens_by_split["train"], n_epochs)
    top = top_reasons(all_reasons)
    rpath = out / REPORT_FILE
    report = FormatReport(
        format=f.name,
        provider=info.provider,
        model=info.name,
        out_dir=str(out),
        files=files,
        quarantine_path=str(qpath),
        report_path=str(rpath),
        input_counts=input_counts,
        counts=counts,
        quarantined=len(quarantine_lines),
        quarantined_by_split=quarantined_by_split,
        tokens=tokens_by_split,
        max_example_tokens=max_tokens,
        tokens_exact=f.tokens_exact,
        tokenizer=_tokenizer_label(f),
        min_examples=minimum,
        epochs=n_epochs,
        price_per_1m_training_tokens=info.price_per_1m_training_tokens,
        estimated_cost_usd=cost,
        top_reasons=tuple(top),
        warnings=tuple(warnings),
        limits=asdict(limits),
    )
    ok = counts["train"] >= minimum
    payload = report.to_dict() | {"ok": ok}
    _write_lines(rpath, [json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True)])
    if not ok:
        raise TooFewExamplesError(
            f.name, counts["train"], minimum, str(qpath), top, total=input_counts["train"]
        )
    return report


def validate_file(
    path: str | os.PathLike[str],
    fmt: str | Format,
    *,
    model: str | None = None,
    limits: Limits | None = None,
    split: str = "train",
    epochs: int | None = None,
    catalog: Catalog | None = None,
) -> ValidationReport:
    """Check a provider JSONL file against that provider's rules, line by line.

    Lines that are not valid JSON are reported with their line number and the parser's message;
    nothing raises on bad content.

    Args:
        path: the JSONL file.
        fmt: one of FORMAT_NAMES or a Format.
        model: whose limits apply (default: the catalog's default for the format's provider).
        limits: override the catalog limits.
        split: ``train`` applies the row-count and file-size rules; ``validation`` its own cap.
        epochs: epochs to price (default: the model's default, else the auto rule).
        catalog: another catalog.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unknown format, split or model.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {', '.join(SPLITS)}")
    f, info = _resolve(fmt, model, catalog, {})
    limits = limits or Limits.from_model(info)
    p = Path(path)
    line_nos: list[int] = []
    rows: list[Any] = []
    problems: dict[int, list[str]] = {}
    order: list[int] = []
    with paused_gc():  # many small acyclic objects; see paused_gc
        with p.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                order.append(lineno)
                try:
                    rows.append(json.loads(raw.rstrip(b"\r\n")))
                    line_nos.append(lineno)
                except UnicodeDecodeError as exc:
                    problems[lineno] = [f"line: not UTF-8 ({exc.reason} at byte {exc.start}); save the file as UTF-8"]
                except json.JSONDecodeError as exc:
                    what = exc.msg.removesuffix(" at")
                    problems[lineno] = [f"line: invalid JSON: {what} at column {exc.colno}; fix or remove the line"]
        tokens = f.count_tokens(rows)
        total = 0
        biggest = 0
        for lineno, row, t in zip(line_nos, rows, tokens, strict=True):
            reasons = f.validate(row, limits, tokens=t)
            if reasons:
                problems[lineno] = reasons
            else:
                total += t
                biggest = max(biggest, t)
    ok_rows = len(order) - len(problems)
    file_errors = f.file_issues(split, ok_rows, p.stat().st_size, limits)
    n_epochs = info.epochs_for(ok_rows, epochs)
    return ValidationReport(
        path=str(p),
        format=f.name,
        model=info.name,
        split=split,
        rows_total=len(order),
        rows_ok=ok_rows,
        problems=tuple(RowProblem(n, tuple(problems[n])) for n in order if n in problems),
        file_errors=tuple(file_errors),
        tokens_total=total,
        tokens_max=biggest,
        tokens_exact=f.tokens_exact,
        estimated_cost_usd=info.training_cost_usd(total, n_epochs),
        epochs=n_epochs,
    )
