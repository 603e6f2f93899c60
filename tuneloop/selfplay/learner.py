"""Train the policy/value net on a combined (memory-mapped) training set.

Loss per position = policy cross-entropy against the sparse visit-count target
+ ``value_weight`` x (value - outcome)^2 + ``mp_value_weight`` x mean over seats of the multi-player
value error, weighted by ``sample_weights``. Positions are split into train/validation *by game*
(a hash of ``game_ids``), so no game leaks across the split.

Batches are gathered straight from the memory maps (sorted indices for locality); the sparse policy
target is never densified: the loss gathers ``log_softmax`` at the target's action ids.
Checkpoints describe themselves (net shape, board config, step, optimizer) and training resumes from
one only when the shape and board config match.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from tuneloop.selfplay import npz
from tuneloop.selfplay.net import (
    NetConfig,
    PolicyValueNet,
    device_for,
    read_checkpoint,
    save_checkpoint,
    set_threads,
)


@dataclass(frozen=True)
class TrainConfig:
    """Trainer settings (defaults suit the hex5 3x32 net on a laptop).

    Attributes:
        blocks: residual blocks.
        channels: channels per block.
        steps: optimizer steps (ignored when ``epochs`` is set).
        epochs: passes over the training split; overrides ``steps`` when set.
        batch_size: positions per step.
        lr: AdamW learning rate (cosine-decayed to 10% over the run).
        weight_decay: AdamW weight decay.
        value_weight: weight of the scalar value loss.
        mp_value_weight: weight of the multi-player value loss.
        val_fraction: share of games held out for validation.
        eval_every: steps between validation passes (0 = only at the end).
        checkpoint_every: steps between checkpoints written for resume (0 = only at the end).
        seed: seeds the split hash salt, the init and the batch order.
        threads: torch CPU threads; None = the free cores.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    """

    blocks: int = 3
    channels: int = 32
    steps: int = 1000
    epochs: float | None = None
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    value_weight: float = 1.0
    mp_value_weight: float = 1.0
    val_fraction: float = 0.1
    eval_every: int = 0
    checkpoint_every: int = 0
    seed: int = 0
    threads: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.blocks < 0 or self.channels < 1:
            raise ValueError(f"blocks ({self.blocks}) must be >= 0 and channels ({self.channels}) >= 1")
        if self.steps < 1:
            raise ValueError(f"steps: {self.steps} must be >= 1")
        if self.epochs is not None and not self.epochs > 0:
            raise ValueError(f"epochs: {self.epochs} must be > 0 or None")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: {self.batch_size} must be >= 1 (try 256)")
        if not self.lr > 0:
            raise ValueError(f"lr: {self.lr} must be > 0 (try 2e-3)")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction: {self.val_fraction} must lie in [0, 1)")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads: {self.threads} must be >= 1 or None (the free cores)")
        for name in ("value_weight", "mp_value_weight", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: {getattr(self, name)} must be >= 0")


def split_by_game(game_ids: np.ndarray, val_fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of validation rows: a game is wholly in or out (hash of its id and ``seed``).

    With ``val_fraction > 0`` and at least two games, at least one game is held out and one kept.
    """
    gids = np.asarray(game_ids, dtype=np.int64)
    if val_fraction <= 0:
        return np.zeros(gids.size, dtype=bool)
    uniq, inverse = np.unique(gids, return_inverse=True)
    # splitmix64 of (id ^ salt): a stable, well-mixed bucket per game
    with np.errstate(over="ignore"):
        x = uniq.view(np.uint64) ^ np.uint64((seed * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    bucket = (x % np.uint64(1_000_000)).astype(np.float64) / 1_000_000
    val_games = bucket < val_fraction
    if uniq.size >= 2:
        if not val_games.any():
            val_games[np.argmin(bucket)] = True
        if val_games.all():
            val_games[np.argmax(bucket)] = False
    return val_games[inverse]


class Batches:
    """Gathers batches from a (memory-mapped) :class:`npz.PositionSet` into torch tensors."""

    def __init__(self, data: npz.PositionSet, rows: np.ndarray, device: torch.device):
        self.data = data
        self.rows = np.asarray(rows, dtype=np.int64)
        self.device = device
        self.offsets = np.asarray(data.policy_offsets)  # small: N + 1 int64, read once
        self.weights = data.weights()

    def gather(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """Tensors for rows ``idx`` (sorted for memory-map locality)."""
        idx = np.sort(idx)
        d, dev = self.data, self.device
        starts = self.offsets[idx]
        lengths = self.offsets[idx + 1] - starts
        flat = npz.csr_gather_positions(starts, lengths)
        rows = np.repeat(np.arange(idx.size, dtype=np.int64), lengths)
        nb = dev.type == "cuda"

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(dev, non_blocking=nb)

        return {
            "planes": t(d.features[idx]).float(),
            "globals": t(d.globals[idx]),
            "p_rows": t(rows),
            "p_cols": t(np.asarray(d.policy_indices[flat], dtype=np.int64)),
            "p_vals": t(d.policy_values[flat]),
            "values": t(d.values[idx]),
            "values_mp": t(d.values_mp[idx]),
            "num_players": t(np.asarray(d.num_players[idx], dtype=np.int64)),
            "weights": t(self.weights[idx]),
        }

    def epoch(self, batch_size: int, rng: np.random.Generator):
        """One shuffled pass over ``rows`` in full batches (one short batch when rows < batch_size)."""
        order = rng.permutation(self.rows)
        for i in range(0, order.size - batch_size + 1 if order.size >= batch_size else 1, batch_size):
            yield self.gather(order[i : i + batch_size])


def losses(
    net: PolicyValueNet, batch: dict[str, torch.Tensor], config: TrainConfig
) -> dict[str, torch.Tensor]:
    """Weighted policy CE, value MSE, multi-player value MSE and their total for one batch."""
    logits, v, vmp = net(batch["planes"], batch["globals"])
    logp = F.log_softmax(logits, dim=1)
    w = batch["weights"]
    wsum = w.sum().clamp_min(1e-8)
    rows = batch["p_rows"]
    per_row_ce = torch.zeros_like(v).index_add_(0, rows, -batch["p_vals"] * logp[rows, batch["p_cols"]])
    policy = (w * per_row_ce).sum() / wsum
    value = (w * (v - batch["values"]) ** 2).sum() / wsum
    seats = torch.arange(vmp.shape[1], device=vmp.device)[None, :] < batch["num_players"][:, None]
    mp_err = ((vmp - batch["values_mp"]) ** 2 * seats).sum(1) / seats.sum(1).clamp_min(1)
    value_mp = (w * mp_err).sum() / wsum
    total = policy + config.value_weight * value + config.mp_value_weight * value_mp
    return {"loss": total, "policy_ce": policy, "value_mse": value, "value_mp_mse": value_mp}


def evaluate(
    net: PolicyValueNet, batches: Batches, config: TrainConfig, batch_size: int = 1024
) -> dict[str, float]:
    """Weighted mean losses over all of ``batches.rows`` (eval mode, no grad)."""
    if batches.rows.size == 0:
        return {}
    was_training = net.training
    net.eval()
    sums: dict[str, float] = {}
    total_w = 0.0
    with torch.no_grad():
        for i in range(0, batches.rows.size, batch_size):
            b = batches.gather(batches.rows[i : i + batch_size])
            bw = float(b["weights"].sum())
            for k, val in losses(net, b, config).items():
                sums[k] = sums.get(k, 0.0) + float(val) * bw
            total_w += bw
    net.train(was_training)
    return {k: v / max(total_w, 1e-8) for k, v in sums.items()}


def net_config_for(data: npz.PositionSet, config: TrainConfig) -> NetConfig:
    """The net shape for this data (planes, globals, policy size) and the config's blocks x channels."""
    _, c, h, w = data.features.shape
    return NetConfig(
        in_channels=int(c),
        height=int(h),
        width=int(w),
        num_globals=int(data.globals.shape[1]),
        policy_size=int(data.policy_size),
        blocks=config.blocks,
        channels=config.channels,
    )


def train(
    combined_dir: str | os.PathLike,
    out_model_dir: str | os.PathLike,
    config: TrainConfig = TrainConfig(),
    *,
    resume_from: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train a net on the training set at ``combined_dir``; write the checkpoint to ``out_model_dir``.

    Args:
        combined_dir: a directory written by :func:`tuneloop.selfplay.combine.combine_exports`.
        out_model_dir: where ``checkpoint.pt`` and ``model.json`` go.
        config: trainer settings.
        resume_from: a model directory to continue from (same shape and board config), e.g. the
            previous best net (warm start) or this task's own checkpoint after a restart.

    Returns:
        Metrics: steps, losses (first/last train, validation), samples/s, data-loading share, split.
    """
    threads = set_threads(config.threads)
    device = device_for(config.device)
    data = npz.open_dir(combined_dir, mmap=True, validate=True)
    info = npz.read_dir_info(combined_dir)
    val_mask = split_by_game(data.game_ids, config.val_fraction, config.seed)
    train_rows, val_rows = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
    if train_rows.size == 0:
        raise ValueError(f"combined_dir: {combined_dir} has no training positions after the split; add games")
    torch.manual_seed(config.seed)
    net_cfg = net_config_for(data, config)
    net = PolicyValueNet(net_cfg).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start_step, resumed = 0, None
    if resume_from is not None:
        payload = read_checkpoint(resume_from, device)
        if payload["net_config"] != asdict(net_cfg):
            raise ValueError(
                f"resume_from: {resume_from} holds a net {payload['net_config']}, but this run builds "
                f"{asdict(net_cfg)}; resume with the same blocks/channels and board config, or start fresh"
            )
        if payload["board_config"] != data.board_config:
            raise ValueError(
                f"resume_from: {resume_from} was trained on {payload['board_config']!r}, the data is "
                f"{data.board_config!r}; resume only on the same board config"
            )
        net.load_state_dict(payload["model"])
        if "optimizer" in payload and payload.get("train_config", {}).get("same_run_key") == _run_key(
            combined_dir, config
        ):
            opt.load_state_dict(payload["optimizer"])
            start_step = int(payload["step"])
        resumed = str(resume_from)
    total_steps = config.steps
    if config.epochs is not None:
        total_steps = max(1, math.ceil(config.epochs * train_rows.size / config.batch_size))

    def lr_at(s: int) -> float:  # cosine decay to 10% of lr over the run
        return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, total_steps)))))

    train_batches = Batches(data, train_rows, device)
    val_batches = Batches(data, val_rows, device)
    rng = np.random.default_rng([config.seed, start_step])
    batch_size = min(config.batch_size, train_rows.size)
    train_key = {**asdict(config), "same_run_key": _run_key(combined_dir, config)}
    ckpt_info = {
        "train_config": train_key,
        "generation": int(info.get(npz.META_EXTRA, {}).get("generation", 0)) + 1,
        "data": {"combined_dir": str(combined_dir), "num_positions": data.num_positions},
    }

    net.train()
    step, first_loss, history = start_step, None, []
    data_time = compute_time = 0.0
    t_start, cpu_start = time.perf_counter(), time.process_time()
    samples = 0
    while step < total_steps:
        it = train_batches.epoch(batch_size, rng)
        while step < total_steps:
            t0 = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                break
            t1 = time.perf_counter()
            out = losses(net, batch, config)
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            t2 = time.perf_counter()
            data_time += t1 - t0
            compute_time += t2 - t1
            samples += int(batch["weights"].shape[0])
            step += 1
            loss = float(out["loss"].detach())
            if first_loss is None:
                first_loss = loss
            history.append(loss)
            if config.eval_every and step % config.eval_every == 0 and val_rows.size:
                evaluate(net, val_batches, config)
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                save_checkpoint(
                    out_model_dir,
                    net,
                    board_config=data.board_config,
                    step=step,
                    optimizer=opt,
                    info=ckpt_info,
                )
    elapsed, cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
    val = evaluate(net, val_batches, config)
    tail = history[-max(1, len(history) // 10) :] if history else [float("nan")]
    metrics = {
        "board_config": data.board_config,
        "steps": step,
        "start_step": start_step,
        "resumed_from": resumed,
        "batch_size": batch_size,
        "train_positions": int(train_rows.size),
        "val_positions": int(val_rows.size),
        "train_games": int(np.unique(np.asarray(data.game_ids)[train_rows]).size),
        "val_games": int(np.unique(np.asarray(data.game_ids)[val_rows]).size) if val_rows.size else 0,
        "first_loss": first_loss,
        "final_train_loss": float(np.mean(tail)),
        "val": val,
        "samples_per_s": samples / elapsed if elapsed > 0 else None,
        "samples_per_cpu_s": samples / cpu if cpu > 0 else None,  # steadier than wall time on shared cores
        "data_fraction": data_time / max(1e-9, data_time + compute_time),
        "device": str(device),
        "threads": threads,
        "generation": ckpt_info["generation"],
    }
    save_checkpoint(
        out_model_dir,
        net,
        board_config=data.board_config,
        step=step,
        optimizer=opt,
        info={**ckpt_info, "metrics": metrics},
    )
    return metrics


def _run_key(combined_dir: str | os.PathLike, config: TrainConfig) -> str:
    """Identity of a run: resuming restores optimizer and step only for the same data and settings."""
    info = npz.read_dir_info(combined_dir)
    sources = [s.get("sha256") for s in info.get("combine", {}).get("sources", [])]
    cfg = {
        k: v
        for k, v in asdict(config).items()
        if k not in ("threads", "device", "eval_every", "checkpoint_every")
    }
    blob = json.dumps({"sources": sources, "n": info.get("num_positions"), "cfg": cfg}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def model_generation(model_dir: str | os.PathLike) -> int:
    """The generation recorded in a model directory's checkpoint."""
    return int(read_checkpoint(Path(model_dir)).get("generation", 0))
