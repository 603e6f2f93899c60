"""Blob storage over local paths (the embedded default) with the semantics GCS gives.

Every write the loop depends on is either *create-only* (a dataset version, a registry version: written
once, never overwritten) or *compare-and-set* against a generation (the registry's alias file, the
warehouse watermark). Locally the generation is an opaque token (the sha256 of the content) checked
under an exclusive lock; on ``gs://`` it is the object generation (``if_generation_match``). Code above
this module only sees :class:`Blob` tokens and :class:`ConflictError`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConflictError(RuntimeError):
    """A create-only write found the object, or a compare-and-set found another generation."""


class StorageError(RuntimeError):
    """The URI cannot be read or written (missing, unsupported scheme)."""


@dataclass(frozen=True)
class Blob:
    data: bytes
    generation: str  # opaque; pass back to write(..., if_generation=...)


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def join(base: str, *parts: str) -> str:
    base = base.rstrip("/")
    return "/".join([base, *[p.strip("/") for p in parts if p]])


def _local(uri: str) -> Path:
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if is_remote(uri):
        scheme = uri.split("://", 1)[0]
        raise StorageError(
            f"{uri}: the {scheme}:// scheme needs the cloud extra (pip install 'tuneloop[gcp]'); "
            "use a local path for the embedded default"
        )
    return Path(uri)


def _token(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    with open(lock, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def exists(uri: str) -> bool:
    return _local(uri).exists()


def read(uri: str) -> Blob | None:
    """The object's bytes and generation, or None when it does not exist."""
    p = _local(uri)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        return None
    return Blob(data=data, generation=_token(data))


def read_bytes(uri: str) -> bytes:
    blob = read(uri)
    if blob is None:
        raise StorageError(f"{uri}: no such object")
    return blob.data


def write(uri: str, data: bytes, *, if_generation: str | None = "*") -> str:
    """Write an object; returns its new generation.

    ``if_generation``: ``"*"`` = unconditional, ``None`` = create-only (fail if it exists), else the
    generation the caller read (fail with ConflictError if the object changed since).
    """
    p = _local(uri)
    with _locked(p):
        current = read(uri)
        if if_generation is None and current is not None:
            raise ConflictError(f"{uri} already exists (create-only write)")
        if if_generation not in ("*", None):
            cur_gen = current.generation if current is not None else None
            if cur_gen != if_generation:
                raise ConflictError(f"{uri} changed since it was read (generation mismatch)")
        _atomic_write(p, data)
    return _token(data)


def read_json(uri: str) -> tuple[Any, str | None]:
    """``(value, generation)``; ``(None, None)`` when missing."""
    blob = read(uri)
    if blob is None:
        return None, None
    return json.loads(blob.data), blob.generation


def write_json(uri: str, value: Any, *, if_generation: str | None = "*") -> str:
    data = (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    return write(uri, data, if_generation=if_generation)


def upload_dir(local_dir: str | Path, uri: str, *, create_only: bool = True) -> list[str]:
    """Copy a local directory tree to ``uri`` (create-only by default); returns the written URIs."""
    written = []
    root = Path(local_dir)
    for f in sorted(root.rglob("*")):
        if f.is_file():
            dest = join(uri, f.relative_to(root).as_posix())
            write(dest, f.read_bytes(), if_generation=None if create_only else "*")
            written.append(dest)
    return written


def download_dir(uri: str, local_dir: str | Path) -> Path:
    """Make the tree at ``uri`` available locally (a no-op for local paths); returns the local path."""
    p = _local(uri)
    if not p.exists():
        raise StorageError(f"{uri}: no such directory")
    return p


def list_prefix(uri: str) -> list[str]:
    p = _local(uri)
    if not p.exists():
        return []
    return sorted(str(x) for x in p.iterdir())
