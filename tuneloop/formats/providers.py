"""Which training format each tuneloop provider uploads, and whose catalog limits each format obeys.

The one place these tables live (the provider layer will derive them from its declarations and
replace this module). :mod:`tuneloop.formats` exposes them without importing this module until
they are used. A test pins ``FORMAT_PROVIDERS[name]`` to each format class's own ``provider``.
"""

from __future__ import annotations

from collections.abc import Mapping

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


def format_for_provider(provider: str) -> str | None:
    """The training format a provider uploads: openai->openai, gemini->gemini, claude->bedrock,
    oss-lora->hf, sklearn->None (it reads canonical examples)."""
    if provider not in PROVIDER_FORMATS:
        raise ValueError(f"provider={provider!r} is not one of {', '.join(PROVIDER_FORMATS)}")
    return PROVIDER_FORMATS[provider]
