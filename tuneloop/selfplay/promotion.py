"""Promotion of a self-play candidate: one pure decision function, then the registry's alias CAS.

The thresholds are the original system's: the candidate must score >= 85% against random, >= 60%
against the heuristic (rollout MCTS), and must not regress against the previous best (score at least
``min_vs_best``, 45% by default: equal nets score ~50%, so this tolerates noise but not a real drop).
The first generation has no previous best; the decision says so and judges the other two pairings.
The decision fails closed: no thresholds, or a pairing missing from the results, is not blessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tuneloop.config import from_mapping, setting
from tuneloop.selfplay.gauntlet import (
    HEURISTIC,
    MIN_VS_BEST,
    MIN_VS_HEURISTIC,
    MIN_VS_RANDOM,
    PREVIOUS_BEST,
    RANDOM,
)


@dataclass(frozen=True)
class PromotionThresholds:
    """Minimum gauntlet scores for a blessing (also the gauntlet's early-stopping targets).

    Attributes:
        min_vs_random: minimum score against the random player.
        min_vs_heuristic: minimum score against rollout MCTS.
        min_vs_best: minimum score against the previous best ("no regression").
        min_games: a pairing with fewer games is not trusted (not blessed).
    """

    min_vs_random: float = setting(MIN_VS_RANDOM, help="minimum gauntlet score against the random player")
    min_vs_heuristic: float = setting(MIN_VS_HEURISTIC, help="minimum gauntlet score against rollout MCTS")
    min_vs_best: float = setting(MIN_VS_BEST, help="minimum score against the champion (no regression)")
    min_games: int = setting(1, help="a pairing with fewer games is not trusted (not blessed)")

    def __post_init__(self) -> None:
        for name in ("min_vs_random", "min_vs_heuristic", "min_vs_best"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"{name}: {v} must be a score in [0, 1] (e.g. 0.85)")
        if self.min_games < 1:
            raise ValueError(f"min_games: {self.min_games} must be >= 1")

    @property
    def targets(self) -> tuple[float, float, float]:
        """The gauntlet's early-stopping targets: ``(random, heuristic, previous best)``."""
        return (self.min_vs_random, self.min_vs_heuristic, self.min_vs_best)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PromotionThresholds:
        """Thresholds from a plain dict (pipeline parameter): :func:`tuneloop.config.from_mapping`."""
        return from_mapping(cls, d, what="thresholds")


def decide_promotion(
    results: Mapping[str, Any], thresholds: PromotionThresholds | Mapping[str, Any] | None
) -> dict[str, Any]:
    """Bless or not, from gauntlet results. Pure: same input, same verdict.

    Args:
        results: the dict :func:`tuneloop.selfplay.gauntlet.run_gauntlet` returns (``pairings``,
            ``first_generation``); ``previous_best`` may carry the champion version it played.
        thresholds: :class:`PromotionThresholds`, its dict form, or None (= not blessed).

    Returns:
        ``{"blessed", "reason", "first_generation", "checks": [{pairing, score, threshold, games,
        ci_low, ci_high, passed}], "champion_version"}``; ``reason`` names every number compared.
    """
    first = bool(results.get("first_generation", False))
    champion_version = results.get("previous_best_version")
    base = {"first_generation": first, "champion_version": champion_version, "checks": []}
    if thresholds is None:
        return {**base, "blessed": False, "reason": "not blessed: no thresholds configured (fail closed)"}
    th = (
        thresholds
        if isinstance(thresholds, PromotionThresholds)
        else PromotionThresholds.from_dict(thresholds)
    )
    pairings = results.get("pairings") or {}
    wanted = [(RANDOM, th.min_vs_random), (HEURISTIC, th.min_vs_heuristic)]
    if not first:
        wanted.append((PREVIOUS_BEST, th.min_vs_best))
    checks, failures = [], []
    for name, bound in wanted:
        p = pairings.get(name)
        if p is None:
            checks.append({"pairing": name, "threshold": bound, "passed": False, "missing": True})
            failures.append(f"no {name} pairing in the results")
            continue
        games = int(p["games"])
        score = float(p["win_rate"])
        passed = score >= bound and games >= th.min_games
        checks.append(
            {
                "pairing": name,
                "score": score,
                "threshold": bound,
                "games": games,
                "ci_low": p.get("ci_low"),
                "ci_high": p.get("ci_high"),
                "passed": passed,
            }
        )
        if games < th.min_games:
            failures.append(f"{name}: only {games} games (< {th.min_games})")
        elif score < bound:
            what = (
                "regressed against the previous best" if name == PREVIOUS_BEST else f"too weak against {name}"
            )
            failures.append(f"{what}: {score:.3f} < {bound:.2f} over {games} games")
    summary = ", ".join(
        f"{c['pairing']} {c.get('score', float('nan')):.3f} (>= {c['threshold']:.2f})" for c in checks
    )
    prefix = "first generation (no previous best to compare); " if first else ""
    if failures:
        return {
            **base,
            "checks": checks,
            "blessed": False,
            "reason": f"not blessed: {prefix}" + "; ".join(failures),
        }
    return {
        **base,
        "checks": checks,
        "blessed": True,
        "reason": f"blessed: {prefix}{summary}",
        "thresholds": asdict(th),
    }


def selfplay_registry(registry_uri: str, model_name: str):
    """The registry of a self-play model, opened with :func:`tuneloop.registry.open_registry`.

    Self-play needs a champion alias moved by a real compare-and-set and a place for its curriculum
    state (:mod:`tuneloop.selfplay.curriculum`): the file/GCS registry has both.

    Raises:
        ConfigError: an empty or malformed URI, or a ``vertex://`` one (the message says why and what to use).
    """
    from tuneloop.config import ConfigError
    from tuneloop.registry import FileRegistry, open_registry

    if not isinstance(registry_uri, str) or not registry_uri.strip():
        raise ConfigError("registry_uri is empty; pass a directory or gs:// prefix for the model registry")
    refusal = (
        f"registry_uri={registry_uri!r}: self-play cannot use Vertex AI Model Registry: it moves the champion "
        "alias by compare-and-set (Vertex aliases have none, and parallel board configs promote at once) and "
        "keeps its curriculum state next to the model. Pass a gs://BUCKET/PREFIX (or a directory) for the "
        "file registry; tune-and-promote can still use vertex://"
    )
    try:
        registry = open_registry(registry_uri, model_name)
    except ValueError as exc:
        raise ConfigError(f"registry_uri={registry_uri!r} / model_name={model_name!r}: {exc}") from exc
    except ImportError as exc:  # the Vertex client is not installed: the answer is the same
        raise ConfigError(refusal) from exc
    if not isinstance(registry, FileRegistry):
        raise ConfigError(refusal)
    return registry


def promote(
    *,
    registry_root: str,
    model_name: str,
    model_dir: str,
    results: Mapping[str, Any],
    decision: Mapping[str, Any],
    data_hash: str,
    example_ids: Sequence[str] = (),
    config: Mapping[str, Any] | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Register a blessed candidate and move ``champion`` to it by compare-and-set.

    The compare-and-set expects the champion the candidate was evaluated against
    (``decision["champion_version"]``; None for the first generation). Not blessed is a recorded no-op.

    Raises:
        ChampionMoved: the champion changed since the gauntlet ran (the version stays registered).
    """
    from tuneloop.registry import ChampionMoved

    registry = selfplay_registry(registry_root, model_name)
    before = registry.champion()
    out: dict[str, Any] = {
        "blessed": bool(decision.get("blessed")),
        "reason": decision.get("reason", ""),
        "first_generation": bool(decision.get("first_generation")),
        "champion_before": before.version if before else None,
        "registered_version": None,
        "promoted_version": None,
    }
    if not decision.get("blessed"):
        out["champion_after"] = out["champion_before"]
        return out
    metrics = {
        f"win_rate_vs_{name}": p["win_rate"] for name, p in (results.get("pairings") or {}).items()
    } | {f"elo_{k}": v for k, v in (results.get("elo") or {}).items()}
    record = registry.register(
        provider="selfplay",
        model_ref=model_dir,
        model_dir=model_dir,
        metrics=metrics,
        data_hash=data_hash,
        example_ids=list(example_ids),
        config=dict(config or {}),
        blessing=dict(decision),
        lineage={**dict(lineage or {}), "gauntlet": {"config_name": results.get("config_name")}},
    )
    out["registered_version"] = record.version
    try:
        registry.set_champion(
            record.version, expected=decision.get("champion_version"), reason=str(decision.get("reason"))
        )
    except ChampionMoved as exc:
        exc.registered_version = record.version  # registered, not promoted: the caller's summary says so
        raise
    out["promoted_version"] = record.version
    out["champion_after"] = record.version
    return out
