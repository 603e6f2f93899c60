"""Board configs and a small adapter over OpenSpiel: feature planes, globals, legal mask, outcomes.

A board config is named like the original system: ``<board><size>_<players>p`` (``hex8_2p`` = hex on
an 8x8 board, two players). Every config maps to one OpenSpiel game string; the adapter turns an
OpenSpiel state into the arrays the schema (:mod:`tuneloop.selfplay.npz`) stores:

* ``planes``: uint8 ``(C, H, W)`` — the game's observation planes (hex: 9 cell-state planes, Connect
  Four: 3, maedn: one 1x56 track per seat);
* ``globals``: float32 ``(G,)`` — one-hot player to move (4 seats), the fraction of the move limit
  played, then game extras (maedn: pieces waiting in each seat's start area, one-hot die roll);
* a boolean legal-move mask over ``policy_size`` actions, and the player to move.

Outcomes are normalised to [-1, 1] per seat: a 2-player game gives +1/-1 (0 for a draw); maedn gives
the winner +1 and every other seat -1/(n-1), so the seat values still sum to zero.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuneloop.selfplay import npz

MAX_PLAYERS = npz.MAX_PLAYERS


@dataclass(frozen=True)
class BoardConfig:
    """One playable configuration.

    Attributes:
        name: the config name users pass (``hex8_2p``).
        spiel_game: the OpenSpiel game string it loads.
        family: ``hex``, ``connect_four`` or ``maedn``: selects the encoder.
        num_players: seats at the table.
        temperature_plies: opening plies in which self-play samples moves from the visit counts.
        description: one line for help texts.
    """

    name: str
    spiel_game: str
    family: str
    num_players: int
    temperature_plies: int
    description: str

    def __post_init__(self) -> None:
        if self.family not in _FAMILIES:
            raise ValueError(f"BoardConfig.family: {self.family!r} is not one of {sorted(_FAMILIES)}")
        if not 1 <= self.num_players <= MAX_PLAYERS:
            raise ValueError(f"BoardConfig.num_players: {self.num_players} must lie in [1, {MAX_PLAYERS}]")


_FAMILIES = ("hex", "connect_four", "maedn")

BOARD_CONFIGS: dict[str, BoardConfig] = {
    c.name: c
    for c in (
        BoardConfig("hex5_2p", "hex(board_size=5)", "hex", 2, 4, "Hex on a 5x5 board (tests, benchmarks)"),
        BoardConfig("hex8_2p", "hex(board_size=8)", "hex", 2, 8, "Hex on an 8x8 board"),
        BoardConfig("connect_four_2p", "connect_four", "connect_four", 2, 6, "Connect Four, 6x7"),
        BoardConfig("maedn_2p", "maedn(players=2)", "maedn", 2, 0, "Mensch aergere dich nicht, 2 players"),
        BoardConfig("maedn_3p", "maedn(players=3)", "maedn", 3, 0, "Mensch aergere dich nicht, 3 players"),
        BoardConfig("maedn_4p", "maedn(players=4)", "maedn", 4, 0, "Mensch aergere dich nicht, 4 players"),
    )
}


def board_config(name: str) -> BoardConfig:
    """The :class:`BoardConfig` called ``name``; the error lists the known names."""
    try:
        return BOARD_CONFIGS[name]
    except KeyError as exc:
        raise ValueError(
            f"config_name: {name!r} is not a board config; use one of {sorted(BOARD_CONFIGS)}"
        ) from exc


# maedn observation layout (OpenSpiel maedn.cc): 4 seats x 56 fields (40 track + 16 goal), then the
# pieces waiting in each seat's start area (4), the player to move one-hot (4), the die one-hot (6).
_MAEDN_FIELDS = 56
_MAEDN_START = 4 * _MAEDN_FIELDS


class GameAdapter:
    """Encodes OpenSpiel states of one board config. Build with :func:`load_game` (cached)."""

    def __init__(self, config: BoardConfig):
        import pyspiel

        self.config = config
        self.game = pyspiel.load_game(config.spiel_game)
        self.num_players = self.game.num_players()
        self.policy_size = self.game.num_distinct_actions()
        self.max_game_length = self.game.max_game_length()
        obs = list(self.game.observation_tensor_shape())
        if config.family == "maedn":
            self.planes_shape = (MAX_PLAYERS, 1, _MAEDN_FIELDS)
            self.num_globals = MAX_PLAYERS + 1 + MAX_PLAYERS + 6
        else:
            self.planes_shape = (int(obs[0]), int(obs[1]), int(obs[2]))
            self.num_globals = MAX_PLAYERS + 1
        self.is_stochastic = config.family == "maedn"

    # -- state helpers ------------------------------------------------------------------------
    def new_state(self) -> Any:
        """A fresh OpenSpiel state at the start of the game."""
        return self.game.new_initial_state()

    @staticmethod
    def to_move(state: Any) -> int:
        """The seat to move (OpenSpiel's ``current_player``)."""
        return int(state.current_player())

    def legal_mask(self, state: Any) -> np.ndarray:
        """Boolean ``(policy_size,)`` mask of the legal actions."""
        mask = np.zeros(self.policy_size, dtype=bool)
        mask[state.legal_actions()] = True
        return mask

    def encode(self, state: Any, move_number: int) -> tuple[np.ndarray, np.ndarray]:
        """``(planes uint8 (C, H, W), globals float32 (G,))`` for the player to move."""
        obs = np.asarray(state.observation_tensor(), dtype=np.float32)
        player = self.to_move(state)
        g = np.zeros(self.num_globals, dtype=np.float32)
        if 0 <= player < MAX_PLAYERS:
            g[player] = 1.0
        g[MAX_PLAYERS] = min(1.0, move_number / max(1, self.max_game_length))
        if self.config.family == "maedn":
            planes = obs[:_MAEDN_START].reshape(MAX_PLAYERS, 1, _MAEDN_FIELDS)
            g[MAX_PLAYERS + 1 : 2 * MAX_PLAYERS + 1] = obs[_MAEDN_START : _MAEDN_START + MAX_PLAYERS] / 4.0
            g[2 * MAX_PLAYERS + 1 :] = obs[_MAEDN_START + 2 * MAX_PLAYERS :]
        else:
            planes = obs.reshape(self.planes_shape)
        return planes.astype(np.uint8), g

    def phase(self, state: Any, move_number: int) -> int:
        """Index into :data:`npz.PHASES` for the player to move."""
        if self.config.family == "maedn":
            obs = np.asarray(state.observation_tensor(), dtype=np.float32)
            player = self.to_move(state)
            in_start = obs[_MAEDN_START + player]
            own = obs[player * _MAEDN_FIELDS : (player + 1) * _MAEDN_FIELDS]
            if own[40:].sum() > 0:  # a piece in the goal
                return 2
            return 0 if in_start >= 3 else 1
        cells = self.planes_shape[1] * self.planes_shape[2]
        fill = move_number / cells
        return 0 if fill < 1 / 3 else 1 if fill < 2 / 3 else 2

    def outcome(self, state: Any) -> np.ndarray:
        """Absolute per-seat outcome in [-1, 1], 0-padded to MAX_PLAYERS (0 for an unfinished game)."""
        out = np.zeros(MAX_PLAYERS, dtype=np.float32)
        if not state.is_terminal():
            return out
        returns = np.asarray(state.returns(), dtype=np.float32)
        scale = float(max(1, self.num_players - 1)) if self.config.family == "maedn" else 1.0
        out[: self.num_players] = np.clip(returns / scale, -1.0, 1.0)
        return out

    def victory_type(self, state: Any) -> int:
        """Index into :data:`npz.VICTORY_TYPES` for a finished (or truncated) game."""
        if not state.is_terminal():
            return npz.VICTORY_TYPES.index("truncated")
        returns = np.asarray(state.returns())
        if np.all(returns == returns[0]):
            return npz.VICTORY_TYPES.index("draw")
        family = self.config.family
        return npz.VICTORY_TYPES.index({"hex": "connection", "connect_four": "line", "maedn": "race"}[family])


def relative(values_abs: np.ndarray, player: int, num_players: int) -> np.ndarray:
    """Rotate absolute seat values so index ``k`` is the player ``k`` seats after ``player``."""
    out = np.zeros(MAX_PLAYERS, dtype=np.float32)
    for k in range(num_players):
        out[k] = values_abs[(player + k) % num_players]
    return out


def absolute(values_rel: np.ndarray, player: int, num_players: int) -> np.ndarray:
    """Inverse of :func:`relative` (works on the last axis)."""
    out = np.zeros(values_rel.shape[:-1] + (MAX_PLAYERS,), dtype=np.float32)
    for k in range(num_players):
        out[..., (player + k) % num_players] = values_rel[..., k]
    return out


@functools.cache
def load_game(name: str) -> GameAdapter:
    """The (cached) :class:`GameAdapter` for board config ``name``."""
    return GameAdapter(board_config(name))


@functools.cache
def board_shape(name: str) -> npz.BoardShape:
    """What board config ``name`` fixes in an export: planes, globals width, policy size, players.

    Raises:
        ValueError: ``name`` is not a board config (the message lists the known ones).
    """
    adapter = load_game(name)
    return npz.BoardShape(
        name=name,
        planes=tuple(int(d) for d in adapter.planes_shape),
        num_globals=int(adapter.num_globals),
        policy_size=int(adapter.policy_size),
        num_players=int(adapter.num_players),
    )
