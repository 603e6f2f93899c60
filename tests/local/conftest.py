"""Fixtures for kfp.local runs: a small demo warehouse and a helper that runs a pipeline quietly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def loop_env(tmp_path):
    """A fresh warehouse (400 support messages) plus dataset root, registry and reports dirs."""
    from tuneloop import demo_data

    warehouse = tmp_path / "wh.duckdb"
    demo_data.build_demo_warehouse(str(warehouse), n_initial=400, seed=7, table="interactions")
    return {
        "warehouse": warehouse,
        "params": {
            "warehouse_uri": f"duckdb:///{warehouse}",
            "dataset_root": str(tmp_path / "datasets"),
            "registry_uri": str(tmp_path / "registry"),
            "reports_uri": str(tmp_path / "reports"),
            "min_new_examples": 100,
        },
        "root": tmp_path / "runs",
        "reports": tmp_path / "reports",
    }


def run(name: str, params: dict, root: Path) -> Path:
    from tuneloop.pipelines.local_runner import run_local

    return run_local(name, params, pipeline_root=root, quiet=True)


def summaries(reports: Path) -> list[dict]:
    paths = sorted(reports.glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    return [json.loads(p.read_text()) for p in paths]
