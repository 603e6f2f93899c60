"""The ``oss-lora`` provider: LoRA supervised fine-tuning of open models with torch + transformers + peft.

Importing this package is light (no torch); the trainer loads torch when a job runs.

- :class:`OssLoraProvider` — the Provider (preflight / submit / resume / wait / cancel / predict).
- :class:`LoraConfig` — every trainer setting, checked; built from a pipeline's hyperparameters.
- ``trainer.train`` / ``predict.load_predictor`` — the engine, usable without the provider.
- ``tiny`` — offline tiny models and data for tests and the benchmark.
"""

from tuneloop.providers.oss_lora.config import ConfigError, LoraConfig
from tuneloop.providers.oss_lora.provider import OssLoraProvider

__all__ = ["ConfigError", "LoraConfig", "OssLoraProvider"]
