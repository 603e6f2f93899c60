"""The LoRA SFT loop: load base, attach LoRA, train on packed rows, evaluate, checkpoint, write outputs.

Why a hand-written loop and not ``transformers.Trainer``: it computes logits only where there is a
loss (assistant tokens), which skips most of the LM-head work and memory on real vocabularies; packed
examples attend per example (attention.py: work ~ sum of n_i^2, not row length^2; a block-diagonal
mask for models it cannot serve), so packing is isolated whatever kernel runs; and it resumes
bit-for-bit (data order is a pure function of the step, RNG states are checkpointed).

Data-parallel (distributed.py launches one process per GPU, or gloo processes on CPU): ``batch_size``
is the *global* micro-batch. Every rank draws the same global micro-batches (the same seeded order as
one process) and computes its share of each (rows ``rank::world_size``), so the world size changes
nothing that is trained: the gradient, all-reduced by DDP, is the one a single process computes on the
whole micro-batch. A rank whose share of a short micro-batch is empty runs a zero-weighted row, so all
ranks take the same steps. Rank 0 alone writes progress, checkpoints, the best adapter and ``model/``.

Output layout under ``run_dir``::

    checkpoints/step-NNNNNN/   resumable state (see checkpoint.py)
    best/                      trainable tensors of the best validation step
    progress.jsonl             one line per log / eval event
    model/                     adapter_model.safetensors + adapter_config.json + tokenizer + manifest
    model/merged/              optional: base with the adapter folded in (config.merge)
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop import progress
from tuneloop.examples import Example, dataset_hash
from tuneloop.providers.oss_lora import checkpoint as ckpt
from tuneloop.providers.oss_lora.attention import register as register_varlen
from tuneloop.providers.oss_lora.attention import supports_varlen
from tuneloop.providers.oss_lora.config import ALL_LINEAR, ATTENTION, ATTENTION_SUFFIXES, LoraConfig
from tuneloop.providers.oss_lora.data import Batch, Encoded, answers_of, collate, encode_chat, rows_for


class TrainingStopped(RuntimeError):
    """Training was asked to stop (cancel); a checkpoint of the last step was written."""


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    model_dir: str
    steps: int
    trained_tokens: int
    metrics: dict[str, float]
    resumed_from: int | None = None
    notes: tuple[str, ...] = ()


@dataclass
class Loaded:
    """A base model with LoRA attached, its tokenizer and where it runs."""

    model: Any  # peft.PeftModel
    tokenizer: Any
    device: Any
    dtype: Any  # autocast dtype or None
    labels: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    attention: str = "varlen"  # packed-row isolation: per-example attention, or a block-diagonal mask


# -- model setup -------------------------------------------------------------------------------------


def resolve_device(config: LoraConfig, local_rank: int | None = None):
    """Where this process trains; a data-parallel rank on GPU gets GPU ``local_rank``."""
    import torch

    if config.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: 'cuda' asked but torch sees no GPU; use device='auto' or 'cpu'")
    kind = ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
    if kind == "cuda" and local_rank is not None:
        return torch.device("cuda", local_rank)
    return torch.device(kind)


def resolve_precision(config: LoraConfig, device) -> str:
    """'bf16' or 'fp32'. auto = bf16 on a GPU that supports it, fp32 on CPU."""
    import torch

    if config.precision != "auto":
        return config.precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def resolve_target_modules(model, target_modules: Sequence[str]) -> list[str] | str:
    """Expand the 'attention' shorthand to the model's attention projections; check names exist."""
    import torch

    if tuple(target_modules) == (ALL_LINEAR,):
        return "all-linear"
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    wanted = ATTENTION_SUFFIXES if tuple(target_modules) == (ATTENTION,) else tuple(target_modules)
    found = [t for t in wanted if any(n == t or n.endswith("." + t) for n in linear)]
    if not found or (tuple(target_modules) != (ATTENTION,) and len(found) != len(wanted)):
        missing = [t for t in wanted if t not in found]
        sample = sorted({n.rsplit(".", 1)[-1] for n in linear})[:20]
        raise ValueError(
            f"target_modules: {missing} match no linear layer of this model; its linear layers end in "
            f"{sample}; name some of those, or use 'attention' / 'all-linear'"
        )
    return found


def load_model(base_model: str, config: LoraConfig, labels: Sequence[str] = (), *,
               local_rank: int | None = None) -> Loaded:
    """Load tokenizer and base weights from a local folder and attach a freshly initialised LoRA."""
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    if not (Path(base_model) / "config.json").is_file():
        raise FileNotFoundError(
            f"base_model: {base_model!r} is not a local model folder (no config.json); download the "
            "weights (gs:// or hub) to a folder first and pass its path"
        )
    device = resolve_device(config, local_rank)
    precision = resolve_precision(config, device)
    weights_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    notes = [f"device {device}, precision {precision}"]
    torch.manual_seed(config.seed)  # a fresh head (classification) is initialised while loading
    if config.task == "causal-lm":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"base_model: {base_model} has a tokenizer without a chat template; use an instruct/chat "
                "model's tokenizer or add a chat_template to its tokenizer_config.json"
            )
        model = AutoModelForCausalLM.from_pretrained(base_model, dtype=weights_dtype, attn_implementation="sdpa")
        task_type = TaskType.CAUSAL_LM
    else:
        if len(labels) < 2:
            raise ValueError(f"labels: {list(labels)} — sequence classification needs at least 2 labels")
        model = AutoModelForSequenceClassification.from_pretrained(
            base_model, dtype=weights_dtype, num_labels=len(labels),
            id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)},
        )
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        task_type = TaskType.SEQ_CLS
    model.config.use_cache = False
    attention = "mask"
    if config.task == "causal-lm" and supports_varlen(model.config):
        model.set_attn_implementation(register_varlen())
        attention = "varlen"
    notes.append(f"packed attention: {attention}")
    if config.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    targets = resolve_target_modules(model, config.target_modules)
    peft_cfg = PeftLoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=targets,
        task_type=task_type, bias="none",
    )
    torch.manual_seed(config.seed)  # LoRA init is a function of the seed
    with quiet_peft():
        model = get_peft_model(model, peft_cfg)  # adapters stay fp32 (autocast_adapter_dtype)
    model.to(device)
    return Loaded(model, tokenizer, device, torch.bfloat16 if precision == "bf16" else None, tuple(labels), notes,
                  attention)


@contextlib.contextmanager
def quiet_peft():
    """Silence peft's use of a transformers API deprecated in 5.x (a FutureWarning on every load)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def autocast(loaded: Loaded):
    import torch

    if loaded.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=loaded.device.type, dtype=loaded.dtype)


# -- encoding ----------------------------------------------------------------------------------------


@dataclass
class ClsEncoded:
    """One classification example: token ids, label index, loss weight."""

    input_ids: tuple[int, ...]
    label: int
    weight: float

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_examples(loaded: Loaded, examples: Sequence[Example], config: LoraConfig) -> list:
    """Encode examples for the configured task (chat rows or classification rows)."""
    if config.task == "causal-lm":
        return [encode_chat(loaded.tokenizer, ex, config.max_seq_len) for ex in examples]
    index = {lab: i for i, lab in enumerate(loaded.labels)}
    out = []
    for ex in examples:
        target = ex.target
        if target not in index:
            raise ValueError(
                f"example {ex.id}: label {target!r} is not in labels {list(loaded.labels)}; add it to the "
                "label set or drop the example"
            )
        ids = loaded.tokenizer(ex.prompt_text, truncation=True, max_length=config.max_seq_len)["input_ids"]
        out.append(ClsEncoded(tuple(ids), index[target], ex.weight))
    return out


def collate_cls(encoded: Sequence[ClsEncoded], rows: Sequence[Sequence[int]], pad_id: int) -> dict[str, Any]:
    import torch

    items = [encoded[row[0]] for row in rows]
    width = max(len(e) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for r, e in enumerate(items):
        ids[r, : len(e)] = torch.tensor(e.input_ids)
        mask[r, : len(e)] = 1
    return {
        "input_ids": ids, "attention_mask": mask,
        "labels": torch.tensor([e.label for e in items]), "weights": torch.tensor([e.weight for e in items]),
        "real_tokens": int(mask.sum()), "weight_sum": float(sum(e.weight for e in items)),
    }


# -- loss --------------------------------------------------------------------------------------------


def _lm_parts(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings(), base.config


def causal_nll(model, batch: Batch):
    """Per-target NLL on supervised positions only: returns (nll[N], weights[N]).

    Runs the decoder body, then the LM head on the selected hidden states only (logits for the
    prompt tokens are never computed). ``use_cache=False`` matters: with a cache, transformers
    (5.x) ignores the packed layout and packed examples would attend to each other.
    """
    import torch
    import torch.nn.functional as F

    decoder, head, cfg = _lm_parts(model)
    hidden = decoder(**batch.model_inputs(), use_cache=False).last_hidden_state[:, :-1]
    sel = batch.target_weights > 0
    logits = head(hidden[sel]).float()
    cap = getattr(cfg, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    targets = batch.input_ids[:, 1:][sel]
    return F.cross_entropy(logits, targets, reduction="none"), batch.target_weights[sel]


def cls_nll(model, batch: dict[str, Any]):
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    return F.cross_entropy(logits, batch["labels"], reduction="none"), batch["weights"], logits


# -- schedule ----------------------------------------------------------------------------------------


def lr_lambda(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """Linear warmup to 1, then cosine down to ``min_ratio`` at ``total_steps``."""

    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


class Stream:
    """Micro-batches as a pure function of their index: epoch ``e`` is a seeded permutation of rows."""

    def __init__(self, n_rows: int, batch_size: int, seed: int):
        self.n_rows, self.batch_size, self.seed = n_rows, batch_size, seed
        self.per_epoch = -(-n_rows // batch_size)
        self._epoch, self._perm = -1, None

    def rows(self, index: int) -> list[int]:
        import torch

        epoch, k = divmod(index, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n_rows, generator=g).tolist()
        return self._perm[k * self.batch_size : (k + 1) * self.batch_size]


# -- the run -----------------------------------------------------------------------------------------


class Run:
    """One training run in ``run_dir`` (see module doc); build, then :meth:`train`.

    ``dist`` makes this process one rank of a data-parallel run (distributed.py builds it); without it
    the run is the single-process loop.
    """

    def __init__(self, config: LoraConfig, train: Sequence[Example], validation: Sequence[Example], *,
                 base_model: str, run_dir: str | Path, labels: Sequence[str] = (),
                 data_hash: str | None = None, log: Callable[[str], None] = print,
                 stop: threading.Event | None = None, dist: Any = None):
        if not train:
            raise ValueError("train: no examples; the oss-lora trainer needs at least one training example")
        self.config, self.base_model, self.run_dir = config, base_model, Path(run_dir)
        self.log, self.stop = log, stop or threading.Event()
        self.dist = dist
        self.rank, self.world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
        self.main = self.rank == 0
        self.answers = answers_of(train)
        self.data_hash = data_hash or dataset_hash([*train, *validation])
        self.loaded = load_model(base_model, config, labels, local_rank=self.rank if dist is not None else None)
        self.pad_id = self.loaded.tokenizer.pad_token_id
        self.train_enc = encode_examples(self.loaded, train, config)
        self.val_enc = encode_examples(self.loaded, validation, config)
        packing = config.packing and config.task == "causal-lm"
        self.train_rows = rows_for(self.train_enc, config.max_seq_len, packing)
        self.val_rows = rows_for(self.val_enc, config.max_seq_len, packing)
        self.stream = Stream(len(self.train_rows), config.batch_size, config.seed)
        # Loss weight and real tokens of every row: every rank knows the whole micro-batch's totals
        # without a collective (the loss is normalised by the global weight; tokens are counted globally).
        self.row_weight = [sum(self._example_weight(self.train_enc[i]) for i in row) for row in self.train_rows]
        self.row_tokens = [sum(len(self.train_enc[i]) for i in row) for row in self.train_rows]
        if config.max_steps:
            self.total_steps = config.max_steps
        else:
            self.total_steps = max(1, math.ceil(config.epochs * self.stream.per_epoch / config.grad_accum))
        truncated = sum(1 for e in self.train_enc if getattr(e, "truncated", False))
        if truncated:
            dropped = sum(1 for e in self.train_enc if getattr(e, "dropped_turns", 0))
            self.loaded.notes.append(
                f"{truncated} training examples longer than max_seq_len={config.max_seq_len}: {dropped} kept their "
                f"latest turns (oldest exchanges dropped), {truncated - dropped} were cut"
            )
        if dist is not None:
            self.loaded.notes.append(
                f"data-parallel rank {self.rank} of {self.world} ({dist.backend}): each takes its share of the "
                f"global micro-batch of {config.batch_size} rows"
            )

    def _example_weight(self, e) -> float:
        return float(sum(e.weights)) if self.config.task == "causal-lm" else float(e.weight)

    # -- batches
    def batch(self, encoded, rows) -> Any:
        if self.config.task == "causal-lm":
            return collate(encoded, rows, self.pad_id, mask=self.loaded.attention == "mask").to(self.loaded.device)
        b = collate_cls(encoded, rows, self.pad_id)
        return {k: (v.to(self.loaded.device) if hasattr(v, "to") else v) for k, v in b.items()}

    def _weight_sum(self, b) -> float:
        return b.weight_sum if self.config.task == "causal-lm" else b["weight_sum"]

    def _nll(self, b):
        if self.config.task == "causal-lm":
            return causal_nll(self.loaded.model, b)
        nll, w, _ = cls_nll(self.loaded.model, b)
        return nll, w

    def evaluate(self, *, collective: bool = True) -> dict[str, float]:
        """Mean NLL per supervised token (classification: per example, plus accuracy) on validation.

        Data-parallel and ``collective``: each rank scores its share of the rows and the sums are
        all-reduced (every rank must call it); otherwise this process scores every row.
        """
        import torch

        if not self.val_rows:
            return {}
        shard = self.dist is not None and collective
        rows = self.val_rows[self.rank :: self.world] if shard else self.val_rows
        model = self.loaded.model
        model.eval()
        total = count = correct = 0.0
        bs = self.config.batch_size
        with torch.no_grad(), autocast(self.loaded):
            for i in range(0, len(rows), bs):
                b = self.batch(self.val_enc, rows[i : i + bs])
                if self.config.task == "causal-lm":
                    nll, _ = causal_nll(model, b)
                else:
                    nll, _, logits = cls_nll(model, b)
                    correct += float((logits.argmax(-1) == b["labels"]).sum())
                total += float(nll.sum())
                count += nll.numel()
        if shard:
            total, count, correct = self.dist.sum([total, count, correct])
        model.train()
        out = {"val_loss": total / max(count, 1)}
        if self.config.task != "causal-lm":
            out["val_accuracy"] = correct / max(count, 1)
        return out

    def _optimizer(self):
        import torch

        params = [p for p in self.loaded.model.parameters() if p.requires_grad]
        kw = {"lr": self.config.learning_rate, "weight_decay": self.config.weight_decay}
        try:
            opt = torch.optim.AdamW(params, fused=True, **kw)
        except (RuntimeError, TypeError):
            opt = torch.optim.AdamW(params, **kw)
        warmup = round(self.config.warmup_ratio * self.total_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lr_lambda(self.total_steps, warmup, self.config.min_lr_ratio)
        )
        return opt, sched

    def _progress(self, event: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / "progress.jsonl").open("a") as f:
            f.write(json.dumps(event, sort_keys=True) + "\n")

    def _meta(self, step, best, best_step, tokens, history) -> ckpt.CheckpointMeta:
        return ckpt.CheckpointMeta(
            step=step, config=self.config.to_dict(), data_hash=self.data_hash, base_model=self.base_model,
            base_fingerprint=ckpt.base_fingerprint(self.base_model), labels=self.loaded.labels,
            best_val_loss=best, best_step=best_step, trained_tokens=tokens, history=tuple(history),
            world_size=self.world,
        )

    def _stop_asked(self) -> bool:
        """Whether to stop now; data-parallel, every rank agrees (any rank asked), so all stop together."""
        asked = self.stop.is_set()
        return self.dist.any(asked) if self.dist is not None else asked

    def _dropout_seed(self, step: int = 0) -> int:
        return self.config.seed + 1 + 1_000 * self.rank + step

    def train(self, *, stop_after: int | None = None) -> TrainResult | None:
        """Train to ``total_steps`` (resuming from the latest checkpoint), then write ``model/``.

        ``stop_after`` ends early after that step with a checkpoint (for tests of resume). Data-parallel,
        rank 0 returns the result and the other ranks None.
        """
        import torch

        cfg, model = self.config, self.loaded.model
        opt, sched = self._optimizer()
        step, best, best_step, tokens, history = 0, None, None, 0, []
        resumed_from, notes = None, list(self.loaded.notes)
        torch.manual_seed(self._dropout_seed())  # the dropout stream (one per rank)
        last = ckpt.latest_checkpoint(self.run_dir)
        if last is not None:
            meta = ckpt.read_meta(last)
            notes += ckpt.check_resumable(meta, config=cfg, data_hash=self.data_hash, base_model=self.base_model,
                                          labels=self.loaded.labels, where=last)
            if meta.world_size != self.world:
                notes.append(
                    f"world_size: {last.name} was written by {meta.world_size} process(es), this run has "
                    f"{self.world}: the global micro-batches are the same, re-split across the processes"
                )
            restored = ckpt.load_checkpoint(last, model=model, optimizer=opt, scheduler=sched, rank=self.rank,
                                            world_size=self.world)
            if not restored:  # a rank the checkpoint had no RNG state for: a fresh dropout stream
                torch.manual_seed(self._dropout_seed(meta.step))
            step, best, best_step, tokens = meta.step, meta.best_val_loss, meta.best_step, meta.trained_tokens
            history, resumed_from = list(meta.history), meta.step
            if self.main:
                self.log(f"[oss-lora] resuming from {last.name} (step {step}/{self.total_steps})")
        if self.main:
            for n in notes:
                self.log(f"[oss-lora] {n}")
        objective = None
        if self.dist is not None:
            from tuneloop.providers.oss_lora.distributed import data_parallel

            objective = data_parallel(model, self._nll)
        model.train()
        window_tokens, window_t, window_loss, window_n = 0, time.perf_counter(), 0.0, 0
        train_time = 0.0
        latest: dict[str, float] = {}  # the last log window's numbers, for the progress line
        while step < self.total_steps:
            if self._stop_asked():
                self._save(step, best, best_step, tokens, history, model, opt, sched)
                raise TrainingStopped(f"stopped at step {step}; checkpoint written, resume continues from it")
            t0 = time.perf_counter()
            groups = [self.stream.rows(step * cfg.grad_accum + k) for k in range(cfg.grad_accum)]
            if objective is None:
                step_loss, real = self._step_alone(groups)
            else:
                step_loss, real = self._step_parallel(objective, groups)
            tokens += real
            window_tokens += real
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            train_time += time.perf_counter() - t0
            window_loss += step_loss
            window_n += 1
            if step % cfg.log_interval == 0 or step == self.total_steps:
                dt = time.perf_counter() - window_t
                loss_sum = float(window_loss)
                if self.dist is not None:  # each rank holds its rows' share of the mean: the sum is the mean
                    loss_sum = self.dist.sum([loss_sum])[0]
                event = {"event": "train", "step": step, "loss": loss_sum / window_n,
                         "lr": sched.get_last_lr()[0], "tokens_per_s": window_tokens / max(dt, 1e-9)}
                if self.main:
                    self.log(f"[oss-lora] step {step}/{self.total_steps} loss {event['loss']:.4f} "
                             f"lr {event['lr']:.2e} {event['tokens_per_s']:.0f} tok/s")
                    self._progress(event)
                history.append({k: event[k] for k in ("step", "loss")})
                latest = {"loss": event["loss"], "tokens_per_s": event["tokens_per_s"]}
                window_tokens, window_t, window_loss, window_n = 0, time.perf_counter(), 0.0, 0
            progress.tick("lora", step, self.total_steps, **latest)
            if self.val_rows and ((cfg.eval_interval and step % cfg.eval_interval == 0) or step == self.total_steps):
                ev = self.evaluate()
                history.append({"step": step, **ev})
                if self.main:
                    self._progress({"event": "eval", "step": step, **ev})
                    self.log(f"[oss-lora] eval step {step}: " + " ".join(f"{k} {v:.4f}" for k, v in ev.items()))
                if best is None or ev["val_loss"] < best:
                    best, best_step = ev["val_loss"], step
                    if self.main:
                        ckpt.save_best(self.run_dir, model)
                window_t = time.perf_counter()
            if (cfg.checkpoint_interval and step % cfg.checkpoint_interval == 0) or step == self.total_steps \
                    or step == stop_after:
                self._save(step, best, best_step, tokens, history, model, opt, sched)
                window_t = time.perf_counter()
            if step == stop_after and step < self.total_steps:
                raise TrainingStopped(f"stopped after step {step} as asked; checkpoint written")
        if not self.main:
            return None
        return self._finish(step, best, best_step, tokens, history, resumed_from, notes, train_time)

    def _step_alone(self, groups):
        """One optimizer step's forward/backward in this process: (loss of the step, real tokens)."""
        micro = [self.batch(self.train_enc, [self.train_rows[i] for i in rows]) for rows in groups]
        total_w = sum(self._weight_sum(b) for b in micro)
        step_loss, real = 0.0, 0
        for b in micro:
            with autocast(self.loaded):
                nll, w = self._nll(b)
            loss = (nll * w).sum() / max(total_w, 1e-12)
            loss.backward()
            step_loss = step_loss + loss.detach()  # stays on the device: no sync per micro-batch
            real += b.real_tokens if self.config.task == "causal-lm" else b["real_tokens"]
        return step_loss, real

    def _step_parallel(self, objective, groups):
        """This rank's share of one optimizer step (see module doc): (its share of the step loss, the step's
        real tokens over all ranks). DDP averages gradients over ranks, so each rank's loss is scaled by
        the world size: the result is the gradient of the whole micro-batch's weighted mean."""
        total_w = sum(self.row_weight[i] for rows in groups for i in rows)
        step_loss = 0.0
        for k, rows in enumerate(groups):
            mine, scale = rows[self.rank :: self.world], float(self.world)
            if not mine:  # a short last micro-batch: take part in the all-reduce with a zero-weighted row
                mine, scale = rows[:1], 0.0
            b = self.batch(self.train_enc, [self.train_rows[i] for i in mine])
            sync = objective.no_sync() if k < len(groups) - 1 else contextlib.nullcontext()
            with sync:
                with autocast(self.loaded):
                    nll, w = objective(b)
                local = (nll * w).sum() / max(total_w, 1e-12)
                (local * scale).backward()
            if scale:
                step_loss = step_loss + local.detach()
        return step_loss, sum(self.row_tokens[i] for rows in groups for i in rows)

    def _save(self, step, best, best_step, tokens, history, model, opt, sched):
        meta = self._meta(step, best, best_step, tokens, history)
        if self.dist is None:
            ckpt.save_checkpoint(self.run_dir, meta, model=model, optimizer=opt, scheduler=sched,
                                 keep=self.config.keep_checkpoints)
            return
        states = self.dist.gather(ckpt.rng_state(all_devices=False))
        if self.main:
            ckpt.save_checkpoint(self.run_dir, meta, model=model, optimizer=opt, scheduler=sched,
                                 keep=self.config.keep_checkpoints, rng_states=states)
        self.dist.barrier()  # no rank leaves (a stop) before the checkpoint is on disk

    def _finish(self, step, best, best_step, tokens, history, resumed_from, notes, train_time) -> TrainResult:
        import shutil

        model, tok = self.loaded.model, self.loaded.tokenizer
        final = self.evaluate(collective=False) if self.val_rows else {}
        if best is not None and ckpt.load_best(self.run_dir, model):
            chosen = self.evaluate(collective=False)
        else:
            chosen, best_step = final, step
        if self.loaded.attention == "varlen":
            model.get_base_model().set_attn_implementation("sdpa")  # what the saved model is loaded with
        out = self.run_dir / ckpt.MODEL_DIR
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        train_losses = [h["loss"] for h in history if "loss" in h]
        metrics = {"steps": float(step), "best_step": float(best_step), "trained_tokens": float(tokens)}
        if train_losses:
            metrics.update(first_train_loss=train_losses[0], final_train_loss=train_losses[-1])
        if final:
            metrics["final_val_loss"] = final["val_loss"]
        metrics.update({k: v for k, v in chosen.items()})
        if train_time > 0 and resumed_from is None:
            metrics["tokens_per_s"] = tokens / train_time
        merged = False
        if self.config.merge:
            model.merge_and_unload().save_pretrained(tmp / ckpt.MERGED_DIR)
            tok.save_pretrained(tmp / ckpt.MERGED_DIR)
            merged = True
        ckpt.write_manifest(tmp, {
            "task": self.config.task, "base_model": self.base_model, "labels": list(self.loaded.labels),
            "config": self.config.to_dict(), "data_hash": self.data_hash, "metrics": metrics,
            "merged": merged, "best_step": best_step, "answers": self.answers, "world_size": self.world,
        })
        ckpt.replace_dir(tmp, out)
        self.log(f"[oss-lora] wrote {out} (best step {best_step}, " +
                 " ".join(f"{k} {v:.4f}" for k, v in chosen.items()) + ")")
        return TrainResult(str(out), step, tokens, metrics, resumed_from, tuple(notes))


def train(config: LoraConfig, train: Sequence[Example], validation: Sequence[Example], *, base_model: str,
          run_dir: str | Path, labels: Sequence[str] = (), data_hash: str | None = None,
          log: Callable[[str], None] = print, stop: threading.Event | None = None) -> TrainResult:
    """Train a LoRA adapter on ``train`` (validated on ``validation``) into ``run_dir``; resumes if it can.

    Args:
        config: the trainer configuration.
        train: training examples (chat; for classification the target is the label).
        validation: held-out examples for the validation loss and best-checkpoint choice (may be empty).
        base_model: a local folder with the base weights, config and tokenizer.
        run_dir: where checkpoints, progress and the final ``model/`` go.
        labels: the label set (sequence classification only).
        data_hash: identity of the dataset (default: hash of the examples).
        log: where progress lines go.
        stop: set it to stop after the current step (a checkpoint is written).

    Returns:
        The :class:`TrainResult` with the model folder and metrics.
    """
    return Run(config, train, validation, base_model=base_model, run_dir=run_dir, labels=labels,
               data_hash=data_hash, log=log, stop=stop).train()


__all__ = ["Encoded", "Loaded", "Run", "TrainResult", "TrainingStopped", "load_model", "train"]
