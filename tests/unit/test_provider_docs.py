"""The provider docs name only hyperparameters that exist (the tables stay true as configs change)."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from tuneloop.config import describe
from tuneloop.providers import registry

SECTIONS = {  # docs/providers.md section heading prefix -> provider
    "## sklearn": "sklearn",
    "## openai": "openai",
    "## gemini": "gemini",
    "## claude-bedrock": "claude-bedrock",
    "## claude-few-shot": "claude-few-shot",
}


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"(?m)^(?=## )", text)
    return {p.splitlines()[0]: p for p in parts if p.startswith("## ")}


def test_every_documented_key_is_a_setting_of_that_provider():
    sections = _sections((ROOT / "docs" / "providers.md").read_text())
    for prefix, provider in SECTIONS.items():
        [body] = [b for h, b in sections.items() if h.startswith(prefix)]
        keys = set(re.findall(r"^\s*\| `([a-z_]+)` \|", body, re.M))
        valid = {f["name"] for f in describe(registry.provider_class(provider).config_class)}
        assert keys, f"{prefix}: no hyperparameter table"
        assert keys <= valid, f"{prefix} documents {sorted(keys - valid)}, not settings of {provider}"
