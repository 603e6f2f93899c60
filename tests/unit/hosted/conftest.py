"""Fixtures for the hosted providers: one rendered dataset, fast settings, and (from tests/fakes/fixtures.py) the stand-ins.

The stand-ins are real HTTP servers on 127.0.0.1 (tests/fakes/); the providers reach them the way
they reach the real services, through the environment the SDKs read (OPENAI_BASE_URL,
GOOGLE_VERTEX_BASE_URL, STORAGE_EMULATOR_HOST, AWS_ENDPOINT_URL, ANTHROPIC_BASE_URL).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fakes.data import support_messages
from tests.fakes.fixtures import (  # noqa: F401 - fixtures used by the tests here
    FAST,
    TEST_CATALOG,
    anthropic_fake,
    bedrock_fake,
    gcs,
    moto_server,
    openai_fake,
    vertex_fake,
)
from tuneloop import datasets
from tuneloop.examples import SPLITS
from tuneloop.providers.base import TuneRequest

FAST_PREDICT = {"concurrency": 4, "retry": {"attempts": 4, "initial_s": 0.0, "max_s": 0.01}}


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """120 support messages, split and rendered in the openai, gemini and bedrock formats."""
    out = tmp_path_factory.mktemp("hosted") / "dataset"
    datasets.build_dataset(
        support_messages(120, seed=1), out, previous=None, formats=["openai", "gemini", "bedrock"], min_examples=8
    )
    return datasets.load_dataset(str(out))


def make_request(ds, fmt: str, base_model: str, hp: dict | None = None, output_dir: str = "") -> TuneRequest:
    return TuneRequest(
        train=ds.splits["train"],
        validation=ds.splits["validation"],
        dataset_hash=ds.hash,
        base_model=base_model,
        hyperparameters={**FAST, **(hp or {})},
        files={s: ds.format_file(fmt, s) for s in SPLITS},
        labels=ds.labels,
        output_dir=output_dir,
    )


ROOT = Path(__file__).resolve().parents[3]


def spawn_task(spec: dict):
    """Start tests.fakes.child (a tune task in its own process) with this test's environment."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.child", json.dumps(spec)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(proc, needle: str) -> list[str]:
    """The child's output lines up to and including the first one containing ``needle``."""
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if needle in line:
            return lines
    proc.wait()
    raise AssertionError(f"child exited ({proc.returncode}) before printing {needle!r}:\n" + "\n".join(lines))


def sigterm_when(ready, timeout: float = 30.0):
    """A thread that sends this process SIGTERM once ``ready()`` holds and run_job's handler is installed.

    The signal is delivered only while tuneloop's cancel handler owns SIGTERM (so it can never hit
    pytest itself); the handler runs in the main thread, inside ``run_job``'s wait, like a pipeline
    task being cancelled.
    """
    import signal
    import threading
    import time

    def installed() -> bool:
        h = signal.getsignal(signal.SIGTERM)
        return getattr(h, "__qualname__", "") == "_CancelOnSignal._on_signal"

    def run() -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if installed() and ready():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.005)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t
