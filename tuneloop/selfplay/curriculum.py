"""Curriculum across board configs and the self-play rate's momentum, kept in the registry.

One ``selfplay-training`` run trains one net per board config (side by side). After each config's
gauntlet, :func:`record_result` appends the candidate's Elo (the gauntlet's Bradley-Terry rating,
random = 0) to that config's series in ``<registry>/<model_name>/curriculum.json`` (compare-and-set,
so configs finishing together do not lose each other's points) and recomputes the plan of the next
run from all series, a pure function of them (:func:`next_plan`):

* **curriculum**: a config whose Elo rose by less than ``stall_elo`` over its last run has stalled; its
  weight is multiplied by ``stall_boost`` and the weights are renormalised, every config keeping a
  share in ``[min_share, max_share]`` (stalled configs get more games);
* **momentum**: the game budget follows the Elo trend over the configs: when the mean gain of the last
  run exceeds the one before and is positive (Elo accelerates) the budget is multiplied by
  ``speed_up`` (x1.5), when it is negative (Elo regresses) by ``slow_down`` (x0.75), else it holds;
  it stays within ``[min_games, max_games]`` (default: a quarter to four times ``total_games``).

The next scheduled run's first task reads the record (:func:`plan_for_run`) and plays with those
weights and that budget, without a person, as long as the run's own parameters (configs, weights,
``total_games``) are the ones the record started from; changed parameters start over from them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuneloop import storage
from tuneloop.config import setting

CURRICULUM_FILE = "curriculum.json"
RECORD_VERSION = 1
_MAX_CAS_TRIES = 50


@dataclass(frozen=True)
class CurriculumSettings:
    """How the weights across board configs are rebalanced (``settings.curriculum``)."""

    stall_elo: float = setting(25.0, help="Elo gained over the last run below which a config has stalled")
    stall_boost: float = setting(1.5, help="weight multiplier of a stalled config before renormalising")
    min_share: float = setting(0.05, help="every config keeps at least this share of the games")
    max_share: float = setting(0.9, help="no config takes more than this share of the games")
    history: int = setting(50, help="Elo points kept per config in the registry record")

    def __post_init__(self) -> None:
        if not (self.stall_boost >= 1 and math.isfinite(self.stall_boost)):
            raise ValueError(f"stall_boost: {self.stall_boost} must be a finite number >= 1 (e.g. 1.5)")
        if not math.isfinite(self.stall_elo):
            raise ValueError(f"stall_elo: {self.stall_elo} must be finite (Elo points, e.g. 25)")
        if not 0 <= self.min_share <= self.max_share <= 1:
            raise ValueError(
                f"min_share ({self.min_share}) and max_share ({self.max_share}) must satisfy 0 <= min <= max <= 1"
            )
        if self.history < 3:
            raise ValueError(f"history: {self.history} must be >= 3 (the trend needs three points)")


@dataclass(frozen=True)
class MomentumSettings:
    """How the next run's game budget follows the Elo trend (``settings.momentum``)."""

    speed_up: float = setting(1.5, help="budget multiplier when Elo accelerates")
    slow_down: float = setting(0.75, help="budget multiplier when Elo regresses")
    min_games: int | None = setting(None, help="smallest budget (None = total_games // 4)")
    max_games: int | None = setting(None, help="largest budget (None = 4 x total_games)")

    def __post_init__(self) -> None:
        if not (self.speed_up >= 1 and math.isfinite(self.speed_up)):
            raise ValueError(f"speed_up: {self.speed_up} must be a finite number >= 1 (e.g. 1.5)")
        if not 0 < self.slow_down <= 1:
            raise ValueError(f"slow_down: {self.slow_down} must lie in (0, 1] (e.g. 0.75)")
        for name in ("min_games", "max_games"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name}: {v} must be >= 1 or None")
        if self.min_games is not None and self.max_games is not None and self.min_games > self.max_games:
            raise ValueError(f"min_games ({self.min_games}) must not exceed max_games ({self.max_games})")

    def bounds(self, base_total: int) -> tuple[int, int]:
        """``(lowest, highest)`` budget for a run whose ``total_games`` parameter is ``base_total``."""
        lo = self.min_games if self.min_games is not None else max(1, base_total // 4)
        hi = self.max_games if self.max_games is not None else max(lo, 4 * base_total)
        return lo, hi


@dataclass(frozen=True)
class RunPlan:
    """The weights and game budget a run plays with, and where they came from."""

    weights: dict[str, float]
    total_games: int
    base_weights: dict[str, float]
    base_total_games: int
    source: str  # "parameters" | "registry"
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": dict(self.weights),
            "total_games": self.total_games,
            "base_weights": dict(self.base_weights),
            "base_total_games": self.base_total_games,
            "source": self.source,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunPlan:
        return cls(
            weights={k: float(v) for k, v in d["weights"].items()},
            total_games=int(d["total_games"]),
            base_weights={k: float(v) for k, v in d["base_weights"].items()},
            base_total_games=int(d["base_total_games"]),
            source=str(d["source"]),
            reason=str(d["reason"]),
        )


def normalise(weights: Mapping[str, float]) -> dict[str, float]:
    """Weights scaled to sum to 1 (sorted by name)."""
    total = float(sum(weights.values()))
    return {k: float(weights[k]) / total for k in sorted(weights)}


def clip_shares(shares: Mapping[str, float], lo: float, hi: float) -> dict[str, float]:
    """Shares summing to 1 with every one in ``[lo, hi]``, moving as little as possible (water-filling)."""
    names = sorted(shares)
    k = len(names)
    lo, hi = min(lo, 1.0 / k), max(hi, 1.0 / k)
    fixed: dict[str, float] = {}
    free = {n: max(float(shares[n]), 0.0) for n in names}
    for _ in range(k + 1):
        room = 1.0 - sum(fixed.values())
        total = sum(free.values())
        scaled = {n: (v / total * room if total > 0 else room / len(free)) for n, v in free.items()} if free else {}
        low = {n for n, v in scaled.items() if v < lo - 1e-12}
        high = {n for n, v in scaled.items() if v > hi + 1e-12}
        if not low and not high:
            return {n: fixed.get(n, scaled.get(n, 0.0)) for n in names}
        for n in low:
            fixed[n] = lo
            free.pop(n)
        for n in high:
            fixed[n] = hi
            free.pop(n)
        if not free:
            return normalise({n: fixed[n] for n in names})
    return normalise({n: fixed.get(n, free.get(n, 0.0)) for n in names})  # pragma: no cover


def gains(series: list[float]) -> tuple[float | None, float | None]:
    """``(last gain, the gain before)`` of an Elo series (None where there are too few points)."""
    last = series[-1] - series[-2] if len(series) >= 2 else None
    before = series[-2] - series[-3] if len(series) >= 3 else None
    return last, before


def elo_trend(series: Mapping[str, list[float]]) -> tuple[str, float | None]:
    """``(trend, mean last gain)``: ``accelerating``, ``regressing``, ``steady`` or ``unknown``."""
    last = {c: gains(s)[0] for c, s in series.items()}
    last = {c: g for c, g in last.items() if g is not None}
    if not last:
        return "unknown", None
    mean_last = sum(last.values()) / len(last)
    if mean_last < 0:
        return "regressing", mean_last
    both = {c: gains(s) for c, s in series.items() if gains(s)[1] is not None}
    if both:
        now = sum(g[0] for g in both.values()) / len(both)
        before = sum(g[1] for g in both.values()) / len(both)
        if now > before and now > 0:
            return "accelerating", mean_last
    return "steady", mean_last


def next_plan(
    series: Mapping[str, list[float]],
    run: RunPlan,
    curriculum: CurriculumSettings,
    momentum: MomentumSettings,
) -> dict[str, Any]:
    """The next run's weights and budget from the Elo series of every config (pure).

    Args:
        series: ``{config: [elo of each run, oldest first]}``.
        run: what the run that just played used (its weights and budget, and the parameters).
        curriculum: rebalancing settings.
        momentum: budget settings.

    Returns:
        ``{"weights", "total_games", "trend", "mean_gain", "factor", "stalled", "reason"}``.
    """
    stalled = sorted(
        c for c, s in series.items() if c in run.weights and gains(s)[0] is not None and gains(s)[0] < curriculum.stall_elo
    )
    raw = {c: w * (curriculum.stall_boost if c in stalled else 1.0) for c, w in run.weights.items()}
    weights = clip_shares(normalise(raw), curriculum.min_share, curriculum.max_share)
    trend, mean_gain = elo_trend({c: s for c, s in series.items() if c in run.weights})
    factor = {"accelerating": momentum.speed_up, "regressing": momentum.slow_down}.get(trend, 1.0)
    lo, hi = momentum.bounds(run.base_total_games)
    total = int(min(hi, max(lo, round(run.total_games * factor))))
    gain_text = "n/a" if mean_gain is None else f"{mean_gain:+.1f}"
    reason = (
        f"Elo {trend} (mean gain over the last run {gain_text}): {run.total_games} x {factor:g} -> {total} games "
        f"(bounds {lo}..{hi}); stalled (gain < {curriculum.stall_elo:g}): {stalled or 'none'}"
    )
    return {
        "weights": weights,
        "total_games": total,
        "trend": trend,
        "mean_gain": mean_gain,
        "factor": factor,
        "stalled": stalled,
        "reason": reason,
    }


def _same_base(doc: Mapping[str, Any], weights: Mapping[str, float], total_games: int) -> bool:
    base = doc.get("base") or {}
    old = base.get("weights") or {}
    if sorted(old) != sorted(weights) or int(base.get("total_games", -1)) != int(total_games):
        return False
    new = normalise(weights)
    return all(abs(float(old[k]) - new[k]) < 1e-9 for k in new)


def record_uri(registry_base: str) -> str:
    """Where a model's curriculum record lives (``<registry>/<model_name>/curriculum.json``)."""
    return storage.join(registry_base, CURRICULUM_FILE)


def read_record(registry_base: str) -> dict[str, Any] | None:
    """The curriculum record, or None before the first gauntlet."""
    value, _ = storage.read_json(record_uri(registry_base))
    return value


def plan_for_run(
    registry_base: str, weights: Mapping[str, float], total_games: int, *, adaptive: bool = True
) -> RunPlan:
    """The weights and budget this run plays with: the record's, when it applies, else the parameters'.

    Args:
        registry_base: the family model's registry folder (``FileRegistry.base``).
        weights: the run's ``board_configs`` weights (the parameters).
        total_games: the run's ``total_games`` parameter.
        adaptive: False = the parameters as given.
    """
    base = normalise(weights)
    params = RunPlan(base, int(total_games), base, int(total_games), "parameters", "")
    if not adaptive:
        return _with_reason(params, "adaptive=False: the parameters as given")
    doc = read_record(registry_base)
    if not doc or not doc.get("next"):
        return _with_reason(params, "no curriculum record yet (first run): the parameters as given")
    if not _same_base(doc, weights, total_games):
        return _with_reason(
            params,
            f"the parameters (weights {base}, total_games={total_games}) differ from the ones the record started "
            f"from ({doc.get('base')}): starting over from the parameters",
        )
    nxt = doc["next"]
    return RunPlan(
        weights=normalise({k: float(v) for k, v in nxt["weights"].items()}),
        total_games=int(nxt["total_games"]),
        base_weights=base,
        base_total_games=int(total_games),
        source="registry",
        reason=f"from the registry record after run {nxt.get('after_run')!r}: {nxt.get('reason')}",
    )


def _with_reason(plan: RunPlan, reason: str) -> RunPlan:
    return RunPlan(plan.weights, plan.total_games, plan.base_weights, plan.base_total_games, plan.source, reason)


def record_result(
    registry_base: str,
    *,
    model_name: str,
    run_name: str,
    config_name: str,
    elo: float,
    generation: int | None,
    blessed: bool,
    promoted_version: str | None,
    run: RunPlan,
    curriculum: CurriculumSettings,
    momentum: MomentumSettings,
    at: str,
) -> dict[str, Any]:
    """Add one config's gauntlet result to the record and recompute the next run's plan (compare-and-set).

    A retried task replaces its own point (same run and config) instead of adding one.

    Returns:
        The record's new ``next`` plan.
    """
    uri = record_uri(registry_base)
    for _ in range(_MAX_CAS_TRIES):
        doc, generation_token = storage.read_json(uri)
        doc = dict(doc or {})
        doc.setdefault("record_version", RECORD_VERSION)
        doc["model_name"] = model_name
        doc["base"] = {"weights": dict(run.base_weights), "total_games": run.base_total_games}
        elo_by_config: dict[str, list[dict[str, Any]]] = {k: list(v) for k, v in (doc.get("elo") or {}).items()}
        points = [p for p in elo_by_config.get(config_name, []) if p.get("run") != run_name]
        points.append(
            {
                "run": run_name,
                "elo": float(elo),
                "generation": generation,
                "blessed": bool(blessed),
                "promoted_version": promoted_version,
                "games_planned": int(round(run.total_games * run.weights.get(config_name, 0.0))),
                "at": at,
            }
        )
        elo_by_config[config_name] = points[-curriculum.history :]
        doc["elo"] = elo_by_config
        series = {c: [float(p["elo"]) for p in pts] for c, pts in elo_by_config.items()}
        nxt = next_plan(series, run, curriculum, momentum)
        nxt = {**nxt, "after_run": run_name, "at": at, "run_weights": dict(run.weights), "run_total_games": run.total_games}
        doc["next"] = nxt
        history = [h for h in doc.get("history") or [] if not (h.get("after_run") == run_name and h.get("config_name") == config_name)]
        history.append({**nxt, "config_name": config_name})
        doc["history"] = history[-curriculum.history * max(1, len(run.weights)) :]
        try:
            storage.write_json(uri, doc, if_generation=generation_token)
            return nxt
        except storage.ConflictError:
            continue  # another config of this run wrote first: read again and add this point to theirs
    raise storage.ConflictError(f"{uri}: could not record {config_name}'s result after {_MAX_CAS_TRIES} tries")
