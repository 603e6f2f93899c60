"""KFP v2 components of tuneloop: thin wrappers, one engine call each.

Top-level imports here are stdlib and kfp only; every body imports ``tuneloop`` inside the function,
so compiling a pipeline never imports sklearn, duckdb, torch or a provider SDK.
"""

from tuneloop.components.config import check_config
from tuneloop.components.dataset import prepare_dataset
from tuneloop.components.evaluate import evaluate_model
from tuneloop.components.extract import extract_examples
from tuneloop.components.label import label_examples
from tuneloop.components.promote import promote_model, record_skip
from tuneloop.components.select import select_model
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
from tuneloop.components.tune import tune_model

__all__ = [
    "check_config",
    "check_selfplay_config",
    "combine_exports",
    "evaluate_model",
    "extract_examples",
    "label_examples",
    "gate_training_set",
    "play_selfplay_shard",
    "prepare_dataset",
    "promote_model",
    "promote_selfplay",
    "record_selfplay_skip",
    "record_skip",
    "run_gauntlet",
    "select_model",
    "train_policy_value_net",
    "tune_model",
]
