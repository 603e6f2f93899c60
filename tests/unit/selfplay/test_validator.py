"""The export validator cannot be made to fall over: one damaged file per class, bounded memory and work.

Every class in tests/unit/selfplay/damaged.py is refused with a reason that names what is wrong and
the fix; valid files (a real export, a v1 file, a Fortran-ordered one, a stored one, one with every
v2 key) pass. The bounds are measured: tracemalloc's peak for each file (the stated bound is
``2 x max_total_bytes + 32 MiB``; files refused from their headers stay under 1 MiB and inflate
nothing), and a folder scan in a subprocess under an address-space and CPU-time limit.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.unit.selfplay import damaged
from tuneloop.selfplay import exports, npz
from tuneloop.selfplay.cli import npz_app

LIMITS = exports.ValidatorLimits(max_total_bytes=16 << 20)  # the honest bomb inflates to 64 MiB
# Refused from the container or the headers: nothing but headers inflated.
HEADER_ONLY = {
    "not a zip", "empty file", "truncated zip", "header declares a huge shape", "header declares too little",
    "zip directory declares gigabytes", "zip bomb (64 MiB)", "pickled object array", "structured dtype", "nested member",
    "odd member", "duplicate member", "too many members", "lzma member", "oversized .npy header",
    "corrupt deflate stream",
}


@pytest.fixture(scope="module")
def base(small_export) -> dict[str, np.ndarray]:
    return damaged.arrays_of(small_export)


@pytest.fixture(scope="module")
def damaged_files(tmp_path_factory, base) -> dict[str, Path]:
    return damaged.build_all(tmp_path_factory.mktemp("damaged"), base)


def _measured(path: Path, limits: exports.ValidatorLimits) -> tuple[exports.FileReport, int]:
    tracemalloc.start()
    try:
        report = exports.validate_file(path, limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return report, peak


@pytest.mark.parametrize("damage", damaged.CLASSES, ids=[d.name for d in damaged.CLASSES])
def test_every_damaged_class_is_flagged_with_its_reason_in_bounded_memory(damaged_files, damage):
    report, peak = _measured(damaged_files[damage.name], LIMITS)
    text = " | ".join(report.errors + report.warnings)
    for word in damage.words:
        assert word in text, f"{damage.name}: {word!r} not in {text}"
    if damage.warning_only:
        assert report.valid and report.warnings, damage.name
    else:
        assert not report.valid, f"{damage.name} was accepted"
    assert peak <= LIMITS.memory_bound
    if damage.name in HEADER_ONLY:
        assert report.bytes_inflated <= 64 * 1024, f"{damage.name} inflated {report.bytes_inflated} bytes"
        assert peak < 1 << 20, f"{damage.name}: peak {peak} bytes"


def test_forged_sizes_are_refused_with_the_default_limits_without_allocating(damaged_files):
    for name, declared in (("zip directory declares gigabytes", "4.0 GiB"), ("header declares a huge shape", "GiB")):
        report, peak = _measured(damaged_files[name], exports.ValidatorLimits())
        assert not report.valid and declared in " ".join(report.errors), report.errors
        assert peak < 1 << 20 and report.bytes_inflated <= 4096


def test_an_honest_zip_bomb_is_refused_before_it_inflates(damaged_files):
    bomb = damaged_files["zip bomb (64 MiB)"]
    assert bomb.stat().st_size < 1 << 20  # a small file ...
    report, peak = _measured(bomb, LIMITS)
    assert "the members inflate to 64.0 MiB" in report.errors[0]  # ... that would inflate to 64 MiB
    assert report.bytes_inflated == 0 and peak < 1 << 20
    roomy = exports.ValidatorLimits(max_total_bytes=128 << 20)  # allowed to inflate: it is read, then judged
    ok, peak = _measured(bomb, roomy)
    assert ok.bytes_inflated >= 64 << 20 and "missing keys" in ok.errors[0] and peak <= roomy.memory_bound


def test_a_pickled_object_array_is_refused_without_being_unpickled(damaged_files, tmp_path, monkeypatch):
    marker = tmp_path / "unpickled"
    monkeypatch.setenv(damaged.MARKER_ENV, str(marker))
    path = damaged_files["pickled object array"]
    report = exports.validate_file(path)
    assert "never unpickled" in report.errors[0] and not marker.exists()
    # the control: numpy with pickle allowed does run the payload
    with np.load(path, allow_pickle=True) as z:
        z[npz.GAME_IDS]
    assert marker.read_text() == "unpickled!"


def test_valid_files_pass(small_export, base, tmp_path):
    assert exports.validate_file(small_export).errors == []
    v1 = {k: v for k, v in base.items() if k not in npz.V2_KEYS}
    v1[npz.META_SCHEMA_VERSION] = np.asarray(1, dtype=np.int64)
    np.savez_compressed(tmp_path / "v1.npz", **v1)
    fortran = {**base, npz.FEATURES: np.asfortranarray(base[npz.FEATURES])}
    np.savez(tmp_path / "fortran.npz", **fortran)  # stored, Fortran order
    n = len(base[npz.VALUES])
    full = {
        **base,
        npz.QUALITY_SCORE: np.linspace(0, 1, n, dtype=np.float32),
        npz.OPPONENT_ELO: np.where(np.arange(n) % 2, np.nan, 1200.0).astype(np.float32),
        npz.HEURISTICS: np.where(np.arange(2 * n).reshape(n, 2) % 3, np.nan, 0.5).astype(np.float32),
    }
    np.savez_compressed(tmp_path / "full.npz", **full)
    np.savez_compressed(tmp_path / "synthetic.npz", **damaged.synthetic_arrays(3000, seed=4))
    for name in ("v1", "fortran", "full", "synthetic"):
        report = exports.validate_file(tmp_path / f"{name}.npz")
        assert report.valid and not report.warnings, (name, report.errors, report.warnings)
    back = exports.load_npz(tmp_path / "fortran.npz")
    np.testing.assert_array_equal(back.features, base[npz.FEATURES])
    assert exports.load_npz(tmp_path / "v1.npz").schema_version == 1
    assert np.isnan(exports.load_npz(tmp_path / "full.npz").opponent_elo[1])


@pytest.mark.parametrize(("board", "entries"), [("hex5_2p", 4), ("hex8_2p", 64)])
def test_validating_a_large_valid_file_stays_within_the_stated_memory_bound(tmp_path, board, entries):
    path = tmp_path / "big.npz"
    np.savez_compressed(path, **damaged.synthetic_arrays(40_000, seed=2, board=board, max_entries=entries))
    report, peak = _measured(path, exports.ValidatorLimits())
    assert report.valid, report.errors
    assert report.bytes_inflated > 8 << 20
    bound = exports.MEMORY_FACTOR * report.bytes_inflated + exports.MEMORY_CONSTANT
    assert peak <= bound, f"peak {peak / 2**20:.1f} MiB > {bound / 2**20:.1f} MiB"


@pytest.fixture
def mixed_folder(tmp_path, damaged_files, small_export) -> Path:
    folder = tmp_path / "exports"
    (folder / "host-a").mkdir(parents=True)
    for path in damaged_files.values():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "host-a" / "good.npz").write_bytes(small_export.read_bytes())
    os.mkfifo(folder / "pipe.npz")  # opening it would block: it must be refused unopened
    (folder / "dir.npz").mkdir()
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # not followed
    return folder


def test_a_folder_scan_reports_every_file_and_exits_nonzero(mixed_folder, damaged_files):
    result = CliRunner().invoke(npz_app, ["validate", "--json", "--max-bytes", str(16 << 20), str(mixed_folder)])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    files = {Path(f["path"]).name: f for f in report["files"]}
    expected = {p.name for p in damaged_files.values()} | {"good.npz", "pipe.npz"}
    assert set(files) == expected  # every file once (the folder named dir.npz and the symlink loop are not files)
    assert files["good.npz"]["valid"] and files["good.npz"]["positions"] > 0
    assert "not a regular file" in files["pipe.npz"]["errors"][0]
    warned = [d for d in damaged.CLASSES if d.warning_only]
    assert report["valid"] == 1 + len(warned) and report["invalid"] == len(expected) - report["valid"]
    text = CliRunner().invoke(npz_app, ["validate", "--max-bytes", str(16 << 20), str(mixed_folder)])
    assert text.exit_code == 1
    for path in damaged_files.values():
        assert f"{mixed_folder / path.name}" in text.output
    assert f"ok      {mixed_folder / 'host-a' / 'good.npz'}" in text.output
    assert f"{report['valid']} valid, {report['invalid']} invalid" in text.output


def test_warnings_pass_unless_strict(damaged_files, tmp_path):
    folder = tmp_path / "warn"
    folder.mkdir()
    src = damaged_files["unknown key"]
    (folder / src.name).write_bytes(src.read_bytes())
    runner = CliRunner()
    relaxed = runner.invoke(npz_app, ["validate", str(folder)])
    assert relaxed.exit_code == 0 and "WARN" in relaxed.output and "engine_build" in relaxed.output
    assert runner.invoke(npz_app, ["validate", "--strict", str(folder)]).exit_code == 1


def test_the_folder_scan_runs_under_memory_and_cpu_limits(mixed_folder, damaged_files, tmp_path):
    """A subprocess with 1 GiB of address space and 60 CPU-seconds scans every damaged file (default limits)."""

    def limits():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        resource.setrlimit(resource.RLIMIT_CPU, (60, 60))

    (mixed_folder / "pipe.npz").unlink()
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['tuneloop', 'npz', 'validate', '--json', {str(mixed_folder)!r}]\n"
        "try:\n    runpy.run_module('tuneloop.cli', run_name='__main__')\n"
        "finally:\n    hwm = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
        "    print('MAXRSS', hwm, file=sys.stderr)\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=limits, env=env, timeout=600
    )
    assert out.returncode == 1, out.stderr[-2000:]  # 1 = invalid files found; a kill would be negative
    report = json.loads(out.stdout)
    assert len(report["files"]) == len(damaged_files) + 1
    peak_kib = int(out.stderr.rsplit("MAXRSS", 1)[1].split()[0])  # VmHWM of the scanning process
    # the forged files declare 4 GiB and 225 GB, the bomb inflates to 64 MiB: the scan stays far below
    assert peak_kib < 400 * 1024, f"the scan's peak RSS was {peak_kib / 1024:.0f} MiB"
