"""The self-play stages: one plain function per step, plain params in, JSON-able out.

:func:`plan_shards` -> :func:`selfplay_shard` (ParallelFor) -> :func:`combine` (Collected) ->
:func:`gate` -> :func:`train` -> :func:`gauntlet` -> :func:`decide_promotion` -> :func:`promote`.
:func:`champion` reads the current champion (the gauntlet's previous best and the compare-and-set's
expected version). :mod:`tuneloop.selfplay.run` is the glue the KFP components call (the parsed
settings, the curriculum, the export history). Torch is imported only inside the stages that need it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from tuneloop.selfplay import npz
from tuneloop.selfplay.combine import CombineConfig, combine_or_fallback
from tuneloop.selfplay.exports import ValidatorLimits
from tuneloop.selfplay.games import board_config
from tuneloop.selfplay.promotion import PromotionThresholds, selfplay_registry
from tuneloop.selfplay.promotion import decide_promotion as _decide
from tuneloop.selfplay.selfplay import plan_shards as _plan_shards

DEFAULT_MIN_GAMES = 1000  # original system: no training before 1000 games
DEFAULT_THRESHOLDS: dict[str, Any] = asdict(PromotionThresholds())


def plan_shards(
    curriculum: Mapping[str, float], total_games: int, num_shards: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Shard specs for the ParallelFor: ``[{"shard", "config_name", "games", "seed"}]``.

    Args:
        curriculum: ``{config_name: weight}`` (the curriculum weights per board config).
        total_games: games across all shards.
        num_shards: the most shards to create.
        seed: base seed; each shard gets a distinct one.
    """
    return _plan_shards(curriculum, total_games, num_shards, seed=seed)


def selfplay_shard(
    config_name: str,
    games: int,
    simulations: int = 200,
    uct_c: float = 0.5,
    seed: int = 0,
    generation: int = 0,
    model_dir: str | None = None,
    out_npz: str = "selfplay.npz",
    *,
    temperature_plies: int | None = None,
    max_moves: int | None = None,
    parallel_games: int = 32,
    threads: int | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Play one shard of self-play games and write them as a schema-checked NPZ export.

    Args:
        config_name: board config, e.g. ``hex8_2p``.
        games: games to play.
        simulations: search simulations per move.
        uct_c: UCT constant of the rollout MCTS (used when ``model_dir`` is None).
        seed: shard seed.
        generation: data generation written to the export (0 = rollout MCTS data).
        model_dir: the current best net for PUCT self-play; None = rollout MCTS.
        out_npz: where the export goes.
        temperature_plies: opening plies sampled from the visit counts (None = the board's default).
        max_moves: decision limit per game (None = the game's own).
        parallel_games: games searched together (network batch) with a model.
        threads: torch threads (None = free cores).
        device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        ``{"out_npz", "config_name", "generation", "games", "positions", "search", "seconds", "positions_per_s"}``.
    """
    from tuneloop.selfplay.selfplay import SelfPlayConfig, play

    cfg = SelfPlayConfig(
        config_name=config_name,
        games=games,
        simulations=simulations,
        uct_c=uct_c,
        seed=seed,
        generation=generation,
        temperature_plies=temperature_plies,
        max_moves=max_moves,
        parallel_games=parallel_games,
    )
    evaluate = None
    if model_dir:
        from tuneloop.selfplay.net import NetEvaluator, load_model, set_threads

        set_threads(threads)
        net, meta = load_model(model_dir, device)
        if meta["board_config"] != config_name:
            raise ValueError(
                f"model_dir: {model_dir} was trained on {meta['board_config']!r}, not {config_name!r}; "
                "pass the best net of this board config or model_dir=None for rollout MCTS"
            )
        evaluate = NetEvaluator(net, board_config(config_name).num_players)
    t0 = time.perf_counter()
    positions = play(cfg, evaluate)
    seconds = time.perf_counter() - t0
    npz.save_npz(out_npz, positions)
    return {
        "out_npz": str(out_npz),
        "config_name": config_name,
        "generation": generation,
        "games": games,
        "positions": positions.num_positions,
        "search": "puct" if evaluate is not None else "rollout_mcts",
        "seconds": seconds,
        "positions_per_s": positions.num_positions / seconds if seconds > 0 else None,
    }


def combine(
    npz_paths: Sequence[str],
    out_dir: str,
    freshness_half_life: float = 2.0,
    truncated_weight: float = 0.25,
    draw_weight: float = 1.0,
    dedup: bool = True,
    board_config: str | None = None,
    *,
    config: CombineConfig | None = None,
    limits: ValidatorLimits | None = None,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge the valid exports into a memory-mappable training set; bad exports are skipped and listed.

    Args:
        npz_paths: the exports.
        out_dir: the training-set directory to write.
        freshness_half_life, truncated_weight, draw_weight, dedup: see :class:`CombineConfig`
            (ignored when ``config`` is given).
        board_config: train this board config ("" or None = the freshest export's).
        config: all the combine settings at once (``settings.combine``).
        limits: the export validator's bounds (``settings.validator``).
        info: added to the report and the set's ``metadata.json``.

    Returns:
        The combination report: ``rejected`` lists every skipped export with its reasons; ``fallback``
        is True (with ``fallback_reason``) only when combining the valid exports failed and the latest
        valid export alone became the training set.
    """
    if config is None:
        config = CombineConfig(
            freshness_half_life=freshness_half_life,
            truncated_weight=truncated_weight,
            draw_weight=draw_weight,
            dedup=dedup,
        )
    cfg = replace(config, board_config=board_config or None)  # KFP passes "" for an unset optional string
    return combine_or_fallback([str(p) for p in npz_paths], out_dir, cfg, limits=limits, info=info)


def gate(combined_dir: str, min_games: int = DEFAULT_MIN_GAMES) -> dict[str, Any]:
    """Train only with enough games: ``{"status": "ready"|"skipped", "num_games", "min_games", "reason"}``."""
    if min_games < 0:
        raise ValueError(f"min_games: {min_games} must be >= 0")
    info = npz.read_dir_info(combined_dir)
    n = int(info.get("num_games", 0))
    if n < min_games:
        return {
            "status": "skipped",
            "num_games": n,
            "num_positions": int(info.get("num_positions", 0)),
            "min_games": min_games,
            "reason": f"only {n} games in the training set, fewer than min_games={min_games}; play more games",
        }
    return {
        "status": "ready",
        "num_games": n,
        "num_positions": int(info.get("num_positions", 0)),
        "min_games": min_games,
        "reason": f"{n} games >= min_games={min_games}",
    }


def train(
    combined_dir: str,
    out_model_dir: str,
    blocks: int = 3,
    channels: int = 32,
    steps: int = 1000,
    batch_size: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
    resume_from: str | None = None,
    *,
    epochs: float | None = None,
    threads: int | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Train the policy/value net; returns the trainer's metrics (see :func:`learner.train`)."""
    from tuneloop.selfplay.learner import TrainConfig
    from tuneloop.selfplay.learner import train as _train

    cfg = TrainConfig(
        blocks=blocks,
        channels=channels,
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        threads=threads,
        device=device,
    )
    metrics = _train(combined_dir, out_model_dir, cfg, resume_from=resume_from or None)
    return {**metrics, "out_model_dir": str(out_model_dir)}


def champion(registry_root: str, model_name: str) -> dict[str, Any]:
    """The current champion: ``{"version": "v3"|None, "model_dir": path|None}``."""
    rec = selfplay_registry(registry_root, model_name).champion()
    if rec is None:
        return {"version": None, "model_dir": None}
    return {"version": rec.version, "model_dir": rec.model_uri}


def gauntlet(
    model_dir: str,
    config_name: str,
    previous_best_dir: str | None = None,
    games: int = 100,
    min_games: int = 20,
    candidate_simulations: int = 32,
    heuristic_simulations: int = 50,
    seed: int = 0,
    *,
    previous_best_version: str | None = None,
    targets: Sequence[float] | None = None,
    opening_plies: int = 2,
    max_moves: int | None = None,
    wave: int = 10,
    heuristic_uct_c: float = 2.0,
    sprt_delta: float = 0.05,
    sprt_alpha: float = 0.05,
    sprt_beta: float = 0.05,
    threads: int | None = None,
    device: str = "auto",
    out_json: str | None = None,
) -> dict[str, Any]:
    """Play the candidate against random, the heuristic and the previous best; win rates, CIs, Elo.

    Args:
        model_dir: the candidate (a directory written by :func:`train`).
        config_name: board config to play.
        previous_best_dir: the champion's model directory; None for the first generation.
        games: most games per pairing.
        min_games: games per pairing before early stopping may end it.
        candidate_simulations: PUCT simulations per net move (0 = policy argmax).
        heuristic_simulations: rollout-MCTS simulations of the heuristic opponent.
        seed: seeds openings, players and chance.
        previous_best_version: the champion's registry version, carried to the promotion's CAS.
        targets: early-stopping targets (random, heuristic, previous best): the run's promotion
            thresholds (``PromotionThresholds.targets``); None = the defaults (0.85, 0.60, 0.45).
        opening_plies: random opening moves shared by seat-swapped game pairs.
        max_moves: decision limit per game (a draw when reached).
        wave: games played together; early stopping is checked between waves.
        heuristic_uct_c: UCT constant of the heuristic opponent.
        sprt_delta, sprt_alpha, sprt_beta: the early stop's SPRT (see :class:`GauntletConfig`).
        threads: torch threads (None = free cores).
        device: ``auto``, ``cpu`` or ``cuda``.
        out_json: also write the results here.
    """
    from tuneloop.selfplay.gauntlet import GauntletConfig, run_gauntlet
    from tuneloop.selfplay.net import NetEvaluator, load_model, set_threads

    set_threads(threads)
    players = board_config(config_name).num_players
    nets = []
    for label, d in (("model_dir", model_dir), ("previous_best_dir", previous_best_dir)):
        if not d:
            nets.append(None)
            continue
        net, meta = load_model(d, device)
        if meta["board_config"] != config_name:
            raise ValueError(f"{label}: {d} plays {meta['board_config']!r}, the gauntlet is {config_name!r}")
        nets.append(NetEvaluator(net, players))
    cfg = GauntletConfig(
        games=games,
        min_games=min(min_games, games),
        candidate_simulations=candidate_simulations,
        heuristic_simulations=heuristic_simulations,
        opening_plies=opening_plies,
        max_moves=max_moves,
        seed=seed,
        wave=wave,
        heuristic_uct_c=heuristic_uct_c,
        sprt_delta=sprt_delta,
        sprt_alpha=sprt_alpha,
        sprt_beta=sprt_beta,
        **({"targets": tuple(float(t) for t in targets)} if targets else {}),
    )
    results = run_gauntlet(config_name, nets[0], cfg, previous_best=nets[1])
    results["candidate_dir"] = str(model_dir)
    results["previous_best_dir"] = previous_best_dir or None
    results["previous_best_version"] = (previous_best_version or None) if previous_best_dir else None
    if out_json:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(out_json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


def decide_promotion(results: Mapping[str, Any], thresholds: Mapping[str, Any] | None) -> dict[str, Any]:
    """Pure blessing decision (see :func:`tuneloop.selfplay.promotion.decide_promotion`).

    Pass :data:`DEFAULT_THRESHOLDS` for the original system's bars; None is not blessed (fail closed).
    """
    return _decide(results, thresholds)


def data_hash(combined_dir: str) -> str:
    """A hash of the training set: its sources' sha256s and its size."""
    info = npz.read_dir_info(combined_dir)
    sources = sorted(s.get("sha256", "") for s in info.get("combine", {}).get("sources", []))
    blob = json.dumps({"sources": sources, "n": info.get("num_positions")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def promote(
    registry_root: str,
    model_name: str,
    model_dir: str,
    results: Mapping[str, Any],
    decision: Mapping[str, Any],
    combined_dir: str | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Register a blessed candidate and move ``champion`` by compare-and-set; not blessed is a no-op.

    The training games' ids (from ``combined_dir``) are stored with the version as its example ids.

    Raises:
        ChampionMoved: the champion changed after the gauntlet; re-run the gauntlet against it.
    """
    from tuneloop.selfplay.promotion import promote as _promote

    ids: list[str] = []
    dhash = ""
    if combined_dir:
        import numpy as np

        data = npz.open_dir(combined_dir, validate=False)
        ids = [f"{int(g) & 0xFFFFFFFFFFFFFFFF:016x}" for g in np.unique(np.asarray(data.game_ids))]
        dhash = data_hash(combined_dir)
    meta = {}
    model_json = Path(model_dir) / "model.json"
    if model_json.exists():
        meta = json.loads(model_json.read_text())
    return _promote(
        registry_root=registry_root,
        model_name=model_name,
        model_dir=model_dir,
        results=results,
        decision=decision,
        data_hash=dhash,
        example_ids=ids,
        config={
            "board_config": meta.get("board_config"),
            "net_config": meta.get("net_config"),
            "train_config": meta.get("train_config"),
            "generation": meta.get("generation"),
        },
        lineage=lineage,
    )


# -- helpers of the KFP components (components/selfplay.py) ------------------------------------------
# KFP passes dict and list parameters as JSON, where every number arrives as a float, and a registry
# may hold its models under gs://; these helpers take the values as a component receives them.


def local_dir(uri: str | None) -> str | None:
    """A model directory this process can read: a ``gs://`` tree is mirrored locally first."""
    if not uri:
        return None
    from tuneloop import storage

    return str(storage.download_dir(uri)) if storage.is_remote(uri) else uri


def play_shard(shard: Mapping[str, Any], out_npz: str, simulations: int = 200, uct_c: float = 0.5) -> dict:
    """Play one :func:`plan` entry (a ParallelFor item) with :func:`selfplay_shard`."""
    return selfplay_shard(
        str(shard["config_name"]),
        int(shard["games"]),
        simulations=simulations,
        uct_c=uct_c,
        seed=int(shard["seed"]),
        generation=int(shard.get("generation") or 0),
        model_dir=local_dir(shard.get("model_dir")),
        out_npz=out_npz,
    )


def _scalars(d: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out |= _scalars(v, f"{prefix}{k}_")
        elif isinstance(v, int | float) and not isinstance(v, bool) and v == v and abs(v) != float("inf"):
            out[f"{prefix}{k}"] = float(v)
    return out


def train_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of :func:`train`'s result, flat (``val_loss``, ``final_train_loss``, ...)."""
    return _scalars({k: v for k, v in metrics.items() if k not in ("threads", "start_step")})


def gauntlet_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """``win_rate_vs_<opponent>``, ``games_vs_<opponent>``, CI bounds and ``elo_<player>``."""
    out: dict[str, float] = {}
    for name, p in (results.get("pairings") or {}).items():
        for key in ("win_rate", "games", "ci_low", "ci_high"):
            if p.get(key) is not None:
                out[f"{key}_vs_{name}"] = float(p[key])
    return out | {f"elo_{k}": float(v) for k, v in (results.get("elo") or {}).items()}


def warm_start_dir(champion_dir: str, blocks: int, channels: int) -> str | None:
    """The champion's model folder to start training from, when its net has this run's shape.

    AlphaZero-style: each generation continues from the best net so far instead of from random
    weights. A champion of another shape (the run changed ``blocks``/``channels``) means a fresh start.
    """
    local = local_dir(champion_dir)
    if not local or not (Path(local) / "model.json").is_file():
        return None
    net = json.loads((Path(local) / "model.json").read_text()).get("net_config") or {}
    if int(net.get("blocks", -1)) != int(blocks) or int(net.get("channels", -1)) != int(channels):
        return None
    return local
