"""The model catalog: lookups, end-of-life, epochs and cost, and refusing a malformed file."""

from __future__ import annotations

import datetime as dt

import pytest

from tuneloop.catalog import CatalogError, auto_epochs, load_catalog
from tuneloop.formats import FORMAT_PROVIDERS, Limits

TODAY = dt.date(2026, 11, 23)


def test_every_format_has_a_default_model_with_limits():
    cat = load_catalog()
    for fmt, provider in FORMAT_PROVIDERS.items():
        info = cat.model(provider)
        assert info.provider == provider and info.tunable, fmt
        assert Limits.from_model(info).min_examples >= 1


def test_lookup_and_retirement_as_of_today():
    cat = load_catalog()
    haiku = cat.model("claude", "anthropic.claude-3-haiku-20240307-v1:0")
    assert haiku.end_of_life == dt.date(2026, 9, 10) and haiku.platform == "bedrock"
    assert haiku.is_retired(TODAY) and not haiku.is_retired(dt.date(2026, 9, 10))  # last day still usable
    assert not cat.model("openai", "gpt-4.1-mini-2025-04-14").is_retired(TODAY)
    assert cat.model("gemini", "gemini-2.5-flash").is_retired(TODAY)
    assert not cat.model("gemini", "gemini-3.5-flash").is_retired(TODAY)
    sonnet = cat.model("claude", "claude-sonnet-4-5")
    assert sonnet.kind == "few-shot" and not sonnet.tunable
    assert cat.model("openai", "gpt-3.5-turbo-0125").tokenizer == "cl100k_base"


def test_local_providers_match_any_model_name_and_cost_nothing():
    cat = load_catalog()
    lora = cat.model("oss-lora", "Qwen/Qwen2.5-0.5B-Instruct")
    assert lora.name == "Qwen/Qwen2.5-0.5B-Instruct" and lora.training_cost_usd(10**9, 3) == 0.0
    assert cat.model("sklearn").name == "tfidf-linearsvc"


def test_unknown_model_error_lists_the_known_ones():
    with pytest.raises(CatalogError, match=r"model='gpt-5-turbo'.*known: gpt-4\.1-2025-04-14, gpt-4\.1-mini"):
        load_catalog().model("openai", "gpt-5-turbo")
    with pytest.raises(CatalogError, match="provider='mistral' has no models in the catalog; it lists claude, gemini, openai"):
        load_catalog().model("mistral", "x")


def test_epochs_and_cost():
    assert [auto_epochs(n) for n in (1, 10, 34, 1000, 8334, 20000, 10**6)] == [25, 10, 3, 3, 2, 1, 1]
    info = load_catalog().model("openai", "gpt-4.1-mini-2025-04-14")
    assert info.epochs_for(1000) == 3 and info.epochs_for(1000, epochs=5) == 5
    assert info.training_cost_usd(2_000_000, 3) == pytest.approx(30.0)  # $5 / 1M x 2M tokens x 3 epochs
    assert load_catalog().model("gemini", "gemini-3.5-flash").training_cost_usd(10**6, 3) is None  # unpriced
    with pytest.raises(ValueError, match="epochs=0 must be a positive integer"):
        info.epochs_for(10, epochs=0)


def test_a_malformed_catalog_is_refused_naming_the_field(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "models:\n"
        "  - {provider: openai, name: m1, platform: openai, kind: fine-tune, tunable: true, price: 3}\n"
    )
    with pytest.raises(CatalogError, match=r"models\[0\]\.price: unknown key"):
        load_catalog(path)
    path.write_text(
        "models:\n"
        "  - {provider: openai, name: m1, platform: openai, kind: fine-tune, tunable: true,\n"
        "     max_tokens_per_example: -5}\n"
    )
    with pytest.raises(CatalogError, match="openai/m1: max_tokens_per_example=-5 must be a positive integer"):
        load_catalog(path)
    path.write_text(
        "defaults: {openai: m2}\n"
        "models:\n"
        "  - {provider: openai, name: m1, platform: openai, kind: fine-tune, tunable: true, end_of_life: 2026-1-5}\n"
    )
    with pytest.raises(CatalogError, match=r"end_of_life: '2026-1-5' is not a YYYY-MM-DD date"):
        load_catalog(path)
