"""The champion in the application: load the registry's champion and answer with it, whatever the provider.

::

    from tuneloop.serving import Champion

    model = Champion("gs://my-bucket/registry", "support-intent")    # or a directory, or vertex://...
    [p] = model.predict(["where is my refund?"])
    p.label, p.confidence, p.top          # 'refund', 0.83, (('refund', 0.83), ('billing', 0.11), ...)
    intent, confidence, top = p.as_tuple()

    bot = Champion("gs://my-bucket/registry", "impostor-agent")
    reply = bot.chat([{"role": "system", "content": "..."}, {"role": "user", "content": "hi all"}])

A long-running service keeps one object. Every ``check_interval_s`` (default 30 s) a call first reads
the champion alias (``aliases.json`` on the file/GCS registry, one ``models.get`` of ``@champion`` on
Vertex) and only when it names another version loads that version, so a promotion or a rollback is
followed without a restart; a check that fails keeps the loaded model and tries again later.

What each provider answers:

=========================  =====================================================  ==================
provider (model)           ``predict(texts)``                                     ``chat(messages)``
=========================  =====================================================  ==================
sklearn                    label, calibrated probability, top-k labels            refused (a classifier)
oss-lora classification    label, softmax probability, top-k labels               refused (a classifier)
oss-lora causal LM         the generated answer as label; no probabilities        the generated reply
openai / gemini / claude   the model's answer as label; no probabilities (the    the model's reply
                           hosted APIs give no calibrated class scores)
=========================  =====================================================  ==================

Without probabilities, ``confidence`` is None and ``top`` is empty: do not read a missing number as
certainty. Predictions go through the provider's own ``predict`` (``tuneloop.providers.get_provider``),
the path the evaluator uses, so the application sees what was judged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneloop.examples import Example, make_example

_log = logging.getLogger(__name__)
CLASSIFIER = "classifier"
CHAT = "chat"
DEFAULT_CHECK_INTERVAL_S = 30.0


class NoChampion(LookupError):
    """The registry has no champion yet (nothing was promoted)."""


@dataclass(frozen=True)
class Prediction:
    """One answer.

    Attributes:
        label: The predicted label (a classifier), or the model's answer text.
        confidence: The probability of ``label`` (None when the provider gives no probabilities).
        top: The ``top_k`` most probable ``(label, probability)`` pairs, best first (empty without probabilities).
        version: The registry version that answered.
    """

    label: str
    confidence: float | None
    top: tuple[tuple[str, float], ...]
    version: str

    def as_tuple(self) -> tuple[str, float | None, list[tuple[str, float]]]:
        """``(intent, confidence, top intents)``, the shape a support router expects."""
        return self.label, self.confidence, list(self.top)


@dataclass(frozen=True)
class ChampionInfo:
    """What an application's configuration needs about the champion (``tuneloop registry champion``)."""

    model_name: str
    version: str
    provider: str
    kind: str
    model_ref: str
    model_uri: str | None
    endpoint: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    created_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name, "version": self.version, "provider": self.provider, "kind": self.kind,
            "model_id": self.model_ref, "artifact_uri": self.model_uri, "endpoint": self.endpoint,
            "metrics": dict(self.metrics), "created_at": self.created_at,
        }


def kind_of(record, model_ref: str | None = None) -> str:
    """``classifier`` or ``chat`` for a registered version (oss-lora: from its model folder's manifest).

    ``model_ref`` is the local folder when already mirrored; otherwise only the manifest file is read
    from the version's ``model_uri`` (not the weights).
    """
    if record.provider == "sklearn":
        return CLASSIFIER
    if record.provider != "oss-lora":
        return CHAT
    from tuneloop import storage
    from tuneloop.providers.oss_lora import checkpoint as ckpt

    manifest: Mapping[str, Any] | None = None
    if model_ref:
        manifest = ckpt.read_manifest(model_ref)
    elif record.model_uri:
        manifest, _ = storage.read_json(storage.join(record.model_uri, ckpt.MANIFEST))
    task = (manifest or {}).get("task")
    return CLASSIFIER if task == "sequence-classification" else CHAT


def champion_info(registry_uri: str, model_name: str) -> ChampionInfo:
    """The champion's version, provider, model id, artifact URI and endpoint (if one serves it).

    Raises:
        NoChampion: nothing was promoted yet.
    """
    from tuneloop.registry import open_registry

    registry = open_registry(registry_uri, model_name)
    record = registry.champion()
    if record is None:
        raise NoChampion(f"{model_name}: no champion in {registry_uri} yet; promote a version first")
    endpoint = None
    try:
        from tuneloop.deploy import deployment_of

        deployment = deployment_of(registry_uri, model_name)
        if deployment and deployment.get("version") == record.version:
            endpoint = deployment.get("endpoint")
    except ImportError:  # pragma: no cover - deploy needs nothing beyond the core to read its record
        pass
    return ChampionInfo(
        model_name=model_name, version=record.version, provider=record.provider, kind=kind_of(record),
        model_ref=record.model_ref if not record.model_uri else record.model_uri, model_uri=record.model_uri,
        endpoint=endpoint, metrics={k: v for k, v in record.metrics.items() if isinstance(v, int | float)},
        created_at=record.created_at,
    )


@dataclass
class _Loaded:
    version: str
    record: Any
    provider: Any
    model_ref: str
    kind: str


class Champion:
    """The current champion of a registry model, ready to answer; follows promotions and rollbacks.

    Args:
        registry_uri: A directory, a ``gs://`` prefix or ``vertex://PROJECT/REGION?artifact_root=...``.
        model_name: The registry model name.
        check_interval_s: How often a call re-reads the champion alias (0: on every call).
        top_k: How many labels ``Prediction.top`` holds.
        provider_options: Options per provider name for ``get_provider`` (e.g.
            ``{"openai": {"base_url": ...}}``); credentials come from the environment or Secret Manager.
        load: Load the champion now (raises :class:`NoChampion` if there is none); False: on first use.
    """

    def __init__(self, registry_uri: str, model_name: str, *, check_interval_s: float = DEFAULT_CHECK_INTERVAL_S,
                 top_k: int = 3, provider_options: Mapping[str, Mapping[str, Any]] | None = None,
                 load: bool = True):
        from tuneloop.registry import open_registry

        if isinstance(check_interval_s, bool) or not isinstance(check_interval_s, int | float) or check_interval_s < 0:
            raise ValueError(f"check_interval_s={check_interval_s!r} must be a number of seconds >= 0")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k={top_k!r} must be an integer >= 1")
        if provider_options is not None and not isinstance(provider_options, Mapping):
            raise ValueError("provider_options must map a provider name to its options, e.g. {'openai': {...}}")
        self.registry_uri, self.model_name = registry_uri, model_name
        self.registry = open_registry(registry_uri, model_name)
        self.check_interval_s = float(check_interval_s)
        self.top_k = top_k
        self.provider_options = {k: dict(v) for k, v in (provider_options or {}).items()}
        self.checks = 0  # alias reads so far
        self.loads = 0  # versions loaded so far
        self._loaded: _Loaded | None = None
        self._last_check = float("-inf")
        self._lock = threading.Lock()
        if load:
            self.refresh(force=True)

    # -- following the alias ---------------------------------------------------------------------------
    @property
    def version(self) -> str | None:
        """The version answering now (None before the first load)."""
        return self._loaded.version if self._loaded else None

    @property
    def kind(self) -> str:
        """``classifier`` or ``chat``."""
        return self._current().kind

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the champion alias (if ``check_interval_s`` has passed, or ``force``); load a new one.

        Returns:
            True when another version was loaded.

        Raises:
            NoChampion: there is no champion and nothing is loaded yet.
        """
        now = time.monotonic()
        if not force and now - self._last_check < self.check_interval_s:
            return False
        with self._lock:
            if not force and now - self._last_check < self.check_interval_s:
                return False  # another thread checked meanwhile
            self._last_check = now
            try:
                name = self._champion_version()
            except Exception:
                if self._loaded is None:
                    raise
                return False  # the registry is unreachable: keep answering with what is loaded
            self.checks += 1
            if name is None:
                if self._loaded is None:
                    raise NoChampion(f"{self.model_name}: no champion in {self.registry_uri} yet; promote a version")
                return False
            if self._loaded is not None and self._loaded.version == name:
                return False
            self._loaded = self._load(name)
            self.loads += 1
            return True

    def _champion_version(self) -> str | None:
        reader = getattr(self.registry, "champion_version", None)
        if callable(reader):
            return reader()
        record = self.registry.champion()
        return None if record is None else record.version

    def _load(self, version: str) -> _Loaded:
        from tuneloop.providers import get_provider
        from tuneloop.registry import model_ref_of

        record = self.registry.get(version)
        model_ref = model_ref_of(record)
        options = dict(self.provider_options.get(record.provider, {}))
        try:
            provider = get_provider(record.provider, **{"log": _log.info, **options})
        except ValueError:  # a provider without a log option (sklearn)
            provider = get_provider(record.provider, **options)
        return _Loaded(version=record.version, record=record, provider=provider, model_ref=model_ref,
                       kind=kind_of(record, model_ref))

    def _current(self) -> _Loaded:
        self.refresh()
        if self._loaded is None:
            self.refresh(force=True)
        assert self._loaded is not None
        return self._loaded

    # -- answering ---------------------------------------------------------------------------------------
    def predict(self, texts: str | Sequence[str]) -> list[Prediction]:
        """Classify (or answer) each text with the champion.

        Args:
            texts: One text or a list of texts (the user's messages).

        Returns:
            One :class:`Prediction` per text, in order.

        Raises:
            ValueError: an empty or non-string text, named by its index.
        """
        items = [texts] if isinstance(texts, str) else list(texts)
        examples = []
        for i, t in enumerate(items):
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"texts[{i}]={t!r} must be a non-empty string")
            examples.append(make_example([{"role": "user", "content": t}]))
        if not examples:
            return []
        current = self._current()
        proba = getattr(current.provider, "predict_proba", None)
        if current.kind == CLASSIFIER and callable(proba):
            out = []
            for dist in proba(current.model_ref, examples):
                ranked = sorted(dist.items(), key=lambda kv: (-kv[1], kv[0]))
                out.append(Prediction(label=ranked[0][0], confidence=ranked[0][1],
                                      top=tuple(ranked[: self.top_k]), version=current.version))
            return out
        answers = current.provider.predict(current.model_ref, examples)
        return [Prediction(label=a, confidence=None, top=(), version=current.version) for a in answers]

    def chat(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The champion's reply to a conversation (``[{role, content}]``, system / user / assistant turns).

        Raises:
            ValueError: malformed turns (named), or a classifier champion (use :meth:`predict`).
        """
        turns = [dict(m) for m in messages] if isinstance(messages, Sequence) and not isinstance(messages, str) else None
        if not turns:
            raise ValueError("messages must be a non-empty list of {role, content} turns")
        example: Example = make_example(turns)
        current = self._current()
        if current.kind == CLASSIFIER:
            raise ValueError(
                f"{self.model_name} {current.version} is a {current.record.provider} classifier; it has no chat: "
                "use predict(texts)"
            )
        [reply] = current.provider.predict(current.model_ref, [example])
        return reply

    def info(self) -> ChampionInfo:
        """What is answering now, as ``tuneloop registry champion`` prints it."""
        current = self._current()
        r = current.record
        return ChampionInfo(
            model_name=self.model_name, version=r.version, provider=r.provider, kind=current.kind,
            model_ref=r.model_uri or r.model_ref, model_uri=r.model_uri,
            metrics={k: v for k, v in r.metrics.items() if isinstance(v, int | float)}, created_at=r.created_at,
        )


__all__ = ["CHAT", "CLASSIFIER", "Champion", "ChampionInfo", "NoChampion", "Prediction", "champion_info", "kind_of"]
