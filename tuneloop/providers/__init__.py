"""The provider registry: names, and lazy construction of the tuner behind each name.

Each provider lives in its own module (``tuneloop.providers.<module>``) and is imported only when it
is asked for, so picking ``sklearn`` never imports torch or a cloud SDK. A provider module defines one
:class:`~tuneloop.providers.base.Provider` subclass whose ``name`` is the provider name.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Any

from tuneloop.providers.base import Provider

PROVIDER_NAMES = ("sklearn", "oss-lora", "openai", "gemini", "claude")
# Providers whose model lives at the provider and whose tuning is a paid remote job.
HOSTED_PROVIDERS = ("openai", "gemini", "claude")

# provider name -> (module, the pip extra that brings its dependencies; None = core install)
_MODULES: dict[str, tuple[str, str | None]] = {
    "sklearn": ("tuneloop.providers.sklearn", None),
    "oss-lora": ("tuneloop.providers.oss_lora", "lora"),
    "openai": ("tuneloop.providers.openai", "openai"),
    "gemini": ("tuneloop.providers.gemini", "gemini"),
    "claude": ("tuneloop.providers.claude", "claude"),
}


def check_provider_name(name: str) -> str:
    """Validate a provider name (the pipeline's first task); returns the canonical spelling.

    Case, surrounding spaces and ``_`` for ``-`` are forgiven (``OSS_LoRA`` -> ``oss-lora``).

    Raises:
        ValueError: the name is not one of :data:`PROVIDER_NAMES`.
    """
    canonical = name.strip().lower().replace("_", "-") if isinstance(name, str) else name
    if canonical not in PROVIDER_NAMES:
        raise ValueError(f"provider {name!r} is not one of {list(PROVIDER_NAMES)}")
    return canonical


def _provider_class(name: str) -> type[Provider]:
    module_name, extra = _MODULES[name]
    install = f"pip install 'tuneloop[{extra}]'" if extra else "reinstall tuneloop"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ValueError(
                f"provider {name!r} is not available in this build ({module_name} is not installed); "
                f"install a tuneloop release that ships it ({install}), or pick one of "
                f"{available_providers()}"
            ) from exc
        raise ValueError(
            f"provider {name!r} needs the package {exc.name!r}, which is not installed; {install}"
        ) from exc
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if issubclass(obj, Provider) and obj is not Provider and getattr(obj, "name", None) == name:
            return obj
    raise ValueError(f"{module_name} defines no Provider subclass with name {name!r}; this build is broken")


def available_providers() -> list[str]:
    """The provider names whose module is present in this build (their extras may still be missing)."""
    out = []
    for name in PROVIDER_NAMES:
        if importlib.util.find_spec(_MODULES[name][0]) is not None:
            out.append(name)
    return out


def get_provider(name: str, **options: Any) -> Provider:
    """Construct the provider called ``name`` with its options (imported on first use).

    Args:
        name: one of :data:`PROVIDER_NAMES`.
        **options: passed to the provider's constructor (e.g. ``output_dir`` for ``sklearn``).

    Raises:
        ValueError: unknown name, a provider not in this build, a missing extra, or bad options.
    """
    canonical = check_provider_name(name)
    cls = _provider_class(canonical)
    try:
        return cls(**options)
    except TypeError as exc:
        params = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
        raise ValueError(
            f"provider {canonical!r}: bad options {sorted(options)} ({exc}); it takes {params}"
        ) from exc
