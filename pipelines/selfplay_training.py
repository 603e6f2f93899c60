"""selfplay-training: per board config, side by side: self-play shards -> combined training set -> net on a
GPU -> gauntlet -> promote, with the curriculum and the game budget carried across runs in the registry."""

from kfp import dsl
from kfp.dsl import Dataset, Input
from tuneloop.components.images import SELFPLAY_IMAGE
from tuneloop.components.selfplay import (
    check_selfplay_config,
    combine_exports,
    gate_training_set,
    play_selfplay_shard,
    promote_selfplay,
    record_selfplay_skip,
    run_gauntlet,
    train_policy_value_net,
)
from tuneloop.pipelines.gpu import DEFAULT_ACCELERATOR, DEFAULT_CPU_LIMIT, DEFAULT_MEMORY_LIMIT, on_gpu

# The original system's numbers, as literals: compiling must not import the engine (numpy, OpenSpiel).
# tests/unit/selfplay/test_stages.py checks they equal tuneloop.selfplay's defaults.
DEFAULT_MIN_GAMES = 1000
DEFAULT_THRESHOLDS = {"min_vs_random": 0.85, "min_vs_heuristic": 0.60, "min_vs_best": 0.45}

# OpenSpiel and torch are not in the base image: the tasks that play games (shards, gauntlet) run on
# the CPU self-play image (containers/selfplay-cpu), the trainer on the CUDA image.
PLAY_IMAGE = SELFPLAY_IMAGE


@dsl.pipeline(name="selfplay-train-judge-promote")
def train_judge_promote(
    training_set: Input[Dataset],
    board_config: str,
    blocks: int,
    channels: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    champion_version: str,
    champion_dir: str,
    warm_start: bool,
    gauntlet_games: int,
    candidate_simulations: int,
    heuristic_simulations: int,
    run_config: str,
    registry_uri: str,
    model_name: str,
    run_name: str,
    reports_uri: str,
    accelerator_type: str,
    accelerator_count: int,
    cpu_limit: str,
    memory_limit: str,
):
    """Train a candidate net on the CUDA trainer image, play the gauntlet, promote if it clears the bars.

    Args:
        training_set: The combined training set.
        board_config: Board config the net plays.
        blocks: Residual blocks of the net.
        channels: Channels per block.
        steps: Optimizer steps.
        batch_size: Positions per step.
        lr: Learning rate.
        seed: Seeds training and the gauntlet.
        champion_version: The champion the candidate must not regress against ("" = first generation).
        champion_dir: The champion's model directory.
        warm_start: Start from the champion's weights (same shape) instead of random ones.
        gauntlet_games: Most games per gauntlet pairing.
        candidate_simulations: PUCT simulations per candidate move in the gauntlet.
        heuristic_simulations: Rollout-MCTS simulations of the heuristic opponent.
        run_config: The run config of check-selfplay-config (bars, gauntlet, curriculum settings).
        registry_uri: Registry root.
        model_name: Registry model name of this board config.
        run_name: The pipeline run's name (from check-selfplay-config).
        reports_uri: Where run summaries are written ("" = artifacts only).
        accelerator_type: Vertex accelerator of the training task, e.g. NVIDIA_L4.
        accelerator_count: Accelerators on the training task.
        cpu_limit: vCPUs of the training task.
        memory_limit: Memory of the training task.
    """
    train = train_policy_value_net(
        training_set=training_set,
        blocks=blocks,
        channels=channels,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        warm_start=warm_start,
        champion_dir=champion_dir,
    )
    on_gpu(train, accelerator_type, accelerator_count, cpu_limit, memory_limit)
    gauntlet = run_gauntlet(
        model=train.outputs["model"],
        board_config=board_config,
        previous_best_dir=champion_dir,
        previous_best_version=champion_version,
        run_config=run_config,
        games=gauntlet_games,
        candidate_simulations=candidate_simulations,
        heuristic_simulations=heuristic_simulations,
        seed=seed,
    ).set_container_image(PLAY_IMAGE)
    # promotion reads and moves the registry's champion: never cached (train and gauntlet follow from
    # their inputs and may be)
    promote_selfplay(
        results=gauntlet.outputs["results"],
        model=train.outputs["model"],
        training_set=training_set,
        run_config=run_config,
        board_config=board_config,
        registry_uri=registry_uri,
        model_name=model_name,
        run_name=run_name,
        reports_uri=reports_uri,
    ).set_caching_options(False)


@dsl.pipeline(name="selfplay-board-config")
def selfplay_board_config(
    board_config: str,
    model_name: str,
    champion_version: str,
    champion_dir: str,
    shards: list,
    run_config: str,
    run_name: str,
    simulations: int,
    uct_c: float,
    data_root: str,
    history_runs: int,
    min_games: int,
    blocks: int,
    channels: int,
    warm_start: bool,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    gauntlet_games: int,
    candidate_simulations: int,
    heuristic_simulations: int,
    registry_uri: str,
    reports_uri: str,
    accelerator_type: str,
    accelerator_count: int,
    cpu_limit: str,
    memory_limit: str,
):
    """One board config's generation: play its shards, combine, and train/judge/promote or record a skip.

    Args:
        board_config: The board config.
        model_name: Its registry model.
        champion_version: Its champion ("" = none yet).
        champion_dir: The champion's model directory ("" = rollout MCTS plays).
        shards: Its self-play shards (from check-selfplay-config).
        run_config: The run config of check-selfplay-config.
        run_name: The pipeline run's name (read by the first task: inside a loop the job-name
            placeholder names the iteration under kfp.local).
        simulations: Search simulations per self-play move.
        uct_c: UCT constant of rollout MCTS (generation 0).
        data_root: Where runs keep their exports ("" = this run's games only).
        history_runs: Earlier runs whose games join the training set.
        min_games: Fewer games than this skip training.
        blocks: Residual blocks of the net.
        channels: Channels per block.
        warm_start: Start from the champion's weights (same shape).
        steps: Optimizer steps.
        batch_size: Positions per step.
        lr: Learning rate.
        seed: Seeds training and the gauntlet.
        gauntlet_games: Most games per gauntlet pairing.
        candidate_simulations: PUCT simulations per candidate move in the gauntlet.
        heuristic_simulations: Rollout-MCTS simulations of the heuristic opponent.
        registry_uri: Registry root.
        reports_uri: Where run summaries are written ("" = artifacts only).
        accelerator_type: Vertex accelerator of the training task.
        accelerator_count: Accelerators on the training task.
        cpu_limit: vCPUs of the training task.
        memory_limit: Memory of the training task.
    """
    with dsl.ParallelFor(shards, name="selfplay-shards") as shard:
        play = play_selfplay_shard(shard=shard, simulations=simulations, uct_c=uct_c)
        play.set_container_image(PLAY_IMAGE)
    combined = combine_exports(
        exports=dsl.Collected(play.outputs["export"]),
        board_config=board_config,
        run_config=run_config,
        data_root=data_root,
        history_runs=history_runs,
        run_name=run_name,
    ).set_caching_options(False)  # reads earlier runs' exports under data_root and keeps this run's
    gate = gate_training_set(training_set=combined.outputs["training_set"], min_games=min_games)
    with dsl.If(gate.outputs["status"] == "ready", name="enough-games"):
        train_judge_promote(
            training_set=combined.outputs["training_set"],
            board_config=board_config,
            blocks=blocks,
            channels=channels,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            champion_version=champion_version,
            champion_dir=champion_dir,
            warm_start=warm_start,
            gauntlet_games=gauntlet_games,
            candidate_simulations=candidate_simulations,
            heuristic_simulations=heuristic_simulations,
            run_config=run_config,
            registry_uri=registry_uri,
            model_name=model_name,
            run_name=run_name,
            reports_uri=reports_uri,
            accelerator_type=accelerator_type,
            accelerator_count=accelerator_count,
            cpu_limit=cpu_limit,
            memory_limit=memory_limit,
        ).set_caching_options(False)
    with dsl.Else(name="too-few-games"):
        record_selfplay_skip(
            reason=gate.outputs["reason"],
            training_set=combined.outputs["training_set"],
            run_config=run_config,
            board_config=board_config,
            registry_uri=registry_uri,
            model_name=model_name,
            run_name=run_name,
            reports_uri=reports_uri,
        ).set_caching_options(False)


@dsl.pipeline(name="selfplay-training")
def selfplay_training(
    registry_uri: str,
    model_name: str = "hex8-agent",
    board_config: str = "hex8_2p",
    board_configs: dict = {},  # noqa: B006 - KFP reads the default; {} = board_config alone
    total_games: int = 2000,
    num_shards: int = 8,
    simulations: int = 200,
    uct_c: float = 0.5,
    seed: int = 0,
    freshness_half_life: float = 2.0,
    data_root: str = "",
    history_runs: int = 3,
    min_games: int = DEFAULT_MIN_GAMES,
    blocks: int = 4,
    channels: int = 64,
    warm_start: bool = True,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 2e-3,
    gauntlet_games: int = 100,
    candidate_simulations: int = 32,
    heuristic_simulations: int = 50,
    min_vs_random: float = DEFAULT_THRESHOLDS["min_vs_random"],
    min_vs_heuristic: float = DEFAULT_THRESHOLDS["min_vs_heuristic"],
    min_vs_best: float = DEFAULT_THRESHOLDS["min_vs_best"],
    settings: dict = {},  # noqa: B006 - KFP reads the default; {} = every default
    adaptive: bool = True,
    reports_uri: str = "",
    accelerator_type: str = DEFAULT_ACCELERATOR,
    accelerator_count: int = 1,
    cpu_limit: str = DEFAULT_CPU_LIMIT,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
):
    """Improve board-game agents by self-play: play, train a policy/value net, judge it, promote it.

    One net per board config (``board_configs`` with weights, side by side; or ``board_config``
    alone). The champion plays each run's games (net-guided PUCT); with no champion yet, rollout
    MCTS plays generation 0. Too few games for training end a config's run as a recorded skip, not a
    failure. A candidate is promoted only when it scores at least ``min_vs_random`` against random,
    ``min_vs_heuristic`` against the heuristic (rollout MCTS) and ``min_vs_best`` against the champion
    (no regression); the first generation has no champion to face. After each gauntlet the registry's
    curriculum record rebalances the weights (stalled configs get more games) and moves the game
    budget with the Elo trend (x1.5 / x0.75, bounded); the next run plays with them (``adaptive``).

    Args:
        registry_uri: Model registry root (directory or gs:// prefix; vertex:// is refused).
        model_name: Registry model name (one board config), or the family of per-config models
            ``<model_name>-<config>`` when ``board_configs`` is set; the curriculum record lives here.
        board_config: Board config when board_configs is empty: hex5_2p, hex8_2p, connect_four_2p,
            maedn_2p, maedn_3p, maedn_4p.
        board_configs: Curriculum weights per board config, e.g. {"hex8_2p": 2, "connect_four_2p": 1}.
        total_games: Self-play games this run, across all shards and configs (the starting budget).
        num_shards: Most parallel self-play tasks.
        simulations: Search simulations per self-play move.
        uct_c: UCT constant of rollout MCTS (generation 0).
        seed: Base seed of self-play (mixed with the run name), training and the gauntlet.
        freshness_half_life: Generations after which older data's weight halves.
        data_root: Where each run keeps its exports (directory or gs:// prefix); the games of the
            ``history_runs`` latest earlier runs join this run's training set ("" = this run's only).
        history_runs: Earlier runs whose games are combined with this run's.
        min_games: Fewer games than this (this run's and the earlier runs' together) skip training.
        blocks: Residual blocks of the net.
        channels: Channels per block.
        warm_start: Train from the champion's weights when its net has this shape (AlphaZero's
            continuing net); False = random initial weights every run.
        steps: Optimizer steps.
        batch_size: Positions per step.
        lr: AdamW learning rate (cosine-decayed to 10%).
        gauntlet_games: Most games per gauntlet pairing (pairings stop early once decided).
        candidate_simulations: PUCT simulations per candidate move in the gauntlet (0 = policy argmax).
        heuristic_simulations: Rollout-MCTS simulations of the heuristic opponent.
        min_vs_random: Minimum gauntlet score against the random player (0.85 = 85%).
        min_vs_heuristic: Minimum gauntlet score against the heuristic (rollout MCTS).
        min_vs_best: Minimum score against the champion: no regression (equal nets score 0.5).
        settings: Other settings by section: thresholds, combine, gauntlet, curriculum, momentum,
            validator (docs/selfplay.md lists them; {} = the defaults).
        adaptive: Play with the weights and budget the curriculum record holds (False = the parameters).
        reports_uri: Where ``<run>/summary.json`` is written ("" = artifacts only).
        accelerator_type: Training task's accelerator on Vertex (default one NVIDIA_L4).
        accelerator_count: Training task's accelerator count.
        cpu_limit: Training task's vCPUs.
        memory_limit: Training task's memory.
    """
    checked = check_selfplay_config(
        registry_uri=registry_uri,
        model_name=model_name,
        board_config=board_config,
        board_configs=board_configs,
        total_games=total_games,
        num_shards=num_shards,
        seed=seed,
        min_vs_random=min_vs_random,
        min_vs_heuristic=min_vs_heuristic,
        min_vs_best=min_vs_best,
        freshness_half_life=freshness_half_life,
        settings=settings,
        adaptive=adaptive,
        run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        accelerator_type=accelerator_type,
        accelerator_count=accelerator_count,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
    ).set_caching_options(False)  # reads the registry's champions and curriculum record
    with dsl.ParallelFor(checked.output, name="board-configs") as item:
        selfplay_board_config(
            board_config=item.config_name,
            model_name=item.model_name,
            champion_version=item.champion_version,
            champion_dir=item.champion_dir,
            shards=item.shards,
            run_config=item.run_config,
            run_name=item.run_name,
            simulations=simulations,
            uct_c=uct_c,
            data_root=data_root,
            history_runs=history_runs,
            min_games=min_games,
            blocks=blocks,
            channels=channels,
            warm_start=warm_start,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            gauntlet_games=gauntlet_games,
            candidate_simulations=candidate_simulations,
            heuristic_simulations=heuristic_simulations,
            registry_uri=registry_uri,
            reports_uri=reports_uri,
            accelerator_type=accelerator_type,
            accelerator_count=accelerator_count,
            cpu_limit=cpu_limit,
            memory_limit=memory_limit,
        ).set_caching_options(False)
