"""Self-play: play games with tree search and record each decision as a training position.

The policy target of a position is the root visit distribution of the search. Generation 0 searches
with rollout MCTS (no network); later generations with net-guided PUCT, many games in flight at once
so each simulation step is one batched network call. For the first ``temperature_plies`` decisions
the move is sampled from the visit counts (diversity); afterwards the most visited move is played.
When a game ends, every recorded position gets the outcome from its player-to-move's view.

Forced decisions (one legal move; maedn's frequent "pass") are played without search and, by
default, not recorded: their policy target carries no information.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tuneloop import progress
from tuneloop.selfplay import npz
from tuneloop.selfplay.games import BOARD_CONFIGS, GameAdapter, board_config, load_game, relative
from tuneloop.selfplay.mcts import (
    Evaluator,
    PuctConfig,
    RolloutConfig,
    RolloutSearch,
    choose_move,
    policy_from_counts,
    puct_search,
)


@dataclass(frozen=True)
class SelfPlayConfig:
    """One self-play shard.

    Attributes:
        config_name: board config (``hex5_2p``, ``hex8_2p``, ``connect_four_2p``, ``maedn_3p``...).
        games: games to play.
        simulations: search simulations per move.
        uct_c: UCT constant of the rollout MCTS (generation 0).
        c_puct: PUCT constant of the net-guided search (generation >= 1).
        temperature: sampling temperature in the opening plies.
        temperature_plies: opening decisions sampled at ``temperature``; None = the board's default.
        dirichlet_alpha: root noise concentration (net-guided search).
        dirichlet_fraction: root noise share (net-guided search; 0 disables).
        max_moves: decision limit per game; a game that reaches it is recorded as truncated (value 0).
            None = the game's own limit.
        parallel_games: games searched together (the inference batch) in net-guided self-play.
        record_forced: also record positions with a single legal move.
        seed: base seed; the shard is reproducible from it.
        generation: data generation (0 = rollout MCTS); stored in the export's metadata.
    """

    config_name: str
    games: int
    simulations: int = 200
    uct_c: float = 0.5
    c_puct: float = 1.5
    temperature: float = 1.0
    temperature_plies: int | None = None
    dirichlet_alpha: float = 0.3
    dirichlet_fraction: float = 0.25
    max_moves: int | None = None
    parallel_games: int = 32
    record_forced: bool = False
    seed: int = 0
    generation: int = 0

    def __post_init__(self) -> None:
        board_config(self.config_name)
        if self.games < 1:
            raise ValueError(f"games: {self.games} must be >= 1")
        if self.simulations < 1:
            raise ValueError(f"simulations: {self.simulations} must be >= 1 (200 gives sharp targets)")
        if self.temperature < 0:
            raise ValueError(f"temperature: {self.temperature} must be >= 0")
        if self.temperature_plies is not None and self.temperature_plies < 0:
            raise ValueError(f"temperature_plies: {self.temperature_plies} must be >= 0 or None")
        if self.max_moves is not None and self.max_moves < 1:
            raise ValueError(f"max_moves: {self.max_moves} must be >= 1 or None")
        if self.parallel_games < 1:
            raise ValueError(f"parallel_games: {self.parallel_games} must be >= 1")
        if self.generation < 0:
            raise ValueError(f"generation: {self.generation} must be >= 0")
        RolloutConfig(simulations=self.simulations, uct_c=self.uct_c)
        self.puct()

    @property
    def opening_plies(self) -> int:
        """Opening decisions played at ``temperature`` (the board's default when not set)."""
        if self.temperature_plies is not None:
            return self.temperature_plies
        return board_config(self.config_name).temperature_plies

    def puct(self) -> PuctConfig:
        """The PUCT settings of this shard."""
        return PuctConfig(
            simulations=self.simulations,
            c_puct=self.c_puct,
            dirichlet_alpha=self.dirichlet_alpha,
            dirichlet_fraction=self.dirichlet_fraction,
        )


def game_id(config_name: str, generation: int, seed: int, index: int) -> int:
    """A stable int64 id for game ``index`` of a shard (same inputs, same id)."""
    digest = hashlib.blake2b(f"{config_name}|{generation}|{seed}|{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


@dataclass
class _Game:
    index: int
    state: Any
    rng: np.random.Generator
    decisions: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)


def _advance_chance(game: _Game) -> None:
    st = game.state
    while st.is_chance_node():
        outcomes = st.chance_outcomes()
        probs = np.array([p for _, p in outcomes])
        st.apply_action(int(outcomes[int(game.rng.choice(len(outcomes), p=probs / probs.sum()))][0]))


def _record(adapter: GameAdapter, game: _Game, counts: np.ndarray, move_type: str) -> None:
    planes, globs = adapter.encode(game.state, game.decisions)
    policy = policy_from_counts(counts)
    idx = np.flatnonzero(policy > 0).astype(np.int32)
    game.records.append(
        {
            "planes": planes,
            "globals": globs,
            "idx": idx,
            "val": policy[idx] / policy[idx].sum(dtype=np.float64),
            "player": adapter.to_move(game.state),
            "phase": adapter.phase(game.state, game.decisions),
            "move": game.decisions,
            "move_type": npz.MOVE_TYPES.index(move_type),
        }
    )


def _finished(game: _Game, limit: int) -> bool:
    return game.state.is_terminal() or game.decisions >= limit


def play(config: SelfPlayConfig, evaluate: Evaluator | None = None) -> npz.PositionSet:
    """Play ``config.games`` games and return their positions in schema form.

    Args:
        config: the shard's parameters.
        evaluate: batched network evaluator for PUCT; None = rollout MCTS (generation 0).

    Returns:
        A :class:`npz.PositionSet` (sample weights 1, timestamps = game end times, opponent "self",
        the engine mode and each move's type: searched, sampled in the opening, or forced).
    """
    adapter = load_game(config.config_name)
    limit = config.max_moves or adapter.max_game_length
    seeds = np.random.SeedSequence([config.seed, config.generation]).spawn(config.games)
    games = [
        _Game(index=i, state=adapter.new_state(), rng=np.random.default_rng(s)) for i, s in enumerate(seeds)
    ]
    ended: list[tuple[_Game, float]] = []
    if evaluate is None:
        search = RolloutSearch(
            adapter, RolloutConfig(simulations=config.simulations, uct_c=config.uct_c), seed=config.seed
        )
        for game in games:
            while True:
                _advance_chance(game)
                if _finished(game, limit):
                    break
                _step(adapter, game, config, search.visit_counts)
            ended.append((game, time.time()))
            progress.tick("self-play", len(ended), config.games)
    else:
        puct = config.puct()
        pending = list(games)
        active: list[_Game] = []
        search_rng = np.random.default_rng([config.seed, config.generation, 1])
        while pending or active:
            while pending and len(active) < config.parallel_games:
                active.append(pending.pop(0))
            needs_search: list[_Game] = []
            for game in active:
                # play forced moves and chance outcomes until a real decision (or the end)
                while True:
                    _advance_chance(game)
                    if _finished(game, limit):
                        break
                    legal = game.state.legal_actions()
                    if len(legal) > 1:
                        needs_search.append(game)
                        break
                    _step(adapter, game, config, None)
            if needs_search:
                counts = puct_search(
                    adapter,
                    [g.state for g in needs_search],
                    evaluate,
                    puct,
                    search_rng,
                    add_noise=True,
                    move_numbers=[g.decisions for g in needs_search],
                )
                for game, c in zip(needs_search, counts, strict=True):
                    _step(adapter, game, config, lambda _s, c=c: c)
            still = []
            for game in active:
                _advance_chance(game)
                if _finished(game, limit):
                    ended.append((game, time.time()))
                else:
                    still.append(game)
            active = still
            progress.tick("self-play", len(ended), config.games)
    ended.sort(key=lambda e: e[0].index)
    return _to_positions(adapter, config, ended, "rollout_mcts" if evaluate is None else "puct")


def _step(adapter: GameAdapter, game: _Game, config: SelfPlayConfig, search) -> None:
    legal = game.state.legal_actions()
    if len(legal) == 1:
        counts = np.zeros(adapter.policy_size, dtype=np.float32)
        counts[legal[0]] = 1.0
        if config.record_forced:
            _record(adapter, game, counts, "forced")
        action = legal[0]
    else:
        counts = search(game.state)
        temp = config.temperature if game.decisions < config.opening_plies else 0.0
        _record(adapter, game, counts, "sampled" if temp > 0 else "searched")
        action = choose_move(counts, temp, game.rng)
    game.state.apply_action(int(action))
    game.decisions += 1


def _to_positions(
    adapter: GameAdapter, config: SelfPlayConfig, ended: list[tuple[_Game, float]], search: str
) -> npz.PositionSet:
    rows: list[dict[str, Any]] = []
    for game, t_end in ended:
        outcome = adapter.outcome(game.state)
        victory = adapter.victory_type(game.state)
        gid = game_id(config.config_name, config.generation, config.seed, game.index)
        for r in game.records:
            rel = relative(outcome, r["player"], adapter.num_players)
            rows.append(
                {**r, "values_mp": rel, "total": game.decisions, "victory": victory, "gid": gid, "t": t_end}
            )
    if not rows:
        raise ValueError(
            f"self-play recorded no positions for {config.config_name} ({config.games} games); "
            "play more games or set record_forced=True"
        )
    lengths = np.array([r["idx"].size for r in rows], dtype=np.int64)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values_mp = np.stack([r["values_mp"] for r in rows]).astype(np.float32)
    return npz.PositionSet(
        features=np.stack([r["planes"] for r in rows]).astype(np.uint8),
        globals=np.stack([r["globals"] for r in rows]).astype(np.float32),
        policy_indices=np.concatenate([r["idx"] for r in rows]).astype(np.int32),
        policy_values=np.concatenate([r["val"] for r in rows]).astype(np.float32),
        policy_offsets=offsets,
        values=values_mp[:, 0].copy(),
        values_mp=values_mp,
        num_players=np.full(len(rows), adapter.num_players, dtype=np.uint8),
        current_player=np.array([r["player"] for r in rows], dtype=np.uint8),
        phases=np.array([r["phase"] for r in rows], dtype=np.uint8),
        move_numbers=np.array([r["move"] for r in rows], dtype=np.int32),
        total_game_moves=np.array([r["total"] for r in rows], dtype=np.int32),
        victory_types=np.array([r["victory"] for r in rows], dtype=np.uint8),
        game_ids=np.array([r["gid"] for r in rows], dtype=np.int64),
        sample_weights=np.ones(len(rows), dtype=np.float32),
        timestamps=np.array([r["t"] for r in rows], dtype=np.float64),
        opponent_types=np.full(len(rows), npz.OPPONENT_TYPES.index("self"), dtype=np.uint8),
        engine_modes=np.full(len(rows), npz.ENGINE_MODES.index(search), dtype=np.uint8),
        move_types=np.array([r["move_type"] for r in rows], dtype=np.uint8),
        board_config=config.config_name,
        policy_size=adapter.policy_size,
        metadata={
            "generation": config.generation,
            "games": config.games,
            "search": search,
            "selfplay_config": asdict(config),
            "created_at": time.time(),
        },
    )


def plan_shards(
    curriculum: Mapping[str, float], total_games: int, num_shards: int, *, seed: int = 0
) -> list[dict[str, Any]]:
    """Split ``total_games`` over board configs by curriculum weight, then into shards.

    Args:
        curriculum: ``{config_name: weight}``; weights need not sum to 1 (0 drops a config).
        total_games: games across all shards.
        num_shards: shards to spread them over (the ParallelFor width); shards with 0 games are dropped.
        seed: base seed; each shard gets a distinct one.

    Returns:
        ``[{"shard": i, "config_name": ..., "games": ..., "seed": ...}, ...]``.
    """
    if not curriculum:
        raise ValueError("curriculum: empty; give at least one {config_name: weight}, e.g. {'hex8_2p': 1.0}")
    for name, w in curriculum.items():
        if name not in BOARD_CONFIGS:
            raise ValueError(
                f"curriculum: {name!r} is not a board config; use one of {sorted(BOARD_CONFIGS)}"
            )
        if not (w >= 0 and np.isfinite(w)):
            raise ValueError(f"curriculum[{name!r}]: weight {w} must be a finite number >= 0")
    total_w = float(sum(curriculum.values()))
    if total_w <= 0:
        raise ValueError("curriculum: all weights are 0; give at least one config a positive weight")
    if total_games < 1 or num_shards < 1:
        raise ValueError(f"total_games ({total_games}) and num_shards ({num_shards}) must be >= 1")
    names = sorted(curriculum)
    raw = np.array([curriculum[n] / total_w * total_games for n in names])
    games = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - games))[: total_games - int(games.sum())]:  # largest remainders
        games[i] += 1
    shards_per = {n: max(1, round(num_shards * curriculum[n] / total_w)) for n in names}
    plan = []
    for name, g in zip(names, games, strict=True):
        k = min(shards_per[name], int(g)) if g > 0 else 0
        for j in range(k):
            n = int(g) // k + (1 if j < int(g) % k else 0)
            plan.append({"shard": len(plan), "config_name": name, "games": n})
    for entry in plan:
        entry["seed"] = (int(seed) * 1000003 + entry["shard"]) % (2**31 - 1)  # OpenSpiel seeds are C ints
    return plan
