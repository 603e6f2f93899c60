"""Blob storage over local paths (the embedded default) and ``gs://`` with the same semantics.

Every write the loop depends on is either *create-only* (a dataset version, a registry version: written
once, never overwritten) or *compare-and-set* against a generation (the registry's alias file, the
warehouse watermark). Locally the generation is an opaque token (the sha256 of the content) checked
under an exclusive lock; on ``gs://`` it is the object generation, and the check is done by Cloud
Storage itself: create-only is ``if_generation_match=0``, compare-and-set is
``if_generation_match=<generation read>``, so two writers racing from different machines cannot both
win. Code above this module only sees :class:`Blob` tokens and :class:`ConflictError`.

``gs://`` needs the ``gcp`` extra (google-cloud-storage). Credentials come from the environment at run
time (Application Default Credentials); with ``STORAGE_EMULATOR_HOST`` set, the client talks to that
emulator (fake-gcs-server in the tests) without credentials.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GS = "gs://"
CACHE_ENV = "TUNELOOP_CACHE_DIR"  # where download_dir mirrors remote trees when given no directory
MIRROR_STATE = ".tuneloop-mirror.json"  # per mirrored tree: {relative path: generation}
_READ_TRIES = 5


class ConflictError(RuntimeError):
    """A create-only write found the object, or a compare-and-set found another generation."""


class StorageError(RuntimeError):
    """The URI cannot be read or written (missing, unsupported scheme)."""


@dataclass(frozen=True)
class Blob:
    data: bytes
    generation: str  # opaque; pass back to write(..., if_generation=...)


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names an object store (``gs://...``) rather than a local path."""
    return "://" in uri and not uri.startswith("file://")


def is_gcs(uri: str) -> bool:
    """Whether ``uri`` is a ``gs://bucket/...`` URI."""
    return isinstance(uri, str) and uri.startswith(GS)


def join(base: str, *parts: str) -> str:
    """Join path parts with ``/`` (works for local paths and ``gs://`` URIs alike)."""
    base = base.rstrip("/")
    return "/".join([base, *[p.strip("/") for p in parts if p]])


def _local(uri: str) -> Path:
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if is_remote(uri):
        scheme = uri.split("://", 1)[0]
        raise StorageError(
            f"{uri}: the {scheme}:// scheme is not supported; use a local path, or gs:// (which needs the "
            "cloud extra: pip install 'tuneloop[gcp]')"
        )
    return Path(uri)


def _token(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock for a read-compare-write of ``path``: ``flock`` on its folder.

    Locking the folder (not a ``<name>.lock`` file beside it) leaves nothing behind, so a published
    tree holds only its data.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _atomic_write(path: Path, data: bytes | None = None, *, fill=None, create_only: bool = False) -> None:
    """Write ``data`` (or let ``fill(fh)`` stream into the file) under a temporary name, then move it in.

    ``create_only``: fail with FileExistsError instead of replacing an existing file (a hard link
    moves it in, which refuses an existing name atomically).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if fill is not None:
                fill(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if create_only:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# -- gs:// -------------------------------------------------------------------------------------------


def split_gcs(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> ``("bucket", "a/b")``.

    Raises:
        StorageError: not a ``gs://bucket/...`` URI.
    """
    if not is_gcs(uri) or not uri[len(GS) :].split("/", 1)[0]:
        raise StorageError(f"{uri!r} is not a gs://BUCKET/PATH URI")
    bucket, _, name = uri[len(GS) :].partition("/")
    return bucket, name.strip("/")


def _gcs_client():
    try:
        from google.cloud import storage as gcs  # noqa: F401
    except ImportError as exc:
        raise StorageError(
            "gs:// paths need the cloud extra: pip install 'tuneloop[gcp]' (google-cloud-storage)"
        ) from exc
    # One client per process and emulator setting (a forked kfp.local task builds its own).
    return _cached_client(os.getpid(), os.environ.get("STORAGE_EMULATOR_HOST"))


@functools.lru_cache(maxsize=4)
def _cached_client(pid: int, emulator: str | None):
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import storage as gcs

    try:
        return gcs.Client()
    except DefaultCredentialsError as exc:
        raise StorageError(
            "gs://: no Google Cloud credentials found; run `gcloud auth application-default login` "
            "(or run as a service account with roles/storage.objectAdmin on the bucket)"
        ) from exc


@contextlib.contextmanager
def _gcs_errors(uri: str):
    """Translate Cloud Storage answers into this module's errors, naming the URI and the fix."""
    from google.api_core import exceptions as gexc

    try:
        yield
    except gexc.PreconditionFailed:
        raise  # the callers turn this into ConflictError with their own wording
    except gexc.NotFound as exc:
        raise StorageError(
            f"{uri}: the bucket does not exist or is not visible to these credentials"
        ) from exc
    except gexc.Forbidden as exc:
        raise StorageError(
            f"{uri}: permission denied; grant roles/storage.objectAdmin on the bucket to the account "
            f"running this ({exc.message})"
        ) from exc


def _gcs_generation(if_generation: str | int, uri: str) -> int:
    try:
        gen = int(if_generation)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"if_generation={if_generation!r} is not a Cloud Storage generation for {uri}; pass the "
            "generation that storage.read() returned for this object"
        ) from exc
    if gen < 1:
        raise ValueError(f"if_generation={if_generation!r}: a generation is a positive integer")
    return gen


def _gcs_read(uri: str) -> Blob | None:
    from google.api_core import exceptions as gexc

    bucket, name = split_gcs(uri)
    client = _gcs_client()
    for _ in range(_READ_TRIES):
        with _gcs_errors(uri):
            meta = client.bucket(bucket).get_blob(name)
            if meta is None:
                return None
            try:
                # Pinned to the generation just seen, so data and generation belong together.
                data = meta.download_as_bytes(if_generation_match=meta.generation)
            except gexc.PreconditionFailed:
                continue  # replaced between the two requests: read again
            except gexc.NotFound:
                return None  # deleted between the two requests
        return Blob(data=data, generation=str(meta.generation))
    raise ConflictError(f"{uri} kept changing while it was read ({_READ_TRIES} tries); retry later")


def _gcs_write(uri: str, data: bytes, if_generation: str | None) -> str:
    from google.api_core import exceptions as gexc

    bucket, name = split_gcs(uri)
    if not name:
        raise StorageError(f"{uri}: name an object under the bucket, e.g. gs://BUCKET/path/file.json")
    precondition = None
    if if_generation is None:
        precondition = 0  # create-only: Cloud Storage refuses if any live generation exists
    elif if_generation != "*":
        precondition = _gcs_generation(if_generation, uri)
    blob = _gcs_client().bucket(bucket).blob(name)
    try:
        with _gcs_errors(uri):
            blob.upload_from_string(data, content_type=_content_type(name), if_generation_match=precondition)
    except gexc.PreconditionFailed as exc:
        if precondition == 0:
            raise ConflictError(f"{uri} already exists (create-only write)") from exc
        raise ConflictError(
            f"{uri} changed since it was read (generation mismatch: expected {precondition})"
        ) from exc
    return str(blob.generation)


def _content_type(name: str) -> str:
    if name.endswith(".json"):
        return "application/json"
    if name.endswith(".jsonl"):
        return "application/jsonl"
    if name.endswith((".txt", ".sql", ".yaml", ".yml")):
        return "text/plain"
    return "application/octet-stream"


def _gcs_list(uri: str, *, recursive: bool):
    """``(objects, prefixes)`` under ``uri/``: objects as ``google.cloud.storage.Blob``, prefixes as names."""
    bucket, name = split_gcs(uri)
    prefix = f"{name}/" if name else ""
    with _gcs_errors(uri):
        it = _gcs_client().list_blobs(bucket, prefix=prefix, delimiter=None if recursive else "/")
        blobs = list(it)
        prefixes = sorted(getattr(it, "prefixes", ()) or ())
    return bucket, prefix, blobs, prefixes


# -- the interface ------------------------------------------------------------------------------------


def exists(uri: str) -> bool:
    """Whether an object (or, for a folder, anything under it) exists at ``uri``."""
    if is_gcs(uri):
        bucket, name = split_gcs(uri)
        with _gcs_errors(uri):
            if name and _gcs_client().bucket(bucket).blob(name).exists():
                return True
            return any(True for _ in _gcs_client().list_blobs(bucket, prefix=f"{name}/", max_results=1))
    return _local(uri).exists()


def read(uri: str) -> Blob | None:
    """The object's bytes and generation, or None when it does not exist."""
    if is_gcs(uri):
        return _gcs_read(uri)
    p = _local(uri)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        return None
    return Blob(data=data, generation=_token(data))


def read_bytes(uri: str) -> bytes:
    """The object's bytes; StorageError when it does not exist."""
    blob = read(uri)
    if blob is None:
        raise StorageError(f"{uri}: no such object")
    return blob.data


def write(uri: str, data: bytes, *, if_generation: str | None = "*") -> str:
    """Write an object; returns its new generation.

    Args:
        uri: A local path or ``gs://bucket/name``.
        data: The bytes to store.
        if_generation: ``"*"`` = unconditional, ``None`` = create-only (fail if it exists), else the
            generation the caller read (fail with ConflictError if the object changed since).

    Raises:
        ConflictError: the precondition failed; nothing was written.
    """
    if is_gcs(uri):
        return _gcs_write(uri, data, if_generation)
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
    """Write ``value`` as indented, key-sorted JSON; see :func:`write` for ``if_generation``."""
    data = (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    return write(uri, data, if_generation=if_generation)


def upload_file(local_path: str | Path, uri: str, *, create_only: bool = False) -> None:
    """Copy a local file to ``uri``, streaming (the file is never held in memory whole).

    Args:
        local_path: The file to copy.
        uri: A local path or ``gs://bucket/name``.
        create_only: Fail with ConflictError if ``uri`` exists (else it is replaced).

    Raises:
        ConflictError: ``create_only`` and the object exists; nothing was written.
    """
    src = Path(local_path)
    if is_gcs(uri):
        from google.api_core import exceptions as gexc

        bucket, name = split_gcs(uri)
        if not name:
            raise StorageError(f"{uri}: name an object under the bucket, e.g. gs://BUCKET/path/file.json")
        blob = _gcs_client().bucket(bucket).blob(name)
        try:
            with _gcs_errors(uri):
                blob.upload_from_filename(
                    str(src), content_type=_content_type(name), if_generation_match=0 if create_only else None
                )
        except gexc.PreconditionFailed as exc:
            raise ConflictError(f"{uri} already exists (create-only write)") from exc
        return
    dest = _local(uri)

    def fill(fh) -> None:
        with src.open("rb") as f:
            shutil.copyfileobj(f, fh, 1 << 20)

    try:
        _atomic_write(dest, fill=fill, create_only=create_only)
    except FileExistsError as exc:
        raise ConflictError(f"{uri} already exists (create-only write)") from exc


def upload_dir(local_dir: str | Path, uri: str, *, create_only: bool = True) -> list[str]:
    """Copy a local directory tree to ``uri`` (create-only by default); returns the written URIs."""
    written = []
    root = Path(local_dir)
    for f in sorted(root.rglob("*")):
        if f.is_file():
            dest = join(uri, f.relative_to(root).as_posix())
            upload_file(f, dest, create_only=create_only)
            written.append(dest)
    return written


def cache_dir_for(uri: str) -> Path:
    """The default local mirror of a remote tree: ``$TUNELOOP_CACHE_DIR/gcs/<bucket>/<path>``.

    ``TUNELOOP_CACHE_DIR`` defaults to ``~/.cache/tuneloop``.
    """
    bucket, name = split_gcs(uri)
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tuneloop")
    return root / "gcs" / bucket / name


def download_dir(uri: str, local_dir: str | Path | None = None) -> Path:
    """Make the tree at ``uri`` available locally; returns the local directory that holds it.

    A local path is returned as it is (no copy). A ``gs://`` tree is mirrored into ``local_dir`` (default
    :func:`cache_dir_for`): objects whose generation the mirror already holds are not downloaded again,
    and files the mirror downloaded earlier that are gone from the bucket are removed. Files in
    ``local_dir`` that the mirror did not download are never touched.

    Raises:
        StorageError: nothing exists under ``uri``.
    """
    if not is_gcs(uri):
        p = _local(uri)
        if not p.exists():
            raise StorageError(f"{uri}: no such directory")
        return p
    _, prefix, blobs, _ = _gcs_list(uri, recursive=True)
    objects = {b.name[len(prefix) :]: b for b in blobs if not b.name.endswith("/")}
    if not objects:
        raise StorageError(f"{uri}: no such directory (no objects under it)")
    target = Path(local_dir) if local_dir is not None else cache_dir_for(uri)
    target.mkdir(parents=True, exist_ok=True)
    state_path = target / MIRROR_STATE
    with _locked(state_path):
        try:
            state = json.loads(state_path.read_text())
        except (FileNotFoundError, ValueError):
            state = {}
        for rel, blob in sorted(objects.items()):
            dest = target / rel
            if rel in (MIRROR_STATE, MIRROR_STATE + ".lock") or ".." in Path(rel).parts:
                continue
            gen = str(blob.generation)
            if state.get(rel) == gen and dest.is_file():
                continue
            with _gcs_errors(join(uri, rel)):  # streamed to disk, never whole in memory
                _atomic_write(dest, fill=lambda fh, b=blob: b.download_to_file(fh, if_generation_match=b.generation))
            state[rel] = gen
        for rel in sorted(set(state) - set(objects)):
            with contextlib.suppress(FileNotFoundError):
                (target / rel).unlink()
            del state[rel]
        _atomic_write(state_path, json.dumps(state, indent=1, sort_keys=True).encode())
    return target


def list_files(uri: str) -> list[str]:
    """Every file under a folder, recursively, as paths relative to it (``"canonical/train.parquet"``)."""
    if is_gcs(uri):
        _, prefix, blobs, _ = _gcs_list(uri, recursive=True)
        return sorted(b.name[len(prefix) :] for b in blobs if not b.name.endswith("/"))
    p = _local(uri)
    if not p.is_dir():
        return []
    return sorted(f.relative_to(p).as_posix() for f in p.rglob("*") if f.is_file())


def list_prefix(uri: str) -> list[str]:
    """The direct children of a folder (files and sub-folders), as full paths or ``gs://`` URIs, sorted."""
    if is_gcs(uri):
        bucket, prefix, blobs, prefixes = _gcs_list(uri, recursive=False)
        names = [b.name for b in blobs if b.name != prefix] + [p.rstrip("/") for p in prefixes]
        return sorted(f"{GS}{bucket}/{n}" for n in names)
    p = _local(uri)
    if not p.exists():
        return []
    return sorted(str(x) for x in p.iterdir())
