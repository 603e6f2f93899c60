"""The trainer on a tiny pre-trained base: it learns, only LoRA moves, resume is exact, merge is exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tuneloop.providers.oss_lora import checkpoint as ckpt
from tuneloop.providers.oss_lora.config import LoraConfig
from tuneloop.providers.oss_lora.predict import generate, load_predictor
from tuneloop.providers.oss_lora.trainer import Run, TrainingStopped


def exact_match(answers, examples) -> float:
    return sum(a == ex.target for a, ex in zip(answers, examples, strict=True)) / len(examples)


def test_loss_falls_and_held_out_exact_match_rises(trained, tiny_base, topic_data):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    before = exact_match(generate(base, AutoTokenizer.from_pretrained(tiny_base), topic_data.eval), topic_data.eval)
    after = exact_match(trained.provider.predict(trained.result.model_ref, topic_data.eval), topic_data.eval)
    assert before <= 0.3, f"the base already answers the format ({before:.0%}); the test would prove nothing"
    assert after >= 0.9, f"held-out exact match after tuning {after:.0%} (before {before:.0%})"
    events = [json.loads(line) for line in (Path(trained.result.detail["run_dir"]) / "progress.jsonl").open()]
    evals = [e["val_loss"] for e in events if e["event"] == "eval"]
    m = trained.result.metrics
    assert m["final_train_loss"] < 0.5 * m["first_train_loss"]
    assert evals[-1] < evals[0]
    assert all(e["tokens_per_s"] > 0 for e in events if e["event"] == "train")


def test_best_validation_step_is_the_model_kept(trained):
    run_dir = Path(trained.result.detail["run_dir"])
    evals = [json.loads(line) for line in (run_dir / "progress.jsonl").open()]
    evals = [e for e in evals if e["event"] == "eval"]
    best = min(evals, key=lambda e: e["val_loss"])
    manifest = ckpt.read_manifest(trained.result.model_ref)
    assert manifest["best_step"] == best["step"]
    assert manifest["metrics"]["val_loss"] == pytest.approx(best["val_loss"], rel=1e-5)


def test_outputs_are_adapter_tokenizer_manifest_and_merged_model(trained):
    model_dir = Path(trained.result.model_ref)
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
                 ckpt.MANIFEST, "merged/config.json", "merged/model.safetensors", "merged/tokenizer.json"):
        assert (model_dir / name).is_file(), name
    adapter = json.loads((model_dir / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and sorted(adapter["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    tensors = load_file(str(model_dir / "adapter_model.safetensors"))
    assert tensors and all("lora_" in k for k in tensors)
    meta = ckpt.read_meta(ckpt.latest_checkpoint(model_dir.parent))
    assert meta.step == 60 and meta.data_hash == trained.request.dataset_hash
    assert meta.config["rank"] == 8 and meta.base_fingerprint == ckpt.base_fingerprint(trained.request.base_model)


def test_merged_and_unmerged_models_give_the_same_logits(trained, topic_data):
    merged = load_predictor(trained.result.model_ref, use_merged=True)
    adapter = load_predictor(trained.result.model_ref, use_merged=False)
    assert type(merged.model).__name__ == "LlamaForCausalLM" and type(adapter.model).__name__ == "PeftModelForCausalLM"
    ids = merged.tokenizer([ex.prompt_text for ex in topic_data.eval[:8]], padding=True, return_tensors="pt")
    with torch.no_grad():
        a = merged.model(**ids).logits
        b = adapter.model(**ids).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def small_config(**kw) -> LoraConfig:
    base = {"rank": 4, "alpha": 8, "dropout": 0.1, "learning_rate": 3e-3, "batch_size": 4, "max_steps": 12,
            "max_seq_len": 128, "eval_interval": 4, "checkpoint_interval": 0, "log_interval": 4}
    return LoraConfig(**{**base, **kw})


def test_only_lora_weights_move(tiny_base, topic_data, tmp_path):
    run = Run(small_config(max_steps=6), topic_data.train[:80], topic_data.validation[:8], base_model=tiny_base,
              run_dir=tmp_path, log=lambda _: None)
    model = run.loaded.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    run.train()
    after = dict(model.named_parameters())
    moved = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert moved == trainable  # every LoRA tensor moved (B starts at zero), no base tensor did


def test_resume_continues_the_same_run_exactly(tiny_base, topic_data, tmp_path):
    train, val = topic_data.train[:80], topic_data.validation[:8]
    quiet = {"base_model": tiny_base, "log": lambda _: None}
    whole = Run(small_config(), train, val, run_dir=tmp_path / "whole", **quiet).train()
    with pytest.raises(TrainingStopped):
        Run(small_config(), train, val, run_dir=tmp_path / "split", **quiet).train(stop_after=5)
    assert ckpt.read_meta(ckpt.latest_checkpoint(tmp_path / "split")).step == 5
    resumed = Run(small_config(), train, val, run_dir=tmp_path / "split", **quiet).train()
    assert resumed.resumed_from == 5 and resumed.steps == whole.steps == 12
    a = load_file(str(Path(whole.model_dir) / "adapter_model.safetensors"))
    b = load_file(str(Path(resumed.model_dir) / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-6)
    assert resumed.metrics["val_loss"] == pytest.approx(whole.metrics["val_loss"], rel=1e-5)


def test_resume_refuses_a_changed_shape(tiny_base, topic_data, tmp_path):
    train, val = topic_data.train[:40], topic_data.validation[:8]
    with pytest.raises(TrainingStopped):
        Run(small_config(), train, val, base_model=tiny_base, run_dir=tmp_path, log=lambda _: None).train(stop_after=2)
    with pytest.raises(ckpt.CheckpointMismatch, match=r"rank: .*4.*8"):
        Run(small_config(rank=8), train, val, base_model=tiny_base, run_dir=tmp_path, log=lambda _: None).train()
    with pytest.raises(ckpt.CheckpointMismatch, match="data_hash"):
        Run(small_config(), train[:-1], val, base_model=tiny_base, run_dir=tmp_path, log=lambda _: None).train()
    notes: list[str] = []
    longer = Run(small_config(max_steps=4), train, val, base_model=tiny_base, run_dir=tmp_path, log=notes.append)
    assert longer.train().resumed_from == 2  # a longer schedule is the same run, continued
    assert any("max_steps: 12 -> 4" in n for n in notes)


def test_gradient_checkpointing_trains_the_same_adapter(tiny_base, topic_data, tmp_path):
    train, quiet = topic_data.train[:40], {"base_model": tiny_base, "log": lambda _: None}
    plain = Run(small_config(max_steps=3), train, [], run_dir=tmp_path / "plain", **quiet).train()
    run = Run(small_config(max_steps=3, gradient_checkpointing=True), train, [], run_dir=tmp_path / "gc", **quiet)
    base = run.loaded.model.get_base_model()
    assert getattr(base, "is_activation_checkpointing", None) or base.is_gradient_checkpointing
    ckpted = run.train()
    a = load_file(str(Path(plain.model_dir) / "adapter_model.safetensors"))
    b = load_file(str(Path(ckpted.model_dir) / "adapter_model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)


def test_bf16_on_cpu_trains_fp32_adapters_close_to_the_fp32_run(tiny_base, topic_data, tmp_path):
    train, val, quiet = topic_data.train[:80], topic_data.validation[:16], {"base_model": tiny_base,
                                                                             "log": lambda _: None}
    fp32 = Run(small_config(max_steps=8, dropout=0.0), train, val, run_dir=tmp_path / "fp32", **quiet).train()
    run = Run(small_config(max_steps=8, dropout=0.0, precision="bf16"), train, val, run_dir=tmp_path / "bf16",
              **quiet)
    assert {p.dtype for p in run.loaded.model.parameters() if p.requires_grad} == {torch.float32}
    bf16 = run.train()
    assert bf16.metrics["final_train_loss"] < bf16.metrics["first_train_loss"]
    assert bf16.metrics["val_loss"] == pytest.approx(fp32.metrics["val_loss"], rel=0.05)
