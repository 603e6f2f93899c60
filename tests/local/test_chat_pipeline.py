"""The game loop for openai under kfp.local: tune-and-promote with task=chat, the stand-in tuner and judge, twice.

Run 1 tunes on games whose AI lines are stiff (robotic) and has no champion: it is judged on the value
thresholds alone. Run 2 tunes on games whose AI lines read like the human players (casual) and is
judged against run 1's champion by the stand-in judge, which prefers the casual reply in both orders.
"""

from __future__ import annotations

import pytest

from tests.fakes import fixtures as stand_ins
from tests.fakes.chat_data import game_chats, prefer_casual
from tests.fakes.fixtures import stand_in_hyperparameters
from tests.local.conftest import run, summaries
from tests.local.test_hosted_pipelines import task_output
from tuneloop import datasets
from tuneloop.registry import FileRegistry

openai_fake = stand_ins.openai_fake

MODEL = "impostor-agent"
JUDGE = "judge-human-likeness"
BLESSING_KEYS = {"task", "candidate_metrics", "champion_metrics", "per_row", "judge", "samples", "blessed", "reason"}
JUDGE_KEYS = {"judge", "win", "tie", "loss", "inconsistent", "malformed", "win_rate", "lower_bound", "bar", "rubric"}
SAMPLE_KEYS = {"id", "prompt", "reference", "candidate", "champion", "verdicts", "outcome"}


def publish(tmp_path, style: str, seed: int) -> str:
    built = tmp_path / f"built-{style}"
    datasets.build_dataset(game_chats(150, style, seed=seed), built, previous=None, formats=["openai"],
                           min_examples=8, task="chat")
    root = str(tmp_path / f"datasets-{style}")
    return datasets.publish(built, root, expected=datasets.RootState.read(root))


@pytest.mark.slow
def test_game_loop_for_openai_twice_first_alone_then_judged_against_the_champion(openai_fake, tmp_path):
    openai_fake.add_judge(JUDGE, prefer_casual)
    base_model, hp = stand_in_hyperparameters("openai")
    common = {
        "registry_uri": str(tmp_path / "registry"), "reports_uri": str(tmp_path / "reports"), "provider": "openai",
        "model_name": MODEL, "base_model": base_model, "hyperparameters": hp, "task": "chat",
        "judge": f"openai:{JUDGE}", "judge_rubric": "game",
        "min_values": {"chrf": 0.3}, "max_drop": {"win_rate": 0.05},  # KFP hands these over as floats
        "eval_options": {"concurrency": 4, "retry": {"attempts": 2, "initial_s": 0.0, "max_s": 0.01}},
    }
    first_dir = run("tune-and-promote", {**common, "dataset_uri": publish(tmp_path, "robotic", 1)},
                    tmp_path / "runs")
    [first] = summaries(tmp_path / "reports")
    assert first["task"] == "chat" and first["promoted_version"] == "v1"
    assert "no champion: judged on value thresholds alone" in first["decision"]["reason"]
    b1 = task_output(first_dir, "evaluate-model", "blessing")
    assert BLESSING_KEYS <= set(b1) and b1["judge"] is None and b1["champion_metrics"] is None
    assert openai_fake.judged == []  # nothing to compare: the judge is not asked

    second_dir = run("tune-and-promote", {**common, "dataset_uri": publish(tmp_path, "casual", 2)},
                     tmp_path / "runs")
    second = summaries(tmp_path / "reports")[-1]
    b2 = task_output(second_dir, "evaluate-model", "blessing")
    assert BLESSING_KEYS <= set(b2) and set(b2["judge"]) == JUDGE_KEYS
    n = b2["eval_rows"]
    assert b2["champion_version"] == "v1" and b2["judge"]["win"] == n and b2["judge"]["loss"] == 0
    assert b2["judge"]["bar"] == pytest.approx(0.45) and b2["judge"]["lower_bound"] > 0.45
    assert "human player" in b2["judge"]["rubric"]
    assert len(openai_fake.judged) == 2 * n  # both orders of every row
    assert b2["samples"] and set(b2["samples"][0]) == SAMPLE_KEYS and len(b2["samples"]) <= 20
    assert len(b2["per_row"]) == n and set(b2["per_row"][0]["champion"]) == {"chrf", "rouge_l"}
    assert b2["candidate_metrics"]["chrf"] > b2["champion_metrics"]["chrf"]
    assert second["decision"]["blessed"] and second["promoted_version"] == "v2" and second["task"] == "chat"
    assert second["judge"]["win"] == n and "rubric" not in second["judge"]

    version = FileRegistry(common["registry_uri"], MODEL).champion()
    assert version.version == "v2" and version.config["task"] == "chat"
    assert version.metrics["chrf"] == b2["candidate_metrics"]["chrf"] and "win_rate" in version.metrics
    report = (tmp_path / "reports" / second["run"] / "report.html").read_text()
    assert "Judge (chat)" in report and "Side-by-side samples" in report


def test_continuous_tuning_refuses_sklearn_on_chat_and_export_refuses_labelled_rows_as_chat(loop_env):
    from tuneloop.datasets import RootState

    params = {**loop_env["params"], "task": "chat"}
    with pytest.raises(RuntimeError) as info:
        run("continuous-tuning", params, loop_env["root"])  # provider defaults to sklearn
    assert "provider='sklearn' tunes ['classification'] tasks, not task='chat'" in str(info.value)
    assert "openai" in str(info.value)  # it names the providers that can
    assert not (loop_env["reports"].parent / "datasets").exists()  # refused before the extract
    export = {k: loop_env["params"][k] for k in ("warehouse_uri", "dataset_root", "min_new_examples")}
    with pytest.raises(RuntimeError) as info:
        run("export-dataset", {**export, "task": "chat"}, loop_env["root"])  # the support table has labels
    assert "task='chat' but the examples carry labels" in str(info.value)
    assert RootState.read(export["dataset_root"]).latest is None  # nothing published, the watermark kept
