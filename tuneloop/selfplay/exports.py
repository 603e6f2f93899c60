"""Self-play exports you did not write: validate a file or a folder, load what is valid, report the rest.

A self-play cluster writes thousands of ``.npz`` exports from many machines; some are truncated,
written by an older exporter, or wrong. Everything that reads one goes through here:

* :func:`validate_file` reads a file with :func:`tuneloop.selfplay.npzfile.read_npz` (bounded memory
  and work: nothing is allocated before the declared sizes are checked, nothing is unpickled, the
  decompression is streamed and capped) and checks it with :func:`tuneloop.selfplay.npz.check_arrays`
  against the schema *and* its board config (planes, board size, globals width, policy size,
  players). It never raises for a bad file: every failure, expected or not, becomes a reason in the
  :class:`FileReport`, so one bad file cannot stop a folder scan or a combine.
* :func:`scan` reports every file under a folder; :func:`load` returns a valid export's positions.

The bounds (:class:`ValidatorLimits`, a ``settings.validator`` section of ``selfplay-training``) hold
for any input; docs/selfplay.md states them and tests/unit/selfplay/test_validator.py measures them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneloop.config import setting
from tuneloop.selfplay import npz, npzfile

log = logging.getLogger(__name__)

MiB = 1 << 20
GiB = 1 << 30
MAX_DIR_METADATA_BYTES = 16 * MiB
# Peak heap while validating one export, stated in docs/selfplay.md and checked by the tests:
# the arrays themselves (<= max_total_bytes) + the checks' temporaries (<= the arrays again) + a constant.
MEMORY_FACTOR = 2
MEMORY_CONSTANT = 32 * MiB


@dataclass(frozen=True)
class ValidatorLimits:
    """The bounds within which any export is read and checked (``settings.validator``)."""

    max_file_bytes: int = setting(2 * GiB, help="larger files are refused unread")
    max_total_bytes: int = setting(
        1 * GiB, help="most array bytes one export may inflate to (all members together); bounds memory"
    )
    max_members: int = setting(64, help="most entries in an export's zip directory")
    max_header_bytes: int = setting(65536, help="most bytes of one .npy header")
    max_string_bytes: int = setting(MiB, help="most bytes of one string member (board_config, metadata)")
    future_skew_s: float = setting(300.0, help="seconds a timestamp may lie after now (writer clock skew)")
    max_duplicate_fraction: float = setting(
        0.5, help="most share of positions that may repeat another position exactly"
    )

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_total_bytes", "max_members", "max_header_bytes", "max_string_bytes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r} must be a positive whole number")
        if not (self.future_skew_s >= 0 and np.isfinite(self.future_skew_s)):
            raise ValueError(f"future_skew_s={self.future_skew_s!r} must be a finite number of seconds >= 0")
        if not 0 <= self.max_duplicate_fraction <= 1:
            raise ValueError(f"max_duplicate_fraction={self.max_duplicate_fraction!r} must lie in [0, 1] (e.g. 0.5)")

    @property
    def memory_bound(self) -> int:
        """Most heap bytes validating one export may take (any file): 2 x max_total_bytes + 32 MiB."""
        return MEMORY_FACTOR * self.max_total_bytes + MEMORY_CONSTANT


@dataclass(frozen=True)
class FileReport:
    """The verdict on one file: ``errors`` reject it, ``warnings`` do not."""

    path: str
    errors: list[str]
    warnings: list[str] = field(default_factory=list)
    positions: int | None = None
    board_config: str | None = None
    schema_version: int | None = None
    bytes_inflated: int = 0

    @property
    def valid(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "valid": self.valid}


def _board_shape(name: str) -> npz.BoardShape | None:
    from tuneloop.selfplay.games import BOARD_CONFIGS, board_shape

    if name not in BOARD_CONFIGS:
        raise ValueError(f"{name!r} is not a board config; use one of {sorted(BOARD_CONFIGS)}")
    try:
        return board_shape(name)
    except ImportError:  # no OpenSpiel here: the shapes cannot be derived
        return None


def _scalar_or_none(arrays: Mapping[str, np.ndarray], key: str, kind: type):
    try:
        v = np.asarray(arrays[key]).item()
    except (KeyError, ValueError):
        return None
    return v if isinstance(v, kind) else None


def _check(arrays: Mapping[str, np.ndarray], limits: ValidatorLimits, now: float | None) -> npz.Findings:
    shapes_missing: list[str] = []

    def resolve(name: str) -> npz.BoardShape | None:
        shape = _board_shape(name)
        if shape is None:
            shapes_missing.append("board shapes were not checked: OpenSpiel (the selfplay extra) is not installed")
        return shape

    findings = npz.check_arrays(
        arrays,
        board_shape=resolve,
        now=now,
        future_skew_s=limits.future_skew_s,
        max_duplicate_fraction=limits.max_duplicate_fraction,
    )
    return npz.Findings(findings.errors, [*findings.warnings, *shapes_missing[:1]])


def _read(path: Path, limits: ValidatorLimits, stats: npzfile.ReadStats) -> dict[str, np.ndarray]:
    if path.is_dir():
        meta = path / npz.DIR_METADATA
        if not meta.is_file():
            raise npzfile.Unreadable([f"{path} is a folder without {npz.DIR_METADATA}: not a combined training set"])
        if meta.stat().st_size > MAX_DIR_METADATA_BYTES:
            raise npzfile.Unreadable([f"{meta} is larger than {MAX_DIR_METADATA_BYTES} bytes; not written by combine"])
        try:
            return npz._read_dir_arrays(path, mmap=True)
        except (OSError, ValueError) as exc:
            raise npzfile.Unreadable([f"not a readable combined directory ({exc})"]) from exc
    return npzfile.read_npz(
        path,
        max_file_bytes=limits.max_file_bytes,
        max_members=limits.max_members,
        max_total_bytes=limits.max_total_bytes,
        max_header_bytes=limits.max_header_bytes,
        max_string_bytes=limits.max_string_bytes,
        stats=stats,
    )


def _validate(path: str | os.PathLike, limits: ValidatorLimits, now: float | None):
    p = Path(path)
    stats = npzfile.ReadStats()
    arrays = None
    try:
        arrays = _read(p, limits, stats)
        findings = _check(arrays, limits, now)
    except npzfile.Unreadable as exc:
        findings = npz.Findings(exc.reasons, [])
    except MemoryError:
        findings = npz.Findings(
            [f"ran out of memory while checking the file (validator limits {asdict(limits)}); lower max_total_bytes"],
            [],
        )
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop a scan or a combine
        log.exception("validating %s", p)
        findings = npz.Findings([f"cannot be validated: unexpected {type(exc).__name__}: {exc}"], [])
    report = FileReport(
        path=str(p),
        errors=list(findings.errors),
        warnings=list(findings.warnings),
        positions=int(np.asarray(arrays[npz.FEATURES]).shape[0])
        if arrays is not None and npz.FEATURES in arrays and np.asarray(arrays[npz.FEATURES]).ndim >= 1
        else None,
        board_config=_scalar_or_none(arrays, npz.META_BOARD_CONFIG, str) if arrays is not None else None,
        schema_version=_scalar_or_none(arrays, npz.META_SCHEMA_VERSION, int) if arrays is not None else None,
        bytes_inflated=stats.bytes_inflated,
    )
    return report, (arrays if report.valid else None)


def validate_file(
    path: str | os.PathLike, limits: ValidatorLimits | None = None, *, now: float | None = None
) -> FileReport:
    """The verdict on the ``.npz`` export (or combined directory) at ``path``; never raises for a bad file.

    Args:
        path: the file or combined training-set directory.
        limits: the bounds (defaults: :class:`ValidatorLimits`).
        now: unix time timestamps are checked against (None = the clock).
    """
    return _validate(path, limits or ValidatorLimits(), now)[0]


def load(
    path: str | os.PathLike, limits: ValidatorLimits | None = None, *, now: float | None = None
) -> tuple[npz.PositionSet | None, FileReport]:
    """``(positions, report)`` of a valid export, ``(None, report)`` of a bad one; never raises for a bad file."""
    report, arrays = _validate(path, limits or ValidatorLimits(), now)
    if arrays is None:
        return None, report
    return npz.from_arrays(arrays, source=str(path), validate=False), report


def load_npz(
    path: str | os.PathLike, limits: ValidatorLimits | None = None, *, now: float | None = None
) -> npz.PositionSet:
    """The positions of a valid export.

    Raises:
        SchemaError: the file is not a valid export (``reasons`` lists every error).
    """
    positions, report = load(path, limits, now=now)
    if positions is None:
        raise npz.SchemaError(str(path), report.errors)
    return positions


def scan(
    path: str | os.PathLike, limits: ValidatorLimits | None = None, *, now: float | None = None
) -> list[FileReport]:
    """A report for every export at ``path``: a file, a combined directory, or a folder of ``*.npz``."""
    limits = limits or ValidatorLimits()
    p = Path(path)
    if not p.exists():
        return [FileReport(str(p), ["no such file or directory"])]
    if p.is_dir() and not (p / npz.DIR_METADATA).exists():
        files = list(npzfile.iter_export_files(p))
        if not files:
            return [FileReport(str(p), ["the folder holds no .npz files and is not a combined training set"])]
        return [validate_file(f, limits, now=now) for f in files]
    return [validate_file(p, limits, now=now)]


def validate_path(path: str | os.PathLike, limits: ValidatorLimits | None = None) -> dict[str, list[str]]:
    """``{file: errors}`` for every export at ``path`` (see :func:`scan`)."""
    return {r.path: r.errors for r in scan(path, limits)}


def summary(reports: list[FileReport], limits: ValidatorLimits) -> dict[str, Any]:
    """The JSON a folder scan prints (``tuneloop npz validate --json``)."""
    return {
        "schema_version": npz.SCHEMA_VERSION,
        "checked_at": time.time(),
        "files": [r.to_dict() for r in reports],
        "valid": sum(r.valid for r in reports),
        "invalid": sum(not r.valid for r in reports),
        "with_warnings": sum(bool(r.warnings) for r in reports),
        "limits": asdict(limits),
    }


def dumps(reports: list[FileReport], limits: ValidatorLimits) -> str:
    return json.dumps(summary(reports, limits), indent=2, sort_keys=True)
