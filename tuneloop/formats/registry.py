"""The format registry: every format's name and class, and :func:`get_format`.

Formats are imported when first asked for (``get_format("hf")`` never imports the OpenAI module).
A format class may define ``for_model(model, catalog, **options)`` to pick settings from the catalog
(OpenAI picks the exact tokenizer of the model); otherwise it is built from ``**options``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from tuneloop.catalog import Catalog
    from tuneloop.formats.base import Format

# format name -> "module:Class"; FORMAT_NAMES is derived from it.
FORMAT_CLASSES: Mapping[str, str] = {
    "openai": "tuneloop.formats.openai:OpenAIFormat",
    "gemini": "tuneloop.formats.gemini:GeminiFormat",
    "bedrock": "tuneloop.formats.bedrock:BedrockFormat",
    "hf": "tuneloop.formats.hf:HFFormat",
}
FORMAT_NAMES = tuple(FORMAT_CLASSES)


def format_class(name: str) -> type[Format]:
    """The class of a format.

    Raises:
        ValueError: unknown format name (the message lists the valid ones).
    """
    if name not in FORMAT_CLASSES:
        raise ValueError(f"format={name!r} is not one of {', '.join(FORMAT_NAMES)}")
    module, _, cls = FORMAT_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def get_format(name: str, *, model: str | None = None, catalog: Catalog | None = None, **options: Any) -> Format:
    """A Format by name.

    Args:
        name: one of FORMAT_NAMES.
        model: the base model, for formats whose settings depend on it (``openai``: its exact tokenizer).
        catalog: the catalog to read those settings from (default: the packaged one).
        **options: format options, e.g. ``template=`` / ``end_token=`` for ``hf``.

    Raises:
        ValueError: unknown format name (the message lists the valid ones).
    """
    cls = format_class(name)
    for_model = getattr(cls, "for_model", None)
    if for_model is not None and model is not None:
        return for_model(model, catalog, **options)
    return cls(**options)


def resolve(
    fmt: str | Format, model: str | None = None, catalog: Catalog | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[Format, Any]:
    """A Format (by name, or as given) and the catalog entry of the model whose limits and price apply.

    Raises:
        ValueError: an unknown format name or model (the messages list the valid ones).
    """
    from tuneloop.catalog import load_catalog
    from tuneloop.formats.base import Format

    cat = catalog or load_catalog()
    if isinstance(fmt, Format):
        f = fmt
    else:
        if fmt not in FORMAT_CLASSES:
            raise ValueError(f"fmt={fmt!r} is not one of {', '.join(FORMAT_NAMES)}")
        f = get_format(fmt, model=model, catalog=cat, **dict(options or {}))
    return f, cat.model(f.provider, model)
