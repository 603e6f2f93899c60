"""Combine self-play exports into one memory-mappable training set.

1. Every export is validated; an invalid one is left out and reported with its reasons.
2. Exports are ordered freshest first (metadata ``generation``, then the newest timestamp, then the
   order given). A game (``game_ids``) that appears in more than one export is kept once: from the
   freshest export that has it; repeated ``(game_id, move_number)`` rows inside an export too.
3. Each position's weight = its own ``sample_weights`` x freshness x quality, where freshness is
   ``0.5 ** (age / freshness_half_life)`` with ``age`` = generations behind the newest export, and
   quality down-weights games that ended by the move limit (``truncated_weight``) or in a draw
   (``draw_weight``). Weights are scaled to mean 1 so the learning rate keeps its meaning.
4. The result is written with :func:`npz.save_dir`: ``<key>.npy`` files the trainer memory-maps, and
   ``metadata.json`` listing sources, counts and what was dropped.

:func:`combine_or_fallback` is what the pipeline calls: if combination fails it falls back to the
latest valid export alone (as the original pipeline does) and says so in its report.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tuneloop.selfplay import npz

log = logging.getLogger(__name__)


class CombineError(RuntimeError):
    """The exports cannot be combined (none valid, mixed board configs, ...)."""


@dataclass(frozen=True)
class CombineConfig:
    """How exports are merged.

    Attributes:
        freshness_half_life: generations after which an export's weight halves (> 0; inf = no decay).
        truncated_weight: quality weight of games that hit the move limit.
        draw_weight: quality weight of drawn games.
        source_weights: extra multiplier per export, keyed by file name (e.g. human games x2).
        dedup: drop repeated games (by ``game_ids``) and repeated rows.
        board_config: keep only exports of this board config; None = they must all agree.
        min_weight: positions whose weight falls below this are dropped (0 keeps all).
    """

    freshness_half_life: float = 2.0
    truncated_weight: float = 0.25
    draw_weight: float = 1.0
    source_weights: Mapping[str, float] = field(default_factory=dict)
    dedup: bool = True
    board_config: str | None = None
    min_weight: float = 0.0

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
        return int(ps.metadata.get("generation", 0))
    except (TypeError, ValueError):
        return 0


def _load_sources(paths: Sequence[str]) -> tuple[list[_Source], dict[str, list[str]]]:
    sources, rejected = [], {}
    for order, path in enumerate(paths):
        try:
            ps = npz.load_npz(path)
        except npz.SchemaError as exc:
            rejected[str(path)] = exc.reasons
            continue
        newest = float(np.max(ps.timestamps)) if ps.timestamps is not None else 0.0
        sources.append(_Source(str(path), ps, _generation(ps), newest, order, _sha256(str(path))))
    return sources, rejected


def _freshest_first(sources: list[_Source]) -> list[_Source]:
    return sorted(sources, key=lambda s: (-s.generation, -s.newest, -s.order))


def latest_export(paths: Sequence[str]) -> tuple[str, npz.PositionSet]:
    """The freshest valid export among ``paths`` (by generation, newest timestamp, then list order)."""
    sources, rejected = _load_sources(paths)
    if not sources:
        detail = "; ".join(f"{p}: {r[0]}" for p, r in rejected.items()) or "no paths given"
        raise CombineError(f"npz_paths: no valid export to fall back to ({detail})")
    best = _freshest_first(sources)[0]
    return best.path, best.positions


def combine_exports(
    paths: Sequence[str], out_dir: str | os.PathLike, config: CombineConfig = CombineConfig()
) -> dict[str, Any]:
    """Merge the exports at ``paths`` into the training-set directory ``out_dir``.

    Returns:
        A report: positions/games kept, duplicates dropped, per-source details, rejected files.

    Raises:
        CombineError: no export is valid, or they mix board configs without ``config.board_config``.
    """
    if not paths:
        raise CombineError("npz_paths: empty; pass the exports written by the self-play shards")
    sources, rejected = _load_sources(paths)
    if config.board_config is not None:
        skipped = [s for s in sources if s.positions.board_config != config.board_config]
        for s in skipped:
            rejected[s.path] = [f"board_config {s.positions.board_config!r} is not {config.board_config!r}"]
        sources = [s for s in sources if s.positions.board_config == config.board_config]
    if not sources:
        detail = "; ".join(f"{p}: {r[0]}" for p, r in rejected.items())
        raise CombineError(f"npz_paths: none of the {len(paths)} exports is usable ({detail})")
    boards = sorted({s.positions.board_config for s in sources})
    if len(boards) > 1:
        raise CombineError(
            f"npz_paths: exports mix board configs {boards}; set board_config to train one of them"
        )
    ordered = _freshest_first(sources)
    newest_gen = ordered[0].generation
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
        victory = np.asarray(ps.victory_types)
        quality = np.ones(ps.num_positions, dtype=np.float64)
        quality[victory == npz.VICTORY_TYPES.index("truncated")] = config.truncated_weight
        quality[victory == npz.VICTORY_TYPES.index("draw")] = config.draw_weight
        source_w = float(config.source_weights.get(Path(src.path).name, 1.0))
        weights = ps.weights().astype(np.float64) * freshness * quality * source_w
        low = keep & (weights < config.min_weight) if config.min_weight > 0 else np.zeros_like(keep)
        low_weight += int(np.count_nonzero(low))
        keep &= ~low
        kept = np.flatnonzero(keep)
        if kept.size:
            part = ps.select(kept)
            parts.append(replace(part, sample_weights=weights[kept].astype(np.float32)))
        report_sources.append(
            {
                "path": src.path,
                "sha256": src.sha256,
                "generation": src.generation,
                "positions": ps.num_positions,
                "kept": int(kept.size),
                "freshness": freshness,
                "source_weight": source_w,
            }
        )
    if not parts:
        raise CombineError("npz_paths: every position was dropped (duplicates or weights below min_weight)")
    merged = npz.concat(
        parts,
        metadata={
            "generation": newest_gen,
            "combined_from": [s["path"] for s in report_sources],
        },
    )
    w = merged.weights().astype(np.float64)
    if w.sum() <= 0:
        raise CombineError(
            "every kept position has weight 0; raise truncated_weight/draw_weight/source_weights"
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
        "rejected": rejected,
        "config": {**asdict(config), "source_weights": dict(config.source_weights)},
        "fallback": False,
    }
    npz.save_dir(out_dir, merged, info={"combine": report})
    return report


def combine_or_fallback(
    paths: Sequence[str], out_dir: str | os.PathLike, config: CombineConfig = CombineConfig()
) -> dict[str, Any]:
    """:func:`combine_exports`, or on failure the latest valid export alone, with ``fallback`` set.

    Raises:
        CombineError: not even one export is valid (nothing to train on).
    """
    try:
        return combine_exports(paths, out_dir, config)
    except (CombineError, npz.SchemaError, OSError, ValueError) as exc:
        reason = f"combination failed ({type(exc).__name__}: {exc}); training on the latest export only"
        try:
            path, ps = latest_export(paths)
        except CombineError as inner:
            raise CombineError(f"{reason}, but {inner}") from exc
        if config.board_config is not None and ps.board_config != config.board_config:
            raise CombineError(
                f"{reason}, but the latest export is {ps.board_config!r}, not {config.board_config!r}"
            ) from exc
        log.warning("%s: %s", reason, path)
        report = {
            "board_config": ps.board_config,
            "num_positions": ps.num_positions,
            "num_games": ps.num_games,
            "generation": _generation(ps),
            "sources": [
                {
                    "path": path,
                    "sha256": _sha256(path),
                    "positions": ps.num_positions,
                    "kept": ps.num_positions,
                }
            ],
            "fallback": True,
            "fallback_reason": reason,
            "fallback_source": path,
        }
        npz.save_dir(out_dir, ps, info={"combine": report})
        return report
