"""What ``tuneloop run`` shows: the failed task's own error, task lines, bars, the summary table."""

from __future__ import annotations

import subprocess
import sys

from tuneloop.runview import RunView, summary_table, task_error


def _traceback_of(code: str) -> list[str]:
    """A real traceback, indented as kfp.local streams a task's output."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1
    return ["    [KFP Executor 2026-01-01 00:00:00,000 INFO]: Got executor_input:", "    {"] + [
        "    " + line for line in out.stderr.splitlines()
    ] + ["    ", ""]


def test_the_error_is_the_last_exception_without_the_module_path():
    lines = _traceback_of(
        "class WarehouseError(RuntimeError): pass\n"
        "def read():\n    raise KeyError('interactions')\n"
        "try:\n    read()\nexcept KeyError as exc:\n"
        "    raise WarehouseError(\"table='interactions' does not exist; load data first:\\n"
        "tuneloop load FILE --table interactions\") from exc\n"
    )
    assert task_error(lines) == (
        "WarehouseError: table='interactions' does not exist; load data first:\n"
        "tuneloop load FILE --table interactions"
    )


def test_a_library_error_gets_its_fix():
    lines = _traceback_of(
        "class DefaultCredentialsError(Exception): pass\n"
        "raise DefaultCredentialsError('Your default credentials were not found.')\n"
    )
    message = task_error(lines)
    assert message.splitlines()[0] == "DefaultCredentialsError: Your default credentials were not found."
    assert "gcloud auth application-default login" in message.splitlines()[-1]


def test_without_a_traceback_the_last_lines_are_shown():
    assert task_error(["    loading 1000 rows", "    Killed", "  "]) == "loading 1000 rows\nKilled"


def test_the_view_prints_a_line_per_task_a_bar_per_quarter_and_the_error_last():
    out: list[str] = []
    view = RunView(out.append)
    view.task_started("train-policy-value-net")
    for step in (1, 10, 26, 27, 51, 100):
        view.task_output("train-policy-value-net", f"    tuneloop-progress train {step}/100 loss=1.5")
    view.task_output("train-policy-value-net", "    some log line")
    view.task_finished("train-policy-value-net", "SUCCESS")
    view.task_started("run-gauntlet")
    view.task_output("run-gauntlet", "    Traceback (most recent call last):")
    view.task_output("run-gauntlet", '      File "x.py", line 1, in <module>')
    view.task_output("run-gauntlet", "    ValueError: games=0 must be >= 1; pass gauntlet_games >= 1")
    view.task_finished("run-gauntlet", "FAILURE")
    assert out[0] == "  started  train-policy-value-net"
    bars = [line for line in out if "[" in line]
    assert [b.split("] ")[1].split()[0] for b in bars] == ["1/100", "26/100", "51/100", "100/100"]
    assert "some log line" not in "\n".join(out)
    assert out[-1].startswith("  FAILED   run-gauntlet  ")
    closing = view.failure_lines("/tmp/run.log")
    assert closing[0].startswith("full log: /tmp/run.log")
    assert closing[-1] == "  ValueError: games=0 must be >= 1; pass gauntlet_games >= 1"


def test_the_summary_table_of_a_skip_and_of_a_selfplay_run():
    skip = {"run": "r1", "provider": "sklearn", "skipped": True, "decision": {"blessed": False, "reason": "skipped: 3 new"},
            "promoted_version": None, "champion_after": "v2"}
    table = summary_table(skip)
    assert "SKIPPED" in table and "skipped: 3 new" in table and "v2" in table
    sp = {"run": "r2", "provider": "selfplay", "gauntlet": {"vs_random": 0.9, "vs_heuristic": 0.65},
          "training_set": {"num_games": 1200, "num_positions": 40000}, "decision": {"blessed": True, "reason": "ok"},
          "promoted_version": "v3", "champion_after": "v3", "champion_evaluated": "v2"}
    table = summary_table(sp)
    assert "gauntlet vs_random" in table and "0.900" in table and "1200/40000" in table and "BLESSED" in table


def test_the_summary_table_of_a_chat_run_shows_reference_metrics_and_empty_replies_not_counts():
    chat = {"run": "r3", "provider": "oss-lora", "task": "chat", "champion_evaluated": "v1",
            "candidate_metrics": {"n": 30, "chrf": 0.412, "rouge_l": 0.305, "empty": 2, "win_rate": 0.6},
            "champion_metrics": {"n": 30, "chrf": 0.377, "rouge_l": 0.296, "empty": 5},
            "decision": {"blessed": True, "reason": "blessed"}, "promoted_version": "v2", "champion_after": "v2"}
    rows = {line.split("  ")[1].strip(): line for line in summary_table(chat).splitlines() if line.startswith("  ")}
    assert "0.412 | 0.377" in rows["chrf"] and "0.305 | 0.296" in rows["rouge_l"]
    assert "2 | 5" in rows["empty"] and "0.600 | -" in rows["win_rate"]
    assert "n" not in rows  # the eval row count is not a metric
