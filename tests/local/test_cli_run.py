"""``tuneloop run`` as a person reads it: a line per task, the summary and its path, and on failure the
failed task's own error as the last lines (real pipelines under kfp.local, through the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuneloop.cli import app


def _run(*args, cwd: Path):
    import os

    old = os.getcwd()
    os.chdir(cwd)  # kfp.local tasks run in the current directory
    try:
        result = CliRunner().invoke(app, ["run", *map(str, args)])
    finally:
        os.chdir(old)
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code, lines, result.output


def _params(loop_env, **over) -> list[str]:
    params = {**loop_env["params"], **over}
    return [x for k, v in params.items() for x in ("-p", f"{k}={json.dumps(v) if not isinstance(v, str) else v}")]


def test_a_run_prints_its_tasks_then_the_summary_table_and_its_path(loop_env, tmp_path):
    code, lines, output = _run("continuous-tuning", *_params(loop_env), "--pipeline-root", tmp_path / "runs",
                               cwd=tmp_path)
    assert code == 0, output
    for task in ("check-config", "extract-examples", "prepare-dataset", "claim-tuning", "tune-model",
                 "evaluate-model", "promote-model"):
        assert f"  started  {task}" in lines and any(line.startswith(f"  done     {task}  ") for line in lines), task
    assert "[KFP Executor" not in output and "Executing task" not in output  # the logs are in the log file
    assert len(lines) < 50
    assert any("decision" in line and "BLESSED" in line for line in lines)
    assert any("macro_f1  candidate | champion" in line for line in lines)
    assert lines[-1].startswith("summary: ")
    summary = json.loads(Path(lines[-1].removeprefix("summary: ")).read_text())
    assert summary["promoted_version"] == "v1"


def test_a_missing_warehouse_table_ends_with_the_cause_and_its_fix(loop_env, tmp_path):
    code, lines, output = _run("continuous-tuning", *_params(loop_env, table="no_such_table"),
                               "--pipeline-root", tmp_path / "runs", cwd=tmp_path)
    assert code == 1
    assert "Traceback" not in output
    assert lines[-2] == "task extract-examples failed after " + lines[-2].split(" after ")[1]
    assert lines[-1].startswith("  WarehouseError: table='no_such_table' does not exist")
    assert "load data first: tuneloop load FILE" in lines[-1]
    assert any(line.startswith("  FAILED   extract-examples") for line in lines)
    log = next(line for line in lines if line.startswith("full log: ")).split()[2]
    assert "Traceback (most recent call last)" in Path(log).read_text()  # the whole story is kept


def test_a_bad_provider_fails_the_first_task_and_says_which_ones_exist(loop_env, tmp_path):
    code, lines, output = _run("continuous-tuning", *_params(loop_env, provider="sklarn"),
                               "--pipeline-root", tmp_path / "runs", cwd=tmp_path)
    assert code == 1 and "Traceback" not in output
    assert lines[-1].startswith("  ConfigError: provider='sklarn' is not a known provider (did you mean 'sklearn'?)")


def test_verbose_shows_the_kfp_logs_and_still_ends_with_the_cause(loop_env, tmp_path):
    export = {k: loop_env["params"][k] for k in ("warehouse_uri", "dataset_root")}
    code, lines, output = _run("export-dataset", "-p", f"warehouse_uri={export['warehouse_uri']}",
                               "-p", f"dataset_root={export['dataset_root']}", "-p", "table=missing", "--verbose",
                               "--pipeline-root", tmp_path / "runs", cwd=tmp_path)
    assert code == 1
    assert "Executing task" in output and "[KFP Executor" in output and "Traceback" in output
    assert lines[-1].startswith("  WarehouseError: table='missing' does not exist")


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "warehouse=duckdb:///x.duckdb"],
         "has no parameter 'warehouse' (did you mean 'warehouse_uri'?); its parameters are ['base_model', "),
        (["-p", "warehouse_uri=duckdb:///x.duckdb"], "needs -p dataset_root=..."),
        (["-p", "warehouse_uri=w", "-p", "dataset_root=d", "-p", "min_new_examples=many"],
         "min_new_examples takes an integer"),
        (["-p", "warehouse_uri=w", "-p", "dataset_root=d", "-p", "table=a", "-p", "table=b"], "given twice"),
    ],
)
def test_bad_parameters_are_refused_before_anything_runs(tmp_path, args, message):
    code, lines, output = _run("export-dataset", *args, "--pipeline-root", tmp_path / "runs", cwd=tmp_path)
    assert code == 2 and message in output, output
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_an_unknown_pipeline_names_the_closest(tmp_path):
    code, lines, output = _run("export-datset", cwd=tmp_path)
    assert code == 2 and "did you mean 'export-dataset'" in output
