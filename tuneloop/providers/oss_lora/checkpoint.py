"""Checkpoints that describe themselves, and the model manifest that ``predict`` reads.

A checkpoint folder ``checkpoints/step-000120/`` holds:

- ``trainable.safetensors``: every trainable tensor (LoRA A/B, a classification head) by parameter name;
- ``state.pt``: optimizer, LR scheduler and RNG states (torch CPU/CUDA, Python, NumPy; one per training
  process when several trained it data-parallel);
- ``checkpoint.json``: step, the full config, the data hash, the base model's fingerprint, the labels,
  best validation loss so far and its step, trained tokens, and how many processes wrote it.

Folders are written under a temporary name and renamed into place, so a crash mid-write never leaves a
half checkpoint that looks whole. :func:`check_resumable` refuses to continue under a changed
shape-defining config, other data or another base model, naming the field and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.providers.oss_lora.config import SHAPE_FIELDS, LoraConfig

CHECKPOINT_FORMAT = "tuneloop-oss-lora-checkpoint/1"
MODEL_FORMAT = "tuneloop-oss-lora-model/1"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
MODEL_DIR = "model"
MERGED_DIR = "merged"
MANIFEST = "tuneloop_lora.json"
TRAINABLE_FILE = "trainable.safetensors"
STATE_FILE = "state.pt"
META_FILE = "checkpoint.json"


class CheckpointMismatch(ValueError):
    """A checkpoint was written by a different run (config shape, data or base model)."""


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about itself."""

    step: int
    config: Mapping[str, Any]
    data_hash: str
    base_model: str
    base_fingerprint: str
    labels: tuple[str, ...] = ()
    best_val_loss: float | None = None
    best_step: int | None = None
    trained_tokens: int = 0
    format: str = CHECKPOINT_FORMAT
    history: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    world_size: int = 1  # training processes (data-parallel ranks) that wrote it

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format, "step": self.step, "config": dict(self.config), "data_hash": self.data_hash,
            "base_model": self.base_model, "base_fingerprint": self.base_fingerprint,
            "labels": list(self.labels), "best_val_loss": self.best_val_loss, "best_step": self.best_step,
            "trained_tokens": self.trained_tokens, "history": [dict(h) for h in self.history],
            "world_size": self.world_size,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckpointMeta:
        return cls(
            step=int(d["step"]), config=d["config"], data_hash=d["data_hash"], base_model=d["base_model"],
            base_fingerprint=d["base_fingerprint"], labels=tuple(d.get("labels") or ()),
            best_val_loss=d.get("best_val_loss"), best_step=d.get("best_step"),
            trained_tokens=int(d.get("trained_tokens", 0)), format=d.get("format", CHECKPOINT_FORMAT),
            history=tuple(d.get("history") or ()), world_size=int(d.get("world_size", 1)),
        )


def base_fingerprint(base_model: str) -> str:
    """sha256 of the base model's config.json (its architecture and sizes); the path if not local."""
    cfg = Path(base_model) / "config.json"
    if cfg.is_file():
        return hashlib.sha256(cfg.read_bytes()).hexdigest()[:16]
    return hashlib.sha256(base_model.encode()).hexdigest()[:16]


def rng_state(*, all_devices: bool = True) -> dict[str, Any]:
    """This process's RNG states. ``all_devices=False`` (a data-parallel rank): only its own GPU's, so a
    rank never touches (and allocates a context on) the other ranks' GPUs."""
    import numpy as np
    import torch

    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all() if all_devices else torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Mapping[str, Any], *, all_devices: bool = True) -> None:
    """Restore RNG states (see :func:`rng_state`; ``all_devices=False``: only this process's GPU)."""
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, torch.Tensor):
            torch.cuda.set_rng_state(cuda)  # one device's (a rank's) state: this process's device
        elif not all_devices:
            here = torch.cuda.current_device()
            if here < len(cuda):
                torch.cuda.set_rng_state(cuda[here])
        elif len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def trainable_state(model) -> dict[str, Any]:
    """Every parameter that requires grad, detached and contiguous on CPU, by name."""
    return {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model, tensors: Mapping[str, Any]) -> None:
    """Copy saved trainable tensors into ``model``; refuses missing or unexpected names."""
    import torch

    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing, extra = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or extra:
        raise CheckpointMismatch(
            f"trainable tensors differ: missing {missing[:3]}, unexpected {extra[:3]}; the checkpoint was "
            "written for another adapter layout"
        )
    with torch.no_grad():
        for n, p in params.items():
            if p.shape != tensors[n].shape:
                raise CheckpointMismatch(f"{n}: checkpoint shape {tuple(tensors[n].shape)} != {tuple(p.shape)}")
            p.copy_(tensors[n].to(p.device, p.dtype))


def replace_dir(tmp: Path, final: Path) -> None:
    """Move the finished folder ``tmp`` to ``final``; an existing ``final`` is moved aside, then removed."""
    if final.exists():
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _tmp_dir(final: Path) -> Path:
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def save_checkpoint(run_dir: str | Path, meta: CheckpointMeta, *, model, optimizer, scheduler,
                    keep: int = 1, rng_states: Sequence[Mapping[str, Any]] | None = None) -> Path:
    """Write ``checkpoints/step-NNNNNN`` atomically and prune older ones down to ``keep``.

    ``rng_states``: every rank's RNG state, by rank (data-parallel training; rank 0 writes); default:
    this process's.
    """
    import torch
    from safetensors.torch import save_file

    root = Path(run_dir) / CHECKPOINTS_DIR
    final = root / f"step-{meta.step:06d}"
    tmp = _tmp_dir(final)
    save_file(trainable_state(model), str(tmp / TRAINABLE_FILE))
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    if rng_states:
        state.update(rng=rng_states[0], rng_ranks=list(rng_states))
    else:
        state["rng"] = rng_state()
    torch.save(state, tmp / STATE_FILE)
    (tmp / META_FILE).write_text(json.dumps(meta.to_dict(), indent=2, sort_keys=True))
    replace_dir(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / META_FILE).is_file() and not p.name.endswith(".old"))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def read_meta(ckpt: str | Path) -> CheckpointMeta:
    return CheckpointMeta.from_dict(json.loads((Path(ckpt) / META_FILE).read_text()))


def load_checkpoint(ckpt: str | Path, *, model, optimizer, scheduler, rank: int = 0, world_size: int = 1) -> bool:
    """Restore trainable tensors, optimizer and scheduler from ``ckpt``, and this rank's RNG state.

    The optimizer state is the same on every rank (data-parallel ranks step on the same averaged
    gradients), so any world size can load it. Returns whether an RNG state for ``rank`` was restored:
    with the world size the checkpoint was written with, always; with another, only rank 0's (the others
    start fresh dropout streams).
    """
    import torch
    from safetensors.torch import load_file

    ckpt = Path(ckpt)
    load_trainable(model, load_file(str(ckpt / TRAINABLE_FILE)))
    state = torch.load(ckpt / STATE_FILE, weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    ranks = state.get("rng_ranks") or [state["rng"]]
    alone = world_size == 1
    if len(ranks) == world_size:
        set_rng_state(ranks[rank], all_devices=alone)
        return True
    if rank == 0:
        set_rng_state(ranks[0], all_devices=alone)
        return True
    return False


def check_resumable(meta: CheckpointMeta, *, config: LoraConfig, data_hash: str, base_model: str,
                    labels: Sequence[str], where: str | Path) -> list[str]:
    """Raise CheckpointMismatch if ``meta`` belongs to another run; return notes on harmless changes."""
    fix = f"delete {where} to start a new run, or restore the value it was written with"
    new = config.to_dict()
    for name in SHAPE_FIELDS:
        if meta.config.get(name) != new[name]:
            raise CheckpointMismatch(
                f"{name}: the checkpoint at {where} was trained with {meta.config.get(name)!r}, this run asks "
                f"for {new[name]!r}; it shapes the run, so it cannot be resumed; {fix}"
            )
    if meta.data_hash != data_hash:
        raise CheckpointMismatch(
            f"data_hash: the checkpoint at {where} was trained on dataset {meta.data_hash[:12]}, this run "
            f"has {data_hash[:12]}; {fix}"
        )
    if meta.base_fingerprint != base_fingerprint(base_model):
        raise CheckpointMismatch(
            f"base_model: the checkpoint at {where} was trained on {meta.base_model} (config "
            f"{meta.base_fingerprint}), this run uses {base_model}; {fix}"
        )
    if tuple(meta.labels) != tuple(labels):
        raise CheckpointMismatch(f"labels: checkpoint has {list(meta.labels)}, this run {list(labels)}; {fix}")
    return [
        f"{k}: {meta.config.get(k)!r} -> {v!r}" for k, v in new.items() if k not in SHAPE_FIELDS
        and meta.config.get(k) != v
    ]


def save_best(run_dir: str | Path, model) -> Path:
    """Keep the trainable tensors of the best validation step in ``best/`` (atomic)."""
    from safetensors.torch import save_file

    final = Path(run_dir) / BEST_DIR
    tmp = _tmp_dir(final)
    save_file(trainable_state(model), str(tmp / TRAINABLE_FILE))
    replace_dir(tmp, final)
    return final


def load_best(run_dir: str | Path, model) -> bool:
    """Load ``best/`` into ``model`` if present; returns whether it was."""
    from safetensors.torch import load_file

    f = Path(run_dir) / BEST_DIR / TRAINABLE_FILE
    if not f.is_file():
        return False
    load_trainable(model, load_file(str(f)))
    return True


def write_manifest(model_dir: str | Path, manifest: Mapping[str, Any]) -> Path:
    p = Path(model_dir) / MANIFEST
    p.write_text(json.dumps({"format": MODEL_FORMAT, **manifest}, indent=2, sort_keys=True))
    return p


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    """The manifest of a trained model folder; raises FileNotFoundError naming the folder."""
    p = Path(model_dir) / MANIFEST
    if not p.is_file():
        raise FileNotFoundError(
            f"{model_dir}: no {MANIFEST}; model_ref must be the 'model' folder an oss-lora run wrote"
        )
    return json.loads(p.read_text())
