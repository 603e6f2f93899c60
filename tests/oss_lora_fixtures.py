"""Session fixtures shared by the oss-lora unit tests and the oss-lora kfp.local pipeline test.

The tiny pre-trained base (tuneloop.providers.oss_lora.tiny) takes a few seconds of CPU to build, so one
session builds it once even when both tests/unit/oss_lora and tests/local ask for it: each conftest or
test module that imports these fixtures gets its own fixture definition, and the built folder is kept
in ``_BUILT`` for the others. Importing this module is light (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tuneloop.examples import Example
from tuneloop.providers.oss_lora import tiny

# One base per test process: {"base": folder}, filled by the first tiny_base fixture that runs.
_BUILT: dict[str, str] = {}


def build_tiny_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny Llama-style base (model + tokenizer with a chat template), built once per process."""
    if "base" not in _BUILT or not (Path(_BUILT["base"]) / "config.json").is_file():
        _BUILT["base"] = str(tiny.build_base(tmp_path_factory.mktemp("tiny") / "base"))
    return _BUILT["base"]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> str:
    """Folder of the tiny pre-trained base: it knows the topics, not yet the Q/A format."""
    return build_tiny_base(tmp_path_factory)


def supervised_text(tok, enc) -> list[str]:
    """The supervised tokens of an encoded example, decoded, one string per contiguous run."""
    runs, cur = [], []
    for i, w in zip(enc.input_ids, enc.weights, strict=True):
        if w > 0:
            cur.append(i)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    if cur:
        runs.append(tok.decode(cur))
    return runs


@dataclass(frozen=True)
class TopicData:
    train: list[Example]
    validation: list[Example]
    eval: list[Example]


def build_topic_data() -> TopicData:
    """Topic Q/A examples (label = the topic): 400 train, 40 validation, 100 held-out eval."""
    return TopicData(
        tiny.topic_examples(400, seed=1), tiny.topic_examples(40, seed=2), tiny.topic_examples(100, seed=3)
    )


@pytest.fixture(scope="session")
def topic_data() -> TopicData:
    return build_topic_data()
