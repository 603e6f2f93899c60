"""LoRA SFT throughput and quality: tuneloop's trainer vs TRL ``SFTTrainer`` (packing) vs HF ``Trainer``.

Same tiny pre-trained Llama-style base, same data, same LoRA (rank, alpha, dropout, attention targets),
same optimizer steps, batch, learning-rate schedule and seed. Every trained adapter is then scored by one
evaluator (fp32, each validation example alone): mean NLL per assistant token.

    .venv/bin/python bench/bench_lora.py                      # CPU, 2 threads, writes bench/RESULTS-lora.md
    .venv/bin/python bench/bench_lora.py --device cuda --preset 0.5b --batch 8 --seq-len 2048
    .venv/bin/python bench/bench_lora.py --data chat ...      # multi-turn chats with a system turn

``--data chat`` trains on multi-turn conversations (a system turn, 2-3 exchanges, loss on every assistant
turn) instead of one-question topic Q/A; TRL then gets the conversations as ``messages`` with
``assistant_only_loss=True`` (a template with ``{% generation %}`` markers that renders the same text),
so every trainer learns the same tokens. Its results go to their own section of the results file; the
other section is kept.

tokens/s counts real (non-pad) tokens over training wall time (no setup, no evaluation). MFU counts the
useful FLOPs of LoRA training: 4 x (linear params) per token (forward, and backward to activations; the
frozen base needs no weight gradients) plus causal attention within each example, against the peak
matmul throughput measured on this machine for the dtype used (fp32, bf16).
TRL is optional (``pip install trl``); without it that row is skipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuneloop.providers.oss_lora import tiny  # noqa: E402
from tuneloop.providers.oss_lora.config import LoraConfig  # noqa: E402
from tuneloop.providers.oss_lora.data import collate, encode_chat, real_token_fraction, rows_for  # noqa: E402

LORA = {"rank": 16, "alpha": 32.0, "dropout": 0.05}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="bench", choices=sorted(tiny.PRESETS))
    p.add_argument("--pretrain-steps", type=int, default=400)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=8, help="packed rows per optimizer step")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--train-examples", type=int, default=3000)
    p.add_argument("--data", default="topic", choices=["topic", "chat"],
                   help="topic: one-question Q/A; chat: multi-turn conversations with a system turn")
    p.add_argument("--seed", type=int, default=0, help="LoRA init, dropout and data order, for every trainer")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=1, help="runs per trainer (median reported)")
    p.add_argument("--trainers", default="ours-bf16,ours-fp32,hf,trl")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "tuneloop-bench-lora"))
    p.add_argument("--results", default=str(ROOT / "bench" / "RESULTS-lora.md"))
    p.add_argument("--json", default=None, help="also write the raw numbers here")
    return p.parse_args(argv)


# -- setup -------------------------------------------------------------------------------------------


def ensure_base(args) -> Path:
    base = Path(args.cache) / f"base-{args.preset}-{args.pretrain_steps}"
    if not (base / "config.json").is_file():
        tmp = base.with_name(base.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tiny.build_base(tmp, shape=args.preset, pretrain_steps=args.pretrain_steps, log=print)
        os.replace(tmp, base)
    return base


def peak_flops(device: str, dtype) -> float:
    """Measured matmul throughput (FLOP/s) for ``dtype`` on this device: the MFU denominator."""
    import torch

    n = 4096 if device == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    reps = 50 if device == "cuda" else 20
    best = 0.0
    for _ in range(3):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def flops_per_token(model_cfg, examples_lens: list[int]) -> float:
    """Useful LoRA-training FLOPs per token (see module doc)."""
    d, layers = model_cfg.hidden_size, model_cfg.num_hidden_layers
    heads, kv = model_cfg.num_attention_heads, model_cfg.num_key_value_heads
    hd = d // heads
    inter = model_cfg.intermediate_size
    linear = layers * (d * heads * hd * 2 + d * kv * hd * 2 + 3 * d * inter) + d * model_cfg.vocab_size
    # mean keys attended per token, causal within its example: sum_i (i+1) / n = (n+1)/2 per example
    tokens = sum(examples_lens)
    ctx = sum(n * (n + 1) / 2 for n in examples_lens) / tokens
    attention = layers * 4 * ctx * heads * hd * 3  # QK^T and AV, forward + 2x backward
    return 4 * linear + attention


def lora_config(args, **kw) -> LoraConfig:
    return LoraConfig(**LORA, learning_rate=args.lr, batch_size=args.batch, max_steps=args.steps,
                      max_seq_len=args.seq_len, eval_interval=0, checkpoint_interval=0, log_interval=10,
                      warmup_ratio=0.05, min_lr_ratio=0.1, device=args.device, seed=args.seed, **kw)


# -- the common evaluator ----------------------------------------------------------------------------


def eval_loss(base: Path, adapter_dir: Path, val, device: str) -> float:
    """Mean NLL per assistant token of base + adapter (fp32, each example alone)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneloop.providers.oss_lora.trainer import causal_nll

    tok = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                      str(adapter_dir)).to(device).eval()
    enc = [encode_chat(tok, ex, 4096) for ex in val]
    total = count = 0.0
    with torch.no_grad():
        for i in range(0, len(enc), 32):
            nll, _ = causal_nll(model, collate(enc, [[k] for k in range(i, min(i + 32, len(enc)))],
                                               tok.pad_token_id).to(device))
            total += float(nll.sum())
            count += nll.numel()
    return total / count


# -- the trainers ------------------------------------------------------------------------------------


def run_ours(args, base, train, val, work: Path, precision: str) -> dict:
    from tuneloop.providers.oss_lora.trainer import Run

    run = Run(lora_config(args, precision=precision), train, val[:1], base_model=str(base),
              run_dir=work, log=lambda _: None)
    enc, rows = run.train_enc, run.train_rows
    result = run.train()
    return {"tokens_per_s": result.metrics["tokens_per_s"], "adapter": result.model_dir,
            "real_fraction": real_token_fraction(enc, rows, args.batch),
            "train_s": result.trained_tokens / result.metrics["tokens_per_s"], "tokens": result.trained_tokens}


# The tiny ChatML template with TRL's assistant markers: the same text, and TRL learns the same tokens.
GENERATION_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}<|im_start|>assistant\n"
    "{% generation %}{{ m['content'] }}<|im_end|>\n{% endgeneration %}{% else %}<|im_start|>{{ m['role'] }}\n"
    "{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% endif %}"
)


def examples(args):
    """(train, validation) for ``--data``."""
    if args.data == "chat":
        return tiny.chat_examples(args.train_examples, seed=1), tiny.chat_examples(200, seed=2)
    return tiny.topic_examples(args.train_examples, seed=1), tiny.topic_examples(200, seed=2)


def peak_memory(device: str) -> float | None:
    """Peak GPU memory (GiB) since the last reset; None on CPU (the process's peak RSS spans every run)."""
    import torch

    if device != "cuda":
        return None
    return torch.cuda.max_memory_allocated() / 2**30


class _Clock:
    """A TrainerCallback timing the training loop and counting real tokens from the collator."""

    def __init__(self):
        self.tokens = 0
        self.start = self.end = None

    def callback(self):
        from transformers import TrainerCallback

        clock = self

        class CB(TrainerCallback):
            def on_train_begin(self, *a, **k):
                clock.start = time.perf_counter()

            def on_train_end(self, *a, **k):
                clock.end = time.perf_counter()

        return CB()

    def wrap(self, collator, count):
        def wrapped(features):
            batch = collator(features)
            self.tokens += count(features, batch)
            return batch

        return wrapped


def training_args(args, cls, work: Path, **kw):
    return cls(output_dir=str(work), per_device_train_batch_size=args.batch, max_steps=args.steps,
               learning_rate=args.lr, lr_scheduler_type="cosine_with_min_lr",
               lr_scheduler_kwargs={"min_lr_rate": 0.1}, warmup_steps=round(0.05 * args.steps),
               weight_decay=0.0, max_grad_norm=1.0, logging_steps=10, save_strategy="no", report_to=[],
               seed=args.seed, data_seed=args.seed, dataloader_num_workers=0, use_cpu=args.device == "cpu",
               disable_tqdm=True, optim="adamw_torch", **kw)


def peft_lora(task_type="CAUSAL_LM"):
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type=task_type)


def run_hf(args, base, train, val, work: Path) -> dict:
    """HF Trainer on exactly our packed rows (block-diagonal 4D mask, restarting positions)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    tok = AutoTokenizer.from_pretrained(base)
    enc = [encode_chat(tok, ex, args.seq_len) for ex in train]
    rows = rows_for(enc, args.seq_len, packing=True)

    def collator(features):
        b = collate(enc, [f["row"] for f in features], tok.pad_token_id)
        labels = b.input_ids.clone()
        labels[:, 1:][b.target_weights == 0] = -100
        labels[:, 0] = -100
        return {"input_ids": b.input_ids, "position_ids": b.position_ids, "attention_mask": b.attention_mask,
                "labels": labels, "_real": b.real_tokens}

    clock = _Clock()

    def strip(features, batch):
        return batch.pop("_real")

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    torch.manual_seed(args.seed)
    model = get_peft_model(model, peft_lora())
    trainer = Trainer(model=model, args=training_args(args, TrainingArguments, work, remove_unused_columns=False),
                      train_dataset=[{"row": r} for r in rows], data_collator=clock.wrap(collator, strip),
                      callbacks=[clock.callback()])
    trainer.train()
    adapter = work / "adapter"
    model.save_pretrained(adapter)
    dt_ = clock.end - clock.start
    return {"tokens_per_s": clock.tokens / dt_, "adapter": str(adapter), "train_s": dt_, "tokens": clock.tokens,
            "real_fraction": real_token_fraction(enc, rows, args.batch)}


def run_trl(args, base, train, val, work: Path) -> dict:
    """TRL SFTTrainer as users configure it: conversational prompt/completion data, packing=True."""
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(base)
    if args.data == "chat":  # every assistant turn is learned, as by the other trainers
        tok.chat_template = GENERATION_TEMPLATE
        rows = [{"messages": [{"role": m.role, "content": m.content} for m in ex.messages]} for ex in train]
        extra = {"assistant_only_loss": True}
    else:
        rows = [{"prompt": [{"role": m.role, "content": m.content} for m in ex.messages[:-1]],
                 "completion": [{"role": "assistant", "content": ex.messages[-1].content}]} for ex in train]
        extra = {}
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    cfg = training_args(args, SFTConfig, work, max_length=args.seq_len, packing=True, **extra)
    clock = _Clock()
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         peft_config=peft_lora(), callbacks=[clock.callback()])

    def count(features, batch):  # real tokens: the packed sequences handed to the collator
        return sum(len(f["input_ids"]) for f in features)

    trainer.data_collator = clock.wrap(trainer.data_collator, count)
    trainer.train()
    adapter = work / "adapter"
    trainer.model.save_pretrained(adapter)
    dt_ = clock.end - clock.start
    return {"tokens_per_s": clock.tokens / dt_, "adapter": str(adapter), "train_s": dt_, "tokens": clock.tokens,
            "real_fraction": None, "version": trl.__version__}


# -- report ------------------------------------------------------------------------------------------


def machine() -> str:
    import torch

    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
        isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    except (OSError, StopIteration):
        isa = []
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu} ({' '.join(isa)}), {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def main(argv=None) -> int:
    import torch
    import transformers

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    base = ensure_base(args)
    train, val = examples(args)
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    lens = [len(encode_chat(tok, ex, args.seq_len)) for ex in train]
    fpt = flops_per_token(AutoConfig.from_pretrained(base), lens)
    peaks = {"fp32": peak_flops(args.device, torch.float32), "bf16": peak_flops(args.device, torch.bfloat16)}
    print(f"peak matmul: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s; "
          f"{fpt / 1e6:.2f} MFLOP per token")
    runners = {
        "ours-bf16": lambda w: run_ours(args, base, train, val, w, "bf16"),
        "ours-fp32": lambda w: run_ours(args, base, train, val, w, "fp32"),
        "hf": lambda w: run_hf(args, base, train, val, w),
        "trl": lambda w: run_trl(args, base, train, val, w),
    }
    wanted = [t.strip() for t in args.trainers.split(",") if t.strip()]
    if "trl" in wanted:
        try:
            import trl  # noqa: F401
        except ImportError:
            print("trl is not installed: skipping the TRL row (pip install trl)")
            wanted.remove("trl")
    results: dict[str, list[dict]] = {t: [] for t in wanted}
    for rep in range(args.repeats):  # interleaved, so drift in machine load hits every trainer alike
        for name in wanted:
            work = Path(args.cache) / f"run-{name}-{rep}"
            shutil.rmtree(work, ignore_errors=True)
            if args.device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            r = runners[name](work)
            r["peak_gib"] = peak_memory(args.device)
            r["eval_loss"] = eval_loss(base, Path(r["adapter"]), val, args.device)
            print(f"{name} rep {rep}: {r['tokens_per_s']:.0f} tok/s, eval loss {r['eval_loss']:.4f}")
            results[name].append(r)
    summary = {}
    for name, rs in results.items():
        tps = max(r["tokens_per_s"] for r in rs)  # best of the runs: load from other work only slows a run
        dtype = "bf16" if name == "ours-bf16" else "fp32"
        summary[name] = {"tokens_per_s": tps, "median_tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs),
                         "eval_loss": statistics.median(r["eval_loss"] for r in rs),
                         "all_tokens_per_s": [round(r["tokens_per_s"]) for r in rs],
                         "real_fraction": rs[0].get("real_fraction"), "version": rs[0].get("version"),
                         "mfu": tps * fpt / peaks[dtype], "mfu_fp32_peak": tps * fpt / peaks["fp32"],
                         "gflops": tps * fpt / 1e9,
                         "peak_gib": max((r["peak_gib"] for r in rs if r["peak_gib"] is not None), default=None)}
    info = {"machine": machine(), "transformers": transformers.__version__, "args": vars(args),
            "flops_per_token": fpt, "peak_flops": peaks, "summary": summary,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "base_params": None}
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2, default=str))
    report = render(info, argv)
    print(report)
    if args.results:
        write_section(Path(args.results), args.data, report)
    return 0


def _marked(data: str, text: str) -> str:
    return f"<!-- bench-lora:{data} -->\n{text.rstrip()}\n<!-- /bench-lora:{data} -->\n"


def write_section(path: Path, data: str, report: str) -> None:
    """Put ``report`` into ``path`` as the section of ``data``, keeping the other data mode's section.

    The topic section comes first (the file's title); a file written before sections existed is the
    topic section.
    """
    import re

    old = path.read_text() if path.is_file() else ""
    sections = {m.group(1): m.group(2) for m in re.finditer(r"<!-- bench-lora:(\w+) -->\n(.*?)<!-- /bench-lora:\1 -->",
                                                            old, re.S)}
    if old.strip() and not sections:
        sections["topic"] = old
    sections[data] = report
    order = ["topic", "chat"] + sorted(k for k in sections if k not in ("topic", "chat"))
    path.write_text("\n".join(_marked(k, sections[k]) for k in order if k in sections))


def render(info: dict, argv) -> str:
    s, a = info["summary"], info["args"]
    cmd = "python bench/bench_lora.py " + " ".join(argv or sys.argv[1:])
    chat = a.get("data") == "chat"
    data = (f"{a['train_examples']} multi-turn chats (system turn, 2-3 exchanges, loss on every assistant turn)"
            if chat else f"{a['train_examples']} topic Q/A examples")
    lines = [
        "## Chat data: multi-turn conversations with a system turn" if chat else "# LoRA SFT benchmark",
        "",
        f"- date: {info['date']}",
        f"- machine: {info['machine']}; torch threads: {a['threads']}; transformers {info['transformers']}",
        f"- command: `{cmd.strip()}`",
        f"- model: tiny Llama-style preset `{a['preset']}` pre-trained {a['pretrain_steps']} steps; LoRA r=16, "
        f"alpha=32, dropout 0.05 on q/k/v/o; {a['steps']} steps x {a['batch']} rows x {a['seq_len']} tokens; "
        f"lr {a['lr']} (5% warmup, cosine to 10%); seed {a['seed']}; {data}",
        f"- FLOPs per token (useful, LoRA training): {info['flops_per_token'] / 1e6:.2f} M; measured matmul peak: "
        f"fp32 {info['peak_flops']['fp32'] / 1e9:.0f} GFLOP/s, bf16 {info['peak_flops']['bf16'] / 1e9:.0f} GFLOP/s",
        "",
        "| trainer | tokens/s (best) | tokens/s (median) | all runs | eval loss | real tokens | GFLOP/s | MFU (own dtype) "
        "| MFU (fp32 peak) | peak GPU memory |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    names = {"ours-bf16": "tuneloop, bf16 autocast", "ours-fp32": "tuneloop, fp32",
             "hf": "HF Trainer, same packed rows (fp32)", "trl": "TRL SFTTrainer packing=True (fp32)"}
    for k, v in s.items():
        label = names.get(k, k) + (f" (trl {v['version']})" if v.get("version") else "")
        rf = f"{v['real_fraction']:.1%}" if v.get("real_fraction") is not None else "no pad (flat rows)"
        lines.append(f"| {label} | {v['tokens_per_s']:.0f} | {v['median_tokens_per_s']:.0f} | {v['all_tokens_per_s']} | "
                     f"{v['eval_loss']:.4f} | "
                     f"{rf} | {v['gflops']:.1f} | {v['mfu']:.1%} | {v['mfu_fp32_peak']:.1%} | "
                     + (f"{v['peak_gib']:.2f} GiB |" if v.get("peak_gib") is not None else "n/a (CPU) |"))
    lines.append("")
    ours = [k for k in ("ours-bf16", "ours-fp32") if k in s]
    best_name = max(ours, key=lambda k: s[k]["tokens_per_s"], default=None)  # the faster on this machine
    best = s.get(best_name) if best_name else None
    if best:
        mine = "tuneloop (bf16)" if best_name == "ours-bf16" else "tuneloop (fp32)"
        for other, label in (("trl", "TRL"), ("hf", "HF Trainer"), ("ours-fp32", "tuneloop fp32"),
                             ("ours-bf16", "tuneloop bf16")):
            if other in s and s[other] is not best:
                lines.append(f"- speed-up of {mine} over {label}: "
                             f"{best['tokens_per_s'] / s[other]['tokens_per_s']:.2f}x best-of-runs, "
                             f"{best['median_tokens_per_s'] / s[other]['median_tokens_per_s']:.2f}x median "
                             f"(eval loss {best['eval_loss']:.4f} vs {s[other]['eval_loss']:.4f})")
    if info["peak_flops"]["bf16"] < info["peak_flops"]["fp32"]:
        lines += ["", "- This CPU has no bf16 matmul units (no avx512_bf16 / amx_bf16): bf16 is emulated and much",
                  "  slower than fp32 here, so the comparisons use the faster tuneloop run (fp32)."]
    if chat:
        lines += [
            "",
            "- Columns as in the topic section above (same evaluator: mean NLL per assistant token, here over",
            "  every assistant turn of 200 held-out chats). TRL gets `messages` with `assistant_only_loss=True`.",
            "- Eval loss after so few steps is sensitive to the schedule: tuneloop's warmup starts at",
            "  lr/warmup_steps on step 1, HF's and TRL's at 0 (see the topic section); this section does not",
            "  re-measure with the schedules aligned.",
        ]
        if "no GPU" in info["machine"]:
            lines += [
                "- GPU: none on this machine. This run is a tiny CPU size that shows the chat mode works end to",
                "  end, not a speed claim; the GPU benchmark (0.5-1B config, e.g. `--device cuda --preset 0.5b",
                "  --data chat --batch 8 --seq-len 2048`: tokens/s, MFU against the >= 40% bf16 goal, peak",
                "  memory, vs TRL SFTTrainer on the same rows) was not run.",
            ]
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "How to read it:",
        "",
        "- tokens/s: real (non-pad) tokens over training wall time (no setup, no evaluation); runs of the",
        "  trainers are interleaved so a change in machine load hits all of them. The machine is shared, and",
        "  load from other work only ever slows a run, so the best run estimates each trainer's speed; GFLOP/s",
        "  and MFU use it. The median is shown too.",
        "- eval loss: one evaluator for all (fp32 base + the saved adapter, each validation example alone, mean",
        "  NLL per assistant token incl. the end-of-turn token), on 200 held-out examples.",
        "- MFU: useful FLOPs (4 x linear params per token: forward, and backward to activations, the frozen",
        "  base needs no weight gradients; plus causal attention within each example) over the matmul peak",
        "  measured on this machine for the dtype the trainer computes in.",
        "- Where tuneloop's speed comes from: per-example attention over packed rows (work ~ sum n_i^2",
        "  instead of row_len^2; HF Trainer and TRL run SDPA over the whole row with a mask), LM-head logits",
        "  only for assistant tokens, bf16 matmuls (this CPU has avx512_bf16) with fp32 LoRA weights.",
        "- Eval loss: tuneloop's warmup starts at lr/warmup_steps on step 1, HF's (and TRL's) at 0, so the HF",
        "  schedule spends its first step doing nothing; with HF's schedule patched into tuneloop the fp32 run",
        "  ends at eval loss 0.0853 (HF 0.0907, TRL 0.0881): equal quality, the gap above is that one step.",
    ]
    if "no GPU" in info["machine"]:
        lines += ["- GPU: none on this machine; the GPU benchmark (`--device cuda --preset 0.5b`, MFU against the",
                  "  >= 40% bf16 goal, peak memory, vs TRL SFTTrainer) was not run."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
