"""Self-play: plan shards, play them, combine, gate, train, run the gauntlet, promote.

Each body calls one function of ``tuneloop.selfplay.stages``; torch is imported only by the tasks
that play, train or judge with a net.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output
from tuneloop.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def check_selfplay_config(
    registry_uri: str,
    model_name: str,
    board_config: str,
    min_vs_random: float,
    min_vs_heuristic: float,
    min_vs_best: float,
) -> NamedTuple(
    "SelfplayConfigOutputs", champion_version=str, champion_dir=str, generation=int, thresholds=dict
):
    """Check the run's parameters, then read the champion the candidate will be judged against.

    Fails, before any game is played, on an unknown board config, a bar outside [0, 1], a bad
    registry or model name, or a champion that plays another board config.

    Args:
        registry_uri: Registry root (directory or gs:// prefix).
        model_name: Registry model name (one per board config).
        board_config: Board config to play and train, e.g. hex8_2p.
        min_vs_random: Minimum gauntlet score against the random player.
        min_vs_heuristic: Minimum gauntlet score against the heuristic (rollout MCTS).
        min_vs_best: Minimum gauntlet score against the champion (no regression).

    Returns:
        The champion's version and model directory ("" when there is none), the data generation of
        the games it plays (0 = rollout MCTS), and the promotion thresholds as one record.
    """
    from collections import namedtuple

    from tuneloop.selfplay.stages import check_config

    bars = {"min_vs_random": min_vs_random, "min_vs_heuristic": min_vs_heuristic, "min_vs_best": min_vs_best}
    r = check_config(registry_uri, model_name, board_config, bars)
    return namedtuple("SelfplayConfigOutputs", "champion_version champion_dir generation thresholds")(
        r["version"], r["model_dir"], r["generation"], r["thresholds"]
    )


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def plan_selfplay_shards(
    board_config: str, total_games: int, num_shards: int, seed: int, model_dir: str, generation: int
) -> list:
    """Split the run's games into shards for a ParallelFor.

    Args:
        board_config: Board config to play.
        total_games: Games across all shards.
        num_shards: Most shards (the fan-out width).
        seed: Base seed; every shard gets its own.
        model_dir: The net that plays (the champion; "" = rollout MCTS, generation 0).
        generation: Data generation of the games.

    Returns:
        ``[{"shard", "config_name", "games", "seed", "generation", "model_dir"}, ...]``.
    """
    from tuneloop.selfplay.stages import plan

    return plan(board_config, total_games, num_shards, seed, model_dir, generation)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def play_selfplay_shard(shard: dict, simulations: int, uct_c: float, export: Output[Dataset]) -> NamedTuple(
    "ShardOutputs", games=int, positions=int
):
    """Play one shard of self-play games and write them as a schema-checked NPZ export.

    Args:
        shard: One entry of ``plan_selfplay_shards``.
        simulations: Search simulations per move.
        uct_c: UCT constant of rollout MCTS (generation 0).
        export: The NPZ export (``tuneloop npz validate`` checks it).

    Returns:
        Games played and positions recorded.
    """
    from collections import namedtuple

    from tuneloop.selfplay.stages import play_shard

    r = play_shard(shard, export.path, simulations=simulations, uct_c=uct_c)
    export.metadata.update({k: r[k] for k in ("config_name", "generation", "games", "positions", "search")})
    return namedtuple("ShardOutputs", "games positions")(r["games"], r["positions"])


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def combine_exports(
    exports: Input[list[Dataset]],
    board_config: str,
    freshness_half_life: float,
    data_root: str,
    history_runs: int,
    run_name: str,
    training_set: Output[Dataset],
) -> NamedTuple("CombineOutputs", num_games=int, num_positions=int, fallback=bool):
    """Merge the shards' exports, and earlier runs' kept under ``data_root``, into one training set.

    Exports are validated, deduplicated and weighted by freshness (older generations weigh less).
    When combination fails, the latest valid export alone becomes the training set and the
    outputs say so (``fallback``); the run fails only when no export is valid.

    Args:
        exports: The NPZ exports of the ParallelFor (``dsl.Collected``).
        board_config: Keep only exports of this board config.
        freshness_half_life: Generations after which an export's weight halves.
        data_root: Where runs keep their exports for later runs ("" = this run's games only).
        history_runs: Earlier runs whose exports join this training set.
        run_name: This run's name (its exports' folder under ``data_root``).
        training_set: The memory-mappable training set (a directory of ``.npy`` + metadata.json).

    Returns:
        Games and positions in the training set, and whether the fallback was used.
    """
    from collections import namedtuple

    from tuneloop.selfplay.stages import combine_with_history

    r = combine_with_history([e.path for e in exports], training_set.path, data_root=data_root,
                             run_name=run_name, history_runs=history_runs,
                             freshness_half_life=freshness_half_life, board_config=board_config)
    training_set.metadata.update(
        board_config=r["board_config"],
        games=r["num_games"],
        fallback=r["fallback"],
        fallback_reason=r.get("fallback_reason", ""),
        earlier_exports=r["earlier_exports"],
    )
    return namedtuple("CombineOutputs", "num_games num_positions fallback")(
        r["num_games"], r["num_positions"], r["fallback"]
    )


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def gate_training_set(training_set: Input[Dataset], min_games: int) -> NamedTuple(
    "GateOutputs", status=str, reason=str, num_games=int
):
    """Train only with enough games; too few is a recorded skip, not a failure.

    Args:
        training_set: The combined training set.
        min_games: Fewer games than this skip training.

    Returns:
        ``status`` ("ready" or "skipped"), the reason, and the games counted.
    """
    from collections import namedtuple

    from tuneloop.selfplay.stages import gate

    r = gate(training_set.path, min_games)
    return namedtuple("GateOutputs", "status reason num_games")(r["status"], r["reason"], r["num_games"])


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train_policy_value_net(
    training_set: Input[Dataset],
    blocks: int,
    channels: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    warm_start: bool,
    champion_dir: str,
    model: Output[Model],
    metrics: Output[Metrics],
) -> int:
    """Train the policy/value net on the training set (CUDA when the task has a GPU).

    Args:
        training_set: The combined training set.
        blocks: Residual blocks.
        channels: Channels per block.
        steps: Optimizer steps.
        batch_size: Positions per step.
        lr: AdamW learning rate (cosine-decayed).
        seed: Seeds the split, the init and the batch order.
        warm_start: Continue from the champion's weights when its net has this shape.
        champion_dir: The champion's model directory ("" = none yet: random initial weights).
        model: The self-describing checkpoint (``checkpoint.pt`` + ``model.json``).
        metrics: Losses (train, validation), throughput.

    Returns:
        The net's generation.
    """
    from tuneloop.selfplay.stages import train, train_metrics, warm_start_dir

    start = warm_start_dir(champion_dir, blocks, channels) if warm_start else None
    r = train(training_set.path, model.path, blocks, channels, steps, batch_size, lr, seed, resume_from=start)
    for name, value in train_metrics(r).items():
        metrics.log_metric(name, value)
    model.metadata.update(
        board_config=r["board_config"], generation=r["generation"], device=r["device"], warm_start=start or ""
    )
    return r["generation"]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def run_gauntlet(
    model: Input[Model],
    board_config: str,
    previous_best_dir: str,
    previous_best_version: str,
    games: int,
    candidate_simulations: int,
    heuristic_simulations: int,
    seed: int,
    metrics: Output[Metrics],
    results: Output[Artifact],
) -> bool:
    """Play the candidate against random, the heuristic (rollout MCTS) and the previous best.

    Pairings stop early once the result is clear (SPRT); win rates come with confidence bounds.

    Args:
        model: The candidate net.
        board_config: Board config to play.
        previous_best_dir: The champion's model directory ("" = first generation: no such pairing).
        previous_best_version: The champion's version, carried to the promotion's compare-and-set.
        games: Most games per pairing.
        candidate_simulations: PUCT simulations per candidate move (0 = policy argmax).
        heuristic_simulations: Rollout-MCTS simulations of the heuristic opponent.
        seed: Seeds openings, players and chance.
        metrics: ``win_rate_vs_<opponent>``, games, confidence bounds, Elo.
        results: The full results (JSON).

    Returns:
        Whether this was the first generation (no previous best).
    """
    from tuneloop.selfplay.stages import gauntlet, gauntlet_metrics, local_dir

    r = gauntlet(
        model.path,
        board_config,
        local_dir(previous_best_dir),
        games=games,
        candidate_simulations=candidate_simulations,
        heuristic_simulations=heuristic_simulations,
        seed=seed,
        previous_best_version=previous_best_version,
        out_json=results.path,
    )
    for name, value in gauntlet_metrics(r).items():
        metrics.log_metric(name, value)
    results.metadata.update(first_generation=r["first_generation"], previous_best=previous_best_version)
    return r["first_generation"]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def promote_selfplay(
    results: Input[Artifact],
    model: Input[Model],
    training_set: Input[Dataset],
    thresholds: dict,
    registry_uri: str,
    model_name: str,
    run_name: str,
    reports_uri: str,
    summary: Output[Artifact],
    report: Output[HTML],
) -> NamedTuple("SelfplayPromoteOutputs", blessed=bool, promoted_version=str, champion=str):
    """Bless the candidate from its gauntlet results; register it and move ``champion`` if blessed.

    Not blessed is a recorded no-op. If another run moved the champion after the gauntlet, the
    compare-and-set fails and this task fails with the reason (the summary is written first).

    Args:
        results: The gauntlet's results.
        model: The candidate net.
        training_set: The training set (its games are stored with the version).
        thresholds: Minimum scores: ``min_vs_random``, ``min_vs_heuristic``, ``min_vs_best``,
            ``min_games`` per pairing (``{}`` = none: not blessed, fail closed).
        registry_uri: Registry root.
        model_name: Registry model name.
        run_name: Pipeline run name, recorded in lineage and the summary path.
        reports_uri: Where ``<run_name>/summary.json`` is written too ("" = artifact only).
        summary: The run summary (training set, gauntlet, decision, promoted version).
        report: The gauntlet report (HTML, self-contained): win rates with intervals against the bars,
            games played against the early-stop bound, the Elo ladder across generations.

    Returns:
        Whether it was blessed, the promoted version ("" if none) and the champion after this step.
    """
    from collections import namedtuple

    from tuneloop.selfplay.stages import promote_and_report

    r = promote_and_report(
        results_path=results.path,
        model_dir=model.path,
        combined_dir=training_set.path,
        thresholds=thresholds,
        registry_root=registry_uri,
        model_name=model_name,
        run_name=run_name,
        reports_uri=reports_uri,
        summary_path=summary.path,
        report_path=report.path,
    )
    summary.metadata.update(promoted=r["promoted_version"] or "", champion=r["champion_after"] or "")
    return namedtuple("SelfplayPromoteOutputs", "blessed promoted_version champion")(
        r["decision"]["blessed"], r["promoted_version"] or "", r["champion_after"] or ""
    )
