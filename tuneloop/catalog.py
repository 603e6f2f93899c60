"""The model catalog: base models, their dataset limits, training prices and end-of-life dates.

The numbers live in ``tuneloop/catalog.yaml`` (data, with a ``source`` and ``as_of`` per entry);
this module loads them into frozen :class:`ModelInfo` records. The formatter reads limits and
prices from here; a provider's preflight calls :meth:`ModelInfo.is_retired` to refuse a retired
model before any money is spent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")

PLATFORMS = ("openai", "vertex", "bedrock", "anthropic", "local")
KINDS = ("fine-tune", "few-shot", "local")
WILDCARD = "*"
# A provider's catalog name (its family's name for a family member, see Provider.catalog_name).
_PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")

MODEL_KEYS = (
    "provider",
    "name",
    "platform",
    "kind",
    "tunable",
    "tokenizer",
    "max_tokens_per_example",
    "min_examples",
    "max_examples",
    "max_validation_examples",
    "max_file_bytes",
    "price_per_1m_training_tokens",
    "default_epochs",
    "end_of_life",
    "source",
    "as_of",
    "notes",
)

# OpenAI's published rule for ``n_epochs="auto"`` (fine-tuning guide / data-prep cookbook): aim for
# 3 epochs, but at least 100 and at most 25,000 example passes, within 1..25 epochs.
_AUTO_TARGET_EPOCHS = 3
_AUTO_MIN_TARGET_EXAMPLES = 100
_AUTO_MAX_TARGET_EXAMPLES = 25_000
_AUTO_MIN_EPOCHS = 1
_AUTO_MAX_EPOCHS = 25


class CatalogError(ValueError):
    """The catalog file is malformed or a model is not in it; the message names the entry and field."""


def auto_epochs(n_train: int) -> int:
    """Epochs a provider picks when none is set, by OpenAI's published auto rule.

    Args:
        n_train: number of training examples.

    Returns:
        3 for mid-sized sets; more for tiny sets (so at least ~100 example passes), fewer for
        huge ones (at most ~25,000 passes), clamped to 1..25.
    """
    if n_train <= 0:
        return _AUTO_TARGET_EPOCHS
    epochs = _AUTO_TARGET_EPOCHS
    if n_train * epochs < _AUTO_MIN_TARGET_EXAMPLES:
        epochs = min(_AUTO_MAX_EPOCHS, math.ceil(_AUTO_MIN_TARGET_EXAMPLES / n_train))
    elif n_train * epochs > _AUTO_MAX_TARGET_EXAMPLES:
        epochs = max(_AUTO_MIN_EPOCHS, _AUTO_MAX_TARGET_EXAMPLES // n_train)
    return epochs


@dataclass(frozen=True)
class ModelInfo:
    """One catalog entry: what the formatter and preflight need to know about a base model.

    Attributes:
        provider: the provider's catalog name (openai, gemini, claude, sklearn, oss-lora, or a plug-in's).
        name: the provider's model id (``"*"`` = any model of a local provider).
        platform: where it runs: openai, vertex, bedrock, anthropic or local.
        kind: fine-tune, few-shot (no tuning API: exemplars + instructions) or local.
        tunable: True if a fine-tuning job can be started on this model.
        tokenizer: offline encoding that counts this model's tokens exactly, or None (estimates).
        max_tokens_per_example: training example token limit (input + output), None = unknown.
        min_examples: fewest training rows the provider accepts.
        max_examples: most training rows the provider accepts, None = no published limit.
        max_validation_examples: most validation rows accepted, None = no published limit.
        max_file_bytes: largest training file accepted, None = no published limit.
        price_per_1m_training_tokens: USD per 1M training tokens (billed per epoch), None = unpublished.
        default_epochs: epochs used when none is set; None = the provider chooses (see auto_epochs).
        end_of_life: last day the model can be used, None = none announced.
        source: where the numbers come from.
        as_of: when they were read.
        notes: caveats.
    """

    provider: str
    name: str
    platform: str
    kind: str
    tunable: bool
    tokenizer: str | None = None
    max_tokens_per_example: int | None = None
    min_examples: int = 1
    max_examples: int | None = None
    max_validation_examples: int | None = None
    max_file_bytes: int | None = None
    price_per_1m_training_tokens: float | None = None
    default_epochs: int | None = None
    end_of_life: dt.date | None = None
    source: str = ""
    as_of: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        where = f"{self.provider}/{self.name}"
        if not isinstance(self.provider, str) or not _PROVIDER_NAME.fullmatch(self.provider):
            raise CatalogError(
                f"{where}: provider {self.provider!r} must be a provider's catalog name (lower-case letters, digits, "
                "'-'), e.g. openai, gemini, claude"
            )
        if self.platform not in PLATFORMS:
            raise CatalogError(f"{where}: platform {self.platform!r} is not one of {', '.join(PLATFORMS)}")
        if self.kind not in KINDS:
            raise CatalogError(f"{where}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.tokenizer not in (None, "o200k_base", "cl100k_base"):
            raise CatalogError(f"{where}: tokenizer {self.tokenizer!r} must be o200k_base, cl100k_base or null")
        for key in ("max_tokens_per_example", "max_examples", "max_validation_examples", "max_file_bytes",
                    "default_epochs"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise CatalogError(f"{where}: {key}={value!r} must be a positive integer or null")
        if isinstance(self.min_examples, bool) or not isinstance(self.min_examples, int) or self.min_examples < 1:
            raise CatalogError(f"{where}: min_examples={self.min_examples!r} must be an integer >= 1")
        if self.max_examples is not None and self.max_examples < self.min_examples:
            raise CatalogError(f"{where}: max_examples={self.max_examples} is below min_examples={self.min_examples}")
        price = self.price_per_1m_training_tokens
        if price is not None and (isinstance(price, bool) or not isinstance(price, int | float) or price < 0):
            raise CatalogError(f"{where}: price_per_1m_training_tokens={price!r} must be a number >= 0 or null")
        if self.end_of_life is not None and not isinstance(self.end_of_life, dt.date):
            raise CatalogError(f"{where}: end_of_life={self.end_of_life!r} must be a date (YYYY-MM-DD) or null")

    def is_retired(self, today: dt.date | None = None) -> bool:
        """True if ``today`` is after the model's last day (end_of_life is the last usable day)."""
        if self.end_of_life is None:
            return False
        today = today or dt.date.today()
        return today > self.end_of_life

    def epochs_for(self, n_train: int, epochs: int | None = None) -> int:
        """The epochs a job will run: ``epochs`` if given, else the default, else the auto rule."""
        if epochs is not None:
            if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
                raise ValueError(f"epochs={epochs!r} must be a positive integer or None (provider default)")
            return epochs
        if self.default_epochs is not None:
            return self.default_epochs
        return auto_epochs(n_train)

    def training_cost_usd(self, train_tokens: int, epochs: int) -> float | None:
        """Estimated training bill: price per 1M tokens x tokens x epochs; None if unpriced."""
        if self.price_per_1m_training_tokens is None:
            return None
        return round(self.price_per_1m_training_tokens * train_tokens * epochs / 1_000_000, 6)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (end_of_life as YYYY-MM-DD)."""
        d = {k: getattr(self, k) for k in MODEL_KEYS}
        d["end_of_life"] = self.end_of_life.isoformat() if self.end_of_life else None
        return d


@dataclass(frozen=True)
class Catalog:
    """All catalog entries, looked up by ``(provider, name)``.

    Attributes:
        models: every entry, in file order.
        defaults: provider -> default model name.
        as_of: when the file was last reviewed.
    """

    models: tuple[ModelInfo, ...]
    defaults: Mapping[str, str]
    as_of: str = ""

    def __post_init__(self) -> None:
        seen: set[tuple[str, str]] = set()
        for m in self.models:
            key = (m.provider, m.name)
            if key in seen:
                raise CatalogError(f"{m.provider}/{m.name}: listed twice; keep one entry per model")
            seen.add(key)
        for provider, name in self.defaults.items():
            if (provider, name) not in seen:
                raise CatalogError(f"defaults.{provider}: {name!r} is not a model listed for {provider}")

    def names(self, provider: str) -> list[str]:
        """Model names listed for a provider."""
        return [m.name for m in self.models if m.provider == provider]

    def model(self, provider: str, name: str | None = None) -> ModelInfo:
        """The entry for ``provider``/``name`` (``None`` = the provider's default model).

        A provider with a ``"*"`` entry (local providers) matches any name; the returned record
        carries the name asked for.

        Raises:
            CatalogError: the provider or model is not in the catalog; the message lists what is.
        """
        known = sorted({m.provider for m in self.models})
        if provider not in known:
            raise CatalogError(f"provider={provider!r} has no models in the catalog; it lists {', '.join(known)}")
        if name is None:
            name = self.defaults.get(provider)
            if name is None:
                raise CatalogError(f"provider={provider!r} has no default model; pass a model name")
        wildcard = None
        for m in self.models:
            if m.provider == provider:
                if m.name == name:
                    return m
                if m.name == WILDCARD:
                    wildcard = m
        if wildcard is not None:
            return dataclasses.replace(wildcard, name=name)
        raise CatalogError(
            f"model={name!r} is not in the catalog for provider {provider!r}; known: "
            f"{', '.join(self.names(provider)) or 'none'}. Add it to {CATALOG_PATH.name} with its limits"
        )


def _parse_entry(i: int, raw: Any) -> ModelInfo:
    if not isinstance(raw, Mapping):
        raise CatalogError(f"models[{i}]: expected a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(MODEL_KEYS))
    if unknown:
        raise CatalogError(f"models[{i}].{unknown[0]}: unknown key; an entry has only {', '.join(MODEL_KEYS)}")
    for key in ("provider", "name", "platform", "kind", "tunable"):
        if key not in raw:
            raise CatalogError(f"models[{i}].{key}: required")
    d = dict(raw)
    eol = d.get("end_of_life")
    if isinstance(eol, str):
        try:
            d["end_of_life"] = dt.date.fromisoformat(eol)
        except ValueError as exc:
            raise CatalogError(f"models[{i}].end_of_life: {eol!r} is not a YYYY-MM-DD date") from exc
    elif isinstance(eol, dt.datetime):
        d["end_of_life"] = eol.date()
    if isinstance(d.get("price_per_1m_training_tokens"), int) and not isinstance(
        d.get("price_per_1m_training_tokens"), bool
    ):
        d["price_per_1m_training_tokens"] = float(d["price_per_1m_training_tokens"])
    for key in ("source", "as_of", "notes"):
        d[key] = "" if d.get(key) is None else str(d[key]).strip()
    if not isinstance(d["tunable"], bool):
        raise CatalogError(f"models[{i}].tunable: {d['tunable']!r} must be true or false")
    return ModelInfo(**d)


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and check the catalog YAML (the packaged ``catalog.yaml`` by default, read once).

    Args:
        path: another catalog file with the same schema (e.g. an organisation's own prices).

    Raises:
        CatalogError: a field is missing, unknown or out of range; the message names it.
    """
    if path is None:
        return _packaged_catalog()
    return _load(Path(path))


@functools.lru_cache(maxsize=1)
def _packaged_catalog() -> Catalog:
    return _load(CATALOG_PATH)


def _load(p: Path) -> Catalog:
    import yaml

    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CatalogError(f"{p}: not valid YAML ({exc})") from exc
    if not isinstance(raw, Mapping) or not isinstance(raw.get("models"), list):
        raise CatalogError(f"{p}: expected a mapping with a 'models' list")
    models = tuple(_parse_entry(i, m) for i, m in enumerate(raw["models"]))
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise CatalogError(f"{p}: 'defaults' must map provider -> model name")
    return Catalog(models=models, defaults=dict(defaults), as_of=str(raw.get("as_of") or ""))
