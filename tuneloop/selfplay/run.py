"""The ``selfplay-training`` run: what its components call, around the stages of :mod:`stages`.

* :func:`check_run` (the first task) parses every setting once (:mod:`settings`), checks the board
  configs, the registry and each config's champion, reads the curriculum record
  (:mod:`curriculum`) and plans the run: the weights and game budget, one item per board config
  (its model, champion and self-play shards) for the ``ParallelFor``, and the :class:`RunConfig`
  JSON every later task receives.
* :func:`combine_for_run` combines a config's exports with those its earlier runs kept under
  ``data_root`` (a damaged file in that history is skipped and listed, never fatal).
* :func:`gauntlet_for_run` plays the gauntlet with the run's bars as its early-stopping targets.
* :func:`promote_and_report` decides, promotes, records the gauntlet in the curriculum record and
  writes the summary; :func:`record_skip_for_run` records a config that had too few games.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tuneloop.config import ConfigError, close_match
from tuneloop.selfplay import curriculum, npz, stages
from tuneloop.selfplay.games import BOARD_CONFIGS
from tuneloop.selfplay.promotion import selfplay_registry
from tuneloop.selfplay.settings import RunConfig, SelfplaySettings, parse_settings

log = logging.getLogger(__name__)

EXPORTS_DIR = "exports"
RUN_MANIFEST = "run.json"


def config_model_name(model_name: str, config_name: str, *, per_config: bool) -> str:
    """The registry model of one board config: ``model_name`` itself, or ``<model_name>-<config>``."""
    return f"{model_name}-{config_name}" if per_config else model_name


def summary_name(run_name: str, config_name: str, run_config: RunConfig) -> str:
    """The folder of a config's ``summary.json`` under ``reports_uri``: per config when several train."""
    return f"{run_name}--{config_name}" if run_config.multi else run_name


def _curriculum_weights(board_config: str, board_configs: Mapping[str, Any] | None) -> dict[str, float]:
    if not board_configs:
        if board_config not in BOARD_CONFIGS:
            near = close_match(board_config, BOARD_CONFIGS)
            hint = f" (did you mean {near!r}?)" if near else ""
            raise ConfigError(
                f"board_config={board_config!r} is invalid: not a board config{hint}; use one of {sorted(BOARD_CONFIGS)}"
            )
        return {board_config: 1.0}
    if not isinstance(board_configs, Mapping):
        raise ConfigError(
            f"board_configs={board_configs!r} must be an object of weights, e.g. {{'hex8_2p': 2, 'connect_four_2p': 1}}"
        )
    weights = {}
    for name, w in board_configs.items():
        if name not in BOARD_CONFIGS:
            near = close_match(str(name), BOARD_CONFIGS)
            hint = f" (did you mean {near!r}?)" if near else ""
            raise ConfigError(f"board_configs: {name!r} is not a board config{hint}; use some of {sorted(BOARD_CONFIGS)}")
        if isinstance(w, bool) or not isinstance(w, int | float) or not (math.isfinite(w) and w >= 0):
            raise ConfigError(f"board_configs[{name!r}]={w!r} must be a weight: a finite number >= 0")
        weights[str(name)] = float(w)
    if not any(w > 0 for w in weights.values()):
        raise ConfigError(f"board_configs={dict(board_configs)!r}: every weight is 0; give one config a positive weight")
    return {k: v for k, v in weights.items() if v > 0}


def _run_seed(seed: int, run_name: str) -> int:
    """The run's base seed: ``seed`` mixed with the run's name, so scheduled runs play new games."""
    if not run_name:
        return int(seed)
    digest = hashlib.blake2b(f"{int(seed)}|{run_name}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def check_run(
    *,
    registry_uri: str,
    model_name: str,
    board_config: str,
    board_configs: Mapping[str, Any] | None,
    total_games: int,
    num_shards: int,
    seed: int,
    min_vs_random: float,
    min_vs_heuristic: float,
    min_vs_best: float,
    freshness_half_life: float,
    settings: Mapping[str, Any] | None,
    adaptive: bool = True,
    run_name: str = "",
    gpu: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The first task: parse and check everything, read the champions and the curriculum, plan the run.

    Args:
        registry_uri: file/GCS registry root (``vertex://`` is refused with the reason).
        model_name: the registry model (one board config), or the family of per-config models.
        board_config: the board config when ``board_configs`` is empty.
        board_configs: ``{config: weight}``: one net per config (``<model_name>-<config>``).
        total_games: the game budget of the run (the curriculum record may have moved it).
        num_shards: most self-play tasks over all configs.
        seed: base seed (mixed with ``run_name``).
        min_vs_random, min_vs_heuristic, min_vs_best: the promotion bars (and the early-stop targets).
        freshness_half_life: the combine's freshness half-life.
        settings: the other settings, by section (:class:`SelfplaySettings`).
        adaptive: play with the curriculum record's weights and budget when it applies.
        run_name: the pipeline run's name.
        gpu: the training task's ``accelerator_type``, ``accelerator_count``, ``cpu_limit``,
            ``memory_limit`` (checked against what Vertex accepts).

    Returns:
        ``{"run_config": JSON str, "configs": [item per config], "plan": {...}}``; an item is
        ``{"config_name", "model_name", "games", "champion_version", "champion_dir", "generation", "shards",
        "run_config", "run_name"}`` (each item carries the run config and the run's name: the ParallelFor
        hands its fields on).

    Raises:
        ConfigError: any bad parameter or setting (named, with the fix), before any game is played.
    """
    if gpu:
        from tuneloop.gpu import GpuSettingsError, check_gpu_settings

        try:
            check_gpu_settings(**gpu)
        except GpuSettingsError as exc:
            raise ConfigError(str(exc)) from exc
    weights = _curriculum_weights(board_config, board_configs)
    per_config = bool(board_configs)
    for name, value in (("total_games", total_games), ("num_shards", num_shards)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r} must be a whole number >= 1")
    parsed: SelfplaySettings = parse_settings(
        settings,
        parameters={
            ("thresholds", "min_vs_random"): min_vs_random,
            ("thresholds", "min_vs_heuristic"): min_vs_heuristic,
            ("thresholds", "min_vs_best"): min_vs_best,
            ("combine", "freshness_half_life"): freshness_half_life,
        },
    )
    for name in ("min_vs_random", "min_vs_heuristic", "min_vs_best"):
        bar = getattr(parsed.thresholds, name)
        if not 0 < bar < 1:  # [0, 1] passed the thresholds; the gauntlet's early stop needs a target inside
            raise ConfigError(
                f"{name}={bar}: the gauntlet also stops a pairing early once its score is clearly above or below "
                "this bar, so it must lie strictly between 0 and 1; for 'any score passes' use 0.01"
            )
    cur = parsed.curriculum
    if len(weights) * cur.min_share > 1 + 1e-9:
        raise ConfigError(
            f"settings.curriculum.min_share={cur.min_share}: {len(weights)} board configs cannot each keep that share; "
            f"use at most {1 / len(weights):.3f}"
        )
    family = selfplay_registry(registry_uri, model_name)
    items = []
    champions = {}
    for name in sorted(weights):
        m = config_model_name(model_name, name, per_config=per_config)
        rec = selfplay_registry(registry_uri, m).champion()
        if rec is not None:
            plays = (rec.config or {}).get("board_config")
            if plays and plays != name:
                raise ConfigError(
                    f"board_config={name!r}, but the champion {rec.version} of {m!r} plays {plays!r}; use one "
                    "model_name per board config"
                )
        champions[name] = (m, rec)
    plan = curriculum.plan_for_run(family.base, weights, total_games, adaptive=adaptive)
    shards = stages.plan_shards(plan.weights, plan.total_games, num_shards, seed=_run_seed(seed, run_name))
    for name in sorted(weights):
        m, rec = champions[name]
        generation = int((rec.config or {}).get("generation") or 0) if rec is not None else 0
        model_dir = (rec.model_uri or "") if rec is not None else ""
        mine = [
            {**s, "generation": generation, "model_dir": model_dir} for s in shards if s["config_name"] == name
        ]
        if not mine:
            continue  # no game for this config this run (its share rounds to 0)
        items.append(
            {
                "config_name": name,
                "model_name": m,
                "games": sum(s["games"] for s in mine),
                "champion_version": rec.version if rec is not None else "",
                "champion_dir": model_dir,
                "generation": generation,
                "shards": mine,
            }
        )
    run_config = RunConfig(model_name=model_name, configs=tuple(sorted(weights)), settings=parsed, plan=plan).to_json()
    return {
        "run_config": run_config,
        "configs": [{**item, "run_config": run_config, "run_name": run_name} for item in items],
        "plan": plan.to_dict(),
    }


# -- export history: the games of earlier runs feed this run's training set ------------------------
def archive_exports(npz_paths: Sequence[str], data_root: str, run_name: str, *, board_config: str = "") -> str:
    """Keep this run's exports under ``<data_root>/exports/<run_name>[--<board_config>]/`` for later runs.

    The folder's ``run.json`` (run, board config, exports) is written last; a retried task rewrites
    the same files.

    Returns:
        The run's export folder URI.

    Raises:
        ValueError: an empty ``run_name`` or one with a ``/``.
    """
    from tuneloop import storage
    from tuneloop.examples import utc_now

    if not run_name or "/" in run_name:
        raise ValueError(f"run_name={run_name!r} must be a non-empty name without '/'")
    folder = storage.join(data_root, EXPORTS_DIR, f"{run_name}--{board_config}" if board_config else run_name)
    names = []
    for i, path in enumerate(npz_paths):
        name = f"shard-{i:04d}.npz"
        storage.write(storage.join(folder, name), Path(path).read_bytes(), if_generation="*")
        names.append(name)
    manifest = {"run": run_name, "board_config": board_config or None, "created_at": utc_now(), "exports": names}
    storage.write_json(storage.join(folder, RUN_MANIFEST), manifest, if_generation="*")
    return folder


def earlier_exports(
    data_root: str, history_runs: int, *, exclude_run: str = "", board_config: str = "", notes: list[str] | None = None
) -> list[str]:
    """Local paths of the exports of the ``history_runs`` most recent earlier runs under ``data_root``.

    A run's folder counts only once its ``run.json`` is written (an archive cut short is ignored); a
    folder of another board config is passed over; an unreadable ``run.json`` or folder is skipped and
    described in ``notes``, never fatal.
    """
    from tuneloop import storage

    if history_runs < 0:
        raise ValueError(f"history_runs: {history_runs} must be >= 0")
    notes = notes if notes is not None else []
    if not data_root or history_runs == 0:
        return []
    runs = []
    for folder in storage.list_prefix(storage.join(data_root, EXPORTS_DIR)):
        try:
            blob = storage.read(storage.join(folder, RUN_MANIFEST))
            if blob is None:
                continue
            manifest = json.loads(blob.data)
            if not isinstance(manifest, dict) or not isinstance(manifest.get("exports", []), list):
                raise ValueError("not an object with an exports list")
        except Exception as exc:  # noqa: BLE001 - a damaged archive must not stop later runs
            notes.append(f"{folder}: {RUN_MANIFEST} is unreadable ({type(exc).__name__}: {exc}); skipped")
            continue
        run = str(manifest.get("run") or folder.rstrip("/").rsplit("/", 1)[-1])
        if exclude_run and (run == exclude_run or folder.rstrip("/").rsplit("/", 1)[-1] == exclude_run):
            continue
        if board_config and manifest.get("board_config") not in (None, board_config):
            continue
        names = [str(n) for n in manifest.get("exports", []) if isinstance(n, str) and "/" not in n]
        runs.append((str(manifest.get("created_at", "")), folder, names))
    paths = []
    for _, folder, names in sorted(runs, reverse=True)[:history_runs]:
        try:
            local = stages.local_dir(folder) or folder
        except Exception as exc:  # noqa: BLE001
            notes.append(f"{folder}: cannot be fetched ({type(exc).__name__}: {exc}); skipped")
            continue
        paths += [str(Path(local) / n) for n in names]
    return paths


def combine_for_run(
    npz_paths: Sequence[str],
    out_dir: str,
    *,
    run_config: str,
    board_config: str,
    data_root: str = "",
    run_name: str = "",
    history_runs: int = 3,
) -> dict[str, Any]:
    """Combine this run's exports of ``board_config`` with those of up to ``history_runs`` earlier runs.

    With a ``data_root``, this run's exports are archived there first, so the next run finds them:
    games accumulate across runs (the ``min_games`` gate counts them all) and older generations weigh
    less. Bad exports (this run's or the history's) are skipped and listed under ``rejected``.
    """
    rc = RunConfig.from_json(run_config)
    notes: list[str] = []
    earlier = earlier_exports(
        data_root, history_runs, exclude_run=run_name, board_config=board_config, notes=notes
    )
    if data_root:
        archive_exports(npz_paths, data_root, run_name, board_config=board_config if rc.multi else "")
    return stages.combine(
        [*npz_paths, *earlier],
        out_dir,
        board_config=board_config,
        config=rc.settings.combine,
        limits=rc.settings.validator,
        info={"earlier_exports": len(earlier), "history_notes": notes},
    )


# -- gauntlet, promotion, skip ---------------------------------------------------------------------
def gauntlet_for_run(
    model_dir: str,
    config_name: str,
    previous_best_dir: str | None,
    *,
    run_config: str,
    previous_best_version: str | None = None,
    games: int = 100,
    candidate_simulations: int = 32,
    heuristic_simulations: int = 50,
    seed: int = 0,
    out_json: str | None = None,
) -> dict[str, Any]:
    """:func:`stages.gauntlet` with the run's settings: its bars are the early stop's targets."""
    rc = RunConfig.from_json(run_config)
    g = rc.settings.gauntlet
    return stages.gauntlet(
        model_dir,
        config_name,
        stages.local_dir(previous_best_dir),
        games=games,
        min_games=g.min_games,
        candidate_simulations=candidate_simulations,
        heuristic_simulations=heuristic_simulations,
        seed=seed,
        previous_best_version=previous_best_version,
        targets=rc.settings.thresholds.targets,
        opening_plies=g.opening_plies,
        max_moves=g.max_moves,
        wave=g.wave,
        heuristic_uct_c=g.heuristic_uct_c,
        sprt_delta=g.sprt_delta,
        sprt_alpha=g.sprt_alpha,
        sprt_beta=g.sprt_beta,
        out_json=out_json,
    )


def training_set_summary(combined_dir: str) -> dict[str, Any]:
    """What a summary says about the training set: counts, fallback, and every rejected export."""
    info = npz.read_dir_info(combined_dir).get("combine", {})
    rejected = info.get("rejected") or {}
    return {
        **{k: info.get(k) for k in ("num_games", "num_positions", "generation", "fallback")},
        "fallback_reason": info.get("fallback_reason"),
        "exports_given": info.get("exports_given"),
        "rejected_count": len(rejected),
        "rejected": [{"path": p, "reasons": list(r)[:5]} for p, r in sorted(rejected.items())],
        "warnings": {p: list(w)[:5] for p, w in sorted((info.get("warnings") or {}).items())},
        "earlier_exports": info.get("earlier_exports"),
        "history_notes": list(info.get("history_notes") or []),
    }


def promote_and_report(
    *,
    results_path: str,
    model_dir: str,
    combined_dir: str,
    run_config: str,
    config_name: str,
    model_name: str,
    registry_root: str,
    run_name: str,
    reports_uri: str,
    summary_path: str,
    report_path: str = "",
) -> dict[str, Any]:
    """Decide with the run's bars, :func:`stages.promote` when blessed, record the curriculum, summarise.

    The summary (always written) names the training set's rejected exports, the decision, the
    promoted version and the next run's curriculum plan. The gauntlet report (HTML) goes to
    ``report_path`` and next to the summary under ``reports_uri`` (written after the summary, so a
    report that fails to render loses no record).

    Raises:
        ChampionMoved: another run moved the champion after the gauntlet (the summary says so first).
    """
    from tuneloop.examples import utc_now
    from tuneloop.registry import ChampionMoved
    from tuneloop.stages import write_summary

    rc = RunConfig.from_json(run_config)
    results = json.loads(Path(results_path).read_text())
    decision = stages.decide_promotion(results, rc.settings.thresholds)
    summary: dict[str, Any] = {
        "run": run_name,
        "provider": "selfplay",
        "board_config": results.get("config_name"),
        "model_name": model_name,
        "training_set": training_set_summary(combined_dir),
        "gauntlet": stages.gauntlet_metrics(results),
        "champion_evaluated": results.get("previous_best_version"),
        "decision": decision,
        "registered_version": None,
        "promoted_version": None,
    }
    conflict: Exception | None = None
    try:
        out = stages.promote(
            registry_root, model_name, model_dir, results, decision, combined_dir, {"run": run_name}
        )
        summary.update(registered_version=out["registered_version"], promoted_version=out["promoted_version"])
    except ChampionMoved as exc:
        conflict = exc
        summary["registered_version"] = getattr(exc, "registered_version", None)
        summary["decision"] = {**decision, "reason": f"not promoted: {exc}"}
    registry = selfplay_registry(registry_root, model_name)
    champ = registry.champion()
    summary["champion_after"] = champ.version if champ else None
    generation = None
    model_json = Path(model_dir) / "model.json"
    if model_json.is_file():
        generation = json.loads(model_json.read_text()).get("generation")
    summary["curriculum"] = curriculum.record_result(
        selfplay_registry(registry_root, rc.model_name).base,
        model_name=rc.model_name,
        run_name=run_name,
        config_name=config_name,
        elo=float((results.get("elo") or {}).get("candidate", 0.0)),
        generation=generation,
        blessed=bool(decision.get("blessed")),
        promoted_version=summary["promoted_version"],
        run=rc.plan,
        curriculum=rc.settings.curriculum,
        momentum=rc.settings.momentum,
        at=utc_now(),
    )
    summary["plan"] = rc.plan.to_dict()
    name = summary_name(run_name, config_name, rc)
    summary["summary_uri"] = write_summary(summary, summary_path, reports_uri, name)
    summary["report_uri"] = write_gauntlet_report(results, summary, registry, report_path, reports_uri, name)
    if conflict is not None:
        raise conflict
    return summary


def write_gauntlet_report(results: Mapping[str, Any], summary: Mapping[str, Any], registry, report_path: str,
                          reports_uri: str, name: str) -> str | None:
    """Render the gauntlet report to ``report_path`` (if set) and ``<reports_uri>/<name>/report.html``."""
    from tuneloop.reports import publish, render_gauntlet

    html = render_gauntlet(results, summary, registry.versions())
    if report_path:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(html, encoding="utf-8")
    return publish(html, reports_uri, name)


def record_skip_for_run(
    *,
    reason: str,
    combined_dir: str,
    run_config: str,
    config_name: str,
    model_name: str,
    registry_root: str,
    run_name: str,
    reports_uri: str,
    summary_path: str,
) -> dict[str, Any]:
    """A board config with too few games this run: a recorded skip naming the training set's rejections."""
    from tuneloop.stages import record_skip

    rc = RunConfig.from_json(run_config)
    return record_skip(
        reason=reason,
        provider="selfplay",
        registry_uri=registry_root,
        model_name=model_name,
        run_name=summary_name(run_name, config_name, rc),
        reports_uri=reports_uri,
        summary_path=summary_path,
        stats={
            "board_config": config_name,
            "training_set": training_set_summary(combined_dir),
            "plan": rc.plan.to_dict(),
        },
    )


__all__ = [
    "archive_exports",
    "check_run",
    "combine_for_run",
    "config_model_name",
    "earlier_exports",
    "gauntlet_for_run",
    "promote_and_report",
    "record_skip_for_run",
]
