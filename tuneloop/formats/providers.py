"""Which training format each tuneloop provider uploads, and whose catalog limits each format obeys.

Derived from the providers' own declarations (``Provider.format``, ``catalog_name()``) through the
provider registry, so a new or plug-in provider appears here without an edit. :mod:`tuneloop.formats`
exposes these names without importing the provider layer until they are used. A test pins
``FORMAT_PROVIDERS[name]`` to each format class's own ``provider``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _names() -> list[str]:
    """Provider and family names in the order of the formats they upload (the format-less ones last),
    then the members of each family."""
    from tuneloop.formats.registry import FORMAT_NAMES
    from tuneloop.providers import registry

    names = registry.provider_names()
    top = [*registry.families(), *(n for n in names if registry.provider_class(n).family is None)]
    rank = {fmt: i for i, fmt in enumerate(FORMAT_NAMES)}
    top.sort(key=lambda n: (rank.get(registry.format_of(n) or "", len(rank)), n))
    return [*top, *(n for n in names if n not in top)]


def provider_formats() -> dict[str, str | None]:
    """tuneloop provider (and family) name -> the training format it uploads (None: reads canonical
    examples directly)."""
    from tuneloop.providers import registry

    return {name: registry.format_of(name) for name in _names()}


def format_providers() -> dict[str, str]:
    """format -> the catalog provider whose limits and prices apply (the first provider that uploads it)."""
    from tuneloop.providers import registry

    found: dict[str, str] = {}
    for name in registry.provider_names():
        cls = registry.provider_class(name)
        if cls.format:
            found.setdefault(cls.format, cls.catalog_name())
    return found


def format_for_provider(provider: str) -> str | None:
    """The training format a provider uploads (openai->openai, gemini->gemini, claude->bedrock,
    oss-lora->hf, sklearn->None: it reads canonical examples); any spelling the registry accepts."""
    from tuneloop.providers import registry

    try:
        return registry.format_of(provider)
    except registry.ProviderNotFound as exc:
        raise ValueError(f"provider={provider!r} is not one of {', '.join(_names())}") from exc


def __getattr__(name: str) -> Any:
    # Mappings computed on use: the registry may gain entry-point providers after import.
    if name == "PROVIDER_FORMATS":
        return provider_formats()
    if name == "FORMAT_PROVIDERS":
        return format_providers()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


PROVIDER_FORMATS: Mapping[str, str | None]
FORMAT_PROVIDERS: Mapping[str, str]
