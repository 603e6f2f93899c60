"""The oss-lora Provider: preflight refusals, idempotent run_job, resume after a stop, predict."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tuneloop.examples import make_example
from tuneloop.providers.base import PreflightError, ProviderError, job_key, run_job
from tuneloop.providers.oss_lora import OssLoraProvider
from tuneloop.providers.oss_lora import checkpoint as ckpt


def test_a_second_run_job_adopts_the_finished_run(trained):
    progress = Path(trained.result.detail["run_dir"]) / "progress.jsonl"
    lines_before = progress.read_text()
    logs: list[str] = []
    fresh = OssLoraProvider(output_dir=trained.request.output_dir, log=logs.append)
    handle = fresh.resume(trained.key)
    assert handle is not None and handle.state == "succeeded" and handle.job_id == trained.result.job_id
    again = run_job(fresh, trained.request, record_path=trained.record.with_name("other-task.json"), log=logs.append)
    assert again.model_ref == trained.result.model_ref and again.detail["resumed"] is True
    assert any("adopting existing job" in line for line in logs)
    assert progress.read_text() == lines_before  # nothing was trained again
    assert json.loads((Path(trained.result.detail["run_dir"]) / "job.json").read_text())["state"] == "succeeded"
    assert OssLoraProvider(output_dir=trained.request.output_dir).resume("tl-other") is None


def test_predict_returns_one_raw_answer_per_example(trained, topic_data):
    answers = trained.provider.predict(trained.result.model_ref, topic_data.eval[:5])
    assert len(answers) == 5 and all(isinstance(a, str) and "<|im_end|>" not in a for a in answers)
    assert trained.result.trained_tokens and trained.result.metrics["val_loss"] < 1.0


def test_preflight_counts_tokens_and_refuses_bad_requests(tiny_base, topic_data, tmp_path, make_request):
    provider = OssLoraProvider()
    report = provider.preflight(make_request(tiny_base, topic_data, tmp_path))
    assert report.provider == "oss-lora" and report.examples == len(topic_data.train) and report.training_tokens > 0
    with pytest.raises(PreflightError, match="unknown key.*'lr'"):
        provider.preflight(make_request(tiny_base, topic_data, tmp_path, lr=1e-3))
    with pytest.raises(PreflightError, match="base_model: 'hf://.*not a gs:// folder or a local path"):
        provider.preflight(make_request("hf://org/phi-3", topic_data, tmp_path))
    with pytest.raises(PreflightError, match="no config.json"):
        provider.preflight(make_request(str(tmp_path), topic_data, tmp_path))
    silent = make_example([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", "weight": 0}])
    no_loss = dataclasses.replace(make_request(tiny_base, topic_data, tmp_path), train=[silent])
    with pytest.raises(PreflightError, match="nothing to learn"):
        provider.preflight(no_loss)
    with pytest.raises(PreflightError, match="output_dir"):
        provider.submit(dataclasses.replace(no_loss, output_dir=""), "tl-x")


def test_cancelled_job_stops_with_a_checkpoint_and_a_rerun_continues_it(tiny_base, topic_data, tmp_path,
                                                                        make_request):
    hp = {"max_steps": 8, "log_interval": 2, "checkpoint_interval": 0, "eval_interval": 0, "merge": False}
    request = make_request(tiny_base, topic_data, tmp_path / "runs", **hp)
    request = dataclasses.replace(request, train=request.train[:60], validation=request.validation[:8])
    key = job_key(request.dataset_hash, "oss-lora", request.base_model, OssLoraProvider.parse_config(request.hyperparameters))
    provider = OssLoraProvider(output_dir=request.output_dir, log=lambda _: None)
    handle = provider.submit(request, key)

    def cancel_at_step_4(line: str) -> None:
        if "step 4/" in line:
            provider.cancel(handle)

    provider.log = cancel_at_step_4
    with pytest.raises(ProviderError, match="stopped at step 4"):
        provider.wait(handle, request, deadline_s=600)
    run_dir = Path(handle.detail["run_dir"])
    assert json.loads((run_dir / "job.json").read_text())["state"] == "cancelled"
    assert ckpt.read_meta(ckpt.latest_checkpoint(run_dir)).step == 4

    # The task is retried: the new attempt adopts the run and finishes it from step 4.
    retry = OssLoraProvider(output_dir=request.output_dir, log=lambda _: None)
    result = run_job(retry, request, record_path=tmp_path / "record.json", log=lambda _: None)
    assert result.detail["resumed"] is True and result.metrics["steps"] == 8
    assert json.loads((run_dir / "job.json").read_text())["state"] == "succeeded"


def test_a_gs_base_model_is_mirrored_and_the_trained_model_names_it(tiny_base, topic_data, tmp_path,
                                                                     make_request, gcs, monkeypatch):
    """Production weights live under gs://: train from there, and predict in another "container"."""
    import uuid

    from tuneloop import storage

    monkeypatch.setenv("TUNELOOP_CACHE_DIR", str(tmp_path / "cache-a"))
    uri = f"gs://tuneloop-staging/models/tiny-{uuid.uuid4().hex[:8]}"
    storage.upload_dir(tiny_base, uri)
    with pytest.raises(PreflightError, match="no such directory"):
        OssLoraProvider().preflight(make_request(uri + "-missing", topic_data, tmp_path))
    request = make_request(uri, topic_data, tmp_path / "runs", max_steps=2, eval_interval=2, merge=False)
    provider = OssLoraProvider(output_dir=request.output_dir, log=lambda _: None)
    result = run_job(provider, request, record_path=tmp_path / "job.json", log=lambda _: None)
    assert ckpt.read_manifest(result.model_ref)["base_model"] == uri
    # a fresh task: nothing of the first one's mirror is left, the base is fetched again by its URI
    monkeypatch.setenv("TUNELOOP_CACHE_DIR", str(tmp_path / "cache-b"))
    answers = OssLoraProvider().predict(result.model_ref, topic_data.validation[:3])
    assert len(answers) == 3 and (tmp_path / "cache-b").is_dir()
