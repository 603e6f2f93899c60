"""Self-play: check and plan the run, play shards, combine, gate, train, run the gauntlet, promote.

Each body calls one function of ``tuneloop.selfplay.stages`` or ``tuneloop.selfplay.run``; torch is
imported only by the tasks that play, train or judge with a net.
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
    board_configs: dict,
    total_games: int,
    num_shards: int,
    seed: int,
    min_vs_random: float,
    min_vs_heuristic: float,
    min_vs_best: float,
    freshness_half_life: float,
    settings: dict,
    adaptive: bool,
    run_name: str,
    accelerator_type: str,
    accelerator_count: int,
    cpu_limit: str,
    memory_limit: str,
) -> list:
    """Parse and check every setting, read each board config's champion and the curriculum, plan the run.

    Fails, before any game is played, on an unknown board config, a bar outside [0, 1], an unknown or
    bad setting (named, with the valid keys), a bad registry (a vertex:// one is refused with the
    reason) or model name, or a champion that plays another board config.

    Args:
        registry_uri: Registry root (directory or gs:// prefix).
        model_name: Registry model name (one board config), or the family of per-config models.
        board_config: Board config to play and train when board_configs is empty, e.g. hex8_2p.
        board_configs: Curriculum weights per board config ({} = board_config alone).
        total_games: Game budget of the run (the curriculum record may have moved it).
        num_shards: Most self-play tasks over all configs.
        seed: Base seed (mixed with the run name).
        min_vs_random: Minimum gauntlet score against the random player.
        min_vs_heuristic: Minimum gauntlet score against the heuristic (rollout MCTS).
        min_vs_best: Minimum gauntlet score against the champion (no regression).
        freshness_half_life: Generations after which an export's weight halves.
        settings: The other settings by section (thresholds, combine, gauntlet, curriculum, momentum, validator).
        adaptive: Play with the weights and budget the registry's curriculum record holds.
        run_name: The pipeline run's name.
        accelerator_type: The training task's accelerator, checked against Vertex's names.
        accelerator_count: The training task's accelerator count.
        cpu_limit: The training task's vCPUs.
        memory_limit: The training task's memory.

    Returns:
        One item per board config for the ParallelFor: its model, champion and shards, and the run
        config every later task receives (JSON: the parsed settings and the plan, i.e. the weights and
        budget and where they came from). One output: kfp.local loops over single-output tasks only.
    """
    from tuneloop.selfplay.run import check_run

    return check_run(
        registry_uri=registry_uri, model_name=model_name, board_config=board_config, board_configs=board_configs,
        total_games=total_games, num_shards=num_shards, seed=seed, min_vs_random=min_vs_random,
        min_vs_heuristic=min_vs_heuristic, min_vs_best=min_vs_best, freshness_half_life=freshness_half_life,
        settings=settings, adaptive=adaptive, run_name=run_name,
        gpu={"accelerator_type": accelerator_type, "accelerator_count": accelerator_count, "cpu_limit": cpu_limit,
             "memory_limit": memory_limit},
    )["configs"]


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
    run_config: str,
    data_root: str,
    history_runs: int,
    run_name: str,
    training_set: Output[Dataset],
) -> NamedTuple("CombineOutputs", num_games=int, num_positions=int, fallback=bool, rejected=int):
    """Merge the shards' exports, and earlier runs' kept under ``data_root``, into one training set.

    Every export is validated (bounded in memory and time); a bad one is skipped and listed with its
    reasons, never fatal. The valid ones are deduplicated and weighted by freshness and quality. Only
    when combining the valid exports fails does the latest valid export alone become the training set
    (``fallback``, with the reason); the task fails only when no export is valid.

    Args:
        exports: The NPZ exports of the ParallelFor (``dsl.Collected``).
        board_config: Keep only exports of this board config.
        run_config: The run config of check-selfplay-config (combine and validator settings).
        data_root: Where runs keep their exports for later runs ("" = this run's games only).
        history_runs: Earlier runs whose exports join this training set.
        run_name: This run's name (its exports' folder under ``data_root``).
        training_set: The memory-mappable training set (a directory of ``.npy`` + metadata.json).

    Returns:
        Games and positions in the training set, whether the fallback was used, and the exports rejected.
    """
    from collections import namedtuple

    from tuneloop.selfplay.run import combine_for_run

    r = combine_for_run([e.path for e in exports], training_set.path, run_config=run_config,
                        board_config=board_config, data_root=data_root, run_name=run_name,
                        history_runs=history_runs)
    training_set.metadata.update(
        board_config=r["board_config"],
        games=r["num_games"],
        fallback=r["fallback"],
        fallback_reason=r.get("fallback_reason", ""),
        earlier_exports=r["earlier_exports"],
        rejected=r["rejected_count"],
    )
    return namedtuple("CombineOutputs", "num_games num_positions fallback rejected")(
        r["num_games"], r["num_positions"], r["fallback"], r["rejected_count"]
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
    run_config: str,
    games: int,
    candidate_simulations: int,
    heuristic_simulations: int,
    seed: int,
    metrics: Output[Metrics],
    results: Output[Artifact],
) -> bool:
    """Play the candidate against random, the heuristic (rollout MCTS) and the previous best.

    Pairings stop early once the result is clear against the run's own bars (SPRT); win rates come
    with confidence bounds.

    Args:
        model: The candidate net.
        board_config: Board config to play.
        previous_best_dir: The champion's model directory ("" = first generation: no such pairing).
        previous_best_version: The champion's version, carried to the promotion's compare-and-set.
        run_config: The run config of check-selfplay-config (bars, gauntlet settings).
        games: Most games per pairing.
        candidate_simulations: PUCT simulations per candidate move (0 = policy argmax).
        heuristic_simulations: Rollout-MCTS simulations of the heuristic opponent.
        seed: Seeds openings, players and chance.
        metrics: ``win_rate_vs_<opponent>``, games, confidence bounds, Elo.
        results: The full results (JSON).

    Returns:
        Whether this was the first generation (no previous best).
    """
    from tuneloop.selfplay.run import gauntlet_for_run
    from tuneloop.selfplay.stages import gauntlet_metrics

    r = gauntlet_for_run(
        model.path, board_config, previous_best_dir, run_config=run_config,
        previous_best_version=previous_best_version, games=games, candidate_simulations=candidate_simulations,
        heuristic_simulations=heuristic_simulations, seed=seed, out_json=results.path,
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
    run_config: str,
    board_config: str,
    registry_uri: str,
    model_name: str,
    run_name: str,
    reports_uri: str,
    summary: Output[Artifact],
    report: Output[HTML],
) -> NamedTuple("SelfplayPromoteOutputs", blessed=bool, promoted_version=str, champion=str):
    """Bless the candidate from its gauntlet results; register it and move ``champion`` if blessed.

    Not blessed is a recorded no-op. Either way the gauntlet's Elo joins the registry's curriculum
    record, which rebalances the next run's weights and budget. If another run moved the champion
    after the gauntlet, the compare-and-set fails and this task fails with the reason (the summary is
    written first).

    Args:
        results: The gauntlet's results.
        model: The candidate net.
        training_set: The training set (its games are stored with the version).
        run_config: The run config of check-selfplay-config (bars, curriculum, momentum).
        board_config: The board config of this net.
        registry_uri: Registry root.
        model_name: Registry model name of this board config.
        run_name: Pipeline run name, recorded in lineage and the summary path.
        reports_uri: Where ``<run_name>/summary.json`` is written too ("" = artifact only).
        summary: The run summary (training set and its rejected exports, gauntlet, decision, curriculum).
        report: The gauntlet report (HTML, self-contained): win rates with intervals against the bars,
            games played against the early-stop bound, the Elo ladder across generations.

    Returns:
        Whether it was blessed, the promoted version ("" if none) and the champion after this step.
    """
    from collections import namedtuple

    from tuneloop.selfplay.run import promote_and_report

    r = promote_and_report(
        results_path=results.path, model_dir=model.path, combined_dir=training_set.path, run_config=run_config,
        config_name=board_config, model_name=model_name, registry_root=registry_uri, run_name=run_name,
        reports_uri=reports_uri, summary_path=summary.path, report_path=report.path,
    )
    summary.metadata.update(promoted=r["promoted_version"] or "", champion=r["champion_after"] or "")
    return namedtuple("SelfplayPromoteOutputs", "blessed promoted_version champion")(
        r["decision"]["blessed"], r["promoted_version"] or "", r["champion_after"] or ""
    )


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def record_selfplay_skip(
    reason: str,
    training_set: Input[Dataset],
    run_config: str,
    board_config: str,
    registry_uri: str,
    model_name: str,
    run_name: str,
    reports_uri: str,
    summary: Output[Artifact],
):
    """Record a board config that had too few games this run: a summary, not a failure.

    Args:
        reason: Why training was skipped (the gate's reason).
        training_set: The combined training set (its rejected exports are listed).
        run_config: The run config of check-selfplay-config.
        board_config: The board config skipped.
        registry_uri: Registry root.
        model_name: Registry model name of this board config.
        run_name: Pipeline run name.
        reports_uri: Where ``<run_name>/summary.json`` is written too ("" = artifact only).
        summary: The run summary (``skipped``: true, the reason).
    """
    from tuneloop.selfplay.run import record_skip_for_run

    record_skip_for_run(
        reason=reason, combined_dir=training_set.path, run_config=run_config, config_name=board_config,
        model_name=model_name, registry_root=registry_uri, run_name=run_name, reports_uri=reports_uri,
        summary_path=summary.path,
    )
