"""The LoRA trainer's configuration: one frozen dataclass, every default in one place, checked on build.

A pipeline passes hyperparameters as a JSON mapping; ``tuneloop.config.from_mapping`` turns it
into a checked config (unknown keys are refused with the list of known ones, so a typo never silently
trains with a default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tuneloop.config import ConfigError, setting

TASKS = ("causal-lm", "sequence-classification")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
# target_modules shorthands: the attention projections of the loaded model, or every linear layer.
ATTENTION = "attention"
ALL_LINEAR = "all-linear"
# Module-name suffixes that are attention projections, across Llama/Qwen/Mistral/Gemma (q/k/v/o_proj),
# Phi-3 (qkv_proj, o_proj), BERT/MiniLM (query/key/value, attention.output.dense), GPT-2 (c_attn).
ATTENTION_SUFFIXES = (
    "q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj",
    "query", "key", "value", "attention.output.dense", "c_attn",
)

# Fields that define the shape of what is trained: a checkpoint written under other values cannot be
# resumed (its tensors would not fit, or it would be another model).
SHAPE_FIELDS = ("task", "rank", "alpha", "target_modules", "max_seq_len", "packing")

# max_new_tokens=0 (auto): a label is a few tokens; a chat reply (a game line, a support answer) a few sentences.
LABEL_NEW_TOKENS = 32
CHAT_NEW_TOKENS = 256


@dataclass(frozen=True)
class LoraConfig:
    """LoRA supervised fine-tuning of an open model (causal LM or sequence classification)."""

    task: str = setting("causal-lm", help=f"one of {TASKS}")
    rank: int = setting(16, help="LoRA rank r")
    alpha: float = setting(32.0, help="LoRA alpha (scale = alpha / rank)")
    dropout: float = setting(0.05, help="dropout on the LoRA input")
    target_modules: tuple[str, ...] = setting(
        (ATTENTION,),
        help="module-name suffixes to adapt, or 'attention' (default) or 'all-linear'",
    )
    learning_rate: float = setting(2e-4, help="peak learning rate")
    warmup_ratio: float = setting(0.05, help="fraction of steps of linear warmup")
    min_lr_ratio: float = setting(0.1, help="cosine decays to this fraction of the peak")
    weight_decay: float = setting(0.0, help="AdamW weight decay")
    max_grad_norm: float = setting(1.0, help="gradient clipping (0 = off)")
    batch_size: int = setting(8, help="packed rows (or examples) per micro-batch")
    grad_accum: int = setting(1, help="micro-batches per optimizer step")
    max_steps: int = setting(0, help="optimizer steps; 0 = derive from epochs")
    epochs: float = setting(3.0, help="passes over the training rows (if max_steps=0)")
    max_seq_len: int = setting(1024, help="tokens per packed row / example")
    packing: bool = setting(True, help="pack several examples per row (isolated)")
    seed: int = setting(0, help="seeds LoRA init, dropout and data order")
    eval_interval: int = setting(50, help="steps between validation passes (0 = end only)", job_key=False)
    checkpoint_interval: int = setting(50, help="steps between checkpoints (0 = end only)", job_key=False)
    keep_checkpoints: int = setting(1, help="how many step checkpoints to keep", job_key=False)
    log_interval: int = setting(10, help="steps between progress lines", job_key=False)
    precision: str = setting("auto", help="auto (bf16 on GPU, fp32 on CPU), fp32, bf16")
    gradient_checkpointing: bool = setting(False, help="recompute activations")
    merge: bool = setting(False, help="also write a merged (adapter folded in) model")
    device: str = setting("auto", help=f"one of {DEVICES}", job_key=False)
    world_size: int = setting(
        0,
        help="data-parallel training processes: 0 = one per visible GPU (1 on CPU); N > 1 on CPU runs N gloo "
             "processes. batch_size is the global micro-batch, split across them, so it changes no result",
        job_key=False,
    )
    max_new_tokens: int = setting(
        0,
        help=f"predict: longest generated answer; 0 = auto: {LABEL_NEW_TOKENS} for a model trained on labelled "
             f"(classification) examples, {CHAT_NEW_TOKENS} for a chat model",
        job_key=False,
    )
    predict_batch_size: int = setting(16, help="predict: prompts per batch", job_key=False)

    def __post_init__(self):
        tm = self.target_modules
        if isinstance(tm, str):
            tm = tuple(t.strip() for t in tm.split(",") if t.strip())
        elif isinstance(tm, list | tuple):
            tm = tuple(str(t) for t in tm)
        object.__setattr__(self, "target_modules", tm)
        _choice("task", self.task, TASKS)
        _choice("precision", self.precision, PRECISIONS)
        _choice("device", self.device, DEVICES)
        if not tm:
            raise ConfigError("target_modules: is empty; use 'attention', 'all-linear' or module names")
        if (ATTENTION in tm or ALL_LINEAR in tm) and len(tm) > 1:
            raise ConfigError(
                f"target_modules: {list(tm)} mixes a shorthand with names; give 'attention', 'all-linear' "
                "or a list of module names"
            )
        for name in ("rank", "batch_size", "grad_accum", "max_seq_len", "keep_checkpoints", "log_interval",
                     "predict_batch_size"):
            _positive_int(name, getattr(self, name))
        for name in ("max_steps", "seed", "eval_interval", "checkpoint_interval", "world_size", "max_new_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{name}: {v!r} must be an integer >= 0")
        for name in ("alpha", "learning_rate"):
            v = getattr(self, name)
            if not _number(v) or v <= 0:
                raise ConfigError(f"{name}: {v!r} must be a positive number")
        for name in ("dropout", "warmup_ratio", "min_lr_ratio"):
            v = getattr(self, name)
            if not _number(v) or not 0 <= v <= 1:
                raise ConfigError(f"{name}: {v!r} must be a number in [0, 1]")
        for name in ("weight_decay", "max_grad_norm"):
            v = getattr(self, name)
            if not _number(v) or v < 0:
                raise ConfigError(f"{name}: {v!r} must be a number >= 0")
        if self.max_steps == 0 and (not _number(self.epochs) or self.epochs <= 0):
            raise ConfigError(f"epochs: {self.epochs!r} must be > 0 when max_steps is 0; set one of them")
        if self.max_seq_len < 16:
            raise ConfigError(f"max_seq_len: {self.max_seq_len} is too short to hold a chat turn; use >= 16")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d

    def shape(self) -> dict[str, Any]:
        """The shape-defining fields (see SHAPE_FIELDS) as plain data."""
        d = self.to_dict()
        return {k: d[k] for k in SHAPE_FIELDS}


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _positive_int(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{name}: {v!r} must be an integer >= 1")


def _choice(name: str, v: Any, allowed: tuple[str, ...]) -> None:
    if v not in allowed:
        raise ConfigError(f"{name}: {v!r} is not one of {list(allowed)}")
