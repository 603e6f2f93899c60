"""Tree search for self-play and the gauntlet: rollout MCTS (OpenSpiel C++) and batched net PUCT.

* Generation 0 has no network: :class:`RolloutSearch` wraps ``pyspiel.MCTSBot`` with a
  ``RandomRolloutEvaluator`` (13-20x faster than Python MCTS). Its root visit counts are the policy
  targets. With UCT ``c = 2`` the counts are nearly flat and a net trained on them fails the 85% bar
  against random; ``c ~ 0.5`` and ~200 simulations give sharp targets, hence the defaults.
* Later generations use :func:`puct_search`: AlphaZero PUCT guided by the network, searching many
  games at once so each simulation step sends one batch of leaves to the network. Dirichlet noise
  is mixed into the root priors for exploration. Chance nodes (maedn's die) are sampled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuneloop.selfplay.games import GameAdapter, absolute

# evaluator(planes uint8 (B,C,H,W), globals float32 (B,G)) -> (logits (B,A), values (B,4) player-to-move view)
Evaluator = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class RolloutConfig:
    """Rollout MCTS (generation 0 and the gauntlet's heuristic opponent).

    Attributes:
        simulations: MCTS simulations per move (200 gives sharp targets on hex5).
        uct_c: UCT exploration constant; ~0.5 gives sharp visit counts, 2.0 nearly flat ones.
        rollouts: random rollouts per leaf evaluation.
        max_memory_mb: tree memory cap of the C++ bot.
        prune_exploration: drop the one visit UCT gives every child before it can rank them, so
            moves the search never chose again get no policy mass (sharper, sparse targets).
    """

    simulations: int = 200
    uct_c: float = 0.5
    rollouts: int = 1
    max_memory_mb: int = 1000
    prune_exploration: bool = True

    def __post_init__(self) -> None:
        if self.simulations < 1:
            raise ValueError(f"simulations: {self.simulations} must be >= 1")
        if not self.uct_c > 0:
            raise ValueError(f"uct_c: {self.uct_c} must be > 0 (try 0.5)")
        if self.rollouts < 1:
            raise ValueError(f"rollouts: {self.rollouts} must be >= 1")


class RolloutSearch:
    """``pyspiel.MCTSBot`` + ``RandomRolloutEvaluator``; returns root visit counts per action."""

    def __init__(self, adapter: GameAdapter, config: RolloutConfig, seed: int):
        import pyspiel

        self.adapter = adapter
        self.config = config
        evaluator = pyspiel.RandomRolloutEvaluator(config.rollouts, seed)
        self._bot = pyspiel.MCTSBot(
            adapter.game,
            evaluator,
            config.uct_c,
            config.simulations,
            config.max_memory_mb,
            False,
            seed,
            False,
        )
        self._evaluator = evaluator  # keep alive: the bot holds a reference only in C++

    def visit_counts(self, state: Any) -> np.ndarray:
        """Root visit counts, float32 ``(policy_size,)`` (zero for unvisited / illegal actions)."""
        counts = np.zeros(self.adapter.policy_size, dtype=np.float32)
        root = self._bot.mcts_search(state)
        for child in root.children:
            counts[child.action] = child.explore_count
        if self.config.prune_exploration and counts.max() > 1:
            counts = np.maximum(counts - 1.0, 0.0)
        if counts.max() <= 0:  # one simulation only expands the root: every legal move ties, none else
            counts[np.asarray(state.legal_actions(), dtype=np.int64)] = 1.0
        return counts


@dataclass(frozen=True)
class PuctConfig:
    """Net-guided PUCT.

    Attributes:
        simulations: simulations per move (per root).
        c_puct: exploration weight of the prior term.
        dirichlet_alpha: concentration of the root noise (0.3 suits boards of ~25-64 moves).
        dirichlet_fraction: share of the root prior replaced by noise (0 disables noise).
    """

    simulations: int = 64
    c_puct: float = 1.5
    dirichlet_alpha: float = 0.3
    dirichlet_fraction: float = 0.25

    def __post_init__(self) -> None:
        if self.simulations < 1:
            raise ValueError(f"simulations: {self.simulations} must be >= 1")
        if not self.c_puct > 0:
            raise ValueError(f"c_puct: {self.c_puct} must be > 0 (try 1.5)")
        if not self.dirichlet_alpha > 0:
            raise ValueError(f"dirichlet_alpha: {self.dirichlet_alpha} must be > 0 (try 0.3)")
        if not 0 <= self.dirichlet_fraction <= 1:
            raise ValueError(f"dirichlet_fraction: {self.dirichlet_fraction} must lie in [0, 1]")


class _Node:
    """A search node holding its state. Decision nodes have per-action statistics."""

    __slots__ = (
        "state",
        "player",
        "chance",
        "actions",
        "priors",
        "n",
        "w",
        "children",
        "outcomes",
        "probs",
        "terminal",
    )

    def __init__(self, state: Any):
        self.state = state
        self.terminal = state.is_terminal()
        self.chance = (not self.terminal) and state.is_chance_node()
        self.player = -1 if (self.terminal or self.chance) else int(state.current_player())
        self.actions: np.ndarray | None = None
        self.priors: np.ndarray | None = None
        self.n: np.ndarray | None = None
        self.w: np.ndarray | None = None
        self.children: dict[int, _Node] = {}
        self.outcomes: np.ndarray | None = None
        self.probs: np.ndarray | None = None
        if self.chance:
            outs = state.chance_outcomes()
            self.outcomes = np.array([a for a, _ in outs], dtype=np.int64)
            self.probs = np.array([p for _, p in outs], dtype=np.float64)
            self.probs /= self.probs.sum()

    @property
    def expanded(self) -> bool:
        return self.actions is not None

    def child(self, action: int) -> _Node:
        node = self.children.get(action)
        if node is None:
            st = self.state.clone()
            st.apply_action(int(action))
            node = _Node(st)
            self.children[action] = node
        return node


def _softmax_masked(logits: np.ndarray, actions: np.ndarray) -> np.ndarray:
    z = logits[actions].astype(np.float64)
    z -= z.max()
    p = np.exp(z)
    return p / p.sum()


def _expand(node: _Node, logits: np.ndarray) -> None:
    node.actions = np.asarray(node.state.legal_actions(), dtype=np.int64)
    node.priors = _softmax_masked(logits, node.actions)
    node.n = np.zeros(node.actions.size, dtype=np.float64)
    node.w = np.zeros(node.actions.size, dtype=np.float64)


def _select(node: _Node, c_puct: float) -> int:
    total = node.n.sum()
    q = np.where(node.n > 0, node.w / np.maximum(node.n, 1), 0.0)
    u = c_puct * node.priors * math.sqrt(total + 1) / (1 + node.n)
    return int(np.argmax(q + u))


def puct_search(
    adapter: GameAdapter,
    states: Sequence[Any],
    evaluate: Evaluator,
    config: PuctConfig,
    rng: np.random.Generator,
    *,
    add_noise: bool = True,
    move_numbers: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """Run PUCT from every state in ``states`` at once; returns root visit counts per state.

    Each simulation step selects one leaf per root, evaluates all leaves in one ``evaluate`` call,
    and backs up each seat's value along its path (multi-player safe).

    Args:
        adapter: the game adapter (encoder).
        states: decision states (not terminal, not chance nodes) to search from; not modified.
        evaluate: batched network evaluator.
        config: simulations, c_puct and root noise.
        rng: randomness for noise and chance outcomes.
        add_noise: mix Dirichlet noise into the root priors (self-play: yes; gauntlet: no).
        move_numbers: decision index of each root (for the move-fraction global); 0 when omitted.

    Returns:
        One float32 ``(policy_size,)`` array of root visit counts per state.
    """
    n_players = adapter.num_players
    moves = list(move_numbers) if move_numbers is not None else [0] * len(states)
    roots = [_Node(s.clone()) for s in states]
    for r in roots:
        if r.terminal or r.chance:
            raise ValueError("puct_search: every state must be a decision node (not terminal or chance)")
    # Expand the roots with one batch.
    _evaluate_nodes(adapter, roots, moves, evaluate)
    if add_noise and config.dirichlet_fraction > 0:
        for r in roots:
            noise = rng.dirichlet([config.dirichlet_alpha] * r.actions.size)
            r.priors = (1 - config.dirichlet_fraction) * r.priors + config.dirichlet_fraction * noise
    for _ in range(config.simulations):
        paths: list[list[tuple[_Node, int]]] = []
        leaves: list[_Node] = []
        leaf_moves: list[int] = []
        leaf_values: list[np.ndarray | None] = []
        for root, mv in zip(roots, moves, strict=True):
            node, path, depth = root, [], 0
            while True:
                if node.terminal:
                    leaf_values.append(adapter.outcome(node.state))
                    break
                if node.chance:
                    node = node.child(int(rng.choice(node.outcomes, p=node.probs)))
                    continue
                if not node.expanded:
                    leaf_values.append(None)
                    break
                i = _select(node, config.c_puct)
                path.append((node, i))
                node = node.child(int(node.actions[i]))
                depth += 1
            paths.append(path)
            leaves.append(node)
            leaf_moves.append(mv + depth)
        pending = [i for i, v in enumerate(leaf_values) if v is None]
        if pending:
            values = _evaluate_nodes(
                adapter, [leaves[i] for i in pending], [leaf_moves[i] for i in pending], evaluate
            )
            for i, v in zip(pending, values, strict=True):
                leaf_values[i] = v
        for path, value in zip(paths, leaf_values, strict=True):
            for node, i in path:
                node.n[i] += 1
                node.w[i] += value[node.player] if node.player < n_players else 0.0
    out = []
    for r in roots:
        counts = np.zeros(adapter.policy_size, dtype=np.float32)
        counts[r.actions] = r.n
        out.append(counts)
    return out


def _evaluate_nodes(
    adapter: GameAdapter, nodes: Sequence[_Node], moves: Sequence[int], evaluate: Evaluator
) -> list[np.ndarray]:
    """Expand ``nodes`` with the net's priors; returns each node's absolute seat values."""
    planes = np.empty((len(nodes), *adapter.planes_shape), dtype=np.uint8)
    globs = np.empty((len(nodes), adapter.num_globals), dtype=np.float32)
    for j, (node, mv) in enumerate(zip(nodes, moves, strict=True)):
        planes[j], globs[j] = adapter.encode(node.state, mv)
    logits, values_rel = evaluate(planes, globs)
    out = []
    for j, node in enumerate(nodes):
        _expand(node, logits[j])
        out.append(absolute(np.asarray(values_rel[j], dtype=np.float32), node.player, adapter.num_players))
    return out


def policy_from_counts(counts: np.ndarray) -> np.ndarray:
    """Normalise visit counts into a probability vector (the policy target)."""
    total = float(counts.sum())
    if total <= 0:
        raise ValueError("policy_from_counts: the search visited no action; run at least one simulation")
    return (counts / total).astype(np.float32)


def choose_move(counts: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """Sample from ``counts ** (1 / temperature)``; ``temperature == 0`` picks the most visited (ties random)."""
    if temperature <= 0:
        best = np.flatnonzero(counts == counts.max())
        return int(rng.choice(best))
    visited = np.flatnonzero(counts > 0)
    logc = np.log(counts[visited].astype(np.float64)) / temperature
    p = np.exp(logc - logc.max())
    return int(rng.choice(visited, p=p / p.sum()))
