"""Choosing a provider, base model and starting hyperparameters for a dataset (the ``select-model`` step).

Every (provider, base model) pair the provider registry and the model catalog know is a candidate:
each registered provider (plug-ins included) with the catalog entries listed under its catalog name
(:meth:`Provider.catalog_name`; a family member only those on its ``platforms``). Each candidate is
then either *admissible* or *refused*, with every reason:

1. **checks no rules file can switch off** — the task is one the provider declares; the model is in
   the catalog (a hosted provider's), not retired on ``today`` (:meth:`ModelInfo.is_retired`), tunable
   (or a few-shot model); the train rows fit ``min_examples``/``max_examples``; the largest example fits
   ``max_tokens_per_example``; the starting hyperparameters parse with the provider's config class; the
   estimated cost (catalog price x train tokens x epochs, as the provider's preflight estimates it:
   :meth:`ModelInfo.epochs_for`, :meth:`ModelInfo.training_cost_usd`, refused in preflight's words by
   :func:`tuneloop.providers.hosted.preflight.check_budget`) fits ``budget_usd``;
2. **the rules** (a YAML file, :func:`load_rules`; the packaged ``selection_rules.yaml`` by default):
   ``refuse`` rules refuse, ``prefer`` rules add to a candidate's preference score, ``hyperparameters``
   rules set starting values.

Admissible candidates are ranked by preference score (highest first), then — when a ``ranker`` model
is given — by the ranker's order, then by lower estimated cost, then provider and model name. The
ranker only reorders within a preference tier and never sees, let alone picks, a refused candidate:
a name it gives that is refused is reported as refused by the rules. Its answer is parsed strictly
(one JSON object); an unparseable answer is counted, ignored and said so.

The result lists every candidate with why it was taken or refused, and one :class:`~tuneloop.decisions.Decision`
(stage ``select-model``) records the choice with the candidates table in its details.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.config import ConfigError, close_match, from_mapping, setting

STAGE = "select-model"
RULES_PATH = Path(__file__).with_name("selection_rules.yaml")
REPORT = "selection.json"
EFFECTS = ("prefer", "refuse", "hyperparameters")
TASKS = ("classification", "chat")
KINDS = ("fine-tune", "few-shot", "local")
# A provider config's epochs field, by the names the providers use (OpenAI, Vertex/Bedrock, LoRA).
EPOCH_FIELDS = ("n_epochs", "epoch_count", "epochs")
RANKER_MAX_OUTPUT_TOKENS = 1024
RANKER_MAX_REASONING = 1000  # characters of the ranker's reasoning kept in the decision record
_RULES_KEYS = ("rules",)


class SelectionError(ConfigError):
    """Bad input to the selection (rules file, budget, ranker, dataset); the message names the field and the fix."""


class NoAdmissibleCandidate(SelectionError):
    """Every candidate was refused; the message lists each with its reasons."""


# -- the rule language -----------------------------------------------------------------------------


def _opt_count(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{name}={value!r} must be a whole number >= 0, or left out")


def _opt_money(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                              or not math.isfinite(value) or value < 0):
        raise ValueError(f"{name}={value!r} must be a number of USD >= 0, or left out")


@dataclass(frozen=True)
class When:
    """The conditions of a rule; every condition given must hold (none given = always).

    Dataset conditions (the same for every candidate) and candidate conditions can be mixed.
    """

    rows_below: int | None = setting(None, help="the train split has fewer rows than this")
    rows_at_least: int | None = setting(None, help="the train split has at least this many rows")
    tokens_above: int | None = setting(None, help="the train split has more tokens than this (estimate)")
    example_tokens_above: int | None = setting(None, help="the largest example has more tokens than this")
    task: str = setting("", help="the run's task: classification or chat ('' = either)")
    budget_below: float | None = setting(None, help="budget_usd is below this")
    budget_at_least: float | None = setting(None, help="budget_usd is at least this")
    providers: tuple[str, ...] = setting((), help="the candidate's provider is one of these (a family name: its members)")
    kinds: tuple[str, ...] = setting((), help="the candidate's catalog kind is one of fine-tune, few-shot, local")
    hosted: bool | None = setting(None, help="the candidate's provider is hosted (true) or local (false)")
    credential_missing: bool | None = setting(
        None, help="true: the candidate's provider has no credential source where the tasks run (task_env, environment)"
    )

    def __post_init__(self) -> None:
        for name in ("rows_below", "rows_at_least", "tokens_above", "example_tokens_above"):
            _opt_count(name, getattr(self, name))
        for name in ("budget_below", "budget_at_least"):
            _opt_money(name, getattr(self, name))
        if self.task not in ("", *TASKS):
            raise ValueError(f"task={self.task!r} must be one of {list(TASKS)} (or left out for either)")
        for name in ("providers", "kinds"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(v, str) and v.strip() for v in value):
                raise ValueError(f"{name}={value!r} must be a list of names")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise ValueError(f"kinds={list(self.kinds)!r}: {bad[0]!r} is not a catalog kind; use {list(KINDS)}")
        for name in ("hosted", "credential_missing"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} must be true or false, or left out")


@dataclass(frozen=True)
class Rule:
    """One selection rule: conditions, an effect, and the reason a person reads."""

    name: str = setting("", help="a short unique name, shown with the reason")
    reason: str = setting("", help="why: the sentence the report and the decision log show")
    when: When = setting(default_factory=When, help="conditions that must all hold ({} = always)")
    effect: str = setting("", help="prefer (add score), refuse, or hyperparameters (starting values)")
    score: float = setting(1.0, help="prefer: added to the preference score of matching candidates (may be < 0)")
    hyperparameters: Mapping[str, Any] = setting(
        default_factory=dict, help="effect hyperparameters: values for the providers named in when.providers"
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise ValueError(f"name={self.name!r} must be a short name (letters, digits, '-', '_', '.'), e.g. small-data")
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise ValueError("reason is empty; say why the rule exists (the report shows it)")
        if not isinstance(self.when, When):
            raise ValueError(f"when={self.when!r} must be a mapping of conditions, e.g. {{rows_below: 500}}")
        if self.effect not in EFFECTS:
            raise ValueError(f"effect={self.effect!r} must be one of {list(EFFECTS)}")
        if isinstance(self.score, bool) or not isinstance(self.score, int | float) or not math.isfinite(self.score):
            raise ValueError(f"score={self.score!r} must be a finite number")
        object.__setattr__(self, "score", float(self.score))
        if self.score != 1.0 and self.effect != "prefer":
            raise ValueError(f"score={self.score} applies to effect 'prefer' only (this rule's effect is {self.effect!r})")
        if not isinstance(self.hyperparameters, Mapping):
            raise ValueError(f"hyperparameters={self.hyperparameters!r} must be a mapping")
        if self.effect == "hyperparameters":
            if not self.hyperparameters:
                raise ValueError("hyperparameters is empty; an effect 'hyperparameters' rule sets at least one value")
            if not self.when.providers:
                raise ValueError(
                    "when.providers is empty; a 'hyperparameters' rule names the providers whose config takes the "
                    "values (e.g. when: {providers: [openai]})"
                )
        elif self.hyperparameters:
            raise ValueError(f"hyperparameters apply to effect 'hyperparameters' only (this rule's is {self.effect!r})")


@dataclass(frozen=True)
class Rules:
    """A parsed rules file."""

    rules: tuple[Rule, ...]
    source: str = ""


def _expand(names: Sequence[str], where: str) -> tuple[str, ...]:
    """Provider or family names -> canonical provider names; an unknown one is refused by name."""
    from tuneloop.providers import registry

    out: list[str] = []
    fams = registry.families()
    for n in names:
        key = n.strip().lower().replace("_", "-")
        if key in fams:
            out += sorted(c.name for c in fams[key].values())
            continue
        try:
            out.append(registry.provider_class(n).name)
        except registry.ProviderNotFound as exc:
            raise SelectionError(f"{where}: {exc}; fix the name in the rules file") from exc
    return tuple(dict.fromkeys(out))


def parse_rules(data: Any, *, source: str = "rules") -> Rules:
    """A rules mapping (``{"rules": [...]}``) -> :class:`Rules`, strictly.

    Raises:
        SelectionError: an unknown key (with the closest valid one), a bad value, an unknown provider, a
            duplicate name, or hyperparameters a named provider's config refuses; the message names
            ``<source>: rules[i].<field>`` and the fix.
    """
    from tuneloop.providers import registry

    if not isinstance(data, Mapping):
        raise SelectionError(f"{source}: expected a mapping with a 'rules' list, got {type(data).__name__}")
    unknown = [k for k in data if k not in _RULES_KEYS]
    if unknown:
        near = close_match(str(unknown[0]), _RULES_KEYS)
        hint = f" (did you mean {near!r}?)" if near else ""
        raise SelectionError(f"{source}: unknown top-level key {unknown[0]!r}{hint}; a rules file has only 'rules'")
    raw = data.get("rules")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise SelectionError(f"{source}: rules must be a list of rules, got {type(raw).__name__}")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"{source}: rules[{i}]"
        if not isinstance(item, Mapping):
            raise SelectionError(f"{where}: expected a mapping (name, reason, when, effect), got {type(item).__name__}")
        try:
            rule = from_mapping(Rule, item, what=f"rules[{i}]", owner="a selection rule")
        except ConfigError as exc:
            raise SelectionError(f"{source}: {exc}") from exc
        if rule.name in seen:
            raise SelectionError(f"{where}.name={rule.name!r} is used twice; give each rule its own name")
        seen.add(rule.name)
        providers = _expand(rule.when.providers, f"{where}.when.providers")
        rule = dataclasses.replace(rule, when=dataclasses.replace(rule.when, providers=providers))
        for name in providers if rule.effect == "hyperparameters" else ():
            try:
                registry.provider_class(name).parse_config(rule.hyperparameters)
            except ConfigError as exc:
                raise SelectionError(f"{where}.hyperparameters (provider {name}): {exc}") from exc
        rules.append(rule)
    return Rules(rules=tuple(rules), source=source)


def load_rules(path: str | Path | None = None) -> Rules:
    """The rules file at ``path`` (a local path or a URI tuneloop.storage reads; None/"" = the packaged one).

    Raises:
        SelectionError: the file is missing, not YAML, or a rule is malformed (see :func:`parse_rules`).
    """
    import yaml

    from tuneloop import storage

    where = str(path) if path else str(RULES_PATH)
    try:
        text = storage.read_bytes(where).decode("utf-8") if path else RULES_PATH.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, storage.StorageError) as exc:
        raise SelectionError(f"rules={where!r} cannot be read ({exc}); pass a YAML rules file, or '' for the packaged rules") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SelectionError(f"rules={where!r} is not valid YAML: {exc}") from exc
    return parse_rules(data if data is not None else {}, source=where)


# -- the dataset's facts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenFacts:
    """Token counts of the train split: total, the largest example, and where they come from."""

    train_tokens: int
    max_example_tokens: int
    exact: bool
    source: str


@dataclass(frozen=True)
class DatasetFacts:
    """What the selection reads from a published dataset.

    Attributes:
        uri: the dataset folder.
        dataset_hash: its content hash.
        task: the task kind its manifest records.
        rows: train rows.
        total: rows in all splits.
        labels: its label set (classification).
        tokens: per rendered format, the format report's token counts (``formats`` in the manifest).
        estimate: the token counts estimated from the canonical train split (o200k_base over the turns,
            with OpenAI's chat framing), for providers whose format was not rendered; None until needed.
    """

    uri: str
    dataset_hash: str
    task: str
    rows: int
    total: int
    labels: tuple[str, ...]
    tokens: Mapping[str, TokenFacts] = field(default_factory=dict)
    estimate: TokenFacts | None = None

    def tokens_for(self, fmt: str | None) -> TokenFacts | None:
        """The token counts for a provider's format: its format report's, else the estimate."""
        if fmt and fmt in self.tokens:
            return self.tokens[fmt]
        return self.estimate

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri, "dataset_hash": self.dataset_hash, "task": self.task, "rows": self.rows,
            "total": self.total, "labels": len(self.labels),
            "tokens": {k: dataclasses.asdict(v) for k, v in sorted(self.tokens.items())},
            "estimate": dataclasses.asdict(self.estimate) if self.estimate else None,
        }


def _count(value: Any, what: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SelectionError(f"{what}={value!r} must be a whole number >= 0; the dataset manifest is damaged")
    return value


def _estimate_tokens(uri: str, batch_rows: int = 20_000) -> TokenFacts:
    """Train-split token counts from the canonical examples: o200k_base over each turn + OpenAI's chat framing
    (3 tokens a message, 1 for its role, 3 priming the reply). Reads only the turns' text, a batch at a time."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from tuneloop import datasets
    from tuneloop.formats.tokens import TOKENS_PER_MESSAGE, TOKENS_REPLY_PRIMING, get_counter

    counter = get_counter()
    total = largest = 0
    with pq.ParquetFile(str(datasets.canonical_files(uri)[0])) as f:
        for batch in f.iter_batches(batch_size=batch_rows, columns=["messages"]):
            messages = batch.column(0)
            lengths = pc.list_value_length(messages).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
            texts = pc.struct_field(pc.list_flatten(messages), "content").fill_null("").to_pylist()
            counts = np.asarray(counter.count_many(texts), dtype=np.int64)  # cached: repeated turns count once
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(lengths) else lengths
            per_row = np.add.reduceat(counts, starts) if len(counts) else np.zeros(len(lengths), dtype=np.int64)
            per_row = np.where(lengths > 0, per_row, 0) + (TOKENS_PER_MESSAGE + 1) * lengths + TOKENS_REPLY_PRIMING
            total += int(per_row.sum())
            largest = max(largest, int(per_row.max()) if len(per_row) else 0)
    return TokenFacts(total, largest, False, "estimate from the canonical train split (o200k_base)")


def dataset_facts(dataset_uri: str) -> DatasetFacts:
    """The facts of the published dataset at ``dataset_uri`` (its manifest; tokens estimated when no
    format report has them).

    Raises:
        SelectionError: no manifest there, or a manifest without train counts.
    """
    from tuneloop import datasets, storage

    if not isinstance(dataset_uri, str) or not dataset_uri.strip():
        raise SelectionError("dataset_uri is empty; pass a published dataset folder (export-dataset's dataset_uri)")
    try:
        manifest, _ = storage.read_json(storage.join(dataset_uri, datasets.MANIFEST))
    except ValueError as exc:  # not JSON
        raise SelectionError(f"dataset_uri={dataset_uri!r}: {datasets.MANIFEST} is not valid JSON ({exc}); "
                             "publish the dataset again") from exc
    if not isinstance(manifest, Mapping):
        raise SelectionError(
            f"dataset_uri={dataset_uri!r} has no {datasets.MANIFEST}; pass a published dataset folder "
            "(export-dataset's dataset_uri output)"
        )
    counts = manifest.get("counts")
    if not isinstance(counts, Mapping) or "train" not in counts:
        raise SelectionError(f"dataset_uri={dataset_uri!r}: its manifest has no counts.train; publish the dataset again")
    rows = _count(counts["train"], "counts.train")
    raw_labels = manifest.get("labels") or ()
    labels = tuple(str(x) for x in raw_labels) if isinstance(raw_labels, list | tuple) else ()
    tokens = {}
    reports = manifest.get("formats")
    for fmt, report in (reports.items() if isinstance(reports, Mapping) else ()):
        if not isinstance(report, Mapping) or not isinstance(report.get("tokens"), Mapping):
            continue
        t = report["tokens"].get("train")
        if t is None:
            continue
        tokens[fmt] = TokenFacts(
            _count(t, f"formats.{fmt}.tokens.train"), _count(report.get("max_example_tokens", 0),
                                                              f"formats.{fmt}.max_example_tokens"),
            bool(report.get("tokens_exact")), f"the {fmt} format report",
        )
    task = manifest.get("task") or ("classification" if labels else "chat")
    return DatasetFacts(
        uri=dataset_uri, dataset_hash=str(manifest.get("dataset_hash", "")), task=str(task), rows=rows,
        total=_count(manifest.get("total", rows), "total"), labels=labels, tokens=tokens,
    )


# -- candidates --------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """One (provider, base model) considered, and what the selection made of it."""

    provider: str
    base_model: str
    hosted: bool
    kind: str
    platform: str
    refusals: list[str] = field(default_factory=list)
    preferences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    score: float = 0.0
    estimated_cost_usd: float | None = None
    epochs: int | None = None
    train_tokens: int | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    ranker_position: int | None = None
    rank: int | None = None
    chosen: bool = False

    @property
    def id(self) -> str:
        return f"{self.provider}:{self.base_model}"

    @property
    def admissible(self) -> bool:
        return not self.refusals

    def why(self) -> str:
        if self.refusals:
            return "refused: " + "; ".join(self.refusals)
        head = "chosen" if self.chosen else f"admissible, ranked {self.rank}"
        parts = [f"preference {self.score:g}" + (f" ({', '.join(self.preferences)})" if self.preferences else "")]
        if self.ranker_position is not None:
            parts.append(f"ranker position {self.ranker_position}")
        parts.append("estimated cost " + (f"${self.estimated_cost_usd:,.4f}" if self.estimated_cost_usd is not None
                                          else "unknown"))
        return f"{head}: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider, "base_model": self.base_model, "hosted": self.hosted, "kind": self.kind,
            "platform": self.platform, "admissible": self.admissible, "chosen": self.chosen, "rank": self.rank,
            "score": self.score, "preferences": list(self.preferences), "refusals": list(self.refusals),
            "notes": list(self.notes), "estimated_cost_usd": self.estimated_cost_usd, "epochs": self.epochs,
            "train_tokens": self.train_tokens, "ranker_position": self.ranker_position,
            "hyperparameters": dict(self.hyperparameters), "why": self.why(),
        }


def _entries(cls, catalog) -> list:
    name = cls.catalog_name()
    return [m for m in catalog.models if m.provider == name and (not cls.platforms or m.platform in cls.platforms)]


def _epochs_field(config_class) -> str | None:
    names = {f.name for f in dataclasses.fields(config_class)}
    return next((n for n in EPOCH_FIELDS if n in names), None)


def _config_epochs(cfg) -> int | None:
    key = _epochs_field(type(cfg))
    value = getattr(cfg, key) if key else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None  # 'auto' or none: the catalog's default or auto rule
    return max(1, math.ceil(value))


def _matches(when: When, c: Candidate, facts: DatasetFacts, task: str, budget: float, tokens: TokenFacts | None,
             credential_missing) -> bool:
    if when.rows_below is not None and not facts.rows < when.rows_below:
        return False
    if when.rows_at_least is not None and not facts.rows >= when.rows_at_least:
        return False
    if when.tokens_above is not None and not (tokens is not None and tokens.train_tokens > when.tokens_above):
        return False
    if when.example_tokens_above is not None and not (
            tokens is not None and tokens.max_example_tokens > when.example_tokens_above):
        return False
    if when.task and when.task != task:
        return False
    if when.budget_below is not None and not budget < when.budget_below:
        return False
    if when.budget_at_least is not None and not budget >= when.budget_at_least:
        return False
    if when.providers and c.provider not in when.providers:
        return False
    if when.kinds and c.kind not in when.kinds:
        return False
    if when.hosted is not None and c.hosted != when.hosted:
        return False
    if when.credential_missing is not None and credential_missing(c) != when.credential_missing:
        return False
    return True


# -- the ranker --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankerSpec:
    """The model asked to rank the admissible candidates (``ranker`` parameter, ``PROVIDER:MODEL``)."""

    provider: str = setting("", help="the ranker's provider (any provider that declares chat)")
    model: str = setting("", help="the model its predict asks")

    def __post_init__(self) -> None:
        for name in ("provider", "model"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"{name}={getattr(self, name)!r} is empty; write the ranker as 'PROVIDER:MODEL', "
                                 "e.g. 'openai:gpt-4.1-mini'")

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.model}"


def parse_ranker(value: Any) -> RankerSpec | None:
    """``ranker`` (``"PROVIDER:MODEL"``, a mapping, or ``""``) -> RankerSpec (canonical provider) or None.

    Raises:
        SelectionError: not ``PROVIDER:MODEL``, an unknown provider, or one that does not declare chat.
    """
    from tuneloop.providers import registry

    if value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, Mapping) and not value):
        return None
    if isinstance(value, str):
        provider, sep, model = value.strip().partition(":")
        if not sep:
            raise SelectionError(f"ranker={value!r} must be 'PROVIDER:MODEL' (e.g. 'openai:gpt-4.1-mini'), or '' for none")
        value = {"provider": provider.strip(), "model": model.strip()}
    try:
        spec = from_mapping(RankerSpec, value, what="ranker")
        cls = registry.provider_class(spec.provider)
    except (ConfigError, registry.ProviderNotFound) as exc:
        raise SelectionError(f"ranker: {exc}") from exc
    if "chat" not in cls.tasks:
        raise SelectionError(f"ranker={spec.label!r}: provider {cls.name!r} does not declare chat; the ranker answers "
                             f"in text: use one of {[n for n, c in registry.provider_classes().items() if 'chat' in c.tasks]}")
    return dataclasses.replace(spec, provider=cls.name)


RANKER_SYSTEM = (
    "You help choose which model to fine-tune for a dataset. You get the dataset's facts and the candidates "
    "that passed every rule. Rank them, best first. Answer with one JSON object and nothing else: "
    '{"ranking": ["provider:model", ...], "reasoning": "<one or two sentences>", "confidence": <0..1>}'
)


def ranker_request(facts: DatasetFacts, task: str, budget: float, candidates: Sequence[Candidate]):
    """The one request the ranker answers (an Example for ``Provider.predict``)."""
    from tuneloop import examples as ex

    body = {
        "dataset": {"task": task, "train_rows": facts.rows, "labels": len(facts.labels)},
        "budget_usd": budget,
        "candidates": [
            {"id": c.id, "kind": c.kind, "hosted": c.hosted, "estimated_cost_usd": c.estimated_cost_usd,
             "epochs": c.epochs} for c in candidates
        ],
    }
    text = "Rank these candidates:\n" + json.dumps(body, sort_keys=True, indent=1)
    messages = (ex.Message("system", RANKER_SYSTEM), ex.Message("user", text))
    return ex.Example(id="select-model-ranker", messages=messages, created_at=ex.utc_now())


_FENCE = re.compile(r"^```(?:json)?\s*\n(?P<body>.*)\n```$", re.DOTALL)


def parse_ranking(answer: Any) -> tuple[list[str], str, float | None] | None:
    """``(ranking, reasoning, confidence)`` from a ranker's answer, or None when it is malformed.

    Accepted: one JSON object (optionally in a json code fence) with ``ranking`` (a non-empty list of
    ``provider:model`` strings), ``reasoning`` (a string) and optionally ``confidence`` (a number in
    [0, 1]); other keys, other types or anything around the object make it malformed: never a guess.
    """
    if not isinstance(answer, str):
        return None
    text = answer.strip()
    m = _FENCE.match(text)
    if m:
        text = m.group("body").strip()
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(data, dict) or set(data) - {"ranking", "reasoning", "confidence"} or "ranking" not in data:
        return None
    ranking, reasoning, confidence = data["ranking"], data.get("reasoning", ""), data.get("confidence")
    if not isinstance(ranking, list) or not ranking or not all(isinstance(r, str) and ":" in r for r in ranking):
        return None
    if not isinstance(reasoning, str):
        return None
    if confidence is not None and (isinstance(confidence, bool) or not isinstance(confidence, int | float)
                                   or not math.isfinite(confidence) or not 0 <= confidence <= 1):
        return None
    return [r.strip() for r in ranking], reasoning.strip(), None if confidence is None else float(confidence)


def _ranker_policy(eval_options: Mapping[str, Any] | None):
    """``eval_options`` as the ranker's PredictPolicy (answers up to RANKER_MAX_OUTPUT_TOKENS unless set)."""
    from tuneloop.stages import eval_policy

    try:
        policy = eval_policy(eval_options)
    except ConfigError as exc:
        raise SelectionError(str(exc)) from exc
    if "max_output_tokens" not in (eval_options or {}):
        policy = dataclasses.replace(policy, max_output_tokens=max(policy.max_output_tokens, RANKER_MAX_OUTPUT_TOKENS))
    return policy


def _ask_ranker(spec: RankerSpec, request, eval_options: Mapping[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """One request to the ranker (its provider's ``predict`` under ``eval_options``); provider errors propagate."""
    from tuneloop.providers.registry import provider_class
    from tuneloop.reports.evaluation import predict_facts

    policy = _ranker_policy(eval_options)
    cls = provider_class(spec.provider)
    prov = cls(predict=policy) if cls.hosted else cls()
    answers = prov.predict(spec.model, [request])
    answer = answers[0] if answers and isinstance(answers[0], str) else ""
    return answer, predict_facts(prov)


# -- the selection -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The outcome: the choice, every candidate considered, the ranker's part and the decision record."""

    provider: str
    base_model: str
    hyperparameters: Mapping[str, Any]
    candidates: tuple[Candidate, ...]
    facts: DatasetFacts
    task: str
    budget_usd: float
    today: str
    rules: str
    ranker: Mapping[str, Any] | None
    decision: Any

    def report(self) -> dict[str, Any]:
        """The selection report (``selection.json``): inputs, choice, every candidate with its reasons."""
        return {
            "stage": STAGE,
            "chosen": {"provider": self.provider, "base_model": self.base_model,
                       "hyperparameters": dict(self.hyperparameters)},
            "task": self.task, "budget_usd": self.budget_usd, "today": self.today, "rules": self.rules,
            "dataset": self.facts.to_dict(), "ranker": dict(self.ranker) if self.ranker else None,
            "candidates": [c.to_dict() for c in self.candidates],
            "admissible": sum(c.admissible for c in self.candidates),
            "refused": sum(not c.admissible for c in self.candidates),
        }


def _check_budget(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise SelectionError(
            f"budget_usd={value!r} must be a number of USD >= 0 (0 = only candidates with no training bill)"
        )
    return float(value)


def _check_today(value: Any) -> dt.date:
    if value is None or value == "":
        return dt.date.today()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError as exc:
        raise SelectionError(f"today={value!r} is not a YYYY-MM-DD date; pass one, or '' for the real date") from exc


def _check_base_models(value: Any) -> dict[str, str]:
    from tuneloop.providers import registry

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SelectionError(f"base_models={value!r} must map provider -> base model (e.g. {{'oss-lora': 'gs://.../base'}})")
    out = {}
    for k, v in value.items():
        if not isinstance(v, str) or not v.strip():
            raise SelectionError(f"base_models.{k}={v!r} must be a non-empty base model id or path")
        try:
            out[registry.provider_class(k).name] = v.strip()
        except registry.ProviderNotFound as exc:
            raise SelectionError(f"base_models: {exc}") from exc
    return out


@dataclass(frozen=True)
class _Context:
    """What every candidate is judged against (one selection's inputs)."""

    facts: DatasetFacts
    task: str
    budget: float
    day: dt.date
    rules: Rules
    catalog_path: str
    base_models: Mapping[str, str]
    tokens_of: Any  # provider class -> TokenFacts
    credential_missing: Any  # Candidate -> bool


def _judge(cls, info, ctx: _Context) -> Candidate:
    """One (provider, catalog entry) as a Candidate: the fixed checks, the rules, the starting config, the cost."""
    from tuneloop.catalog import WILDCARD
    from tuneloop.providers import registry
    from tuneloop.providers.base import PreflightError
    from tuneloop.providers.hosted import HostedConfig
    from tuneloop.providers.hosted.preflight import check_budget

    name, facts = cls.name, ctx.facts
    c = Candidate(provider=name, base_model=info.name if info else "", hosted=cls.hosted,
                  kind=info.kind if info else ("local" if not cls.hosted else "fine-tune"),
                  platform=info.platform if info else "")
    if ctx.task not in cls.tasks:
        c.refusals.append(f"task {ctx.task!r} is not supported: {name} declares {list(cls.tasks)}")
    missing = registry.missing_requirements(cls)
    if missing and cls.image == "cpu":  # its tune task runs on this task's image
        c.refusals.append(f"{name} needs {missing}, which is not installed here: {registry.install_hint(cls)}")
    elif missing:
        c.notes.append(f"needs {missing} on the {cls.image} image (not installed here)")
    tokens = None
    if info is None:
        if cls.hosted:
            c.refusals.append(f"{name} has no model in the catalog (as {cls.catalog_name()!r}): its limits and price "
                              "are unknown; add its models to the catalog")
        else:
            c.notes.append("not in the catalog: no dataset limits checked")
    else:
        if info.name == WILDCARD:
            if name in ctx.base_models:
                c.base_model = ctx.base_models[name]
            else:
                c.refusals.append(f"{name} tunes a base model you provide: pass base_models={{{name!r}: PATH}} "
                                  "(a model folder) to consider it")
        if info.is_retired(ctx.day):
            c.refusals.append(f"retired: end of life {info.end_of_life.isoformat()} is before today "
                              f"({ctx.day.isoformat()})")
        elif info.end_of_life is not None:
            c.notes.append(f"end of life {info.end_of_life.isoformat()}: tuned models stop working then")
        if info.kind == "fine-tune" and not info.tunable:
            c.refusals.append(f"{info.name} cannot be fine-tuned (tunable: false in the catalog)")
        if facts.rows < info.min_examples:
            c.refusals.append(f"too few rows: {facts.rows} train rows < min_examples {info.min_examples}")
        if info.max_examples is not None and facts.rows > info.max_examples:
            c.refusals.append(f"too many rows: {facts.rows} train rows > max_examples {info.max_examples}")
        tokens = ctx.tokens_of(cls)
        c.train_tokens = tokens.train_tokens
        if info.max_tokens_per_example is not None and tokens.max_example_tokens > info.max_tokens_per_example:
            c.refusals.append(
                f"examples too long: the largest has {tokens.max_example_tokens:,} tokens > "
                f"max_tokens_per_example {info.max_tokens_per_example:,} ({tokens.source})")
    # the rules: hyperparameters (the cost depends on them), refuse, prefer
    hp: dict[str, Any] = {}
    for r in ctx.rules.rules:
        if not _matches(r.when, c, facts, ctx.task, ctx.budget, tokens, ctx.credential_missing):
            continue
        if r.effect == "hyperparameters":
            hp.update(r.hyperparameters)
            c.notes.append(f"rule {r.name}: {dict(r.hyperparameters)} ({r.reason})")
        elif r.effect == "refuse":
            c.refusals.append(f"refused by rule {r.name}: {r.reason}")
        else:
            c.score += r.score
            c.preferences.append(f"{r.name} {r.score:+g}")
    if issubclass(cls.config_class, HostedConfig):
        hp["budget_usd"] = ctx.budget  # what the tuning job's preflight will hold it to
        if ctx.catalog_path:
            hp["catalog"] = ctx.catalog_path
    try:
        cfg = cls.parse_config(hp)
    except ConfigError as exc:
        c.refusals.append(f"starting hyperparameters do not parse: {exc}")
        return c
    c.hyperparameters = _changed(cfg)
    if info is None:
        c.estimated_cost_usd = None if cls.hosted else 0.0
        return c
    c.epochs = info.epochs_for(facts.rows, _config_epochs(cfg))
    if info.kind == "few-shot":
        c.estimated_cost_usd = 0.0
        c.notes.append("few-shot adapter: no training bill; evaluation is billed per request")
        return c
    train_tokens = tokens.train_tokens
    c.estimated_cost_usd = cost = info.training_cost_usd(train_tokens, c.epochs)
    if isinstance(cfg, HostedConfig):
        try:
            c.notes += check_budget(cost, cfg, info, tokens=train_tokens, epochs=c.epochs)
        except PreflightError as exc:
            c.refusals.append(f"cost: {exc}")
    elif cost is None:
        c.refusals.append(f"{info.name} has no price in the catalog; its cost cannot be checked against the budget")
    elif cost > ctx.budget:
        c.refusals.append(f"estimated cost ${cost:,.2f} > budget_usd ${ctx.budget:,.2f}")
    return c


def select_model(
    *,
    dataset_uri: str,
    task: str = "",
    budget_usd: float = 0.0,
    rules: str | Rules | None = None,
    catalog: str = "",
    today: str | dt.date | None = None,
    ranker: Any = "",
    eval_options: Mapping[str, Any] | None = None,
    task_env: Mapping[str, Any] | None = None,
    base_models: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Selection:
    """Pick a provider, base model and starting hyperparameters for the dataset at ``dataset_uri``.

    Args:
        dataset_uri: the published dataset (its manifest gives rows, task and token counts).
        task: ``classification`` or ``chat`` ("" = the task the dataset's manifest records).
        budget_usd: the most the tuning job may cost (0 = only candidates with no training bill).
        rules: a rules YAML path (or parsed :class:`Rules`); "" / None = the packaged rules.
        catalog: a model catalog YAML ("" = the packaged catalog); hosted candidates' hyperparameters name it.
        today: the date retirement is judged on (YYYY-MM-DD; "" = the real date).
        ranker: ``PROVIDER:MODEL`` asked to rank the admissible candidates ("" = none).
        eval_options: how the ranker is asked (PredictPolicy fields: request cap, retries, concurrency).
        task_env: the tuning tasks' environment (credential sources), for the ``credential_missing`` condition.
        base_models: ``{provider: base model}`` for providers whose catalog entry is ``"*"`` (oss-lora's base
            model folder); without one such a candidate is refused.
        environ: the environment credentials are looked for in (None = this process's).

    Raises:
        SelectionError: bad input, naming the parameter and the fix.
        NoAdmissibleCandidate: every candidate was refused; the message lists them all with their reasons.
    """
    from tuneloop import decisions
    from tuneloop.catalog import CatalogError, load_catalog
    from tuneloop.providers import registry
    from tuneloop.secrets import MissingSecret, check_credentials, check_task_env

    budget = _check_budget(budget_usd)
    day = _check_today(today)
    parsed = rules if isinstance(rules, Rules) else load_rules(rules or None)
    spec = parse_ranker(ranker)
    models = _check_base_models(base_models)
    try:
        check_task_env(task_env or {})
    except ValueError as exc:
        raise SelectionError(str(exc)) from exc
    if spec is not None:
        _ranker_policy(eval_options)  # a bad eval_options fails before anything is read or asked
    try:
        cat = load_catalog(catalog or None)
    except (CatalogError, OSError) as exc:
        raise SelectionError(f"catalog={catalog!r}: {exc}") from exc
    facts = dataset_facts(dataset_uri)
    if task in ("", None):
        task = facts.task
    if task not in TASKS:
        raise SelectionError(f"task={task!r} must be one of {list(TASKS)} ('' = the dataset's own task)")
    if facts.task != task:
        raise SelectionError(
            f"task={task!r} but dataset {dataset_uri} was built for task={facts.task!r}; pass task={facts.task!r} "
            f"or export the dataset again with task={task!r}"
        )
    if spec is not None and registry.provider_class(spec.provider).hosted:
        try:
            check_credentials(spec.provider, task_env or {}, environ=environ)
        except (MissingSecret, ValueError) as exc:
            raise SelectionError(f"ranker={spec.label!r}: {exc}") from exc
    estimate: list[TokenFacts] = []

    def tokens_of(cls) -> TokenFacts:
        held = facts.tokens.get(cls.format) if cls.format else None
        if held is not None:
            return held
        if not estimate:
            estimate.append(_estimate_tokens(dataset_uri))
        return estimate[0]

    creds: dict[str, bool] = {}

    def credential_missing(c: Candidate) -> bool:
        if c.provider not in creds:
            try:
                check_credentials(c.provider, task_env or {}, environ=environ)
                creds[c.provider] = False
            except MissingSecret:
                creds[c.provider] = True
            except ValueError as exc:
                raise SelectionError(f"task_env: {exc}") from exc
        return creds[c.provider]

    ctx = _Context(facts=facts, task=task, budget=budget, day=day, rules=parsed, catalog_path=catalog,
                   base_models=models, tokens_of=tokens_of, credential_missing=credential_missing)
    candidates: list[Candidate] = []
    for _, cls in sorted(registry.provider_classes().items()):
        for info in _entries(cls, cat) or [None]:
            candidates.append(_judge(cls, info, ctx))

    admissible = [c for c in candidates if c.admissible]
    if not admissible:
        lines = "\n".join(f"  - {c.id}: " + "; ".join(c.refusals) for c in candidates)
        raise NoAdmissibleCandidate(
            f"select-model: no admissible candidate among {len(candidates)} for task={task!r}, {facts.rows} train rows, "
            f"budget_usd={budget:g}, today={day.isoformat()}:\n{lines}\n"
            "Fix: raise budget_usd, add data, set the credential a refused provider needs, or change the rules file"
        )

    ranker_part: dict[str, Any] | None = None
    confidence = None
    ranker_reasoning = ""
    if spec is not None:
        by_id = {c.id: c for c in candidates}
        answer, calls = _ask_ranker(spec, ranker_request(facts, task, budget, admissible), eval_options)
        parsed_answer = parse_ranking(answer)
        ranker_part = {"ranker": spec.label, "requests": calls, "malformed": 0, "answer": (answer or "")[:2000],
                       "ignored": [], "refused_by_rules": []}
        if parsed_answer is None:
            ranker_part["malformed"] = 1
            ranker_part["note"] = "the ranker's answer did not parse as the ranking JSON; it was counted and ignored"
        else:
            order, ranker_reasoning, confidence = parsed_answer
            ranker_reasoning = ranker_reasoning[:RANKER_MAX_REASONING]
            ranker_part.update(reasoning=ranker_reasoning, confidence=confidence, ranking=order)
            pos = 0
            for cid in order:
                c = by_id.get(cid)
                if c is None:
                    ranker_part["ignored"].append(f"{cid}: not a candidate")
                elif not c.admissible:
                    ranker_part["refused_by_rules"].append(f"{cid}: " + "; ".join(c.refusals))
                    c.notes.append("named by the ranker, refused by the rules")
                elif c.ranker_position is None:
                    pos += 1
                    c.ranker_position = pos
    unplaced = len(candidates) + 1
    admissible.sort(key=lambda c: (-c.score, c.ranker_position or unplaced,
                                   c.estimated_cost_usd if c.estimated_cost_usd is not None else math.inf,
                                   c.provider, c.base_model))
    for i, c in enumerate(admissible, 1):
        c.rank = i
    best = admissible[0]
    best.chosen = True
    runner_up = admissible[1] if len(admissible) > 1 else None
    reasoning = f"{best.id} ranks first of {len(admissible)} admissible candidates ({len(candidates) - len(admissible)} refused): "
    reasoning += best.why().split(": ", 1)[1]
    if runner_up is not None:
        reasoning += f"; next: {runner_up.id} ({runner_up.why().split(': ', 1)[1]})"
    if ranker_part is not None:
        reasoning += (f"; ranker {spec.label}: {ranker_reasoning}" if not ranker_part["malformed"]
                      else f"; ranker {spec.label}'s answer was malformed and ignored")
    inputs = {"dataset_hash": facts.dataset_hash, "task": task, "budget_usd": budget, "today": day.isoformat(),
              "rules": [dataclasses.asdict(r) for r in parsed.rules], "catalog": [m.to_dict() for m in cat.models],
              "ranker": spec.label if spec else "", "base_models": models, "credential_missing": creds}
    record = decisions.Decision(
        stage=STAGE, decision=best.id, reasoning=reasoning, confidence=confidence,
        inputs_hash=decisions.inputs_hash(inputs),
        details={"provider": best.provider, "base_model": best.base_model, "hyperparameters": best.hyperparameters,
                 "candidates": [c.to_dict() for c in candidates], "ranker": ranker_part},
    )
    return Selection(
        provider=best.provider, base_model=best.base_model, hyperparameters=dict(best.hyperparameters),
        candidates=tuple(candidates), facts=facts, task=task, budget_usd=budget, today=day.isoformat(),
        rules=parsed.source, ranker=ranker_part, decision=record,
    )


def _changed(cfg) -> dict[str, Any]:
    from tuneloop.config import changed_fields

    return changed_fields(cfg)


def run_selection(*, report_path: str, decisions_path: str, **kwargs: Any) -> dict[str, Any]:
    """:func:`select_model`, writing the report (JSON) and the decision (JSONL); returns the outputs.

    Returns:
        ``provider``, ``base_model``, ``hyperparameters`` (what tune-and-promote takes), ``report``.
    """
    from tuneloop import decisions

    sel = select_model(**kwargs)
    report = sel.report()
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_text(json.dumps(report, indent=2, sort_keys=True, default=str), encoding="utf-8")
    decisions.append(decisions_path, [sel.decision])
    for c in sel.candidates:
        print(f"[select-model] {c.id}: {c.why()}")
    return {"provider": sel.provider, "base_model": sel.base_model, "hyperparameters": dict(sel.hyperparameters),
            "report": report}
