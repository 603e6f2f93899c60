"""Shared fixtures. Paths: the repo root and tests/testdata."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT / "tests" / "testdata"

# Keep BLAS/torch to one thread per test process: the suite runs on 2 cores, often under xdist.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# The data path's worker processes (tuneloop.parallel) are tested on purpose in tests/unit/test_parallel.py;
# elsewhere a test's many tiny batches run in its own process (two xdist workers already fill two cores).
os.environ.setdefault("TUNELOOP_WORKERS", "1")


@pytest.fixture
def testdata() -> Path:
    return TESTDATA
