"""Golden tests: the committed compile/*.yaml is what the pipelines compile to today."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT

NAMES = ["continuous-tuning", "export-dataset", "label-examples", "select-model", "selfplay-training", "tune-and-promote"]


def _normalise(text: str) -> dict:
    """Drop what legitimately varies between kfp releases and builds: sdkVersion, command, image."""
    doc = yaml.safe_load(text)

    def walk(node):
        if isinstance(node, dict):
            return {
                k: ("<normalised>" if k in ("sdkVersion", "command", "image") else walk(v))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(doc)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    subprocess.run(
        [sys.executable, "-m", "compile", "--out", str(out)], cwd=ROOT, check=True, capture_output=True
    )
    return out


@pytest.mark.parametrize("name", NAMES)
def test_committed_yaml_matches_the_pipelines(fresh, name):
    actual = (fresh / f"{name}.yaml").read_text()
    committed = (ROOT / "compile" / f"{name}.yaml").read_text()
    assert _normalise(actual) == _normalise(committed), (
        f"compile/{name}.yaml is stale; run `make compile`. Fresh YAML:\n{actual}"
    )


@pytest.fixture(scope="module")
def again(tmp_path_factory):
    """A second compile of every pipeline, in another process with another hash seed (KFP's names of nested
    components once depended on it)."""
    out = tmp_path_factory.mktemp("compiled-again")
    subprocess.run([sys.executable, "-m", "compile", "--out", str(out)], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "PYTHONHASHSEED": "12345"})
    return out


@pytest.mark.parametrize("name", NAMES)
def test_compiling_is_deterministic(fresh, again, name):
    assert (again / f"{name}.yaml").read_text() == (fresh / f"{name}.yaml").read_text()


SECRET_PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_-]{16,}"),  # OpenAI keys
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key ids
    re.compile(r"AIza[0-9A-Za-z_-]{30,}"),  # Google API keys
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?i)(api[_-]?key|secret|password|token)\s*:\s*['\"]?[A-Za-z0-9/+_-]{12,}"),
]


@pytest.mark.parametrize("name", NAMES)
def test_compiled_yaml_has_no_secrets_or_secret_parameters(name):
    text = (ROOT / "compile" / f"{name}.yaml").read_text()
    for pattern in SECRET_PATTERNS:
        assert not pattern.search(text), f"{name}.yaml matches secret pattern {pattern.pattern}"
    params = yaml.safe_load(text)["root"]["inputDefinitions"].get("parameters", {})
    for param in params:
        assert not re.search(r"(?i)key|secret|password|token|credential", param), (
            f"{name}: parameter {param!r} looks like a credential; read credentials at run time instead"
        )


def test_compiled_yaml_has_component_docstrings():
    doc = yaml.safe_load((ROOT / "compile" / "continuous-tuning.yaml").read_text())
    assert "Keep a model improving" in doc["pipelineInfo"]["description"]
