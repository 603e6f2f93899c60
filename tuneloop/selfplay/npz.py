"""The self-play training-data schema: the ONE module that names its keys, dtypes, shapes and rules.

A self-play export is an ``.npz`` file (one per shard); a combined training set is a directory holding
the same keys as ``<key>.npy`` files plus ``metadata.json``, so the trainer can memory-map it. Both
carry ``N`` positions:

=====================  ============  ===============  ===============================================
key                    dtype         shape            meaning
=====================  ============  ===============  ===============================================
``features``           uint8         (N, C, H, W)     board feature planes (C, H, W: the board config's)
``globals``            float32       (N, G)           global features (player to move, move fraction..)
``policy_indices``     int32         (nnz,)           CSR: action ids with a non-zero target
``policy_values``      float32       (nnz,)           CSR: their probabilities (each row sums to 1)
``policy_offsets``     int64         (N + 1,)         CSR: row ``i`` is ``[offsets[i], offsets[i+1])``
``values``             float32       (N,)             final outcome for the player to move, in [-1, 1]
``values_mp``          float32       (N, 4)           outcome of every seat, seat ``k`` = the player
                                                      ``k`` seats after the player to move; 0-padded
``num_players``        uint8         (N,)             players in the game (the board config's)
``current_player``     uint8         (N,)             absolute seat of the player to move
``phases``             uint8         (N,)             index into :data:`PHASES`
``move_numbers``       int32         (N,)             decision index of the position in its game
``total_game_moves``   int32         (N,)             decisions in the whole game (> move_numbers)
``victory_types``      uint8         (N,)             index into :data:`VICTORY_TYPES`
``game_ids``           int64         (N,)             stable id of the game (dedup, split by game)
``sample_weights``     float32       (N,)             optional, >= 0
``timestamps``         float64       (N,)             optional, unix seconds when the game ended (not
                                                      in the future)
``quality_score``      float32       (N,)             optional (v2), in [0, 1]; replaces the quality
                                                      combine derives from ``victory_types``
``opponent_elo``       float32       (N,)             optional (v2), Elo of the opponent; NaN = unknown
``opponent_types``     uint8         (N,)             optional (v2), index into :data:`OPPONENT_TYPES`
``engine_modes``       uint8         (N,)             optional (v2), index into :data:`ENGINE_MODES`
``move_types``         uint8         (N,)             optional (v2), index into :data:`MOVE_TYPES`
``heuristics``         float32       (N, K)           optional (v2), K <= 256 heuristic features of the
                                                      position; NaN = not computed
``schema_version``     int64         ()               :data:`SCHEMA_VERSION` (1 is still read)
``board_config``       str           ()               e.g. ``hex8_2p``
``policy_size``        int64         ()               number of distinct actions (the board config's)
``metadata``           str           ()               optional JSON object (generation, simulations..)
=====================  ============  ===============  ===============================================

Schema v2 adds the optional per-position keys ``quality_score`` .. ``heuristics``; a v1 file is a v2
file without them and loads unchanged. There are no object arrays: every file loads without pickle.

:func:`check_arrays` returns every reason arrays are rejected (missing keys, wrong dtypes or shapes,
shapes that do not fit the board config, NaN/inf, values out of range, policies that do not sum to 1,
offsets that do not match, timestamps in the future, mostly duplicated positions, misspelt keys) and
the warnings worth reading (unknown keys); :func:`validate_arrays` is its list of errors. Reading a
file you did not write is :mod:`tuneloop.selfplay.exports` (bounded in memory and time).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = (1, 2)
MAX_PLAYERS = 4
POLICY_SUM_TOLERANCE = 1e-3
VALUE_TOLERANCE = 1e-5
MAX_HEURISTICS = 256
MAX_ABS_ELO = 10_000.0
MAX_POLICY_SIZE = 2**31 - 1  # int32 action ids
# Defaults of the content rules (exports.ValidatorLimits carries them as settings).
DEFAULT_FUTURE_SKEW_S = 300.0
DEFAULT_MAX_DUPLICATE_FRACTION = 0.5

# -- keys ------------------------------------------------------------------------------------------
FEATURES = "features"
GLOBALS = "globals"
POLICY_INDICES = "policy_indices"
POLICY_VALUES = "policy_values"
POLICY_OFFSETS = "policy_offsets"
VALUES = "values"
VALUES_MP = "values_mp"
NUM_PLAYERS = "num_players"
CURRENT_PLAYER = "current_player"
PHASES_KEY = "phases"
MOVE_NUMBERS = "move_numbers"
TOTAL_GAME_MOVES = "total_game_moves"
VICTORY_TYPES_KEY = "victory_types"
GAME_IDS = "game_ids"
SAMPLE_WEIGHTS = "sample_weights"
TIMESTAMPS = "timestamps"
QUALITY_SCORE = "quality_score"
OPPONENT_ELO = "opponent_elo"
OPPONENT_TYPES_KEY = "opponent_types"
ENGINE_MODES_KEY = "engine_modes"
MOVE_TYPES_KEY = "move_types"
HEURISTICS = "heuristics"
# scalar metadata keys
META_SCHEMA_VERSION = "schema_version"
META_BOARD_CONFIG = "board_config"
META_POLICY_SIZE = "policy_size"
META_EXTRA = "metadata"

# Per-position arrays (length N) and their dtypes; CSR arrays are listed separately.
POSITION_DTYPES: dict[str, np.dtype] = {
    FEATURES: np.dtype(np.uint8),
    GLOBALS: np.dtype(np.float32),
    VALUES: np.dtype(np.float32),
    VALUES_MP: np.dtype(np.float32),
    NUM_PLAYERS: np.dtype(np.uint8),
    CURRENT_PLAYER: np.dtype(np.uint8),
    PHASES_KEY: np.dtype(np.uint8),
    MOVE_NUMBERS: np.dtype(np.int32),
    TOTAL_GAME_MOVES: np.dtype(np.int32),
    VICTORY_TYPES_KEY: np.dtype(np.uint8),
    GAME_IDS: np.dtype(np.int64),
}
OPTIONAL_DTYPES: dict[str, np.dtype] = {
    SAMPLE_WEIGHTS: np.dtype(np.float32),
    TIMESTAMPS: np.dtype(np.float64),
    QUALITY_SCORE: np.dtype(np.float32),
    OPPONENT_ELO: np.dtype(np.float32),
    OPPONENT_TYPES_KEY: np.dtype(np.uint8),
    ENGINE_MODES_KEY: np.dtype(np.uint8),
    MOVE_TYPES_KEY: np.dtype(np.uint8),
    HEURISTICS: np.dtype(np.float32),
}
# Optional keys that schema v2 added (a v1 file has none of them).
V2_KEYS = (QUALITY_SCORE, OPPONENT_ELO, OPPONENT_TYPES_KEY, ENGINE_MODES_KEY, MOVE_TYPES_KEY, HEURISTICS)
CSR_DTYPES: dict[str, np.dtype] = {
    POLICY_INDICES: np.dtype(np.int32),
    POLICY_VALUES: np.dtype(np.float32),
    POLICY_OFFSETS: np.dtype(np.int64),
}
ARRAY_KEYS = (*POSITION_DTYPES, *CSR_DTYPES)
REQUIRED_KEYS = (*ARRAY_KEYS, META_SCHEMA_VERSION, META_BOARD_CONFIG, META_POLICY_SIZE)
OPTIONAL_KEYS = (*OPTIONAL_DTYPES, META_EXTRA)
ALL_KEYS = (*REQUIRED_KEYS, *OPTIONAL_KEYS)
# Two-dimensional per-position arrays: key -> the shape written in messages.
MATRIX_SHAPES = {GLOBALS: "(N, G)", VALUES_MP: f"(N, {MAX_PLAYERS})", HEURISTICS: "(N, K)"}

# Code tables (the uint8 columns index into these; append only, never reorder).
PHASES = ("opening", "middlegame", "endgame")
VICTORY_TYPES = ("connection", "line", "race", "draw", "truncated")
OPPONENT_TYPES = ("unknown", "self", "random", "heuristic", "previous_best", "human", "external")
ENGINE_MODES = ("unknown", "rollout_mcts", "puct", "policy", "random", "human", "external")
MOVE_TYPES = ("unknown", "searched", "sampled", "forced")
CODE_TABLES: dict[str, tuple[str, ...]] = {
    PHASES_KEY: PHASES,
    VICTORY_TYPES_KEY: VICTORY_TYPES,
    OPPONENT_TYPES_KEY: OPPONENT_TYPES,
    ENGINE_MODES_KEY: ENGINE_MODES,
    MOVE_TYPES_KEY: MOVE_TYPES,
}
# What concat writes for rows of a set that lacks an optional column.
OPTIONAL_FILL: dict[str, float] = {
    SAMPLE_WEIGHTS: 1.0,
    TIMESTAMPS: 0.0,
    QUALITY_SCORE: 1.0,
    OPPONENT_ELO: float("nan"),
    OPPONENT_TYPES_KEY: 0,
    ENGINE_MODES_KEY: 0,
    MOVE_TYPES_KEY: 0,
    HEURISTICS: float("nan"),
}

# Combined training-set directory: one <key>.npy per array, plus this file.
DIR_METADATA = "metadata.json"


class SchemaError(ValueError):
    """Arrays that do not follow the schema; ``reasons`` lists every rule they break."""

    def __init__(self, source: str, reasons: Sequence[str]):
        self.source = source
        self.reasons = list(reasons)
        super().__init__(
            f"{source}: not a valid self-play export (schema v{SCHEMA_VERSION}): " + "; ".join(reasons)
        )


@dataclass(frozen=True)
class BoardShape:
    """What a board config fixes in every export of it (see ``games.board_shape``)."""

    name: str
    planes: tuple[int, int, int]
    num_globals: int
    policy_size: int
    num_players: int


@dataclass(frozen=True)
class Findings:
    """The result of :func:`check_arrays`: ``errors`` reject the arrays, ``warnings`` do not."""

    errors: list[str]
    warnings: list[str]


@dataclass(frozen=True)
class PositionSet:
    """N self-play positions in schema form. Arrays may be memory-mapped (read-only)."""

    features: np.ndarray
    globals: np.ndarray
    policy_indices: np.ndarray
    policy_values: np.ndarray
    policy_offsets: np.ndarray
    values: np.ndarray
    values_mp: np.ndarray
    num_players: np.ndarray
    current_player: np.ndarray
    phases: np.ndarray
    move_numbers: np.ndarray
    total_game_moves: np.ndarray
    victory_types: np.ndarray
    game_ids: np.ndarray
    board_config: str
    policy_size: int
    sample_weights: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    quality_score: np.ndarray | None = None
    opponent_elo: np.ndarray | None = None
    opponent_types: np.ndarray | None = None
    engine_modes: np.ndarray | None = None
    move_types: np.ndarray | None = None
    heuristics: np.ndarray | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    # -- views -------------------------------------------------------------------------------------
    @property
    def num_positions(self) -> int:
        """N, the number of positions."""
        return int(self.features.shape[0])

    @property
    def num_games(self) -> int:
        """Distinct ``game_ids``."""
        return int(np.unique(self.game_ids).size)

    def policy_row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(action_ids, probabilities)`` of position ``i``'s policy target."""
        lo, hi = int(self.policy_offsets[i]), int(self.policy_offsets[i + 1])
        return np.asarray(self.policy_indices[lo:hi]), np.asarray(self.policy_values[lo:hi])

    def dense_policies(self) -> np.ndarray:
        """The policy targets as a dense ``(N, policy_size)`` float32 array (small sets only)."""
        out = np.zeros((self.num_positions, self.policy_size), dtype=np.float32)
        rows = np.repeat(np.arange(self.num_positions), np.diff(self.policy_offsets))
        out[rows, self.policy_indices] = self.policy_values
        return out

    def weights(self) -> np.ndarray:
        """Sample weights, ones when the set has none."""
        if self.sample_weights is None:
            return np.ones(self.num_positions, dtype=np.float32)
        return np.asarray(self.sample_weights, dtype=np.float32)

    def optional_keys(self) -> list[str]:
        """The optional per-position keys this set carries."""
        return [k for k in OPTIONAL_DTYPES if getattr(self, _ATTR[k]) is not None]

    # -- conversions -------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every key of the schema as a numpy array (scalars as 0-d arrays), ready to save."""
        arrays: dict[str, np.ndarray] = {k: np.asarray(getattr(self, _ATTR[k])) for k in ARRAY_KEYS}
        for key in OPTIONAL_DTYPES:
            value = getattr(self, _ATTR[key])
            if value is not None:
                arrays[key] = np.asarray(value)
        arrays[META_SCHEMA_VERSION] = np.asarray(self.schema_version, dtype=np.int64)
        arrays[META_BOARD_CONFIG] = np.asarray(self.board_config, dtype=np.str_)
        arrays[META_POLICY_SIZE] = np.asarray(self.policy_size, dtype=np.int64)
        arrays[META_EXTRA] = np.asarray(json.dumps(dict(self.metadata), sort_keys=True), dtype=np.str_)
        return arrays

    def select(self, index: np.ndarray) -> PositionSet:
        """The positions at ``index`` (any order), with their CSR policy rows gathered."""
        index = np.asarray(index, dtype=np.int64)
        starts = np.asarray(self.policy_offsets[index], dtype=np.int64)
        lengths = np.asarray(self.policy_offsets[index + 1], dtype=np.int64) - starts
        flat = csr_gather_positions(starts, lengths)
        offsets = np.zeros(index.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.asarray(a[index])

        per_position = {_ATTR[k]: take(getattr(self, _ATTR[k])) for k in (*POSITION_DTYPES, *OPTIONAL_DTYPES)}
        return replace(
            self,
            **per_position,
            policy_indices=np.asarray(self.policy_indices[flat]),
            policy_values=np.asarray(self.policy_values[flat]),
            policy_offsets=offsets,
        )


# schema key -> PositionSet attribute
_ATTR = {k: k for k in ALL_KEYS}
_ATTR[META_EXTRA] = "metadata"


def csr_gather_positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat positions into the CSR value arrays for rows with these ``starts`` and ``lengths``.

    Vectorised: ``concat(arange(s, s + n) for s, n in zip(starts, lengths))`` without a Python loop.
    """
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    row_begin = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1], out=row_begin[1:])
    return np.repeat(starts - row_begin, lengths) + np.arange(total, dtype=np.int64)


def concat(sets: Sequence[PositionSet], *, metadata: Mapping[str, Any] | None = None) -> PositionSet:
    """Concatenate position sets of one board config; the CSR offsets are rebased row by row.

    An optional column that only some sets carry is kept, filled with :data:`OPTIONAL_FILL` for the
    rows of the others.

    Raises:
        SchemaError: the sets differ in board config, policy size, feature/global shapes, or
            heuristics width.
    """
    if not sets:
        raise ValueError("concat: no position sets given; pass at least one")
    first = sets[0]
    for s in sets[1:]:
        problems = []
        if s.board_config != first.board_config:
            problems.append(f"board_config {s.board_config!r} != {first.board_config!r}")
        if s.policy_size != first.policy_size:
            problems.append(f"policy_size {s.policy_size} != {first.policy_size}")
        if s.features.shape[1:] != first.features.shape[1:]:
            problems.append(f"features shape {s.features.shape[1:]} != {first.features.shape[1:]}")
        if s.globals.shape[1:] != first.globals.shape[1:]:
            problems.append(f"globals shape {s.globals.shape[1:]} != {first.globals.shape[1:]}")
        if problems:
            raise SchemaError("concat", [*problems, "combine only exports of one board config"])
    widths = {s.heuristics.shape[1] for s in sets if s.heuristics is not None}
    if len(widths) > 1:
        raise SchemaError("concat", [f"heuristics widths differ {sorted(widths)}; drop the column or align it"])
    offsets = [np.zeros(1, dtype=np.int64)]
    base = 0
    for s in sets:
        offsets.append(np.asarray(s.policy_offsets[1:], dtype=np.int64) + base)
        base += int(s.policy_offsets[-1])

    def cat(attr: str) -> np.ndarray:
        return np.concatenate([np.asarray(getattr(s, attr)) for s in sets])

    def cat_optional(key: str) -> np.ndarray | None:
        attr = _ATTR[key]
        present = [getattr(s, attr) for s in sets if getattr(s, attr) is not None]
        if not present:
            return None
        dtype = OPTIONAL_DTYPES[key]
        tail = np.asarray(present[0]).shape[1:]
        return np.concatenate(
            [
                np.asarray(getattr(s, attr), dtype=dtype)
                if getattr(s, attr) is not None
                else np.full((s.num_positions, *tail), OPTIONAL_FILL[key], dtype=dtype)
                for s in sets
            ]
        )

    return replace(
        first,
        **{_ATTR[k]: cat(_ATTR[k]) for k in POSITION_DTYPES},
        **{_ATTR[k]: cat_optional(k) for k in OPTIONAL_DTYPES},
        policy_indices=cat(POLICY_INDICES),
        policy_values=cat(POLICY_VALUES),
        policy_offsets=np.concatenate(offsets),
        schema_version=SCHEMA_VERSION,
        metadata=dict(metadata if metadata is not None else first.metadata),
    )


# -- validation -------------------------------------------------------------------------------------
def _scalar(arrays: Mapping[str, np.ndarray], key: str) -> Any:
    a = np.asarray(arrays[key])
    if a.ndim != 0:
        raise ValueError(f"{key} must be a scalar (0-d array), got shape {a.shape}")
    return a.item()


def _nonfinite(a: np.ndarray) -> int:
    return int(a.size - np.count_nonzero(np.isfinite(a)))


def _infinite(a: np.ndarray) -> int:
    return int(np.count_nonzero(np.isinf(a)))


_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93)
_HASH_CHUNK_BYTES = 4 << 20


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, element-wise on uint64 (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(_MIX[1])
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(_MIX[2])
    return x ^ (x >> np.uint64(31))


def _hash_rows(a: np.ndarray, salt: int) -> np.ndarray:
    """A 64-bit hash of every row of ``a`` (its bytes, as 64-bit words), chunked so temporaries stay small."""
    n = a.shape[0]
    width = int(np.prod(a.shape[1:], dtype=np.int64)) * a.dtype.itemsize
    out = np.zeros(n, dtype=np.uint64)
    if n == 0 or width == 0:
        return out
    words = -(-width // 8)
    weights = _mix(np.arange(1, words + 1, dtype=np.uint64) * np.uint64(_MIX[0]) + np.uint64(salt))
    weights |= np.uint64(1)
    step = max(1, _HASH_CHUNK_BYTES // (8 * words))
    for lo in range(0, n, step):
        raw = np.ascontiguousarray(a[lo : lo + step]).view(np.uint8).reshape(-1, width)
        if width % 8:
            padded = np.zeros((raw.shape[0], 8 * words), dtype=np.uint8)
            padded[:, :width] = raw
            raw = padded
        out[lo : lo + step] = (raw.view(np.uint64) * weights).sum(axis=1)
    return out


_CSR_CHUNK_ENTRIES = 1 << 19


def _row_chunks(offs: np.ndarray, n: int):
    """``(lo, hi)`` row ranges holding at most about :data:`_CSR_CHUNK_ENTRIES` policy entries each."""
    lo = 0
    while lo < n:
        hi = int(np.searchsorted(offs, int(offs[lo]) + _CSR_CHUNK_ENTRIES, side="right")) - 1
        hi = min(n, max(lo + 1, hi))
        yield lo, hi
        lo = hi


def _csr_checks(idx: np.ndarray, vals: np.ndarray, offs: np.ndarray, n: int, policy_size: int, sums: bool):
    """``(row with a repeated action id or None, bad-sum rows, first bad row, its sum)``, in row chunks."""
    repeated, bad, first_bad, first_sum = None, 0, None, 0.0
    for lo, hi in _row_chunks(offs, n):
        e_lo, e_hi = int(offs[lo]), int(offs[hi])
        local = np.asarray(offs[lo : hi + 1], dtype=np.int64) - e_lo
        if repeated is None:
            key = np.repeat(np.arange(hi - lo, dtype=np.int64), np.diff(local))
            key *= policy_size
            key += idx[e_lo:e_hi]
            key.sort()
            same = np.flatnonzero(key[1:] == key[:-1])
            if same.size:
                repeated = lo + int(key[same[0]] // policy_size)
            del key
        if sums:
            s = np.add.reduceat(np.asarray(vals[e_lo:e_hi], dtype=np.float64), local[:-1])
            off = np.flatnonzero(np.abs(s - 1.0) > POLICY_SUM_TOLERANCE)
            if off.size:
                if first_bad is None:
                    first_bad, first_sum = lo + int(off[0]), float(s[off[0]])
                bad += int(off.size)
    return repeated, bad, first_bad, first_sum


def _duplicate_rows(arrays: Mapping[str, np.ndarray], n: int) -> int:
    """Rows that repeat an earlier row in everything a trainer sees (features, globals, policy, values)."""
    with np.errstate(over="ignore"):
        h = _hash_rows(np.asarray(arrays[FEATURES]), 1)
        h = _mix(h ^ _hash_rows(np.asarray(arrays[GLOBALS]), 2))
        h = _mix(h ^ _hash_rows(np.asarray(arrays[VALUES_MP]), 3))
        h = _mix(h ^ np.asarray(arrays[CURRENT_PLAYER]).astype(np.uint64))
        idx = np.asarray(arrays[POLICY_INDICES])
        vals = np.asarray(arrays[POLICY_VALUES])
        offs = np.asarray(arrays[POLICY_OFFSETS])
        policy = np.empty(n, dtype=np.uint64)
        for lo, hi in _row_chunks(offs, n):
            e_lo, e_hi = int(offs[lo]), int(offs[hi])
            bits = np.ascontiguousarray(vals[e_lo:e_hi]).view(np.uint32).astype(np.uint64)
            entry = _mix((idx[e_lo:e_hi].astype(np.uint64) << np.uint64(32)) | bits)
            policy[lo:hi] = np.add.reduceat(entry, np.asarray(offs[lo:hi], dtype=np.int64) - e_lo)
        h = _mix(h + policy)
    return int(n - np.unique(h).size)


def validate_arrays(arrays: Mapping[str, np.ndarray], **rules: Any) -> list[str]:
    """Every reason these arrays break the schema; an empty list means they are valid.

    Takes the keyword arguments of :func:`check_arrays`.
    """
    return check_arrays(arrays, **rules).errors


def check_arrays(
    arrays: Mapping[str, np.ndarray],
    *,
    board_shape: Callable[[str], BoardShape] | None = None,
    now: float | None = None,
    future_skew_s: float = DEFAULT_FUTURE_SKEW_S,
    max_duplicate_fraction: float = DEFAULT_MAX_DUPLICATE_FRACTION,
) -> Findings:
    """The errors and warnings of schema arrays.

    Structural problems (missing keys, dtypes, shapes, the board config's shapes) are reported first;
    the content rules (finite, ranges, CSR offsets, policy sums, consistency, timestamps, duplicates)
    run only on a sound structure.

    Args:
        arrays: ``{key: array}`` as read from a file.
        board_shape: resolves a ``board_config`` name to its :class:`BoardShape` (raises ValueError for
            an unknown name); None skips the board checks.
        now: unix time that timestamps may not exceed by more than ``future_skew_s`` (None = now).
        future_skew_s: allowed clock skew of the writer, seconds.
        max_duplicate_fraction: most share of positions that may repeat another exactly.
    """
    reasons: list[str] = []
    warnings: list[str] = []
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        reasons.append(f"missing keys {missing}; an export needs all of {list(REQUIRED_KEYS)}")
    for key in arrays:
        if key in ALL_KEYS:
            continue
        near = difflib.get_close_matches(str(key), [k for k in ALL_KEYS if k not in arrays], n=1, cutoff=0.85)
        if near:
            near = near[0]
            reasons.append(f"unknown key {key!r}: did you mean {near!r}? Rename it (schema keys: {list(ALL_KEYS)})")
        else:
            warnings.append(f"unknown key {key!r} is not part of schema v{SCHEMA_VERSION}; it is ignored (not combined)")
    for key, value in arrays.items():
        if np.asarray(value).dtype == object:
            reasons.append(f"{key}: object arrays are not allowed; store numbers or fixed-width strings")
    if reasons:
        return Findings(reasons, warnings)

    # -- scalar metadata
    try:
        version = _scalar(arrays, META_SCHEMA_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version not in SUPPORTED_SCHEMA_VERSIONS:
            reasons.append(
                f"{META_SCHEMA_VERSION}: {version!r} is not supported; this reader reads {list(SUPPORTED_SCHEMA_VERSIONS)}"
            )
    except ValueError as exc:
        reasons.append(str(exc))
    board = None
    try:
        board = _scalar(arrays, META_BOARD_CONFIG)
        if not isinstance(board, str) or not board:
            reasons.append(f"{META_BOARD_CONFIG}: {board!r} must be a non-empty string such as 'hex8_2p'")
            board = None
    except ValueError as exc:
        reasons.append(str(exc))
    policy_size = None
    try:
        policy_size = _scalar(arrays, META_POLICY_SIZE)
        if isinstance(policy_size, bool) or not isinstance(policy_size, int) or not 1 <= policy_size <= MAX_POLICY_SIZE:
            reasons.append(
                f"{META_POLICY_SIZE}: {policy_size!r} must be a positive integer (distinct actions) below 2**31"
            )
            policy_size = None
    except ValueError as exc:
        reasons.append(str(exc))
    if META_EXTRA in arrays:
        try:
            extra = json.loads(str(_scalar(arrays, META_EXTRA)))
            if not isinstance(extra, dict):
                reasons.append(f"{META_EXTRA}: must hold a JSON object, got {type(extra).__name__}")
        except (ValueError, TypeError, RecursionError) as exc:
            reasons.append(f"{META_EXTRA}: not a JSON object string ({str(exc)[:120]})")
    shape = None
    if board is not None and board_shape is not None:
        try:
            shape = board_shape(board)
        except ValueError as exc:
            reasons.append(f"{META_BOARD_CONFIG}: {exc}")

    # -- dtypes
    for key, dtype in {**POSITION_DTYPES, **CSR_DTYPES, **OPTIONAL_DTYPES}.items():
        if key in arrays and np.asarray(arrays[key]).dtype != dtype:
            reasons.append(f"{key}: dtype {np.asarray(arrays[key]).dtype} must be {dtype}")
    # -- shapes
    feats = np.asarray(arrays[FEATURES])
    if feats.ndim != 4:
        reasons.append(f"{FEATURES}: shape {feats.shape} must be (N, C, H, W)")
        return Findings(reasons, warnings)
    n = feats.shape[0]
    if n == 0:
        reasons.append("the file holds no positions (N = 0)")
        return Findings(reasons, warnings)
    for key in (*POSITION_DTYPES, *OPTIONAL_DTYPES):
        if key == FEATURES or key not in arrays:
            continue
        a = np.asarray(arrays[key])
        ndim = 2 if key in MATRIX_SHAPES else 1
        if a.ndim != ndim or a.shape[0] != n:
            want = MATRIX_SHAPES.get(key, "(N,)")
            reasons.append(f"{key}: shape {a.shape} must be {want} with N = {n} (the number of feature rows)")
    vmp_shape = np.asarray(arrays[VALUES_MP]).shape
    if len(vmp_shape) == 2 and vmp_shape[1] != MAX_PLAYERS:
        reasons.append(f"{VALUES_MP}: {vmp_shape[1]} seats, must be {MAX_PLAYERS} (pad with 0)")
    if HEURISTICS in arrays:
        hshape = np.asarray(arrays[HEURISTICS]).shape
        if len(hshape) == 2 and not 1 <= hshape[1] <= MAX_HEURISTICS:
            reasons.append(f"{HEURISTICS}: {hshape[1]} features per position, must be 1..{MAX_HEURISTICS}")
    idx, vals, offs = (np.asarray(arrays[k]) for k in (POLICY_INDICES, POLICY_VALUES, POLICY_OFFSETS))
    if idx.ndim != 1 or vals.ndim != 1 or idx.shape != vals.shape:
        reasons.append(
            f"{POLICY_INDICES} {idx.shape} and {POLICY_VALUES} {vals.shape} must be 1-D and the same length"
        )
    if offs.ndim != 1 or offs.shape[0] != n + 1:
        reasons.append(f"{POLICY_OFFSETS}: shape {offs.shape} must be (N + 1,) = ({n + 1},)")
    if shape is not None:
        if tuple(feats.shape[1:]) != tuple(shape.planes):
            reasons.append(
                f"{FEATURES}: planes {tuple(feats.shape[1:])} do not fit board_config {board!r}, whose planes are "
                f"{tuple(shape.planes)} (C, H, W); the file's board_config or its features are wrong"
            )
        gshape = np.asarray(arrays[GLOBALS]).shape
        if len(gshape) == 2 and gshape[1] != shape.num_globals:
            reasons.append(
                f"{GLOBALS}: {gshape[1]} globals per position, board_config {board!r} has {shape.num_globals}; "
                "the file was written by another encoder version or for another board"
            )
        if policy_size is not None and policy_size != shape.policy_size:
            reasons.append(
                f"{META_POLICY_SIZE}: {policy_size}, board_config {board!r} has {shape.policy_size} actions; "
                "the file's board_config or its policies are wrong"
            )
    if reasons:
        return Findings(reasons, warnings)

    # -- finite
    for key in (GLOBALS, POLICY_VALUES, VALUES, VALUES_MP, SAMPLE_WEIGHTS, TIMESTAMPS, QUALITY_SCORE):
        if key in arrays:
            bad = _nonfinite(np.asarray(arrays[key]))
            if bad:
                reasons.append(f"{key}: {bad} NaN/inf entries; every entry must be finite")
    for key in (OPPONENT_ELO, HEURISTICS):  # NaN = unknown / not computed
        if key in arrays:
            bad = _infinite(np.asarray(arrays[key]))
            if bad:
                reasons.append(f"{key}: {bad} infinite entries; write NaN for unknown, else a finite number")

    # -- CSR offsets
    offsets_ok = True
    if offs[0] != 0:
        reasons.append(f"{POLICY_OFFSETS}: first offset is {int(offs[0])}, must be 0")
        offsets_ok = False
    steps = np.diff(offs)
    if np.any(steps < 0):
        reasons.append(
            f"{POLICY_OFFSETS}: decreasing at row {int(np.argmax(steps < 0))}; offsets must not decrease"
        )
        offsets_ok = False
    elif np.any(steps == 0):
        reasons.append(
            f"{POLICY_OFFSETS}: row {int(np.argmax(steps == 0))} has an empty policy; every position needs one"
        )
        offsets_ok = False
    if offs[-1] != idx.shape[0]:
        reasons.append(
            f"{POLICY_OFFSETS}: last offset {int(offs[-1])} does not match {idx.shape[0]} policy entries"
        )
        offsets_ok = False

    # -- ranges
    idx_ok = True
    if policy_size is not None and idx.size and (idx.min() < 0 or idx.max() >= policy_size):
        idx_ok = False
        reasons.append(
            f"{POLICY_INDICES}: ids must lie in [0, {policy_size}), found [{int(idx.min())}, {int(idx.max())}]"
        )
    vals_finite = bool(vals.size) and not _nonfinite(vals)
    if vals_finite and (vals.min() < 0 or vals.max() > 1 + POLICY_SUM_TOLERANCE):
        reasons.append(
            f"{POLICY_VALUES}: probabilities must lie in [0, 1], found [{vals.min():.4g}, {vals.max():.4g}]"
        )
    if offsets_ok and policy_size is not None and idx.size and idx_ok:
        repeated, bad, first_bad, first_sum = _csr_checks(idx, vals, offs, n, policy_size, sums=vals_finite)
        if repeated is not None:
            idx_ok = False
            reasons.append(
                f"{POLICY_INDICES}: an action id repeats within row {repeated}; merge duplicates first"
            )
        if bad:
            reasons.append(
                f"{POLICY_VALUES}: {bad} policies do not sum to 1 (row {first_bad} sums to {first_sum:.4f}); normalise each row"
            )
    for key in (VALUES, VALUES_MP):
        a = np.asarray(arrays[key])
        if not _nonfinite(a) and (a.min() < -1 - VALUE_TOLERANCE or a.max() > 1 + VALUE_TOLERANCE):
            reasons.append(f"{key}: outcomes must lie in [-1, 1], found [{a.min():.4g}, {a.max():.4g}]")
    players = np.asarray(arrays[NUM_PLAYERS])
    if players.min() < 1 or players.max() > MAX_PLAYERS:
        reasons.append(
            f"{NUM_PLAYERS}: must lie in [1, {MAX_PLAYERS}], found [{players.min()}, {players.max()}]"
        )
    elif shape is not None and np.any(players != shape.num_players):
        reasons.append(
            f"{NUM_PLAYERS}: row {int(np.argmax(players != shape.num_players))} says {int(players[players != shape.num_players][0])} "
            f"players, board_config {board!r} seats {shape.num_players}"
        )
    current = np.asarray(arrays[CURRENT_PLAYER])
    if np.any(current >= players):
        reasons.append(
            f"{CURRENT_PLAYER}: row {int(np.argmax(current >= players))} names a seat >= num_players"
        )
    for key, table in CODE_TABLES.items():
        if key in arrays:
            codes = np.asarray(arrays[key])
            if codes.max() >= len(table):
                reasons.append(f"{key}: code {int(codes.max())} is unknown; codes index {list(table)}")
    moves, totals = np.asarray(arrays[MOVE_NUMBERS]), np.asarray(arrays[TOTAL_GAME_MOVES])
    if moves.min() < 0 or np.any(moves >= totals):
        reasons.append(f"{MOVE_NUMBERS}: must satisfy 0 <= move_numbers < total_game_moves")
    if SAMPLE_WEIGHTS in arrays:
        w = np.asarray(arrays[SAMPLE_WEIGHTS])
        if not _nonfinite(w) and w.min() < 0:
            reasons.append(f"{SAMPLE_WEIGHTS}: weights must be >= 0")
    if QUALITY_SCORE in arrays:
        q = np.asarray(arrays[QUALITY_SCORE])
        if not _nonfinite(q) and (q.min() < 0 or q.max() > 1):
            reasons.append(f"{QUALITY_SCORE}: scores must lie in [0, 1], found [{q.min():.4g}, {q.max():.4g}]")
    if OPPONENT_ELO in arrays:
        elo = np.asarray(arrays[OPPONENT_ELO])
        if np.any(np.abs(elo[np.isfinite(elo)]) > MAX_ABS_ELO):
            reasons.append(f"{OPPONENT_ELO}: ratings must lie in [-{MAX_ABS_ELO:.0f}, {MAX_ABS_ELO:.0f}] (NaN = unknown)")
    if TIMESTAMPS in arrays:
        ts = np.asarray(arrays[TIMESTAMPS])
        limit = (time.time() if now is None else float(now)) + float(future_skew_s)
        if not _nonfinite(ts) and ts.max() > limit:
            ahead = int(np.count_nonzero(ts > limit))
            reasons.append(
                f"{TIMESTAMPS}: {ahead} positions end in the future (latest {_iso(ts.max())}, more than "
                f"{future_skew_s:.0f} s after now, {_iso(limit - future_skew_s)}); fix the writer's clock "
                "(validator.future_skew_s sets the allowed skew)"
            )
    # -- consistency: values is the player-to-move view, i.e. seat 0 of values_mp
    v, vmp = np.asarray(arrays[VALUES]), np.asarray(arrays[VALUES_MP])
    if not _nonfinite(v) and not _nonfinite(vmp):
        off = np.flatnonzero(np.abs(v - vmp[:, 0]) > 1e-4)
        if off.size:
            reasons.append(
                f"{VALUES}: row {int(off[0])} is {v[off[0]]:.4g} but {VALUES_MP}[:, 0] is {vmp[off[0], 0]:.4g}; "
                f"{VALUES_MP} must be rotated so seat 0 is the player to move"
            )
        seats = np.arange(MAX_PLAYERS)[None, :]
        if np.any((seats >= players[:, None]) & (vmp != 0)):
            reasons.append(f"{VALUES_MP}: seats beyond num_players must be 0")
    # -- duplicates: a file of one position repeated is a broken exporter, not training data
    if offsets_ok and idx_ok and n > 1:
        dups = _duplicate_rows(arrays, n)
        if dups / n > max_duplicate_fraction:
            reasons.append(
                f"{dups} of {n} positions ({100 * dups / n:.0f}%) repeat another position exactly (features, "
                f"globals, policy, values); at most {100 * max_duplicate_fraction:.0f}% may "
                "(validator.max_duplicate_fraction): check the exporter"
            )
    return Findings(reasons, warnings)


def _iso(t: float) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(t)))
    except (OverflowError, OSError, ValueError):
        return f"{t:.0f}"


# -- files ------------------------------------------------------------------------------------------
def from_arrays(
    arrays: Mapping[str, np.ndarray], *, source: str = "<arrays>", validate: bool = True
) -> PositionSet:
    """Build a :class:`PositionSet` from schema arrays; raises :class:`SchemaError` when invalid."""
    if validate:
        reasons = validate_arrays(arrays)
        if reasons:
            raise SchemaError(source, reasons)
    extra: dict[str, Any] = {}
    if META_EXTRA in arrays:
        extra = json.loads(str(np.asarray(arrays[META_EXTRA]).item()))
    return PositionSet(
        **{_ATTR[k]: arrays[k] for k in ARRAY_KEYS},
        **{_ATTR[k]: arrays.get(k) for k in OPTIONAL_DTYPES},
        board_config=str(np.asarray(arrays[META_BOARD_CONFIG]).item()),
        policy_size=int(np.asarray(arrays[META_POLICY_SIZE]).item()),
        schema_version=int(np.asarray(arrays[META_SCHEMA_VERSION]).item()),
        metadata=extra,
    )


def save_npz(path: str | os.PathLike, positions: PositionSet, *, compressed: bool = True) -> Path:
    """Validate and write an export atomically (temp file + rename); returns the path.

    Raises:
        SchemaError: the positions break the schema (nothing is written).
    """
    arrays = positions.to_arrays()
    reasons = validate_arrays(arrays)
    if reasons:
        raise SchemaError(str(path), reasons)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            (np.savez_compressed if compressed else np.savez)(fh, **arrays)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return p


# -- combined directory (memory-mappable) --------------------------------------------------------
def save_dir(
    path: str | os.PathLike, positions: PositionSet, *, info: Mapping[str, Any] | None = None
) -> Path:
    """Write a training set as ``<key>.npy`` files + ``metadata.json`` (atomically: temp dir + rename).

    ``info`` is merged into ``metadata.json`` (sources, weights, counts); an existing directory at
    ``path`` is replaced only after the new one is complete. (The duplicate-position rule is for
    exports: combine has already deduplicated the games.)
    """
    arrays = positions.to_arrays()
    reasons = validate_arrays(arrays, max_duplicate_fraction=1.0)
    if reasons:
        raise SchemaError(str(path), reasons)
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        for key in (*ARRAY_KEYS, *OPTIONAL_DTYPES):
            if key in arrays:
                np.save(tmp / f"{key}.npy", np.ascontiguousarray(arrays[key]), allow_pickle=False)
        meta = {
            META_SCHEMA_VERSION: positions.schema_version,
            META_BOARD_CONFIG: positions.board_config,
            META_POLICY_SIZE: positions.policy_size,
            META_EXTRA: dict(positions.metadata),
            "num_positions": positions.num_positions,
            "num_games": positions.num_games,
            **dict(info or {}),
        }
        (tmp / DIR_METADATA).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _read_dir_arrays(path: Path, *, mmap: bool) -> dict[str, np.ndarray]:
    meta_path = path / DIR_METADATA
    meta = json.loads(meta_path.read_text())
    arrays: dict[str, np.ndarray] = {}
    for key in (*ARRAY_KEYS, *OPTIONAL_DTYPES):
        f = path / f"{key}.npy"
        if f.exists():
            arrays[key] = np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
    for key in (META_SCHEMA_VERSION, META_BOARD_CONFIG, META_POLICY_SIZE):
        if key in meta:
            arrays[key] = np.asarray(meta[key])
    arrays[META_EXTRA] = np.asarray(json.dumps(meta.get(META_EXTRA, {})), dtype=np.str_)
    return arrays


def read_dir_info(path: str | os.PathLike) -> dict[str, Any]:
    """The ``metadata.json`` of a combined training set."""
    p = Path(path) / DIR_METADATA
    try:
        return json.loads(p.read_text())
    except FileNotFoundError as exc:
        raise SchemaError(str(path), [f"no {DIR_METADATA}; pass the directory written by combine"]) from exc


def open_dir(path: str | os.PathLike, *, mmap: bool = True, validate: bool = True) -> PositionSet:
    """Open a combined training set; arrays are read-only memory maps when ``mmap`` is true."""
    p = Path(path)
    try:
        arrays = _read_dir_arrays(p, mmap=mmap)
    except FileNotFoundError as exc:
        raise SchemaError(str(p), [f"no {DIR_METADATA}; pass the directory written by combine"]) from exc
    except (OSError, ValueError) as exc:
        raise SchemaError(str(p), [f"not a readable combined directory ({exc})"]) from exc
    if validate:
        reasons = validate_arrays(arrays, max_duplicate_fraction=1.0)  # combine deduplicated the games
        if reasons:
            raise SchemaError(str(p), reasons)
    return from_arrays(arrays, source=str(p), validate=False)
