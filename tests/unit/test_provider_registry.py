"""The provider registry: every list of providers is derived from the providers' own declarations."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys

import pytest

from tests.conftest import ROOT
from tuneloop.catalog import load_catalog
from tuneloop.providers import registry
from tuneloop.providers.base import Provider
from tuneloop.providers.sklearn import SklearnProvider

BUILT_IN = {"sklearn", "oss-lora", "openai", "gemini", "claude-few-shot", "claude-bedrock"}


def test_the_built_in_providers_declare_themselves():
    classes = registry.provider_classes()
    assert BUILT_IN <= set(classes)
    declared = {n: (c.format, c.hosted, c.extra, c.image) for n, c in classes.items() if n in BUILT_IN}
    assert declared == {
        "sklearn": (None, False, None, "cpu"),
        "oss-lora": ("hf", False, "lora", "gpu"),
        "openai": ("openai", True, "openai", "cpu"),
        "gemini": ("gemini", True, "gemini", "cpu"),
        "claude-few-shot": (None, True, "claude", "cpu"),
        "claude-bedrock": ("bedrock", True, "claude", "cpu"),
    }
    assert {"claude", "openai", "gemini"} <= set(registry.hosted_names()) and "sklearn" not in registry.hosted_names()
    assert set(classes["sklearn"].tasks) == {"classification"}
    assert all("chat" in classes[n].tasks for n in ("openai", "gemini", "claude-few-shot", "oss-lora"))


def test_names_are_canonicalised_and_families_resolve_by_method():
    assert registry.canonical_name(" SKLearn ") == "sklearn"
    assert registry.canonical_name("OSS_LoRA") == "oss-lora"
    assert registry.canonical_name("OpenAI") == "openai"
    assert registry.canonical_name("claude") == "claude-few-shot"  # the family's default method
    cls, hp = registry.resolve("Claude", {"method": "bedrock", "epoch_count": 3})
    assert cls.name == "claude-bedrock" and hp == {"epoch_count": 3}  # method chose the member
    with pytest.raises(registry.ProviderNotFound, match=r"method='sft' is not a method of the claude provider"):
        registry.resolve("claude", {"method": "sft"})


def test_unknown_provider_lists_the_known_ones_and_the_closest():
    with pytest.raises(ValueError, match=r"provider='xgboost' is not a known provider; use one of \['claude'"):
        registry.get_provider("xgboost")
    with pytest.raises(ValueError, match=r"did you mean 'gemini'\?"):
        registry.get_provider("gemnii")


def test_get_provider_builds_sklearn_with_options(tmp_path):
    provider = registry.get_provider("sklearn", output_dir=str(tmp_path))
    assert isinstance(provider, SklearnProvider) and provider.output_dir == str(tmp_path)
    with pytest.raises(ValueError, match="output_dir"):
        registry.get_provider("sklearn", outdir=str(tmp_path))


def test_formats_follow_the_declarations():
    assert registry.format_of("openai") == "openai" and registry.format_of("oss-lora") == "hf"
    assert registry.format_of("sklearn") is None and registry.format_of("claude-few-shot") is None
    assert registry.formats_of("claude") == ["bedrock"]  # a family renders what any member needs


def test_every_catalog_provider_is_a_registered_provider_or_family():
    known = set(registry.spellings())
    assert {m.provider for m in load_catalog().models} <= known
    for cls in registry.provider_classes().values():
        if cls.hosted:  # a hosted provider's base models are in the catalog under its catalog name
            assert load_catalog().names(cls.catalog_name()), cls.name


def test_a_badly_declared_provider_is_refused_with_the_reason():
    class Broken(SklearnProvider):
        name = "Broken Name"
        image = "tpu"

    with pytest.raises(TypeError, match=r"name='Broken Name' must be a non-empty lower-case name; image='tpu'"):
        registry._check_declaration(Broken, "tests.Broken")


def test_finding_the_providers_imports_no_sdk():
    code = (
        "import sys, json\n"
        "from tuneloop.providers import registry\n"
        "registry.provider_classes()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    import json
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    heavy = ("torch", "transformers", "openai", "anthropic", "boto3", "google.genai", "sklearn", "peft")
    assert [m for m in loaded if m.split(".")[0] in heavy or m.startswith("google.genai")] == []


def _module_graph() -> dict[str, set[str]]:
    """``{module: modules of tuneloop it imports at its top level}`` (imports inside functions are lazy)."""
    graph: dict[str, set[str]] = {}
    for path in (ROOT / "tuneloop").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
        name = ".".join(parts)
        deps: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("tuneloop")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tuneloop"):
                deps.add(node.module)
                deps |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    def parents(module: str) -> set[str]:  # importing a.b.c runs a/__init__ and a/b/__init__ first
        bits = module.split(".")
        return {".".join(bits[:i]) for i in range(1, len(bits))} & set(graph)

    edges = {m: (deps | set().union(*(parents(d) for d in deps))) - {m} - parents(m) for m, deps in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_cycles_in_the_engine():
    assert _cycles({"a": set(), "a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}}) == [["a.x", "a.y", "a.z", "a.x"]]
    assert _cycles({"p": {"p.base"}, "p.base": set(), "p.impl": {"p.base"}}) == []
    cycles = _cycles(_module_graph())
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_every_provider_module_is_importable_on_its_own():
    import tuneloop.providers as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"tuneloop.providers.{info.name}")
    assert issubclass(registry.provider_class("openai"), Provider)
