"""The LoRA trainer's configuration: one frozen dataclass, every default in one place, checked on build.

A pipeline passes hyperparameters as a JSON mapping; :meth:`LoraConfig.from_hyperparameters` turns it
into a checked config (unknown keys are refused with the list of known ones, so a typo never silently
trains with a default).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuneloop.config import ConfigError as BaseConfigError

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


class ConfigError(BaseConfigError):
    """A hyperparameter with a bad value; the message names it, the value, and the fix."""


@dataclass(frozen=True)
class LoraConfig:
    """LoRA supervised fine-tuning of an open model (causal LM or sequence classification)."""

    task: str = field(default="causal-lm", metadata={"help": f"one of {TASKS}"})
    rank: int = field(default=16, metadata={"help": "LoRA rank r"})
    alpha: float = field(default=32.0, metadata={"help": "LoRA alpha (scale = alpha / rank)"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    target_modules: tuple[str, ...] = field(
        default=(ATTENTION,),
        metadata={"help": "module-name suffixes to adapt, or 'attention' (default) or 'all-linear'"},
    )
    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "fraction of steps of linear warmup"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "cosine decays to this fraction of the peak"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0 = off)"})
    batch_size: int = field(default=8, metadata={"help": "packed rows (or examples) per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    max_steps: int = field(default=0, metadata={"help": "optimizer steps; 0 = derive from epochs"})
    epochs: float = field(default=3.0, metadata={"help": "passes over the training rows (if max_steps=0)"})
    max_seq_len: int = field(default=1024, metadata={"help": "tokens per packed row / example"})
    packing: bool = field(default=True, metadata={"help": "pack several examples per row (isolated)"})
    seed: int = field(default=0, metadata={"help": "seeds LoRA init, dropout and data order"})
    eval_interval: int = field(default=50, metadata={"help": "steps between validation passes (0 = end only)"})
    checkpoint_interval: int = field(default=50, metadata={"help": "steps between checkpoints (0 = end only)"})
    keep_checkpoints: int = field(default=1, metadata={"help": "how many step checkpoints to keep"})
    log_interval: int = field(default=10, metadata={"help": "steps between progress lines"})
    precision: str = field(default="auto", metadata={"help": "auto (bf16 on GPU, fp32 on CPU), fp32, bf16"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations"})
    merge: bool = field(default=False, metadata={"help": "also write a merged (adapter folded in) model"})
    device: str = field(default="auto", metadata={"help": f"one of {DEVICES}"})
    max_new_tokens: int = field(default=32, metadata={"help": "predict: longest generated answer"})
    predict_batch_size: int = field(default=16, metadata={"help": "predict: prompts per batch"})

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
                     "max_new_tokens", "predict_batch_size"):
            _positive_int(name, getattr(self, name))
        for name in ("max_steps", "seed", "eval_interval", "checkpoint_interval"):
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

    @classmethod
    def from_hyperparameters(cls, hp: Mapping[str, Any] | None) -> LoraConfig:
        """Build from a pipeline's hyperparameter mapping; refuses unknown keys, coerces JSON numbers."""
        hp = dict(hp or {})
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(hp) - set(known))
        if unknown:
            raise ConfigError(
                f"hyperparameters: unknown key(s) {unknown}; the oss-lora provider knows {sorted(known)}"
            )
        kwargs = {}
        for k, v in hp.items():
            default = known[k].default
            if isinstance(default, bool):
                if isinstance(v, str) and v.lower() in ("true", "false"):
                    v = v.lower() == "true"
            elif isinstance(default, int) and isinstance(v, float) and v.is_integer():
                v = int(v)
            elif isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            kwargs[k] = v
        return cls(**kwargs)

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
