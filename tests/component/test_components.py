"""Component bodies through ``.python_func``: the same code the pipeline runs, without a pipeline."""

from __future__ import annotations

import json

import pytest
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Metrics, Model
from tuneloop.components import (
    check_config,
    evaluate_model,
    extract_examples,
    prepare_dataset,
    promote_model,
    record_skip,
    tune_model,
)

from tuneloop import demo_data
from tuneloop.stages import ConfigError
from tuneloop.warehouse import duckdb_uri


def _art(cls, tmp_path, name):
    return cls(name=name, uri=str(tmp_path / name), metadata={})


def _config(**over):
    base = {
        "provider": "sklearn",
        "registry_uri": "/tmp/registry",
        "model_name": "support-intent",
        "min_values": {"macro_f1": 0.6},
        "max_drop": {"macro_f1": 0.05},
        "hyperparameters": {},
        "budget_usd": 0.0,
        "task_env": {},
        "eval_options": {},
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
        "cpu_limit": "8",
        "memory_limit": "32G",
        "deploy_endpoint": "",
        "deploy_options": {},
    }
    return {**base, **over}


def test_check_config_accepts_a_valid_run():
    out = check_config.python_func(**_config(provider="SKLearn", hyperparameters={"ngram_max": 2.0}))
    assert (out.provider, out.image) == ("sklearn", "cpu")
    assert out.hyperparameters["ngram_max"] == 2 and type(out.hyperparameters["ngram_max"]) is int


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"provider": "gpt"}, "provider='gpt' is not a known provider; use one of ['claude'"),
        ({"hyperparameters": {"ngram": 2}}, "hyperparameters: unknown key 'ngram' (did you mean 'ngram_max'?)"),
        ({"hyperparameters": {"ngram_max": 2.5}}, "hyperparameters.ngram_max=2.5 must be an integer"),
        ({"budget_usd": 5.0}, "budget_usd=5.0 applies to the hosted providers"),
        ({"provider": "oss-lora", "budget_usd": 1.0}, "'oss-lora' runs on your own machines"),
        ({"provider": "oss-lora", "accelerator_type": "NVIDIA_L44"}, "accelerator_type='NVIDIA_L44'"),
        ({"provider": "oss-lora", "memory_limit": "32 gigs"}, "memory_limit="),
        ({"deploy_options": {"machine_type": "n1-standard-4"}}, "deploy_options is set but deploy_endpoint is empty"),
        ({"eval_options": {"concurency": 2}}, "eval_options: unknown key 'concurency' (did you mean 'concurrency'?)"),
        ({"registry_uri": ""}, "registry_uri is empty"),
        ({"model_name": "my model"}, "model_name='my model'"),
        ({"min_values": {"f1_typo": 0.5}}, "thresholds="),
        ({"task_env": {"OPENAI_API_KEY": "x"}}, "task_env: 'OPENAI_API_KEY' is not allowed"),
        ({"task_env": {"OPENAI_API_KEY_SECRET": "sk-proj-abcdefghijklmnopqrstuvwx"}}, "looks like a credential"),
        ({"task_env": {"OPENAI_API_KEY_SECRET": "openai-key"}}, "is not a Secret Manager version name"),
    ],
)
def test_check_config_names_the_bad_parameter(override, message):
    with pytest.raises(ConfigError) as info:
        check_config.python_func(**_config(**override))
    assert message in str(info.value)


@pytest.fixture
def tuned(tmp_path):
    """extract -> prepare -> tune through the component functions, on 300 demo rows."""
    wh = tmp_path / "wh.duckdb"
    demo_data.build_demo_warehouse(str(wh), n_initial=300, seed=3, table="interactions")
    examples, quarantine = _art(Dataset, tmp_path, "examples"), _art(Dataset, tmp_path, "quarantine")
    out = extract_examples.python_func(
        warehouse_uri=duckdb_uri(str(wh)),
        table="interactions",
        dataset_root=str(tmp_path / "ds"),
        max_rows=0,
        settle_seconds=0,
        examples=examples,
        quarantine=quarantine,
    )
    dataset = _art(Dataset, tmp_path, "dataset")
    prepared = prepare_dataset.python_func(
        examples=examples,
        quarantine=quarantine,
        dataset_root=str(tmp_path / "ds"),
        watermark=out.watermark,
        provider="sklearn",
        formats="openai",
        min_new_examples=100,
        min_examples=10,
        system_prompt="",
        base_model="",
        dataset=dataset,
    )
    model, job = _art(Model, tmp_path, "model"), _art(Artifact, tmp_path, "job")
    tuned = tune_model.python_func(
        provider="sklearn",
        dataset_uri=prepared.dataset_uri,
        base_model="",
        hyperparameters={},
        task_env={},
        model=model,
        job=job,
    )
    return {"tmp": tmp_path, "extract": out, "prepared": prepared, "model": model, "job": job, "tuned": tuned}


def test_extract_and_prepare_report_counts_and_publish(tuned):
    out, prepared = tuned["extract"], tuned["prepared"]
    assert out.new_examples + out.quarantined == 300
    assert out.quarantined > 0
    assert prepared.status == "ready" and prepared.dataset_uri.startswith(str(tuned["tmp"] / "ds"))
    manifest = json.loads((tuned["tmp"] / "dataset" / "manifest.json").read_text())
    assert manifest["counts"]["train"] > manifest["counts"]["eval"] > 0
    assert manifest["formats"]["openai"]  # the openai rendering was validated and reported


def test_tune_writes_the_job_record_before_returning_and_a_model_card(tuned):
    record = json.loads(open(tuned["job"].path).read())
    assert record["provider"] == "sklearn" and record["key"].startswith("tl-")
    assert tuned["model"].metadata["job_id"] == tuned["tuned"].job_id


def test_evaluate_logs_metrics_and_confusion_matrix_and_promote_moves_the_champion(tuned):
    tmp = tuned["tmp"]
    metrics, cm, blessing = (
        _art(Metrics, tmp, "m"),
        _art(ClassificationMetrics, tmp, "cm"),
        _art(Artifact, tmp, "b"),
    )
    report = _art(HTML, tmp, "report")
    result = evaluate_model.python_func(
        provider="sklearn",
        model=tuned["model"],
        dataset_uri=tuned["prepared"].dataset_uri,
        registry_uri=str(tmp / "reg"),
        model_name="support-intent",
        min_values={"macro_f1": 0.5},
        max_drop={"macro_f1": 0.05},
        task_env={},
        eval_options={},
        metrics=metrics,
        classification=cm,
        blessing=blessing,
        report=report,
    )
    assert result.blessed is True and "no champion" in result.reason
    page = open(report.path).read()
    assert page.startswith("<!DOCTYPE html>") and "BLESSED" in page and 'data-chart="confusion-candidate"' in page
    assert 0.5 <= metrics.metadata["macro_f1"] <= 1.0
    assert len(cm.metadata["confusionMatrix"]["rows"]) == len(
        cm.metadata["confusionMatrix"]["annotationSpecs"]
    )
    summary = _art(Artifact, tmp, "summary")
    promoted = promote_model.python_func(
        blessing=blessing,
        model=tuned["model"],
        registry_uri=str(tmp / "reg"),
        model_name="support-intent",
        run_name="run-1",
        reports_uri=str(tmp / "reports"),
        summary=summary,
        decision_log=_art(Artifact, tmp, "decision_log"),
    )
    assert promoted.promoted_version == "v1" and promoted.champion == "v1"
    written = json.loads((tmp / "reports" / "run-1" / "summary.json").read_text())
    assert written["decision"]["blessed"] is True and written["promoted_version"] == "v1"
    assert (tmp / "reports" / "run-1" / "report.html").read_text() == page  # the same report, next to it


def test_no_thresholds_means_not_blessed_and_promotion_is_a_recorded_no_op(tuned):
    tmp = tuned["tmp"]
    blessing = _art(Artifact, tmp, "b")
    result = evaluate_model.python_func(
        provider="sklearn",
        model=tuned["model"],
        dataset_uri=tuned["prepared"].dataset_uri,
        registry_uri=str(tmp / "reg"),
        model_name="support-intent",
        min_values={},
        max_drop={},
        task_env={},
        eval_options={},
        metrics=_art(Metrics, tmp, "m"),
        classification=_art(ClassificationMetrics, tmp, "cm"),
        blessing=blessing,
        report=_art(HTML, tmp, "report"),
    )
    assert result.blessed is False and "no thresholds" in result.reason
    promoted = promote_model.python_func(
        blessing=blessing,
        model=tuned["model"],
        registry_uri=str(tmp / "reg"),
        model_name="support-intent",
        run_name="run-1",
        reports_uri="",
        summary=_art(Artifact, tmp, "summary"),
        decision_log=_art(Artifact, tmp, "decision_log"),
    )
    assert promoted.promoted_version == "" and promoted.champion == ""
    assert not (tmp / "reg" / "support-intent" / "versions").exists()


def test_record_skip_writes_a_summary(tmp_path):
    summary = _art(Artifact, tmp_path, "summary")
    reason = record_skip.python_func(
        reason="12 new examples; min_new_examples=100",
        provider="sklearn",
        registry_uri=str(tmp_path / "reg"),
        model_name="support-intent",
        run_name="r",
        reports_uri=str(tmp_path / "rep"),
        summary=summary,
    )
    assert reason.startswith("skipped: 12 new examples")
    assert json.loads((tmp_path / "rep" / "r" / "summary.json").read_text())["skipped"] is True
