"""Data-parallel oss-lora: two gloo processes on CPU train what one process trains.

One process is the reference. The same config with ``world_size=2`` runs through the provider (two
worker processes launched by ``wait``), is cancelled mid-run, and a retry resumes it from the checkpoint
with two processes again; a copy of the stopped run is resumed by one process (another world size), and
one with a changed LoRA rank is refused by the workers with the trainer's own error.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tuneloop.examples import dataset_hash
from tuneloop.providers.base import PreflightError, ProviderError, TuneRequest, job_key, run_job
from tuneloop.providers.oss_lora import OssLoraProvider
from tuneloop.providers.oss_lora import checkpoint as ckpt
from tuneloop.providers.oss_lora.config import ConfigError, LoraConfig
from tuneloop.providers.oss_lora.distributed import WorldSizeError, resolve_world_size, train_parallel
from tuneloop.providers.oss_lora.trainer import Run

# dropout 0: every rank's dropout stream differs from the single process's, the rest is the same math.
# batch_size 3 over 2 ranks: shares of 2 and 1 rows; grad_accum 2 exercises DDP's no_sync.
HP = {"rank": 4, "alpha": 8, "dropout": 0.0, "learning_rate": 3e-3, "batch_size": 3, "grad_accum": 2,
      "max_steps": 16, "max_seq_len": 128, "eval_interval": 8, "checkpoint_interval": 0, "log_interval": 1,
      "merge": False}
# Loss curves agree to float32 reduction order (measured: ~1e-6 relative); adapters likewise.
LOSS_RTOL = 1e-4
ADAPTER_ATOL = 1e-5


def losses(run_dir: Path) -> list[tuple[int, float]]:
    events = [json.loads(line) for line in (run_dir / "progress.jsonl").open()]
    return [(e["step"], e["loss"]) for e in events if e["event"] == "train"]


def assert_same_curve(got, want):
    assert [s for s, _ in got] == [s for s, _ in want]
    for (step, a), (_, b) in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=LOSS_RTOL), f"step {step}: loss {a} vs {b} in one process"


def assert_same_adapter(dir_a, dir_b):
    a = load_file(str(Path(dir_a) / "adapter_model.safetensors"))
    b = load_file(str(Path(dir_b) / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=ADAPTER_ATOL, rtol=1e-4)


def test_world_size_is_one_per_gpu_or_one_on_cpu_and_checked(monkeypatch):
    monkeypatch.delenv("NVIDIA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert resolve_world_size(LoraConfig()) == 1  # no GPU here: the single-process loop
    assert resolve_world_size(LoraConfig(world_size=3)) == 3  # gloo processes on CPU when asked
    with pytest.raises(ConfigError, match="world_size: -1"):
        LoraConfig(world_size=-1)
    # CUDA images say "all" whatever the machine has: that says nothing
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "all")
    assert resolve_world_size(LoraConfig()) == 1
    # a task the runtime granted two GPUs that torch cannot see is refused, not trained on the CPU
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "GPU-5d1c,GPU-9a0e")
    with pytest.raises(WorldSizeError, match=r"granted 2 GPU\(s\) .* torch sees 0"):
        resolve_world_size(LoraConfig())
    assert resolve_world_size(LoraConfig(device="cpu")) == 1  # unless the CPU is asked for
    with pytest.raises(PreflightError, match="granted 2 GPU"):
        OssLoraProvider().preflight(TuneRequest(train=[], validation=[], dataset_hash="x", base_model="/nowhere"))


# Three launches of two workers, ~16 s on 2 shared cores: the fork server imports torch once, the first
# launch pays for it (~10 s), the next two start in ~2 s.
def test_two_processes_follow_one_process_write_one_adapter_and_resume(tiny_base, topic_data, tmp_path):
    train, val = topic_data.train[:73], topic_data.validation[:8]
    config = OssLoraProvider.parse_config(HP)
    quiet = {"base_model": tiny_base, "log": lambda _: None}
    reference = Run(config, train, val, run_dir=tmp_path / "one", **quiet)
    # the epoch's last micro-batch holds one row: rank 1 takes part with a zero-weighted row
    assert len(reference.train_rows) % config.batch_size == 1
    single = reference.train()

    request = TuneRequest(train=train, validation=val, dataset_hash=dataset_hash([*train, *val]),
                          base_model=tiny_base, hyperparameters={**HP, "world_size": 2},
                          output_dir=str(tmp_path / "runs"))
    key = job_key(request.dataset_hash, "oss-lora", tiny_base, OssLoraProvider.parse_config(request.hyperparameters))
    assert key == job_key(request.dataset_hash, "oss-lora", tiny_base, config)  # world size: not part of the job
    provider = OssLoraProvider(output_dir=request.output_dir)
    handle = provider.submit(request, key)

    def cancel_at_step_2(line: str) -> None:  # rank 0's lines reach the provider's log
        if "step 2/" in line:
            provider.cancel(handle)

    provider.log = cancel_at_step_2
    with pytest.raises(ProviderError, match=r"cancelled: stopped at step \d+"):
        provider.wait(handle, request, deadline_s=600)
    run_dir = Path(handle.detail["run_dir"])
    meta = ckpt.read_meta(ckpt.latest_checkpoint(run_dir))
    assert 2 <= meta.step < HP["max_steps"] and meta.world_size == 2
    assert json.loads((run_dir / "job.json").read_text())["state"] == "cancelled"
    shutil.copytree(run_dir, tmp_path / "one-process-resume")
    shutil.copytree(run_dir, tmp_path / "changed-rank")

    # The task is retried: two processes again, from the checkpoint, to the end.
    logs: list[str] = []
    retry = OssLoraProvider(output_dir=request.output_dir, log=logs.append)
    result = run_job(retry, request, record_path=tmp_path / "record.json", log=logs.append)
    assert result.detail["resumed"] is True and result.metrics["steps"] == HP["max_steps"]
    assert any("data-parallel training: 2 processes (gloo" in line for line in logs)
    assert any(f"resuming from step-{meta.step:06d}" in line for line in logs)
    assert json.loads((run_dir / "job.json").read_text())["state"] == "succeeded"
    # every step logged once (rank 0 alone writes), on the single process's curve
    assert_same_curve(losses(run_dir), losses(tmp_path / "one"))
    # exactly one adapter: model/ (no stray copy, no leftover temporary folder), the same as one process's
    assert sorted(p.name for p in run_dir.iterdir()) == ["best", "checkpoints", "job.json", "model", "progress.jsonl"]
    assert list(run_dir.rglob("adapter_model.safetensors")) == [run_dir / "model" / "adapter_model.safetensors"]
    assert_same_adapter(result.model_ref, single.model_dir)
    assert result.metrics["val_loss"] == pytest.approx(single.metrics["val_loss"], rel=LOSS_RTOL)
    assert result.metrics["trained_tokens"] == single.metrics["trained_tokens"]
    assert ckpt.read_manifest(result.model_ref)["world_size"] == 2

    # Another world size: one process continues the two processes' checkpoint (same global batches).
    notes: list[str] = []
    alone = Run(config, train, val, base_model=tiny_base, run_dir=tmp_path / "one-process-resume", log=notes.append)
    resumed = alone.train()
    assert resumed.resumed_from == meta.step
    assert any("was written by 2 process(es), this run has 1" in n for n in notes)
    assert_same_curve(losses(tmp_path / "one-process-resume"), losses(tmp_path / "one"))
    assert_same_adapter(resumed.model_dir, single.model_dir)

    # A worker's refusal arrives as the trainer's own error, naming the field.
    with pytest.raises(ckpt.CheckpointMismatch, match=r"rank: .*4.*8"):
        train_parallel(LoraConfig(**{**HP, "rank": 8}), train, val, run_dir=tmp_path / "changed-rank",
                       world_size=2, **quiet)
