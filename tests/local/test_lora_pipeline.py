"""tune-and-promote's oss-lora branch under kfp.local: LoRA on a tiny local base, judged, promoted.

The compiled-in pipeline runs as on Vertex (check-config, then the GPU branch: tune on the GPU image ->
evaluate -> promote), each task a subprocess; under kfp.local the tune task ignores its image and
accelerator settings and trains on this machine's CPU, here data-parallel in two gloo processes
(``world_size=2``) that the tune task launches itself, as it launches one process per GPU on Vertex.
The base model is a folder (the tiny pre-trained Llama-style model + tokenizer, shared with
tests/unit/oss_lora), the data a published dataset of topic Q/A examples whose label is the topic, so
the evaluator scores labels. About 80 s on 2 shared cores (each task a subprocess that imports torch,
the tune task's two workers too), so it is marked slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import oss_lora_fixtures as shared
from tests.local.conftest import run, summaries
from tuneloop import datasets
from tuneloop.providers.oss_lora import tiny
from tuneloop.registry import FileRegistry

pytest.importorskip("torch")
pytest.importorskip("peft")

tiny_base = shared.tiny_base  # session fixture, built once per process with tests/unit/oss_lora's

MODEL = "topics"
# Small enough for seconds on a CPU; 30 steps take the tiny base from "cannot answer" to right labels.
HP = {
    "rank": 8,
    "alpha": 16,
    "learning_rate": 3e-3,
    "batch_size": 8,
    "max_steps": 30,
    "max_seq_len": 256,
    "eval_interval": 0,
    "checkpoint_interval": 0,
    "log_interval": 10,
    "max_new_tokens": 4,
    "world_size": 2,  # arrives as 2.0 (KFP's dict numbers): the tune task still starts two processes
}
# Chance is 0.25 macro F1 over four topics; the trained adapter scores far above this bar.
RULES = {"min_values": {"macro_f1": 0.5}, "max_drop": {"macro_f1": 0.05}}


def publish_topics(root) -> datasets.Dataset:
    """Publish 300 topic Q/A examples (train/validation/eval split by id hash, rendered as ``hf``)."""
    built = root / "built"
    datasets.build_dataset(
        tiny.topic_examples(300, seed=11), built, previous=None, formats=["hf"], min_examples=10
    )
    dataset_root = str(root / "datasets")
    uri = datasets.publish(built, dataset_root, expected=datasets.RootState.read(dataset_root))
    return datasets.load_dataset(uri)


def task_artifact(run_dir, task: str, name: str):
    """An output a task of this run wrote (kfp.local: ``<run>/<task>[-N]/<output>``)."""
    [path] = [p for p in run_dir.rglob(name) if p.parent.name.startswith(task)]
    return path


@pytest.mark.slow
def test_oss_lora_branch_tunes_a_local_base_evaluates_and_promotes(tiny_base, tmp_path):
    ds = publish_topics(tmp_path)
    assert ds.labels == sorted(tiny.TOPICS) and ds.manifest["counts"]["eval"] >= 20
    params = {
        "dataset_uri": ds.uri,
        "registry_uri": str(tmp_path / "registry"),
        "reports_uri": str(tmp_path / "reports"),
        "provider": "oss-lora",
        "model_name": MODEL,
        "base_model": tiny_base,
        "hyperparameters": HP,
        **RULES,
    }
    # the tune task carries the GPU settings; kfp.local says it ignores them (Vertex applies them)
    with pytest.warns(UserWarning, match=r"'tune-model'.*'accelerator'.*no effect"):
        run_dir = run("tune-and-promote", params, tmp_path / "runs")

    # the tune task left the adapter, its tokenizer and the trainer's manifest in the model artifact
    card = json.loads((task_artifact(run_dir, "tune-model", "model") / "tuneloop-result.json").read_text())
    assert (
        card["provider"] == "oss-lora" and card["base_model"] == tiny_base and card["dataset_hash"] == ds.hash
    )
    adapter = {p.name for p in Path(card["model_ref"]).iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "tuneloop_lora.json",
    } <= adapter
    assert (
        card["metrics"]["steps"] == 30 and card["metrics"]["val_loss"] < card["metrics"]["first_train_loss"]
    )
    job = json.loads(task_artifact(run_dir, "tune-model", "job").read_text())
    assert job["job_id"] == card["job_id"]  # written before training started
    manifest = json.loads((Path(card["model_ref"]) / "tuneloop_lora.json").read_text())
    assert manifest["world_size"] == 2 and manifest["answers"] == "labels"
    assert json.loads((Path(card["model_ref"]).parent / "job.json").read_text())["world_size"] == 2

    # the evaluator scored the candidate's parsed labels on every eval row and wrote its decision
    blessing = json.loads(task_artifact(run_dir, "evaluate-model", "blessing").read_text())
    metrics = blessing["candidate_metrics"]
    assert blessing["provider"] == "oss-lora" and blessing["dataset_hash"] == ds.hash
    assert metrics["n"] == blessing["eval_rows"] == ds.manifest["counts"]["eval"]
    assert metrics["macro_f1"] >= RULES["min_values"]["macro_f1"], blessing["reason"]
    assert (
        blessing["blessed"] is True and blessing["first_run"] is True and "no champion" in blessing["reason"]
    )

    # the summary (report + promote task's artifact) records the promotion of v1
    [summary] = summaries(tmp_path / "reports")
    assert summary == json.loads(task_artifact(run_dir, "promote-model", "summary").read_text())
    assert summary["provider"] == "oss-lora" and summary["dataset_uri"] == ds.uri
    assert summary["candidate_metrics"] == metrics and summary["champion_metrics"] is None
    assert summary["decision"] == {"blessed": True, "reason": blessing["reason"]}
    assert summary["promoted_version"] == "v1" and summary["champion_after"] == "v1"
    champion = FileRegistry(params["registry_uri"], MODEL).champion()
    assert (
        champion.version == "v1"
        and champion.provider == "oss-lora"
        and champion.model_ref == card["model_ref"]
    )
    assert champion.metrics["macro_f1"] == metrics["macro_f1"]
