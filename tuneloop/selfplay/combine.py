"""Combine self-play exports into one memory-mappable training set, losing no valid data to a bad file.

1. Every export is validated (:mod:`tuneloop.selfplay.exports`: bounded, never raises for a bad
   file). A bad one is skipped and listed with its reasons under ``rejected``; so is an export of
   another board config than the one being trained. Warnings (unknown keys) are listed too.
2. Exports are ordered freshest first (metadata ``generation``, then the newest timestamp, then the
   order given). A game (``game_ids``) that appears in more than one export is kept once: from the
   freshest export that has it; repeated ``(game_id, move_number)`` rows inside an export too.
3. Each position's weight = its own ``sample_weights`` x freshness x quality x the source's weight,
   where freshness is ``0.5 ** (age / freshness_half_life)`` with ``age`` = generations behind the
   newest export, and quality is the export's ``quality_score`` when it has one, else derived from
   ``victory_types`` (``truncated_weight`` for games that hit the move limit, ``draw_weight`` for
   draws, 1 otherwise). Weights are scaled to mean 1 so the learning rate keeps its meaning.
4. The result is written with :func:`npz.save_dir`: ``<key>.npy`` files the trainer memory-maps, and
   ``metadata.json`` listing sources, counts, what was dropped and what was rejected. The optional
   per-position keys (``quality_score`` .. ``heuristics``) are kept; rows of exports without
   ``quality_score`` carry the quality they were weighed with.

:func:`combine_or_fallback` is what the pipeline calls: only when combining the valid exports itself
fails (every row dropped, a write error) does it fall back to the latest valid export alone, and the
report's ``fallback_reason`` is that failure. No valid export at all is an error naming every file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tuneloop.config import setting, to_mapping
from tuneloop.selfplay import exports, npz

log = logging.getLogger(__name__)


class CombineError(RuntimeError):
    """The exports cannot be combined (every row dropped, weights all 0, ...)."""


class NoValidExports(CombineError):
    """Not one export is usable: nothing to combine and nothing to fall back to."""


@dataclass(frozen=True)
class CombineConfig:
    """How exports are merged (``settings.combine``; ``board_config`` is set per config by the pipeline)."""

    freshness_half_life: float = setting(
        2.0, help="generations after which an export's weight halves (> 0; inf = no decay)"
    )
    truncated_weight: float = setting(0.25, help="quality weight of games that hit the move limit")
    draw_weight: float = setting(1.0, help="quality weight of drawn games")
    source_weights: Mapping[str, float] = setting(
        default_factory=dict, help="extra multiplier per export, by file name (e.g. human games x2)"
    )
    dedup: bool = setting(True, help="drop repeated games (by game_ids) and repeated rows")
    board_config: str | None = setting(
        None, help="keep only exports of this board config; None = the freshest export's"
    )
    min_weight: float = setting(0.0, help="positions whose weight falls below this are dropped (0 keeps all)")

    def __post_init__(self) -> None:
        if not self.freshness_half_life > 0:
            raise ValueError(
                f"freshness_half_life: {self.freshness_half_life} must be > 0 (generations; try 2)"
            )
        for name in ("truncated_weight", "draw_weight", "min_weight"):
            v = getattr(self, name)
            if not (v >= 0 and np.isfinite(v)):
                raise ValueError(f"{name}: {v} must be a finite number >= 0")
        for key, v in self.source_weights.items():
            if not (v >= 0 and np.isfinite(v)):
                raise ValueError(f"source_weights[{key!r}]: {v} must be a finite number >= 0")


@dataclass(frozen=True)
class _Source:
    path: str
    positions: npz.PositionSet
    generation: int
    newest: float
    order: int
    sha256: str


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _generation(ps: npz.PositionSet) -> int:
    try:
        return max(0, int(ps.metadata.get("generation", 0)))
    except (TypeError, ValueError, OverflowError):
        return 0


@dataclass
class _Loaded:
    sources: list[_Source]
    rejected: dict[str, list[str]]
    warnings: dict[str, list[str]]


def _load_sources(
    paths: Sequence[str], limits: exports.ValidatorLimits, now: float | None
) -> _Loaded:
    sources, rejected, warnings = [], {}, {}
    for order, path in enumerate(paths):
        ps, report = exports.load(path, limits, now=now)
        if report.warnings:
            warnings[str(path)] = report.warnings
        if ps is None:
            rejected[str(path)] = report.errors
            continue
        try:
            digest = _sha256(str(path))
        except OSError as exc:
            rejected[str(path)] = [f"read error while hashing ({type(exc).__name__}: {exc})"]
            continue
        newest = float(np.max(ps.timestamps)) if ps.timestamps is not None else 0.0
        sources.append(_Source(str(path), ps, _generation(ps), newest, order, digest))
    return _Loaded(sources, rejected, warnings)


def _freshest_first(sources: list[_Source]) -> list[_Source]:
    return sorted(sources, key=lambda s: (-s.generation, -s.newest, -s.order))


def _choose_board(loaded: _Loaded, config: CombineConfig, n_paths: int) -> tuple[list[_Source], str]:
    """The sources of the board config being trained; the others join ``rejected`` with the reason."""
    if not loaded.sources:
        detail = "; ".join(f"{p}: {r[0]}" for p, r in loaded.rejected.items()) or "no paths given"
        raise NoValidExports(f"npz_paths: no valid export among the {n_paths} given, nothing to train on ({detail})")
    board = config.board_config or _freshest_first(loaded.sources)[0].positions.board_config
    keep = []
    for s in loaded.sources:
        if s.positions.board_config == board:
            keep.append(s)
        elif config.board_config:
            loaded.rejected[s.path] = [f"board_config {s.positions.board_config!r} is not {board!r} (the one trained)"]
        else:
            loaded.rejected[s.path] = [
                f"board_config {s.positions.board_config!r} differs from {board!r}, the freshest export's; "
                "set board_config to train another config"
            ]
    if not keep:
        detail = "; ".join(f"{p}: {r[0]}" for p, r in loaded.rejected.items())
        raise NoValidExports(f"npz_paths: none of the {n_paths} exports is a valid {board!r} export ({detail})")
    return keep, board


def _quality(ps: npz.PositionSet, config: CombineConfig) -> tuple[np.ndarray, str]:
    if ps.quality_score is not None:
        return np.asarray(ps.quality_score, dtype=np.float64), npz.QUALITY_SCORE
    victory = np.asarray(ps.victory_types)
    quality = np.ones(ps.num_positions, dtype=np.float64)
    quality[victory == npz.VICTORY_TYPES.index("truncated")] = config.truncated_weight
    quality[victory == npz.VICTORY_TYPES.index("draw")] = config.draw_weight
    return quality, npz.VICTORY_TYPES_KEY


def _combine(
    sources: list[_Source],
    out_dir: str | os.PathLike,
    config: CombineConfig,
    loaded: _Loaded,
    n_paths: int,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    ordered = _freshest_first(sources)
    newest_gen = ordered[0].generation
    any_quality = any(s.positions.quality_score is not None for s in ordered)
    widths = {s.positions.heuristics.shape[1] for s in ordered if s.positions.heuristics is not None}
    dropped_columns = {}
    if len(widths) > 1:
        dropped_columns[npz.HEURISTICS] = f"the exports disagree on its widths {sorted(widths)}; dropped"
    seen_games: set[int] = set()
    parts: list[npz.PositionSet] = []
    report_sources: list[dict[str, Any]] = []
    dup_games = dup_rows = low_weight = 0
    for src in ordered:
        ps = src.positions
        keep = np.ones(ps.num_positions, dtype=bool)
        gids = np.asarray(ps.game_ids)
        if config.dedup:
            if seen_games:
                repeated = np.isin(gids, np.fromiter(seen_games, dtype=np.int64))
                dup_games += int(np.unique(gids[repeated]).size)
                keep &= ~repeated
            # repeated (game, move) rows inside this export: keep the first
            key = np.stack([gids, np.asarray(ps.move_numbers, dtype=np.int64)], axis=1)
            _, first = np.unique(key, axis=0, return_index=True)
            unique_mask = np.zeros(ps.num_positions, dtype=bool)
            unique_mask[first] = True
            dup_rows += int(np.count_nonzero(keep & ~unique_mask))
            keep &= unique_mask
            seen_games.update(int(g) for g in np.unique(gids))
        age = newest_gen - src.generation
        freshness = 0.5 ** (age / config.freshness_half_life)
        quality, quality_from = _quality(ps, config)
        source_w = float(config.source_weights.get(Path(src.path).name, 1.0))
        weights = ps.weights().astype(np.float64) * freshness * quality * source_w
        low = keep & (weights < config.min_weight) if config.min_weight > 0 else np.zeros_like(keep)
        low_weight += int(np.count_nonzero(low))
        keep &= ~low
        kept = np.flatnonzero(keep)
        if kept.size:
            part = ps.select(kept)
            extra: dict[str, Any] = {"sample_weights": weights[kept].astype(np.float32)}
            if any_quality:
                extra["quality_score"] = quality[kept].astype(np.float32)
            if dropped_columns.get(npz.HEURISTICS):
                extra["heuristics"] = None
            parts.append(replace(part, **extra))
        report_sources.append(
            {
                "path": src.path,
                "sha256": src.sha256,
                "generation": src.generation,
                "schema_version": ps.schema_version,
                "positions": ps.num_positions,
                "kept": int(kept.size),
                "freshness": freshness,
                "source_weight": source_w,
                "quality_from": quality_from,
                "optional_keys": ps.optional_keys(),
            }
        )
    if not parts:
        raise CombineError("every position was dropped (duplicates, or weights below min_weight)")
    merged = npz.concat(
        parts,
        metadata={"generation": newest_gen, "combined_from": [s["path"] for s in report_sources]},
    )
    w = merged.weights().astype(np.float64)
    if w.sum() <= 0:
        raise CombineError(
            "every kept position has weight 0; raise truncated_weight/draw_weight/source_weights "
            "(or check the exports' quality_score)"
        )
    merged = replace(merged, sample_weights=(w / w.mean()).astype(np.float32))
    report = {
        "board_config": merged.board_config,
        "num_positions": merged.num_positions,
        "num_games": merged.num_games,
        "generation": newest_gen,
        "duplicate_games_dropped": dup_games,
        "duplicate_rows_dropped": dup_rows,
        "low_weight_dropped": low_weight,
        "sources": report_sources,
        "optional_keys": merged.optional_keys(),
        "dropped_columns": dropped_columns,
        "config": to_mapping(config),
        "fallback": False,
    }
    report = _with_rejections(report, loaded, n_paths, info)
    npz.save_dir(out_dir, merged, info={"combine": report})
    return report


def _with_rejections(
    report: dict[str, Any], loaded: _Loaded, n_paths: int, info: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {
        **report,
        **dict(info or {}),
        "exports_given": n_paths,
        "rejected": dict(loaded.rejected),
        "rejected_count": len(loaded.rejected),
        "warnings": dict(loaded.warnings),
    }


def latest_export(
    paths: Sequence[str], *, limits: exports.ValidatorLimits | None = None, now: float | None = None
) -> tuple[str, npz.PositionSet]:
    """The freshest valid export among ``paths`` (by generation, newest timestamp, then list order)."""
    loaded = _load_sources(paths, limits or exports.ValidatorLimits(), now)
    if not loaded.sources:
        detail = "; ".join(f"{p}: {r[0]}" for p, r in loaded.rejected.items()) or "no paths given"
        raise NoValidExports(f"npz_paths: no valid export to fall back to ({detail})")
    best = _freshest_first(loaded.sources)[0]
    return best.path, best.positions


def combine_exports(
    paths: Sequence[str],
    out_dir: str | os.PathLike,
    config: CombineConfig = CombineConfig(),
    *,
    limits: exports.ValidatorLimits | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Merge the valid exports at ``paths`` into the training-set directory ``out_dir``.

    Returns:
        A report: positions/games kept, duplicates dropped, per-source details, ``rejected``
        (``{path: reasons}``: bad files and other board configs) and ``warnings``.

    Raises:
        NoValidExports: no export is valid (the message names each file and its first reason).
        CombineError: combining the valid exports failed (every row dropped, weights all 0).
    """
    if not paths:
        raise NoValidExports("npz_paths: empty; pass the exports written by the self-play shards")
    loaded = _load_sources(paths, limits or exports.ValidatorLimits(), now)
    sources, _ = _choose_board(loaded, config, len(paths))
    return _combine(sources, out_dir, config, loaded, len(paths))


def combine_or_fallback(
    paths: Sequence[str],
    out_dir: str | os.PathLike,
    config: CombineConfig = CombineConfig(),
    *,
    limits: exports.ValidatorLimits | None = None,
    now: float | None = None,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`combine_exports`; if combining the valid exports fails, the latest valid export alone.

    ``info`` is added to the report (and the set's ``metadata.json``), e.g. where the exports came from.

    Bad exports never cause the fallback: they are skipped and listed. ``fallback`` is True (with
    ``fallback_reason``, the failure of the combining step) only when combining itself failed.

    Raises:
        NoValidExports: not even one export is valid (nothing to train on).
    """
    if not paths:
        raise NoValidExports("npz_paths: empty; pass the exports written by the self-play shards")
    loaded = _load_sources(paths, limits or exports.ValidatorLimits(), now)
    sources, board = _choose_board(loaded, config, len(paths))
    try:
        return _combine(sources, out_dir, config, loaded, len(paths), info)
    except (CombineError, npz.SchemaError, OSError, ValueError, MemoryError) as exc:
        reason = f"combining the {len(sources)} valid exports failed ({type(exc).__name__}: {exc}); training on the latest export only"
        best = _freshest_first(sources)[0]
        log.warning("%s: %s", reason, best.path)
        ps = best.positions
        report = {
            "board_config": board,
            "num_positions": ps.num_positions,
            "num_games": ps.num_games,
            "generation": best.generation,
            "sources": [
                {
                    "path": best.path,
                    "sha256": best.sha256,
                    "generation": best.generation,
                    "schema_version": ps.schema_version,
                    "positions": ps.num_positions,
                    "kept": ps.num_positions,
                }
            ],
            "optional_keys": ps.optional_keys(),
            "config": to_mapping(config),
            "fallback": True,
            "fallback_reason": reason,
            "fallback_source": best.path,
        }
        full = _with_rejections(report, loaded, len(paths), info)
        npz.save_dir(out_dir, replace(ps, schema_version=npz.SCHEMA_VERSION), info={"combine": full})
        return full
