"""The layering the design promises: compiling imports no heavy library; the engine never imports kfp."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from tests.conftest import ROOT

# kfp itself imports the bare ``google.cloud`` namespace package; the client libraries are what count.
HEAVY = (
    "numpy", "sklearn", "duckdb", "torch", "openai", "anthropic", "transformers", "peft", "pyspiel", "boto3", "matplotlib",
    "google.cloud.bigquery", "google.cloud.storage", "google.cloud.aiplatform", "google.genai",
)


def test_compiling_every_pipeline_imports_no_heavy_library():
    code = (
        "import sys, json, tempfile\n"
        "from kfp import compiler\n"
        "from tuneloop.pipelines import PIPELINES\n"
        "d = tempfile.mkdtemp()\n"
        "for n, p in PIPELINES.items(): compiler.Compiler().compile(p, f'{d}/{n}.yaml')\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == [], f"compiling imported {heavy}"


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield node, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node, [node.module]


def test_engine_never_imports_kfp():
    bad = [
        f"{p.relative_to(ROOT)}:{node.lineno}"
        for p in (ROOT / "tuneloop").rglob("*.py")
        for node, names in _imports(p)
        if any(n == "kfp" or n.startswith("kfp.") for n in names)
    ]
    assert bad == []


def test_components_and_pipelines_import_only_stdlib_kfp_and_tuneloop_at_top_level():
    allowed = set(sys.stdlib_module_names) | {"kfp", "tuneloop"}
    bad = []
    for folder in ("components", "pipelines"):
        for p in (ROOT / folder).glob("*.py"):
            for node in ast.parse(p.read_text()).body:
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                bad += [f"{p.name}: {n}" for n in names if n.split(".")[0] not in allowed]
    assert bad == []
