"""Fixtures for the self-play engine: real hex5 games, a combined set and a trained net (built once).

Everything is generated here, on the spot, with the engine itself (rollout MCTS -> NPZ -> combine ->
train), so the tests exercise real data; the session fixtures keep the whole folder fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneloop.selfplay import stages

TRAIN_GAMES = 200  # ~2.7k positions: enough for a net that beats random and the weak heuristic


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One torch thread per test process (oversubscribed threads run many times slower)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def small_export(tmp_path_factory) -> Path:
    """A real 12-game hex5 export (rollout MCTS, generation 0)."""
    out = tmp_path_factory.mktemp("small") / "hex5_small.npz"
    stages.selfplay_shard("hex5_2p", 12, simulations=50, uct_c=0.5, seed=11, generation=0, out_npz=str(out))
    return out


@pytest.fixture(scope="session")
def train_export(tmp_path_factory) -> Path:
    """The training games: 200 hex5 games of rollout MCTS with 200 simulations and c = 0.5."""
    out = tmp_path_factory.mktemp("gen0") / "hex5_gen0.npz"
    stages.selfplay_shard(
        "hex5_2p", TRAIN_GAMES, simulations=200, uct_c=0.5, seed=0, generation=0, out_npz=str(out)
    )
    return out


@pytest.fixture(scope="session")
def combined(tmp_path_factory, train_export) -> Path:
    out = tmp_path_factory.mktemp("combined") / "set"
    stages.combine([str(train_export)], str(out))
    return out


@pytest.fixture(scope="session")
def trained(tmp_path_factory, combined) -> tuple[Path, dict]:
    """A 3x32 net trained on the combined hex5 set: ``(model_dir, metrics)``."""
    out = tmp_path_factory.mktemp("model") / "gen1"
    metrics = stages.train(
        str(combined), str(out), blocks=3, channels=32, steps=300, batch_size=128, seed=0, threads=1
    )
    return out, metrics
