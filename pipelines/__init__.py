"""Compiled pipelines of tuneloop: wiring only, no logic.

- ``export-dataset``: extract -> build + publish a dataset version (or a recorded skip).
- ``tune-and-promote``: dataset -> provider branch (tune -> evaluate -> promote).
- ``continuous-tuning``: both, as one scheduled run.
- ``label-examples``: unlabelled rows -> zero-shot labels -> examples or the review table.
- ``select-model``: dataset -> the provider, base model and starting hyperparameters to tune.
- ``selfplay-training``: self-play shards -> combine -> train (GPU) -> gauntlet -> promote (or a recorded skip).
"""

from tuneloop.pipelines.continuous_tuning import continuous_tuning
from tuneloop.pipelines.export_dataset import export_dataset
from tuneloop.pipelines.label_examples import label_examples
from tuneloop.pipelines.select_model import select_model
from tuneloop.pipelines.selfplay_training import selfplay_training
from tuneloop.pipelines.tune_and_promote import tune_and_promote

PIPELINES = {
    "export-dataset": export_dataset,
    "tune-and-promote": tune_and_promote,
    "continuous-tuning": continuous_tuning,
    "label-examples": label_examples,
    "select-model": select_model,
    "selfplay-training": selfplay_training,
}

__all__ = ["PIPELINES", "continuous_tuning", "export_dataset", "label_examples", "select_model", "selfplay_training",
           "tune_and_promote"]
