"""The gauntlet: a candidate net plays random, the heuristic (rollout MCTS) and the previous best.

* Seats rotate every game (game ``i``: the candidate sits in seat ``i mod num_players``), so neither
  side keeps the first-move advantage. In a multi-player game the other seats are all the opponent.
* A game scores 1 for a candidate win (its return is the unique best), 0.5 for a shared best, 0
  otherwise. Win rates come with Wilson 95% intervals.
* Games are played in waves (searched together, one network batch per step). After ``min_games``
  a pairing stops early once a sequential probability ratio test decides whether the candidate's
  score is above or below the pairing's target (SPRT, H0: p = target - delta, H1: p = target + delta).
* Elo: a Bradley-Terry fit over all pairings (``pyspiel.elo``), anchored so random = 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from tuneloop import progress
from tuneloop.selfplay.games import GameAdapter, load_game
from tuneloop.selfplay.mcts import (
    Evaluator,
    PuctConfig,
    RolloutConfig,
    RolloutSearch,
    choose_move,
    puct_search,
)

RANDOM, HEURISTIC, PREVIOUS_BEST, CANDIDATE = "random", "heuristic", "previous_best", "candidate"
# The original system's promotion bars (PromotionThresholds' defaults, and the SPRT targets here).
MIN_VS_RANDOM, MIN_VS_HEURISTIC, MIN_VS_BEST = 0.85, 0.60, 0.45


@dataclass(frozen=True)
class GauntletConfig:
    """Gauntlet settings.

    Attributes:
        games: most games per pairing.
        min_games: games a pairing always plays before it may stop early.
        wave: games played together (one search batch); early stopping is checked between waves.
        candidate_simulations: PUCT simulations per candidate move (0 = play the policy's argmax).
        heuristic_simulations: rollout-MCTS simulations of the heuristic opponent.
        heuristic_uct_c: UCT constant of the heuristic opponent.
        targets: score each pairing is tested against for early stopping
            (``(random, heuristic, previous_best)``; the promotion thresholds by default).
        sprt_delta: half-width of the SPRT indifference zone around each target.
        sprt_alpha: SPRT false-positive rate.
        sprt_beta: SPRT false-negative rate.
        opening_plies: uniformly random moves that open every game; the games that differ only by
            seat share one opening, so deterministic players still meet varied positions fairly.
        max_moves: decision limit per game (a game that hits it is a draw); None = the game's own.
        seed: seeds every player and chance outcome.
    """

    games: int = 100
    min_games: int = 20
    wave: int = 10
    candidate_simulations: int = 32
    heuristic_simulations: int = 50
    heuristic_uct_c: float = 2.0
    targets: tuple[float, float, float] = (MIN_VS_RANDOM, MIN_VS_HEURISTIC, MIN_VS_BEST)
    sprt_delta: float = 0.05
    sprt_alpha: float = 0.05
    sprt_beta: float = 0.05
    opening_plies: int = 2
    max_moves: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.opening_plies < 0:
            raise ValueError(f"opening_plies: {self.opening_plies} must be >= 0")
        if self.games < 1:
            raise ValueError(f"games: {self.games} must be >= 1")
        if not 1 <= self.min_games <= self.games:
            raise ValueError(f"min_games: {self.min_games} must lie in [1, games={self.games}]")
        if self.wave < 1:
            raise ValueError(f"wave: {self.wave} must be >= 1")
        if self.candidate_simulations < 0 or self.heuristic_simulations < 1:
            raise ValueError("candidate_simulations must be >= 0 and heuristic_simulations >= 1")
        if len(self.targets) != 3 or not all(0 < t < 1 for t in self.targets):
            raise ValueError(
                f"targets: {self.targets} must be three scores in (0, 1): random, heuristic, best"
            )
        if not 0 < self.sprt_delta < 0.5:
            raise ValueError(f"sprt_delta: {self.sprt_delta} must lie in (0, 0.5)")
        if not (0 < self.sprt_alpha < 0.5 and 0 < self.sprt_beta < 0.5):
            raise ValueError("sprt_alpha and sprt_beta must lie in (0, 0.5)")


class Player(Protocol):
    """What the gauntlet needs from a player: a name and batched move choice."""

    name: str

    def act(
        self, states: Sequence[Any], moves: Sequence[int], rngs: Sequence[np.random.Generator]
    ) -> list[int]:
        """One action per state (all decision nodes where this player is to move)."""


class RandomPlayer:
    """Uniform over legal moves."""

    name = RANDOM

    def act(self, states, moves, rngs):
        return [int(rng.choice(s.legal_actions())) for s, rng in zip(states, rngs, strict=True)]


class RolloutPlayer:
    """Rollout MCTS (``pyspiel.MCTSBot``), most visited move: the heuristic opponent."""

    name = HEURISTIC

    def __init__(self, adapter: GameAdapter, simulations: int, uct_c: float, seed: int):
        self.search = RolloutSearch(adapter, RolloutConfig(simulations=simulations, uct_c=uct_c), seed)

    def act(self, states, moves, rngs):
        return [
            choose_move(self.search.visit_counts(s), 0.0, rng) for s, rng in zip(states, rngs, strict=True)
        ]


class NetPlayer:
    """A trained net: its policy's argmax (``simulations == 0``) or batched PUCT, no root noise."""

    def __init__(self, name: str, adapter: GameAdapter, evaluate: Evaluator, simulations: int, seed: int):
        self.name = name
        self.adapter = adapter
        self.evaluate = evaluate
        self.simulations = simulations
        self.rng = np.random.default_rng(seed)

    def act(self, states, moves, rngs):
        if self.simulations == 0:
            planes = np.empty((len(states), *self.adapter.planes_shape), dtype=np.uint8)
            globs = np.empty((len(states), self.adapter.num_globals), dtype=np.float32)
            for j, (s, mv) in enumerate(zip(states, moves, strict=True)):
                planes[j], globs[j] = self.adapter.encode(s, mv)
            logits, _ = self.evaluate(planes, globs)
            out = []
            for j, s in enumerate(states):
                legal = np.asarray(s.legal_actions())
                out.append(int(legal[np.argmax(logits[j][legal])]))
            return out
        counts = puct_search(
            self.adapter,
            states,
            self.evaluate,
            PuctConfig(simulations=self.simulations, dirichlet_fraction=0.0),
            self.rng,
            add_noise=False,
            move_numbers=moves,
        )
        return [choose_move(c, 0.0, rng) for c, rng in zip(counts, rngs, strict=True)]


def wilson(score: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a win rate ``score / n``."""
    if n == 0:
        return 0.0, 1.0
    p = score / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def sprt(
    wins: float, losses: float, target: float, delta: float, alpha: float, beta: float
) -> tuple[float, str]:
    """Log-likelihood ratio of H1 (p = target + delta) vs H0 (p = target - delta) and the verdict.

    Draws count as half a win and half a loss. Verdict: ``above`` (accept H1), ``below`` (accept H0)
    or ``undecided``.
    """
    p0 = min(max(target - delta, 1e-4), 1 - 1e-4)
    p1 = min(max(target + delta, 1e-4), 1 - 1e-4)
    llr = wins * math.log(p1 / p0) + losses * math.log((1 - p1) / (1 - p0))
    upper, lower = math.log((1 - beta) / alpha), math.log(beta / (1 - alpha))
    verdict = "above" if llr >= upper else "below" if llr <= lower else "undecided"
    return llr, verdict


def _open(adapter: GameAdapter, plies: int, rng: np.random.Generator) -> tuple[Any, int]:
    """A new state after ``plies`` uniformly random decisions (chance outcomes sampled)."""
    st, moves = adapter.new_state(), 0
    while moves < plies:
        _sample_chance(st, rng)
        if st.is_terminal():
            break
        st.apply_action(int(rng.choice(st.legal_actions())))
        moves += 1
    return st, moves


def _sample_chance(st: Any, rng: np.random.Generator) -> None:
    while st.is_chance_node():
        outs = st.chance_outcomes()
        probs = np.array([p for _, p in outs])
        st.apply_action(int(outs[int(rng.choice(len(outs), p=probs / probs.sum()))][0]))


def _play_wave(
    adapter: GameAdapter,
    candidate: Player,
    opponent: Player,
    game_indices: Sequence[int],
    limit: int,
    seed: int,
    opening_plies: int = 0,
) -> list[float]:
    """Play the games ``game_indices`` together; returns the candidate's score in each."""
    n = adapter.num_players
    # games gi and gi' with gi // n == gi' // n share an opening and differ only in the candidate's seat
    opened = [_open(adapter, opening_plies, np.random.default_rng([seed, gi // n, 1])) for gi in game_indices]
    states = [st for st, _ in opened]
    moves = [mv for _, mv in opened]
    rngs = [np.random.default_rng([seed, gi]) for gi in game_indices]
    seats = [gi % n for gi in game_indices]
    live = list(range(len(states)))
    while live:
        for i in live:
            _sample_chance(states[i], rngs[i])
        live = [i for i in live if not states[i].is_terminal() and moves[i] < limit]
        if not live:
            break
        for player, mine in (
            (candidate, [i for i in live if states[i].current_player() == seats[i]]),
            (opponent, [i for i in live if states[i].current_player() != seats[i]]),
        ):
            if not mine:
                continue
            forced = [i for i in mine if len(states[i].legal_actions()) == 1]
            choose = [i for i in mine if len(states[i].legal_actions()) > 1]
            for i in forced:
                states[i].apply_action(states[i].legal_actions()[0])
                moves[i] += 1
            if choose:
                actions = player.act(
                    [states[i] for i in choose], [moves[i] for i in choose], [rngs[i] for i in choose]
                )
                for i, a in zip(choose, actions, strict=True):
                    states[i].apply_action(int(a))
                    moves[i] += 1
    scores = []
    for st, seat in zip(states, seats, strict=True):
        if not st.is_terminal():
            scores.append(0.5)  # move limit: a draw
            continue
        r = np.asarray(st.returns())
        best = r.max()
        scores.append(0.0 if r[seat] < best else 1.0 / int(np.count_nonzero(r == best)))
    return scores


def play_pairing(
    adapter: GameAdapter,
    candidate: Player,
    opponent: Player,
    target: float,
    config: GauntletConfig,
    seed: int,
) -> dict[str, Any]:
    """Play candidate vs opponent with seat rotation and SPRT early stopping; returns the tally."""
    limit = config.max_moves or adapter.max_game_length
    scores: list[float] = []
    verdict, llr = "undecided", 0.0
    while len(scores) < config.games:
        start = len(scores)
        idx = list(range(start, min(config.games, start + config.wave)))
        scores.extend(_play_wave(adapter, candidate, opponent, idx, limit, seed, config.opening_plies))
        wins = float(sum(scores))
        progress.tick(f"gauntlet/{opponent.name}", len(scores), config.games, win_rate=wins / len(scores))
        llr, verdict = sprt(
            wins, len(scores) - wins, target, config.sprt_delta, config.sprt_alpha, config.sprt_beta
        )
        if len(scores) >= config.min_games and verdict != "undecided":
            break
    arr = np.asarray(scores)
    n = int(arr.size)
    score = float(arr.sum())
    lo, hi = wilson(score, n)
    return {
        "opponent": opponent.name,
        "games": n,
        "wins": int(np.count_nonzero(arr == 1.0)),
        "draws": int(np.count_nonzero((arr > 0) & (arr < 1))),
        "losses": int(np.count_nonzero(arr == 0.0)),
        "score": score,
        "win_rate": score / n,
        "ci_low": lo,
        "ci_high": hi,
        "target": target,
        "sprt_llr": llr,
        "sprt": verdict,
        "stopped_early": n < config.games,
    }


def elo_ratings(pairings: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Bradley-Terry Elo over the candidate's pairings (``pyspiel.elo``), shifted so random = 0."""
    import pyspiel

    names = [CANDIDATE, *pairings]
    k = len(names)
    win = [[0] * k for _ in range(k)]
    draw = [[0] * k for _ in range(k)]
    for j, (_, p) in enumerate(pairings.items(), start=1):
        win[0][j] += p["wins"]
        win[j][0] += p["losses"]
        draw[0][j] += p["draws"]
        draw[j][0] += p["draws"]
    ratings = pyspiel.elo.compute_ratings_from_matrices(win, draw)
    anchor = ratings[names.index(RANDOM)] if RANDOM in names else min(ratings)
    return {name: float(r - anchor) for name, r in zip(names, ratings, strict=True)}


def run_gauntlet(
    config_name: str,
    candidate: Evaluator,
    config: GauntletConfig = GauntletConfig(),
    *,
    previous_best: Evaluator | None = None,
) -> dict[str, Any]:
    """Play the candidate against random, the heuristic and (when given) the previous best.

    Returns:
        ``{"config_name", "pairings": {random|heuristic|previous_best: tally}, "elo", "first_generation",
        "config"}``; a tally has games, wins, draws, losses, win_rate, ci_low, ci_high, sprt, stopped_early.
    """
    adapter = load_game(config_name)
    cand = NetPlayer(CANDIDATE, adapter, candidate, config.candidate_simulations, config.seed)
    opponents: list[tuple[Player, float]] = [
        (RandomPlayer(), config.targets[0]),
        (
            RolloutPlayer(adapter, config.heuristic_simulations, config.heuristic_uct_c, config.seed + 1),
            config.targets[1],
        ),
    ]
    if previous_best is not None:
        opponents.append(
            (
                NetPlayer(
                    PREVIOUS_BEST, adapter, previous_best, config.candidate_simulations, config.seed + 2
                ),
                config.targets[2],
            )
        )
    pairings = {}
    for k, (opp, target) in enumerate(opponents):
        pairings[opp.name] = play_pairing(adapter, cand, opp, target, config, seed=config.seed * 7919 + k)
    return {
        "config_name": config_name,
        "pairings": pairings,
        "elo": elo_ratings(pairings),
        "first_generation": previous_best is None,
        "config": {**asdict(config), "targets": list(config.targets)},
    }
