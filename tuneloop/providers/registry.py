"""Who the providers are, derived from their own declarations.

A provider is a :class:`~tuneloop.providers.base.Provider` subclass that declares itself (name, format,
hosted, extra, image, task kinds, config class). The registry finds them in two places:

* every module of the ``tuneloop.providers`` package (a new built-in provider is one new module);
* the ``tuneloop.providers`` entry-point group, so a user's own package adds a tuner without editing
  tuneloop::

      [project.entry-points."tuneloop.providers"]
      my-tuner = "my_package.tuner:MyTuner"

Every list the rest of tuneloop needs (names, hosted names, the format per provider, extras, the
image a provider's tasks run on) is computed here. Provider modules import their SDKs lazily, so
finding the providers imports no torch or cloud SDK.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import pkgutil
from collections.abc import Mapping
from typing import Any

from tuneloop.config import close_match
from tuneloop.providers.base import Provider

ENTRY_POINT_GROUP = "tuneloop.providers"
IMAGES = ("cpu", "gpu")
TASK_KINDS = ("classification", "chat")
# Modules of this package that hold shared machinery, not providers.
_NOT_PROVIDERS = {"base", "registry", "hosted"}


class ProviderNotFound(ValueError):
    """No registered provider has that name; the message lists the names and the closest one."""


def _check_declaration(cls: type[Provider], where: str) -> None:
    problems = []
    if not cls.name or cls.name != cls.name.strip().lower() or " " in cls.name:
        problems.append(f"name={cls.name!r} must be a non-empty lower-case name")
    if cls.image not in IMAGES:
        problems.append(f"image={cls.image!r} must be one of {list(IMAGES)}")
    if not cls.tasks or set(cls.tasks) - set(TASK_KINDS):
        problems.append(f"tasks={cls.tasks!r} must be a non-empty subset of {list(TASK_KINDS)}")
    if not (isinstance(cls.config_class, type) and hasattr(cls.config_class, "__dataclass_fields__")):
        problems.append(f"config_class={cls.config_class!r} must be a dataclass")
    if cls.family and not cls.method:
        problems.append(f"family={cls.family!r} needs a method (the value of hyperparameters.method)")
    if problems:
        raise TypeError(f"provider class {where} declares itself wrongly: " + "; ".join(problems))


def _classes_in(module) -> list[type[Provider]]:
    return [
        obj for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, Provider) and not inspect.isabstract(obj) and obj.name
        and obj.__module__.startswith(module.__name__)
    ]


@functools.cache
def provider_classes() -> dict[str, type[Provider]]:
    """``{name: class}`` of every provider: the package's own modules, then the entry points."""
    import tuneloop.providers as package

    found: dict[str, type[Provider]] = {}

    def add(cls: type[Provider], where: str) -> None:
        _check_declaration(cls, where)
        other = found.get(cls.name)
        if other is not None and other is not cls:
            raise TypeError(
                f"two providers are called {cls.name!r}: {other.__module__}.{other.__qualname__} and {where}; "
                "rename one (the name is what the 'provider' parameter says)"
            )
        found[cls.name] = cls

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name in _NOT_PROVIDERS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for cls in _classes_in(module):
            add(cls, f"{cls.__module__}.{cls.__qualname__}")
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plug-in names itself instead of breaking every provider
            raise TypeError(f"entry point {ep.name!r} = {ep.value!r} of group {ENTRY_POINT_GROUP!r} "
                            f"does not load: {type(exc).__name__}: {exc}") from exc
        classes = _classes_in(obj) if inspect.ismodule(obj) else [obj]
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, Provider)):
                raise TypeError(f"entry point {ep.name!r} = {ep.value!r} is not a tuneloop Provider subclass")
            add(cls, f"entry point {ep.name!r} ({ep.value})")
    return found


def families() -> dict[str, dict[str, type[Provider]]]:
    """``{family: {method: class}}`` for providers that answer to a family name."""
    out: dict[str, dict[str, type[Provider]]] = {}
    for cls in provider_classes().values():
        if cls.family:
            out.setdefault(cls.family, {})[cls.method] = cls
    return out


def provider_names() -> list[str]:
    """Every provider name, sorted."""
    return sorted(provider_classes())


def hosted_names() -> list[str]:
    """Providers whose model lives at the provider (paid remote jobs), with their family names."""
    names = {c.name for c in provider_classes().values() if c.hosted}
    names |= {f for f, members in families().items() if any(c.hosted for c in members.values())}
    return sorted(names)


def spellings() -> list[str]:
    """Every name the ``provider`` parameter accepts: provider names and family names."""
    return sorted(set(provider_names()) | set(families()))


def _normal(name: Any) -> str:
    return name.strip().lower().replace("_", "-") if isinstance(name, str) else name


def provider_class(name: str, hyperparameters: Mapping[str, Any] | None = None) -> type[Provider]:
    """The class behind a provider name, a family name (+ ``hyperparameters.method``) or a spelling of one.

    Case, surrounding spaces and ``_`` for ``-`` are forgiven (``OSS_LoRA`` -> ``oss-lora``).

    Raises:
        ProviderNotFound: no such provider or family (the message lists them and the closest one),
            or a family ``method`` no member has.
    """
    canonical = _normal(name)
    classes = provider_classes()
    if canonical in classes:
        return classes[canonical]
    fams = families()
    if canonical in fams:
        members = fams[canonical]
        method = (hyperparameters or {}).get("method")
        if method is None:
            defaults = [c for c in members.values() if c.family_default] or list(members.values())[:1]
            return defaults[0]
        if method not in members:
            raise ProviderNotFound(
                f"hyperparameters.method={method!r} is not a method of the {canonical} provider; use one of "
                f"{sorted(members)} (or name the provider directly: {sorted(c.name for c in members.values())})"
            )
        return members[method]
    near = close_match(str(name), spellings())
    hint = f" (did you mean {near!r}?)" if near else ""
    raise ProviderNotFound(f"provider={name!r} is not a known provider{hint}; use one of {spellings()}")


def resolve(name: str, hyperparameters: Mapping[str, Any] | None = None) -> tuple[type[Provider], dict[str, Any]]:
    """The provider a name means and the hyperparameters it takes (a family's ``method`` key removed)."""
    cls = provider_class(name, hyperparameters)
    hp = dict(hyperparameters or {})
    if cls.family and _normal(name) == cls.family:
        hp.pop("method", None)
    return cls, hp


def canonical_name(name: str, hyperparameters: Mapping[str, Any] | None = None) -> str:
    """The provider name a spelling means (``OpenAI`` -> ``openai``, ``claude`` -> ``claude-few-shot``)."""
    return provider_class(name, hyperparameters).name


def format_of(name: str) -> str | None:
    """The training format rendered for a provider (a family name: its default member's, else any member's)."""
    canonical = _normal(name)
    if canonical in families():
        members = families()[canonical].values()
        formats = [c.format for c in sorted(members, key=lambda c: not c.family_default) if c.format]
        return formats[0] if formats else None
    return provider_class(name).format


def formats_of(name: str) -> list[str]:
    """Every format a name needs rendered: the provider's, or each member's for a family name."""
    canonical = _normal(name)
    if canonical in families():
        return sorted({c.format for c in families()[canonical].values() if c.format})
    fmt = provider_class(name).format
    return [fmt] if fmt else []


def install_hint(cls: type[Provider]) -> str:
    """How to get a provider's dependencies."""
    return f"pip install 'tuneloop[{cls.extra}]'" if cls.extra else "reinstall tuneloop"


def missing_requirements(cls: type[Provider]) -> list[str]:
    """The modules a provider requires that are not installed here."""
    missing = []
    for module in cls.requires:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def get_provider(name: str, **options: Any) -> Provider:
    """Construct the provider called ``name`` (a family name picks its default member).

    Args:
        name: a provider name (see :func:`provider_names`) or family name.
        **options: passed to the provider's constructor (e.g. ``output_dir``).

    Raises:
        ValueError: unknown name, or bad options (the message lists what the provider takes).
    """
    cls = provider_class(name)
    try:
        return cls(**options)
    except TypeError as exc:
        params = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
        raise ValueError(f"provider {cls.name!r}: bad options {sorted(options)} ({exc}); it takes {params}") from exc


def summary_table() -> str:
    """One line per provider: name, format, hosted, image, task kinds, extra (``tuneloop providers``)."""
    rows = [("provider", "format", "hosted", "image", "tasks", "extra", "answers to")]
    for name, cls in sorted(provider_classes().items()):
        family = f"{cls.family} (method={cls.method}{', default' if cls.family_default else ''})" if cls.family else ""
        rows.append((name, cls.format or "-", "yes" if cls.hosted else "no", cls.image, ",".join(cls.tasks),
                     cls.extra or "-", family))
    return _table(rows)


def settings_table(name: str) -> str:
    """A provider's hyperparameters: key, default, whether it enters the job key, help (``tuneloop providers NAME``)."""
    import json

    from tuneloop.config import describe

    cls = provider_class(name)
    rows = [("key", "default", "job key", "meaning")]
    for f in describe(cls.config_class):
        rows.append((f["name"], json.dumps(f["default"]), "yes" if f["job_key"] else "no", f["help"]))
    head = f"{cls.name}: hyperparameters ({cls.config_class.__name__})"
    if cls.family:
        head += f"; also reached as provider={cls.family!r} with hyperparameters.method={cls.method!r}"
    return head + "\n" + _table(rows)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
