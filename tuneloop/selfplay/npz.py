"""The self-play training-data schema: the ONE module that names its keys, dtypes, shapes and rules.

A self-play export is an ``.npz`` file (one per shard); a combined training set is a directory holding
the same keys as ``<key>.npy`` files plus ``metadata.json``, so the trainer can memory-map it. Both
carry ``N`` positions:

=====================  ============  ===============  ===============================================
key                    dtype         shape            meaning
=====================  ============  ===============  ===============================================
``features``           uint8         (N, C, H, W)     board feature planes
``globals``            float32       (N, G)           global features (player to move, move fraction..)
``policy_indices``     int32         (nnz,)           CSR: action ids with a non-zero target
``policy_values``      float32       (nnz,)           CSR: their probabilities (each row sums to 1)
``policy_offsets``     int64         (N + 1,)         CSR: row ``i`` is ``[offsets[i], offsets[i+1])``
``values``             float32       (N,)             final outcome for the player to move, in [-1, 1]
``values_mp``          float32       (N, 4)           outcome of every seat, seat ``k`` = the player
                                                      ``k`` seats after the player to move; 0-padded
``num_players``        uint8         (N,)             players in the game (1..4)
``current_player``     uint8         (N,)             absolute seat of the player to move
``phases``             uint8         (N,)             index into :data:`PHASES`
``move_numbers``       int32         (N,)             decision index of the position in its game
``total_game_moves``   int32         (N,)             decisions in the whole game (> move_numbers)
``victory_types``      uint8         (N,)             index into :data:`VICTORY_TYPES`
``game_ids``           int64         (N,)             stable id of the game (dedup, split by game)
``sample_weights``     float32       (N,)             optional, >= 0
``timestamps``         float64       (N,)             optional, unix seconds when the game ended
``schema_version``     int64         ()               :data:`SCHEMA_VERSION`
``board_config``       str           ()               e.g. ``hex8_2p``
``policy_size``        int64         ()               number of distinct actions
``metadata``           str           ()               optional JSON object (generation, simulations..)
=====================  ============  ===============  ===============================================

There are no object arrays: every file loads with ``allow_pickle=False``. :func:`validate_arrays`
returns every reason a file is rejected (missing keys, wrong dtypes or shapes, NaN/inf, values out of
range, policies that do not sum to 1, offsets that do not match); an empty list means valid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
MAX_PLAYERS = 4
POLICY_SUM_TOLERANCE = 1e-3
VALUE_TOLERANCE = 1e-5

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
}
CSR_DTYPES: dict[str, np.dtype] = {
    POLICY_INDICES: np.dtype(np.int32),
    POLICY_VALUES: np.dtype(np.float32),
    POLICY_OFFSETS: np.dtype(np.int64),
}
ARRAY_KEYS = (*POSITION_DTYPES, *CSR_DTYPES)
REQUIRED_KEYS = (*ARRAY_KEYS, META_SCHEMA_VERSION, META_BOARD_CONFIG, META_POLICY_SIZE)
OPTIONAL_KEYS = (*OPTIONAL_DTYPES, META_EXTRA)
ALL_KEYS = (*REQUIRED_KEYS, *OPTIONAL_KEYS)

# Code tables (the uint8 columns index into these; append only, never reorder).
PHASES = ("opening", "middlegame", "endgame")
VICTORY_TYPES = ("connection", "line", "race", "draw", "truncated")

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

        return replace(
            self,
            features=np.asarray(self.features[index]),
            globals=np.asarray(self.globals[index]),
            policy_indices=np.asarray(self.policy_indices[flat]),
            policy_values=np.asarray(self.policy_values[flat]),
            policy_offsets=offsets,
            values=take(self.values),
            values_mp=take(self.values_mp),
            num_players=take(self.num_players),
            current_player=take(self.current_player),
            phases=take(self.phases),
            move_numbers=take(self.move_numbers),
            total_game_moves=take(self.total_game_moves),
            victory_types=take(self.victory_types),
            game_ids=take(self.game_ids),
            sample_weights=take(self.sample_weights),
            timestamps=take(self.timestamps),
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

    Raises:
        SchemaError: the sets differ in board config, policy size, or feature/global shapes.
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
    offsets = [np.zeros(1, dtype=np.int64)]
    base = 0
    for s in sets:
        offsets.append(np.asarray(s.policy_offsets[1:], dtype=np.int64) + base)
        base += int(s.policy_offsets[-1])

    def cat(attr: str) -> np.ndarray:
        return np.concatenate([np.asarray(getattr(s, attr)) for s in sets])

    def cat_optional(attr: str, fill: float) -> np.ndarray | None:
        if all(getattr(s, attr) is None for s in sets):
            return None
        dtype = OPTIONAL_DTYPES[attr]
        return np.concatenate(
            [
                np.asarray(getattr(s, attr), dtype=dtype)
                if getattr(s, attr) is not None
                else np.full(s.num_positions, fill, dtype=dtype)
                for s in sets
            ]
        )

    return replace(
        first,
        features=cat(FEATURES),
        globals=cat(GLOBALS),
        policy_indices=cat(POLICY_INDICES),
        policy_values=cat(POLICY_VALUES),
        policy_offsets=np.concatenate(offsets),
        values=cat(VALUES),
        values_mp=cat(VALUES_MP),
        num_players=cat(NUM_PLAYERS),
        current_player=cat(CURRENT_PLAYER),
        phases=cat(PHASES_KEY),
        move_numbers=cat(MOVE_NUMBERS),
        total_game_moves=cat(TOTAL_GAME_MOVES),
        victory_types=cat(VICTORY_TYPES_KEY),
        game_ids=cat(GAME_IDS),
        sample_weights=cat_optional(SAMPLE_WEIGHTS, 1.0),
        timestamps=cat_optional(TIMESTAMPS, 0.0),
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


def validate_arrays(arrays: Mapping[str, np.ndarray]) -> list[str]:
    """Every reason these arrays break the schema; an empty list means they are valid.

    Structural problems (missing keys, dtypes, shapes) are reported first; the content rules
    (finite, ranges, CSR offsets, policy sums, consistency) run only on a sound structure.
    """
    reasons: list[str] = []
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        reasons.append(f"missing keys {missing}; an export needs all of {list(REQUIRED_KEYS)}")
    for key, value in arrays.items():
        if np.asarray(value).dtype == object:
            reasons.append(f"{key}: object arrays are not allowed; store numbers or fixed-width strings")
    if reasons:
        return reasons

    # -- scalar metadata
    try:
        version = _scalar(arrays, META_SCHEMA_VERSION)
        if not isinstance(version, int) or version not in SUPPORTED_SCHEMA_VERSIONS:
            reasons.append(
                f"{META_SCHEMA_VERSION}: {version!r} is not supported; this reader reads {list(SUPPORTED_SCHEMA_VERSIONS)}"
            )
    except ValueError as exc:
        reasons.append(str(exc))
    try:
        board = _scalar(arrays, META_BOARD_CONFIG)
        if not isinstance(board, str) or not board:
            reasons.append(f"{META_BOARD_CONFIG}: {board!r} must be a non-empty string such as 'hex8_2p'")
    except ValueError as exc:
        reasons.append(str(exc))
    policy_size = None
    try:
        policy_size = _scalar(arrays, META_POLICY_SIZE)
        if not isinstance(policy_size, int) or policy_size < 1:
            reasons.append(
                f"{META_POLICY_SIZE}: {policy_size!r} must be a positive integer (distinct actions)"
            )
            policy_size = None
    except ValueError as exc:
        reasons.append(str(exc))
    if META_EXTRA in arrays:
        try:
            extra = json.loads(str(_scalar(arrays, META_EXTRA)))
            if not isinstance(extra, dict):
                reasons.append(f"{META_EXTRA}: must hold a JSON object, got {type(extra).__name__}")
        except (ValueError, TypeError) as exc:
            reasons.append(f"{META_EXTRA}: not a JSON object string ({exc})")

    # -- dtypes
    for key, dtype in {**POSITION_DTYPES, **CSR_DTYPES, **OPTIONAL_DTYPES}.items():
        if key in arrays and np.asarray(arrays[key]).dtype != dtype:
            reasons.append(f"{key}: dtype {np.asarray(arrays[key]).dtype} must be {dtype}")
    # -- shapes
    feats = np.asarray(arrays[FEATURES])
    if feats.ndim != 4:
        reasons.append(f"{FEATURES}: shape {feats.shape} must be (N, C, H, W)")
        return reasons
    n = feats.shape[0]
    if n == 0:
        reasons.append("the file holds no positions (N = 0)")
        return reasons
    expected_ndim = {GLOBALS: 2, VALUES_MP: 2}
    for key in (*POSITION_DTYPES, *OPTIONAL_DTYPES):
        if key == FEATURES or key not in arrays:
            continue
        a = np.asarray(arrays[key])
        ndim = expected_ndim.get(key, 1)
        if a.ndim != ndim or a.shape[0] != n:
            want = "(N, G)" if key == GLOBALS else "(N, 4)" if key == VALUES_MP else "(N,)"
            reasons.append(f"{key}: shape {a.shape} must be {want} with N = {n} (the number of feature rows)")
    if np.asarray(arrays[VALUES_MP]).ndim == 2 and np.asarray(arrays[VALUES_MP]).shape[1] != MAX_PLAYERS:
        reasons.append(
            f"{VALUES_MP}: {np.asarray(arrays[VALUES_MP]).shape[1]} seats, must be {MAX_PLAYERS} (pad with 0)"
        )
    idx, vals, offs = (np.asarray(arrays[k]) for k in (POLICY_INDICES, POLICY_VALUES, POLICY_OFFSETS))
    if idx.ndim != 1 or vals.ndim != 1 or idx.shape != vals.shape:
        reasons.append(
            f"{POLICY_INDICES} {idx.shape} and {POLICY_VALUES} {vals.shape} must be 1-D and the same length"
        )
    if offs.ndim != 1 or offs.shape[0] != n + 1:
        reasons.append(f"{POLICY_OFFSETS}: shape {offs.shape} must be (N + 1,) = ({n + 1},)")
    if reasons:
        return reasons

    # -- finite
    for key in (GLOBALS, POLICY_VALUES, VALUES, VALUES_MP, SAMPLE_WEIGHTS, TIMESTAMPS):
        if key in arrays:
            bad = _nonfinite(np.asarray(arrays[key]))
            if bad:
                reasons.append(f"{key}: {bad} NaN/inf entries; every entry must be finite")

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
    if policy_size is not None and idx.size and (idx.min() < 0 or idx.max() >= policy_size):
        reasons.append(
            f"{POLICY_INDICES}: ids must lie in [0, {policy_size}), found [{int(idx.min())}, {int(idx.max())}]"
        )
    elif offsets_ok and policy_size is not None and idx.size:
        rows = np.repeat(np.arange(n, dtype=np.int64), steps)
        if np.unique(rows * policy_size + idx).size != idx.size:
            reasons.append(f"{POLICY_INDICES}: an action id repeats within a row; merge duplicates first")
    finite_vals = vals[np.isfinite(vals)]
    if finite_vals.size and (finite_vals.min() < 0 or finite_vals.max() > 1 + POLICY_SUM_TOLERANCE):
        reasons.append(
            f"{POLICY_VALUES}: probabilities must lie in [0, 1], found [{finite_vals.min():.4g}, {finite_vals.max():.4g}]"
        )
    if offsets_ok and np.all(np.isfinite(vals)):
        sums = np.add.reduceat(vals.astype(np.float64), offs[:-1])
        bad = np.flatnonzero(np.abs(sums - 1.0) > POLICY_SUM_TOLERANCE)
        if bad.size:
            reasons.append(
                f"{POLICY_VALUES}: {bad.size} policies do not sum to 1 (row {int(bad[0])} sums to {sums[bad[0]]:.4f}); normalise each row"
            )
    for key in (VALUES, VALUES_MP):
        a = np.asarray(arrays[key])
        fin = a[np.isfinite(a)]
        if fin.size and (fin.min() < -1 - VALUE_TOLERANCE or fin.max() > 1 + VALUE_TOLERANCE):
            reasons.append(f"{key}: outcomes must lie in [-1, 1], found [{fin.min():.4g}, {fin.max():.4g}]")
    players = np.asarray(arrays[NUM_PLAYERS])
    if players.min() < 1 or players.max() > MAX_PLAYERS:
        reasons.append(
            f"{NUM_PLAYERS}: must lie in [1, {MAX_PLAYERS}], found [{players.min()}, {players.max()}]"
        )
    current = np.asarray(arrays[CURRENT_PLAYER])
    if np.any(current >= players):
        reasons.append(
            f"{CURRENT_PLAYER}: row {int(np.argmax(current >= players))} names a seat >= num_players"
        )
    phases = np.asarray(arrays[PHASES_KEY])
    if phases.max() >= len(PHASES):
        reasons.append(f"{PHASES_KEY}: code {int(phases.max())} is unknown; codes index {list(PHASES)}")
    victory = np.asarray(arrays[VICTORY_TYPES_KEY])
    if victory.max() >= len(VICTORY_TYPES):
        reasons.append(
            f"{VICTORY_TYPES_KEY}: code {int(victory.max())} is unknown; codes index {list(VICTORY_TYPES)}"
        )
    moves, totals = np.asarray(arrays[MOVE_NUMBERS]), np.asarray(arrays[TOTAL_GAME_MOVES])
    if moves.min() < 0 or np.any(moves >= totals):
        reasons.append(f"{MOVE_NUMBERS}: must satisfy 0 <= move_numbers < total_game_moves")
    if SAMPLE_WEIGHTS in arrays:
        w = np.asarray(arrays[SAMPLE_WEIGHTS])
        if np.any(w[np.isfinite(w)] < 0):
            reasons.append(f"{SAMPLE_WEIGHTS}: weights must be >= 0")
    # -- consistency: values is the player-to-move view, i.e. seat 0 of values_mp
    v, vmp = np.asarray(arrays[VALUES]), np.asarray(arrays[VALUES_MP])
    if np.all(np.isfinite(v)) and np.all(np.isfinite(vmp)):
        off = np.flatnonzero(np.abs(v - vmp[:, 0]) > 1e-4)
        if off.size:
            reasons.append(
                f"{VALUES}: row {int(off[0])} is {v[off[0]]:.4g} but {VALUES_MP}[:, 0] is {vmp[off[0], 0]:.4g}; "
                f"{VALUES_MP} must be rotated so seat 0 is the player to move"
            )
        seats = np.arange(MAX_PLAYERS)[None, :]
        if np.any((seats >= players[:, None]) & (vmp != 0)):
            reasons.append(f"{VALUES_MP}: seats beyond num_players must be 0")
    return reasons


# -- files ------------------------------------------------------------------------------------------
def _load_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def read_arrays(path: str | os.PathLike) -> tuple[dict[str, np.ndarray] | None, list[str]]:
    """Load an ``.npz`` export without trusting it: ``(arrays, [])`` or ``(None, [reason])``."""
    p = Path(path)
    if p.is_file() and not zipfile.is_zipfile(p):
        return None, [f"{p.name} is not a readable .npz file (not a zip archive); write it with numpy.savez"]
    try:
        return _load_npz_arrays(p), []
    except FileNotFoundError:
        return None, [f"{p}: no such file"]
    except ValueError as exc:  # object arrays need pickle
        return None, [f"cannot load without pickle ({exc}); object arrays are not allowed"]
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return None, [f"not a readable .npz file ({type(exc).__name__}: {exc})"]


def validate_file(path: str | os.PathLike) -> list[str]:
    """Every reason the ``.npz`` file (or combined directory) at ``path`` is rejected; [] when valid."""
    p = Path(path)
    if p.is_dir():
        try:
            arrays = _read_dir_arrays(p, mmap=True)
        except (OSError, ValueError) as exc:
            return [f"not a readable combined directory ({exc})"]
        return validate_arrays(arrays)
    arrays, reasons = read_arrays(p)
    if arrays is None:
        return reasons
    return validate_arrays(arrays)


def validate_path(path: str | os.PathLike) -> dict[str, list[str]]:
    """Validate a file, a combined directory, or every ``*.npz`` under a folder: ``{file: reasons}``."""
    p = Path(path)
    if not p.exists():
        return {str(p): ["no such file or directory"]}
    if p.is_dir() and not (p / DIR_METADATA).exists():
        files = sorted(p.rglob("*.npz"))
        if not files:
            return {str(p): ["the folder holds no .npz files and is not a combined training set"]}
        return {str(f): validate_file(f) for f in files}
    return {str(p): validate_file(p)}


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


def load_npz(path: str | os.PathLike, *, validate: bool = True) -> PositionSet:
    """Read an export; raises :class:`SchemaError` with every reason when it is not valid."""
    arrays, reasons = read_arrays(path)
    if arrays is None:
        raise SchemaError(str(path), reasons)
    return from_arrays(arrays, source=str(path), validate=validate)


# -- combined directory (memory-mappable) --------------------------------------------------------
def save_dir(
    path: str | os.PathLike, positions: PositionSet, *, info: Mapping[str, Any] | None = None
) -> Path:
    """Write a training set as ``<key>.npy`` files + ``metadata.json`` (atomically: temp dir + rename).

    ``info`` is merged into ``metadata.json`` (sources, weights, counts); an existing directory at
    ``path`` is replaced only after the new one is complete.
    """
    arrays = positions.to_arrays()
    reasons = validate_arrays(arrays)
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
    return from_arrays(arrays, source=str(p), validate=validate)
