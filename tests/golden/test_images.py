"""The images a template runs: one repository setting, the tag from tuneloop/version.py, digests pinned.

The components bake the default references in at import time; ``tuneloop compile`` rewrites every one
of them in the compiled spec, so the setting reaches every task, while ``python -m compile`` (the
committed YAML) never reads the environment.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import ROOT
from tuneloop import images as img
from tuneloop.cli import app
from tuneloop.version import __version__

REPO = "europe-west4-docker.pkg.dev/acme-ml/tuneloop"
DIGEST = "sha256:" + "ab" * 32
NAMES = ["continuous-tuning", "export-dataset", "label-examples", "select-model", "selfplay-training", "tune-and-promote"]


def _cli(*args, env=None):
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    return result.exit_code, result.output


def _executor_images(path) -> dict[str, str]:
    doc = yaml.safe_load(path.read_text())
    return {k: v["container"]["image"] for k, v in doc["deploymentSpec"]["executors"].items()}


@pytest.fixture(scope="module")
def retargeted(tmp_path_factory):
    out = tmp_path_factory.mktemp("retargeted")
    code, output = _cli("compile", "--out", out, "--image-repository", REPO, env={"TUNELOOP_IMAGE_REPOSITORY": ""})
    assert code == 0, output
    return out


@pytest.mark.parametrize("name", NAMES)
def test_compile_with_a_repository_names_it_in_every_task(retargeted, name):
    found = _executor_images(retargeted / f"{name}.yaml")
    assert found and all(ref.startswith(f"{REPO}/tuneloop-") and ref.endswith(f":{__version__}") for ref in found.values()), found
    committed = _executor_images(ROOT / "compile" / f"{name}.yaml")
    # the same image kind per task as the committed template (only the repository moved)
    assert {k: img.image_kind(v) for k, v in found.items()} == {k: img.image_kind(v) for k, v in committed.items()}


def test_the_three_images_land_on_their_tasks(retargeted):
    sp = _executor_images(retargeted / "selfplay-training.yaml")
    assert sp["exec-train-policy-value-net"] == f"{REPO}/tuneloop-trainer-gpu:{__version__}"
    assert sp["exec-play-selfplay-shard"] == f"{REPO}/tuneloop-selfplay-cpu:{__version__}"
    assert sp["exec-run-gauntlet"] == f"{REPO}/tuneloop-selfplay-cpu:{__version__}"
    assert sp["exec-combine-exports"] == f"{REPO}/tuneloop-base:{__version__}"


def test_only_the_images_change(retargeted):
    from tests.golden.test_compiled_yaml import _normalise

    for name in NAMES:
        assert _normalise((retargeted / f"{name}.yaml").read_text()) == _normalise(
            (ROOT / "compile" / f"{name}.yaml").read_text()
        )


def test_the_environment_variable_sets_the_repository_of_tuneloop_compile(tmp_path):
    code, output = _cli("compile", "--out", tmp_path, "--pipeline", "export-dataset",
                        env={"TUNELOOP_IMAGE_REPOSITORY": "registry.example.com:5000/ml"})
    assert code == 0, output
    refs = set(_executor_images(tmp_path / "export-dataset.yaml").values())
    assert refs == {f"registry.example.com:5000/ml/tuneloop-base:{__version__}"}
    assert "TUNELOOP_IMAGE_REPOSITORY" in output  # says where the setting came from


def test_the_committed_yaml_ignores_the_environment(tmp_path):
    env = {**__import__("os").environ, "TUNELOOP_IMAGE_REPOSITORY": REPO, "TUNELOOP_IMAGE_LOCK": "/nonexistent"}
    subprocess.run([sys.executable, "-m", "compile", "--out", str(tmp_path)], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    for name in NAMES:
        assert (tmp_path / f"{name}.yaml").read_text() == (ROOT / "compile" / f"{name}.yaml").read_text()


def test_digests_pin_images_and_the_lock_file_must_match_the_version(tmp_path):
    one = ("--pipeline", "selfplay-training")
    code, output = _cli("compile", "--out", tmp_path / "a", *one, "--image-repository", REPO, "--image-digest", f"base={DIGEST}")
    assert code == 0, output
    refs = set(_executor_images(tmp_path / "a" / "selfplay-training.yaml").values())
    assert f"{REPO}/tuneloop-base@{DIGEST}" in refs
    assert f"{REPO}/tuneloop-trainer-gpu:{__version__}" in refs  # not pinned: by tag

    lock = tmp_path / "images.lock.json"
    gpu_digest = "sha256:" + "cd" * 32
    pushed = [f"base={REPO}/tuneloop-base@{DIGEST}", f"trainer-gpu={REPO}/tuneloop-trainer-gpu@{gpu_digest}"]
    assert img.main(["lock", "--image-repository", REPO, "--out", str(lock), *pushed]) == 0
    code, output = _cli("compile", "--out", tmp_path / "b", *one, "--image-lock", lock, env={"TUNELOOP_IMAGE_REPOSITORY": ""})
    assert code == 0, output
    refs = set(_executor_images(tmp_path / "b" / "selfplay-training.yaml").values())
    assert refs == {f"{REPO}/tuneloop-base@{DIGEST}", f"{REPO}/tuneloop-trainer-gpu@{gpu_digest}",
                    f"{REPO}/tuneloop-selfplay-cpu:{__version__}"}

    data = json.loads(lock.read_text())
    data["version"] = "0.0.1"
    lock.write_text(json.dumps(data))
    code, output = _cli("compile", "--out", tmp_path / "c", *one, "--image-lock", lock)
    assert code == 2 and "0.0.1" in output and __version__ in output and "make images" in output
    code, output = _cli("compile", "--out", tmp_path / "d", *one, "--image-lock", tmp_path / "missing.json")
    assert code == 2 and "no such file" in output


@pytest.mark.parametrize(
    "value, message",
    [
        ("https://europe-docker.pkg.dev/p/r", "no scheme"),
        ("europe-docker.pkg.dev/p/r:0.1.0", "names a tag or digest"),
        ("europe-docker.pkg.dev/p/r@" + DIGEST, "names a tag or digest"),
        ("Europe-docker.pkg.dev/P/R", "lowercase"),
        ("europe docker/p", "not an image repository"),
    ],
)
def test_a_bad_repository_is_refused_naming_the_option(tmp_path, value, message):
    code, output = _cli("compile", "--out", tmp_path, "--image-repository", value)
    assert code == 2 and "--image-repository" in output and message in output
    assert not list(tmp_path.glob("*.yaml"))


def test_bad_digests_are_refused_with_the_kind_list():
    with pytest.raises(img.ImageError, match=r"'gpu'.*did you mean 'trainer-gpu'"):
        img.parse_digests([f"gpu={DIGEST}"])
    with pytest.raises(img.ImageError, match="sha256:<64 hex digits>"):
        img.parse_digests(["base=sha256:abc"])


def test_the_tag_is_the_source_version_not_installed_metadata(monkeypatch):
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "version", lambda _name: "9.9.9")  # a stale install
    assert img.ImageSet(REPO).ref("base") == f"{REPO}/tuneloop-base:{__version__}"
    import importlib

    import tuneloop.components.images as component_images

    importlib.reload(component_images)
    assert component_images.BASE_IMAGE.endswith(f":{__version__}")


def test_make_images_tags_with_the_same_references():
    out = subprocess.run(
        ["make", "-n", "images", f"IMAGE_REPOSITORY={REPO}", "PY=.venv/bin/python"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert f"--image-repository \"{REPO}\"" in out.stdout or f"--image-repository {REPO}" in out.stdout
    ref = subprocess.run(
        [sys.executable, "-m", "tuneloop.images", "ref", "trainer-gpu", "--image-repository", REPO],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert ref == f"{REPO}/tuneloop-trainer-gpu:{__version__}"
