"""The policy/value residual network and its self-describing checkpoints.

Input: uint8 feature planes ``(B, C, H, W)`` and float32 globals ``(B, G)``. The globals are projected
and added to every cell of the stem, so the trunk sees whose turn it is. Outputs: policy logits
``(B, policy_size)``, a scalar value for the player to move (tanh) and a multi-player value head
``(B, 4)`` in the player-to-move seat order (tanh).

A model directory holds ``checkpoint.pt`` (weights, optimizer, step, configs: everything needed to
resume) and ``model.json`` (the same description without tensors, for people and the registry).
Loading refuses a checkpoint whose format or shapes do not match what the caller asks for.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tuneloop.selfplay import npz

CHECKPOINT_FORMAT = "tuneloop.selfplay.checkpoint/1"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_JSON = "model.json"


@dataclass(frozen=True)
class NetConfig:
    """Network shape. ``blocks`` x ``channels`` residual tower; the rest comes from the data.

    Attributes:
        in_channels, height, width: feature plane shape.
        num_globals: length of the globals vector.
        policy_size: number of distinct actions.
        blocks: residual blocks in the tower.
        channels: convolution channels.
        value_hidden: width of the value heads' hidden layer.
        max_players: seats in the multi-player value head.
    """

    in_channels: int
    height: int
    width: int
    num_globals: int
    policy_size: int
    blocks: int = 3
    channels: int = 32
    value_hidden: int = 64
    max_players: int = npz.MAX_PLAYERS

    def __post_init__(self) -> None:
        for name in (
            "in_channels",
            "height",
            "width",
            "policy_size",
            "channels",
            "value_hidden",
            "max_players",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"NetConfig.{name}: {getattr(self, name)} must be >= 1")
        if self.blocks < 0:
            raise ValueError(f"NetConfig.blocks: {self.blocks} must be >= 0")
        if self.num_globals < 0:
            raise ValueError(f"NetConfig.num_globals: {self.num_globals} must be >= 0")


class _Block(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(x + y)


class PolicyValueNet(nn.Module):
    """AlphaZero-style residual policy/value network."""

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        c, cells = config.channels, config.height * config.width
        self.stem = nn.Conv2d(config.in_channels, c, 3, padding=1, bias=False)
        self.globals_proj = nn.Linear(config.num_globals, c) if config.num_globals else None
        self.stem_bn = nn.BatchNorm2d(c)
        self.tower = nn.Sequential(*[_Block(c) for _ in range(config.blocks)])
        self.policy_conv = nn.Conv2d(c, 2, 1, bias=False)
        self.policy_bn = nn.BatchNorm2d(2)
        self.policy_fc = nn.Linear(2 * cells, config.policy_size)
        self.value_conv = nn.Conv2d(c, 1, 1, bias=False)
        self.value_bn = nn.BatchNorm2d(1)
        self.value_fc = nn.Linear(cells + config.num_globals, config.value_hidden)
        self.value_out = nn.Linear(config.value_hidden, 1)
        self.value_mp_out = nn.Linear(config.value_hidden, config.max_players)

    def forward(
        self, planes: torch.Tensor, globals_: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stem(planes)
        if self.globals_proj is not None:
            x = x + self.globals_proj(globals_)[:, :, None, None]
        x = self.tower(F.relu(self.stem_bn(x)))
        p = F.relu(self.policy_bn(self.policy_conv(x))).flatten(1)
        logits = self.policy_fc(p)
        v = F.relu(self.value_bn(self.value_conv(x))).flatten(1)
        h = F.relu(self.value_fc(torch.cat([v, globals_], dim=1)))
        return logits, torch.tanh(self.value_out(h)).squeeze(1), torch.tanh(self.value_mp_out(h))


def device_for(name: str = "auto") -> torch.device:
    """``auto`` = CUDA when present, else CPU; or an explicit torch device string."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"device: {name!r} is not a torch device; use 'auto', 'cpu' or 'cuda'") from exc


def free_cores() -> int:
    """CPU cores this process may use that are not busy (affinity minus the 1-minute load), >= 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        busy = int(round(os.getloadavg()[0]))
    except OSError:
        busy = 0
    return max(1, min(cores, cores - busy))


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (``None`` = the free cores; oversubscription runs 3-20x slower)."""
    n = free_cores() if threads is None else int(threads)
    if n < 1:
        raise ValueError(f"threads: {threads} must be >= 1 (or None for the free cores)")
    torch.set_num_threads(n)
    return n


# -- checkpoints --------------------------------------------------------------------------------------
def save_checkpoint(
    model_dir: str | os.PathLike,
    net: PolicyValueNet,
    *,
    board_config: str,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write ``checkpoint.pt`` (atomically) and ``model.json`` into ``model_dir``; returns the dir."""
    d = Path(model_dir)
    d.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "board_config": board_config,
        "schema_version": npz.SCHEMA_VERSION,
        "net_config": asdict(net.config),
        "step": int(step),
        **(info or {}),
    }
    payload = {**meta, "model": net.state_dict()}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    tmp = d / f".{CHECKPOINT_FILE}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, d / CHECKPOINT_FILE)
    (d / MODEL_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return d


def read_checkpoint(model_dir: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict; raises ``ValueError`` naming the path when it is missing or foreign."""
    path = Path(model_dir) / CHECKPOINT_FILE
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError as exc:
        raise ValueError(
            f"model_dir: {model_dir} has no {CHECKPOINT_FILE}; pass a directory written by train"
        ) from exc
    except Exception as exc:  # a corrupt or foreign file
        raise ValueError(f"model_dir: {path} is not a readable checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"model_dir: {path} has format {found!r}, expected {CHECKPOINT_FORMAT!r}")
    return payload


def load_model(model_dir: str | os.PathLike, device: str = "auto") -> tuple[PolicyValueNet, dict[str, Any]]:
    """Load a trained net in eval mode; returns ``(net, checkpoint metadata without tensors)``."""
    dev = device_for(device)
    payload = read_checkpoint(model_dir, dev)
    net = PolicyValueNet(NetConfig(**payload["net_config"])).to(dev)
    net.load_state_dict(payload["model"])
    net.eval()
    meta = {k: v for k, v in payload.items() if k not in ("model", "optimizer")}
    return net, meta


class NetEvaluator:
    """Batched inference for :func:`tuneloop.selfplay.mcts.puct_search` and the gauntlet."""

    def __init__(self, net: PolicyValueNet, num_players: int):
        self.net = net
        self.num_players = num_players
        self.device = next(net.parameters()).device

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike, num_players: int, device: str = "auto") -> NetEvaluator:
        """Load the net in ``model_dir`` for a game of ``num_players``."""
        net, _ = load_model(model_dir, device)
        return cls(net, num_players)

    def __call__(self, planes: np.ndarray, globals_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(logits (B, A), values (B, 4))``; values are in player-to-move seat order."""
        with torch.inference_mode():
            x = torch.from_numpy(np.require(planes, requirements=["C", "W"])).to(self.device, torch.float32)
            g = torch.from_numpy(np.require(globals_, requirements=["C", "W"])).to(self.device, torch.float32)
            logits, v, vmp = self.net(x, g)
        logits_np = logits.float().cpu().numpy()
        if self.num_players == 2:
            values = np.zeros((planes.shape[0], npz.MAX_PLAYERS), dtype=np.float32)
            val = v.float().cpu().numpy()
            values[:, 0], values[:, 1] = val, -val
        else:
            values = vmp.float().cpu().numpy()
            values[:, self.num_players :] = 0.0
        return logits_np, values
