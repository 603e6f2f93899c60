"""A generated set of damaged self-play exports, one defect each, and valid synthetic ones.

Used by tests/unit/selfplay/test_validator.py and bench/bench_selfplay.py. Every damaged file is made
from a valid export (a real one, or :func:`synthetic_arrays`) by one change; :data:`CLASSES` maps each
class to a builder and the words its reason must contain, so a test can check that every file is
refused with an actionable reason (and that the valid ones pass).
"""

from __future__ import annotations

import io
import os
import struct
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuneloop.selfplay import npz

MARKER_ENV = "TUNELOOP_TEST_UNPICKLE_MARKER"


def synthetic_arrays(
    n: int, *, seed: int = 0, board: str = "hex5_2p", t0: float | None = None, max_entries: int = 4
) -> dict[str, np.ndarray]:
    """A valid export of ``n`` random positions of ``board`` (shapes from the board config), no game needed."""
    from tuneloop.selfplay.games import board_shape

    shape = board_shape(board)
    rng = np.random.default_rng(seed)
    c, h, w = shape.planes
    feats = rng.integers(0, 2, size=(n, c, h, w), dtype=np.uint8)
    globs = rng.random((n, shape.num_globals), dtype=np.float32)
    lengths = rng.integers(1, min(max_entries, shape.policy_size) + 1, size=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # distinct ids within a row: a random start, then consecutive ids (mod the policy size)
    starts = np.repeat(rng.integers(0, shape.policy_size, size=n), lengths)
    within = np.arange(int(offsets[-1])) - np.repeat(offsets[:-1], lengths)
    idx = ((starts + within) % shape.policy_size).astype(np.int32)
    raw = rng.random(int(offsets[-1]), dtype=np.float32) + np.float32(0.05)
    sums = np.add.reduceat(raw, offsets[:-1], dtype=np.float64)
    vals = (raw / np.repeat(sums, lengths)).astype(np.float32)
    players = shape.num_players
    win = rng.integers(0, 2, size=n) * 2 - 1
    vmp = np.zeros((n, npz.MAX_PLAYERS), dtype=np.float32)
    vmp[:, 0] = win
    vmp[:, 1] = -win
    if players > 2:
        vmp[:, 1:players] = -win[:, None] / (players - 1)
    games = np.arange(n) // 30
    moves = (np.arange(n) % 30).astype(np.int32)
    t0 = time.time() - 86400 if t0 is None else t0
    return {
        npz.FEATURES: feats,
        npz.GLOBALS: globs,
        npz.POLICY_INDICES: idx,
        npz.POLICY_VALUES: vals,
        npz.POLICY_OFFSETS: offsets,
        npz.VALUES: vmp[:, 0].copy(),
        npz.VALUES_MP: vmp,
        npz.NUM_PLAYERS: np.full(n, players, dtype=np.uint8),
        npz.CURRENT_PLAYER: (np.arange(n) % players).astype(np.uint8),
        npz.PHASES_KEY: (moves // 10).astype(np.uint8),
        npz.MOVE_NUMBERS: moves,
        npz.TOTAL_GAME_MOVES: np.full(n, 30, dtype=np.int32),
        npz.VICTORY_TYPES_KEY: np.zeros(n, dtype=np.uint8),
        npz.GAME_IDS: (games + seed * 10_000_000).astype(np.int64),
        npz.SAMPLE_WEIGHTS: np.ones(n, dtype=np.float32),
        npz.TIMESTAMPS: (t0 + games * 0.01).astype(np.float64),
        npz.META_SCHEMA_VERSION: np.asarray(npz.SCHEMA_VERSION, dtype=np.int64),
        npz.META_BOARD_CONFIG: np.asarray(board, dtype=np.str_),
        npz.META_POLICY_SIZE: np.asarray(shape.policy_size, dtype=np.int64),
        npz.META_EXTRA: np.asarray('{"generation": 0}', dtype=np.str_),
    }


def arrays_of(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k].copy() for k in z.files}


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(a), allow_pickle=True)
    return buf.getvalue()


def write_zip(path: Path, members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names, on purpose
        with zipfile.ZipFile(path, "w", compression=compression) as z:
            for name, data in members:
                z.writestr(name, data)
    return path


def members_of(arrays: dict[str, np.ndarray]) -> list[tuple[str, bytes]]:
    return [(f"{k}.npy", npy_bytes(v)) for k, v in arrays.items()]


def _local_data_offset(path: Path, name: str) -> tuple[int, int]:
    """(offset of the member's data in the file, its compressed size)."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        hdr = fh.read(30)
    name_len, extra_len = struct.unpack("<HH", hdr[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.compress_size


class _Alarm:
    """Unpickling this creates the marker file: proof that a validator unpickled something."""

    def __reduce__(self):
        return (_touch_marker, ())


def _touch_marker():  # pragma: no cover - runs only if a validator unpickles
    Path(os.environ.get(MARKER_ENV, "/tmp/tuneloop-unpickled")).write_text("unpickled!")
    return 0


def huge_header(key: str, shape: tuple[int, ...], dtype: str, data: bytes) -> bytes:
    """A .npy member whose header declares ``shape`` but which holds only ``data``."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode("latin1")
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


# -- the damaged classes --------------------------------------------------------------------------
@dataclass(frozen=True)
class Damage:
    name: str
    build: Callable[[Path, dict[str, np.ndarray]], Path]
    words: tuple[str, ...]
    warning_only: bool = False


def _mutated(key: str, fn) -> Callable[[Path, dict[str, np.ndarray]], Path]:
    def build(path: Path, base: dict[str, np.ndarray]) -> Path:
        a = {k: v.copy() for k, v in base.items()}
        fn(a) if key == "*" else a.__setitem__(key, fn(a[key]))
        np.savez_compressed(path, **a)
        return path

    return build


def _poke(key: str, index, value):
    def fn(v):
        v = v.copy()
        v[index] = value
        return v

    return _mutated(key, fn)


def _not_zip(path, base):
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    return path


def _empty(path, base):
    path.write_bytes(b"")
    return path


def _truncated(path, base):
    np.savez_compressed(path, **base)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path


def _corrupt_deflate(path, base):
    np.savez_compressed(path, **base)
    offset, _ = _local_data_offset(path, "features.npy")
    data = bytearray(path.read_bytes())
    data[offset] = 0xFF  # BFINAL=1, BTYPE=11: a reserved (invalid) deflate block type
    path.write_bytes(bytes(data))
    return path


def _crc_mismatch(path, base):
    np.savez(path, **base)  # stored: the flipped byte is read back as data
    offset, size = _local_data_offset(path, "features.npy")
    data = bytearray(path.read_bytes())
    data[offset + size - 1] ^= 0x01
    path.write_bytes(bytes(data))
    return path


def _forged_shape(path, base):
    members = members_of({k: v for k, v in base.items() if k != npz.FEATURES})
    members.append(("features.npy", huge_header("features", (10**9, 9, 5, 5), "|u1", b"\x00" * 1024)))
    return write_zip(path, members)


def _forged_smaller(path, base):
    members = members_of({k: v for k, v in base.items() if k != npz.VALUES})
    members.append(("values.npy", huge_header("values", (2,), "<f4", b"\x00" * 4096)))
    return write_zip(path, members)


def _directory_bomb(path, base):
    """The zip directory declares ~4 GiB for the features member; the stream holds a few KiB."""
    np.savez_compressed(path, **base)
    raw = bytearray(path.read_bytes())
    pos = raw.find(b"PK\x01\x02")
    while pos >= 0:
        name_len, extra_len, comment_len = struct.unpack("<HHH", raw[pos + 28 : pos + 34])
        if bytes(raw[pos + 46 : pos + 46 + name_len]) == b"features.npy":
            raw[pos + 24 : pos + 28] = struct.pack("<L", 0xFFFFFFF0)  # uncompressed size
            break
        pos = raw.find(b"PK\x01\x02", pos + 46 + name_len + extra_len + comment_len)
    path.write_bytes(bytes(raw))
    return path


def zip_bomb(path: Path, inflated_bytes: int, *, chunk: int = 8 << 20) -> Path:
    """An honest bomb: a features member of ``inflated_bytes`` zeros (consistent header), deflated."""
    n = inflated_bytes // 225
    header = huge_header("features", (n, 9, 5, 5), "|u1", b"")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("features.npy", "w", force_zip64=True) as f:
            f.write(header)
            left = n * 225
            zeros = b"\x00" * chunk
            while left > 0:
                f.write(zeros[: min(chunk, left)])
                left -= chunk
    return path


def _small_bomb(path, base):
    return zip_bomb(path, 64 << 20)


def _pickled_object(path, base):
    a = {k: v for k, v in base.items()}
    a[npz.GAME_IDS] = np.array([_Alarm()] * 3, dtype=object)
    return write_zip(path, members_of(a))  # numpy pickles the object array into the member


def _structured(path, base):
    a = dict(base)
    a[npz.GAME_IDS] = np.zeros(len(base[npz.GAME_IDS]), dtype=[("hi", "<i4"), ("lo", "<i4")])
    return write_zip(path, members_of(a))


def _nested(path, base):
    members = members_of(base)
    members.append(("extra/features.npy", npy_bytes(base[npz.FEATURES])))
    return write_zip(path, members)


def _odd_member(path, base):
    return write_zip(path, [*members_of(base), ("README.txt", b"hello")])


def _duplicate_member(path, base):
    return write_zip(path, [*members_of(base), ("values.npy", npy_bytes(base[npz.VALUES] * 0))])


def _too_many(path, base):
    extra = [(f"pad{i}.npy", npy_bytes(np.zeros(1, np.uint8))) for i in range(80)]
    return write_zip(path, [*members_of(base), *extra])


def _lzma(path, base):
    return write_zip(path, members_of(base), compression=zipfile.ZIP_LZMA)


def _huge_npy_header(path, base):
    members = members_of({k: v for k, v in base.items() if k != npz.VALUES})
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}" + b" " * 200_000 + b"\n"
    blob = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header)) + header + b"\x00" * 12
    members.append(("values.npy", blob))
    return write_zip(path, members)


def _repeated_position(path, base):
    def fn(a):
        n = len(a[npz.VALUES])
        for k in (npz.FEATURES, npz.GLOBALS, npz.VALUES, npz.VALUES_MP, npz.CURRENT_PLAYER, npz.PHASES_KEY):
            a[k] = np.repeat(a[k][:1], n, axis=0)
        first = int(a[npz.POLICY_OFFSETS][1])
        a[npz.POLICY_INDICES] = np.tile(a[npz.POLICY_INDICES][:first], n)
        a[npz.POLICY_VALUES] = np.tile(a[npz.POLICY_VALUES][:first], n)
        a[npz.POLICY_OFFSETS] = np.arange(n + 1, dtype=np.int64) * first

    return _mutated("*", fn)(path, base)


def _future(path, base):
    return _mutated(npz.TIMESTAMPS, lambda t: t + 86400.0 * 365)(path, base)


def _relabel(board: str):
    return _mutated(npz.META_BOARD_CONFIG, lambda _: np.asarray(board, dtype=np.str_))


def _extra_key(name: str):
    def fn(a):
        a[name] = np.ones(len(a[npz.VALUES]), dtype=np.float32) * 0.5

    return _mutated("*", fn)


def _set(key: str, value):
    return _mutated(key, lambda _: value)


def _globals_width(path, base):
    return _mutated(npz.GLOBALS, lambda g: np.concatenate([g, g[:, :2]], axis=1))(path, base)


def _players(path, base):
    return _mutated(npz.NUM_PLAYERS, lambda p: np.full_like(p, 3))(path, base)


def _with_v2(key: str, value_fn):
    def fn(a):
        a[key] = value_fn(len(a[npz.VALUES]))

    return _mutated("*", fn)


CLASSES: list[Damage] = [
    Damage("not a zip", _not_zip, ("not a readable .npz", "not a zip archive")),
    Damage("empty file", _empty, ("only 0 bytes",)),
    Damage("truncated zip", _truncated, ("truncated",)),
    Damage("corrupt deflate stream", _corrupt_deflate, ("features.npy", "corrupt compressed data")),
    Damage("crc mismatch", _crc_mismatch, ("features.npy", "CRC mismatch")),
    Damage("header declares a huge shape", _forged_shape, ("features.npy", "declares shape", "nothing was allocated")),
    Damage("header declares too little", _forged_smaller, ("values.npy", "declares only")),
    Damage("zip directory declares gigabytes", _directory_bomb, ("max_total_bytes", "nothing was inflated")),
    Damage("zip bomb (64 MiB)", _small_bomb, ("max_total_bytes", "nothing was inflated")),
    Damage("pickled object array", _pickled_object, ("game_ids.npy", "pickled Python objects", "never unpickled")),
    Damage("structured dtype", _structured, ("game_ids.npy", "structured dtype")),
    Damage("nested member", _nested, ("extra/features.npy", "folder")),
    Damage("odd member", _odd_member, ("README.txt", "not a <key>.npy")),
    Damage("duplicate member", _duplicate_member, ("values.npy", "appears twice")),
    Damage("too many members", _too_many, ("max_members",)),
    Damage("lzma member", _lzma, ("compression method 14",)),
    Damage("oversized .npy header", _huge_npy_header, ("values.npy", "header")),
    Damage("NaN value", _poke(npz.VALUES, 3, np.nan), ("values", "NaN/inf")),
    Damage("inf global", _poke(npz.GLOBALS, (0, 0), np.inf), ("globals", "NaN/inf")),
    Damage("wrong dtype", _mutated(npz.FEATURES, lambda f: f.astype(np.float32)), ("features", "dtype", "uint8")),
    Damage("negative policy index", _poke(npz.POLICY_INDICES, 0, -1), ("policy_indices", "[0, 25)")),
    Damage("overflowing policy index", _poke(npz.POLICY_INDICES, 1, 2**31 - 1), ("policy_indices", "2147483647")),
    Damage("overflowing offsets", _poke(npz.POLICY_OFFSETS, -1, 2**62), ("last offset",)),
    Damage("future timestamps", _future, ("timestamps", "in the future", "clock")),
    Damage("one position repeated", _repeated_position, ("repeat another position exactly",)),
    Damage("misspelt key", _extra_key("quality_scores"), ("quality_scores", "did you mean 'quality_score'")),
    Damage("unknown key", _extra_key("engine_build"), ("unknown key 'engine_build'",), warning_only=True),
    Damage("planes of another board", _relabel("hex8_2p"), ("features", "(9, 8, 8)", "policy_size")),
    Damage("unknown board config", _relabel("hex9_2p"), ("board_config", "hex9_2p", "not a board config")),
    Damage("globals width", _globals_width, ("globals", "7 globals", "has 5")),
    Damage("policy size of another board", _set(npz.META_POLICY_SIZE, np.asarray(30, dtype=np.int64)), ("policy_size", "has 25 actions")),
    Damage("players of another board", _players, ("num_players", "seats 2")),
    Damage("quality score out of range", _with_v2(npz.QUALITY_SCORE, lambda n: np.full(n, 1.5, np.float32)), ("quality_score", "[0, 1]")),
    Damage("unknown opponent type", _with_v2(npz.OPPONENT_TYPES_KEY, lambda n: np.full(n, 99, np.uint8)), ("opponent_types", "code 99")),
    Damage("infinite opponent elo", _with_v2(npz.OPPONENT_ELO, lambda n: np.full(n, np.inf, np.float32)), ("opponent_elo", "infinite")),
]


def build_all(folder: Path, base: dict[str, np.ndarray], classes: list[Damage] = CLASSES) -> dict[str, Path]:
    """Write one file per damaged class into ``folder``: ``{class name: path}``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, d in enumerate(classes):
        out[d.name] = d.build(folder / f"{i:02d}-{d.name.replace(' ', '_')}.npz", base)
    return out
