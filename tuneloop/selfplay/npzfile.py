"""Read an untrusted ``.npz`` file within fixed bounds of memory and work, or say exactly why not.

``numpy.load`` trusts the file: a ``.npy`` header that declares a huge shape makes it allocate that
shape before it reads a byte (``MemoryError``, or the kernel's out-of-memory killer), a damaged
deflate stream escapes as ``zlib.error``, and a small file can inflate to gigabytes before anything
is checked. :func:`read_npz` reads the same files without those failure modes:

1. **The container first, without decompressing.** The file must be a regular file of at most
   ``max_file_bytes``; the zip end record is parsed by hand (zip64 too) and the central directory
   may hold at most ``max_members`` entries (:data:`MAX_DIRECTORY_BYTES` at most), so a crafted
   directory cannot cost memory either. Every member must be a flat ``<key>.npy`` entry, stored or
   deflated (the only methods ``numpy.savez`` writes; bzip2/lzma inflate without a bound in
   ``zipfile``), not encrypted, named once.
2. **Every header, before any data.** Each member's ``.npy`` header (at most ``max_header_bytes``,
   parsed with ``ast.literal_eval``, never ``eval`` or pickle) gives dtype and shape. An object
   dtype (pickled Python objects) is refused from the header alone: nothing is ever unpickled.
   The declared size (shape x itemsize) must equal the member's size in the directory exactly, and
   the sum over members must fit ``max_total_bytes``: a header that lies about its shape, a truncated
   member and a zip bomb are all refused here, having inflated only the headers (a few KiB).
3. **Then the data, streamed.** Each member is inflated in 1 MiB chunks straight into its
   preallocated array (``zipfile`` caps the output of every ``decompress`` call, and stops at the
   declared size), and its CRC is checked at the end. A corrupt stream, a CRC mismatch or a cut-off
   member is reported with the member's name.

Bounds, for any input: the heap holds at most the declared array bytes that passed step 2
(<= ``max_total_bytes``) plus one chunk and the directory; the work is linear in those bytes.
Every failure is an :class:`Unreadable` with a reason that names the member and the fix.
"""

from __future__ import annotations

import ast
import math
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"\x93NUMPY"
CHUNK_BYTES = 1 << 20
MAX_DIRECTORY_BYTES = 1 << 20
MAX_NDIM = 8
# dtype kinds a schema member may have; object ('O'), void/structured ('V') and datetimes are refused
ALLOWED_KINDS = frozenset("biufcUS")
_MEMBER_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}\.npy$")
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


class Unreadable(ValueError):
    """The file (or one member) cannot be read safely; ``reasons`` say why, each with the fix."""

    def __init__(self, reasons: list[str]):
        self.reasons = list(reasons)
        super().__init__("; ".join(self.reasons))


@dataclass(frozen=True)
class ArrayHeader:
    """A member's ``.npy`` header: what it declares, checked against the member's real size."""

    key: str
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    data_offset: int  # bytes of magic + header before the data

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass
class ReadStats:
    """What reading cost: bytes inflated (headers + data) and the members seen."""

    bytes_inflated: int = 0
    members: int = 0
    declared_bytes: int = 0
    notes: list[str] = field(default_factory=list)


def _human(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _directory_extent(fh, size: int) -> tuple[int, int]:
    """``(entries, directory bytes)`` from the zip end record, found as ``zipfile`` finds it."""
    fh.seek(max(0, size - _EOCD.size))
    tail = fh.read(_EOCD.size)
    start = size - _EOCD.size
    if len(tail) != _EOCD.size or tail[:4] != b"PK\x05\x06" or tail[-2:] != b"\x00\x00":
        window = min(size, _EOCD.size + 65535)
        fh.seek(size - window)
        tail = fh.read(window)
        pos = tail.rfind(b"PK\x05\x06")
        if pos < 0 or pos + _EOCD.size > len(tail):
            raise Unreadable([_no_end_record(fh)])
        start = size - window + pos
        tail = tail[pos : pos + _EOCD.size]
    _, _, _, _, entries, cd_size, _, _ = _EOCD.unpack(tail)
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:
        loc_at = start - _ZIP64_LOCATOR.size
        if loc_at >= 0:
            fh.seek(loc_at)
            loc = fh.read(_ZIP64_LOCATOR.size)
            if len(loc) == _ZIP64_LOCATOR.size and loc[:4] == b"PK\x06\x07":
                _, _, offset, _ = _ZIP64_LOCATOR.unpack(loc)
                fh.seek(offset)
                rec = fh.read(_ZIP64_EOCD.size)
                if len(rec) == _ZIP64_EOCD.size and rec[:4] == b"PK\x06\x06":
                    fields = _ZIP64_EOCD.unpack(rec)
                    entries, cd_size = fields[7], fields[8]
    return int(entries), int(cd_size)


def _no_end_record(fh) -> str:
    fh.seek(0)
    head = fh.read(4)
    if head == b"PK\x03\x04":
        return (
            "truncated zip: it starts like an .npz but has no end-of-directory record (the writer was cut "
            "off, or the copy is incomplete); re-export or re-copy the file"
        )
    if head[:2] == b"PK":
        return "not a readable .npz file (a damaged zip archive); write it with numpy.savez"
    return "not a readable .npz file (not a zip archive); write it with numpy.savez or numpy.savez_compressed"


def _member_problems(infos: list[zipfile.ZipInfo], file_size: int) -> list[str]:
    problems, seen = [], set()
    for info in infos:
        name = info.filename
        if name in seen:
            problems.append(f"member {name!r} appears twice in the archive; an export names each key once")
        seen.add(name)
        if info.is_dir() or "/" in name or "\\" in name:
            problems.append(
                f"member {name!r} is a folder or inside one; an export holds flat <key>.npy members "
                "(numpy.savez writes them so)"
            )
        elif not _MEMBER_NAME.match(name):
            problems.append(f"member {name!r} is not a <key>.npy array; remove it or write the file with numpy.savez")
        if info.flag_bits & 0x1:
            problems.append(f"member {name!r} is encrypted; exports are not encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            problems.append(
                f"member {name!r} uses zip compression method {info.compress_type}; only stored and deflated "
                "(numpy.savez / savez_compressed) are read"
            )
        if info.header_offset + 30 + info.compress_size > file_size:
            problems.append(
                f"member {name!r}: its data would end past the end of the file ({file_size} bytes): the file is "
                "truncated; re-export or re-copy it"
            )
    return problems


def _parse_header(key: str, raw_prefix: bytes, read_more, member_size: int, max_header_bytes: int) -> ArrayHeader:
    """Parse a ``.npy`` header from a member stream (``read_more(n)`` returns the next bytes)."""
    if len(raw_prefix) < 8 or raw_prefix[:6] != MAGIC:
        raise Unreadable([f"member {key}.npy is not a .npy array (no NUMPY magic); write it with numpy.save"])
    major = raw_prefix[6]
    if major == 1:
        size_bytes = read_more(2)
        fmt = "<H"
    elif major in (2, 3):
        size_bytes = read_more(4)
        fmt = "<I"
    else:
        raise Unreadable([f"member {key}.npy: .npy format version {major}.{raw_prefix[7]} is unknown (1, 2, 3 are read)"])
    if len(size_bytes) != struct.calcsize(fmt):
        raise Unreadable([f"member {key}.npy: the header is cut off (truncated member); re-export the file"])
    (header_len,) = struct.unpack(fmt, size_bytes)
    prefix = 8 + len(size_bytes)
    if header_len > max_header_bytes:
        raise Unreadable(
            [f"member {key}.npy: a {header_len}-byte .npy header (at most {max_header_bytes} are read); "
             "the member is not a numpy array header"]
        )
    if prefix + header_len > member_size:
        raise Unreadable([f"member {key}.npy: the header runs past the member's end (truncated); re-export the file"])
    text = read_more(header_len)
    if len(text) != header_len:
        raise Unreadable([f"member {key}.npy: the header is cut off (truncated member); re-export the file"])
    try:
        decoded = text.decode("utf-8" if major == 3 else "latin1")
        meta = ast.literal_eval(decoded)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError) as exc:
        raise Unreadable([f"member {key}.npy: unreadable .npy header ({type(exc).__name__})"]) from exc
    if not isinstance(meta, dict) or set(meta) != {"descr", "fortran_order", "shape"}:
        raise Unreadable([f"member {key}.npy: the .npy header must hold descr, fortran_order and shape"])
    shape, descr, fortran = meta["shape"], meta["descr"], meta["fortran_order"]
    if (
        not isinstance(shape, tuple)
        or len(shape) > MAX_NDIM
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise Unreadable([f"member {key}.npy: shape {shape!r} is not a tuple of at most {MAX_NDIM} sizes >= 0"])
    if not isinstance(fortran, bool):
        raise Unreadable([f"member {key}.npy: fortran_order {fortran!r} must be True or False"])
    if not isinstance(descr, str):
        raise Unreadable(
            [f"member {key}.npy: a structured dtype ({str(descr)[:80]}); the schema stores plain numbers and strings"]
        )
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError) as exc:
        raise Unreadable([f"member {key}.npy: dtype {descr!r} is not a numpy dtype"]) from exc
    if dtype.hasobject:
        raise _object_dtype(key)
    if dtype.kind not in ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise Unreadable(
            [f"member {key}.npy: dtype {dtype} (kind {dtype.kind!r}) is not stored by the schema; "
             "use integers, floats, bools or fixed-width strings"]
        )
    return ArrayHeader(key, dtype, tuple(shape), fortran, prefix + header_len)


def _object_dtype(key: str) -> Unreadable:
    return Unreadable(
        [f"member {key}.npy holds pickled Python objects (dtype object); they are never unpickled, so the file "
         "is refused: store numbers or fixed-width strings (object arrays are not allowed)"]
    )


def _read_exact(stream, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = stream.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _stream_errors(key: str, exc: BaseException) -> Unreadable:
    """A read error of member ``key``, named for what it is."""
    name = f"member {key}.npy"
    if isinstance(exc, zlib.error):
        return Unreadable([f"{name}: corrupt compressed data (zlib: {exc}); the file was damaged: re-export it"])
    if isinstance(exc, EOFError):
        return Unreadable([f"{name}: the compressed data ends early (truncated file); re-export or re-copy it"])
    if isinstance(exc, zipfile.BadZipFile):
        text = str(exc)
        if "CRC" in text:
            return Unreadable([f"{name}: CRC mismatch, the data is corrupt; re-export or re-copy the file"])
        return Unreadable([f"{name}: damaged zip entry ({text}); re-export or re-copy the file"])
    if isinstance(exc, RuntimeError | NotImplementedError):
        return Unreadable([f"{name}: cannot be read ({exc})"])
    if isinstance(exc, OSError):
        return Unreadable([f"{name}: read error ({type(exc).__name__}: {exc})"])
    return Unreadable([f"{name}: cannot be read ({type(exc).__name__}: {exc})"])


def _headers(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], max_header_bytes: int, stats: ReadStats):
    headers, problems = [], []
    for info in infos:
        key = info.filename[: -len(".npy")]
        try:
            with zf.open(info) as stream:
                prefix = _read_exact(stream, 8)
                stats.bytes_inflated += len(prefix)

                def more(n: int, stream=stream) -> bytes:
                    b = _read_exact(stream, n)
                    stats.bytes_inflated += len(b)
                    return b

                h = _parse_header(key, prefix, more, info.file_size, max_header_bytes)
        except Unreadable as exc:
            problems += exc.reasons
            continue
        except (zlib.error, EOFError, zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
            problems += _stream_errors(key, exc).reasons
            continue
        data_bytes = info.file_size - h.data_offset
        if h.nbytes != data_bytes:
            what = "declares" if h.nbytes > data_bytes else "declares only"
            problems.append(
                f"member {key}.npy {what} shape {h.shape} of {h.dtype} ({_human(h.nbytes)}) but holds "
                f"{_human(max(0, data_bytes))} of data: a truncated or forged header; nothing was allocated. "
                "Re-export the file"
            )
            continue
        headers.append((info, h))
    return headers, problems


def read_npz(
    path: str | os.PathLike,
    *,
    max_file_bytes: int,
    max_members: int,
    max_total_bytes: int,
    max_header_bytes: int = 65536,
    max_string_bytes: int = 1 << 20,
    stats: ReadStats | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` at ``path`` (``{key: array}``), read within the bounds given.

    Args:
        path: the file.
        max_file_bytes: larger files are refused unread.
        max_members: most zip entries.
        max_total_bytes: most array bytes (all members together, decompressed).
        max_header_bytes: most bytes of one ``.npy`` header.
        max_string_bytes: most bytes of one string member (``board_config``, ``metadata``).
        stats: filled with what reading cost (bytes inflated, members).

    Raises:
        Unreadable: every reason the file cannot be read safely (each names the member and the fix).
    """
    stats = stats if stats is not None else ReadStats()
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError as exc:
        raise Unreadable([f"{p}: no such file"]) from exc
    except OSError as exc:
        raise Unreadable([f"{p}: cannot be read ({type(exc).__name__}: {exc})"]) from exc
    if not stat.S_ISREG(st.st_mode):
        raise Unreadable([f"{p.name} is not a regular file (a folder, pipe or device); an export is a file"])
    if st.st_size > max_file_bytes:
        raise Unreadable(
            [f"{p.name} is {_human(st.st_size)}, more than max_file_bytes={max_file_bytes} "
             f"({_human(max_file_bytes)}); split the export into shards or raise the cap"]
        )
    if st.st_size < _EOCD.size:
        raise Unreadable(
            [f"not a readable .npz file: {p.name} is only {st.st_size} bytes (empty or cut off); re-export it"]
        )
    try:
        fh = open(p, "rb")  # noqa: SIM115 - closed below, also by ZipFile
    except OSError as exc:
        raise Unreadable([f"{p.name}: cannot be opened ({type(exc).__name__}: {exc})"]) from exc
    with fh:
        entries, cd_size = _directory_extent(fh, st.st_size)
        if entries > max_members:
            raise Unreadable(
                [f"the archive lists {entries} members, more than max_members={max_members}; an export holds one "
                 "member per schema key"]
            )
        if cd_size > MAX_DIRECTORY_BYTES:
            raise Unreadable([f"the zip directory is {_human(cd_size)}; at most {_human(MAX_DIRECTORY_BYTES)} is read"])
        fh.seek(0)
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error) as exc:
            raise Unreadable([f"not a readable .npz file (damaged zip directory: {exc}); re-export or re-copy it"]) from exc
        with zf:
            infos = zf.infolist()
            stats.members = len(infos)
            problems = _member_problems(infos, st.st_size)
            if problems:
                raise Unreadable(problems)
            declared = sum(i.file_size for i in infos)
            stats.declared_bytes = declared
            if declared > max_total_bytes:
                big = max(infos, key=lambda i: i.file_size)
                raise Unreadable(
                    [f"the members inflate to {_human(declared)} (the largest, {big.filename}, to "
                     f"{_human(big.file_size)}), more than max_total_bytes={max_total_bytes} "
                     f"({_human(max_total_bytes)}); nothing was inflated. Split the export or raise the cap"]
                )
            headers, problems = _headers(zf, infos, max_header_bytes, stats)
            for _, h in headers:
                if h.dtype.kind in "US" and h.nbytes > max_string_bytes:
                    problems.append(
                        f"member {h.key}.npy: a {_human(h.nbytes)} string member; string members hold short "
                        f"names and JSON (at most {_human(max_string_bytes)})"
                    )
            if problems:
                raise Unreadable(problems)
            arrays: dict[str, np.ndarray] = {}
            for info, h in headers:
                try:
                    arrays[h.key] = _read_data(zf, info, h, stats)
                except Unreadable as exc:
                    problems += exc.reasons
                except (zlib.error, EOFError, zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                    problems += _stream_errors(h.key, exc).reasons
            if problems:
                raise Unreadable(problems)
            return arrays


def _read_data(zf: zipfile.ZipFile, info: zipfile.ZipInfo, h: ArrayHeader, stats: ReadStats) -> np.ndarray:
    count = math.prod(h.shape)
    flat = np.empty(count, dtype=h.dtype)
    view = memoryview(flat.view(np.uint8).reshape(-1)) if h.nbytes else memoryview(b"")
    with zf.open(info) as stream:
        skipped = _read_exact(stream, h.data_offset)
        stats.bytes_inflated += len(skipped)
        pos = 0
        while pos < h.nbytes:
            chunk = stream.read(min(CHUNK_BYTES, h.nbytes - pos))
            if not chunk:
                raise Unreadable(
                    [f"member {h.key}.npy: the data ends after {pos} of {h.nbytes} bytes (truncated); re-export it"]
                )
            view[pos : pos + len(chunk)] = chunk
            pos += len(chunk)
            stats.bytes_inflated += len(chunk)
        if stream.read(1):  # also makes zipfile check the CRC at the end of the member
            raise Unreadable([f"member {h.key}.npy: bytes after the array's data; re-export the file"])
    if h.fortran_order and len(h.shape) > 1:
        return flat.reshape(h.shape[::-1]).transpose()
    return flat.reshape(h.shape)


def iter_export_files(folder: str | os.PathLike) -> Iterator[Path]:
    """Every ``*.npz`` under ``folder`` (sorted, symlinked folders not followed, so no loops)."""
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".npz"):
                yield Path(root) / name
