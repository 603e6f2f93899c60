"""Compiled pipelines of tuneloop: wiring only, no logic.

- ``export-dataset``: extract -> build + publish a dataset version (or a recorded skip).
- ``tune-and-promote``: dataset -> provider branch (tune -> evaluate -> promote).
- ``continuous-tuning``: both, as one scheduled run.
"""

from tuneloop.pipelines.continuous_tuning import continuous_tuning
from tuneloop.pipelines.export_dataset import export_dataset
from tuneloop.pipelines.tune_and_promote import tune_and_promote

PIPELINES = {
    "export-dataset": export_dataset,
    "tune-and-promote": tune_and_promote,
    "continuous-tuning": continuous_tuning,
}

__all__ = ["PIPELINES", "continuous_tuning", "export_dataset", "tune_and_promote"]
