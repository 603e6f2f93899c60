"""``tuneloop compile --gpu NVIDIA_L4:2 --cpu 8 --memory 32G``: GPU settings compiled in as constants.

The GPU tasks' resources must be exactly what kfp itself writes for constants (the ``resource*``
fields and the legacy ``accelerator.type/count``, ``cpuLimit``, ``memoryLimit``), checked against a
reference task compiled by kfp here; the four parameters leave the template's interface.
"""

import re

import pytest
import yaml
from kfp import compiler, dsl
from typer.testing import CliRunner

from tuneloop.cli import app
from tuneloop.gpu import PARAMETERS

# The tasks that run on the CUDA trainer image, per pipeline (found by image: executor names are kfp's).
GPU_EXECUTORS = {
    "tune-and-promote": ["tune-model", "evaluate-model"],
    "selfplay-training": ["train-policy-value-net"],
}


def gpu_executors(doc: dict) -> list[str]:
    """The executors of ``doc`` whose container is the trainer-gpu image."""
    return sorted(k for k, v in doc["deploymentSpec"]["executors"].items()
                  if "tuneloop-trainer-gpu" in v["container"]["image"])


@dsl.component(base_image="python:3.11")
def _reference(x: int) -> int:
    return x


@dsl.pipeline(name="reference")
def _reference_pipeline(x: int = 1):
    _reference(x=x).set_accelerator_type("NVIDIA_L4").set_accelerator_limit(2).set_cpu_limit("8").set_memory_limit(
        "32G"
    )


@pytest.fixture(scope="module")
def kfp_constants(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("ref") / "ref.yaml"
    compiler.Compiler().compile(_reference_pipeline, str(path))
    return yaml.safe_load(path.read_text())["deploymentSpec"]["executors"]["exec-reference"]["container"]["resources"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("gpu")
    args = ["compile", "--out", str(out), "--gpu", "NVIDIA_L4:2", "--cpu", "8", "--memory", "32G",
            "--pipeline", "tune-and-promote", "--pipeline", "selfplay-training", "--pipeline", "export-dataset"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return {n: yaml.safe_load((out / f"{n}.yaml").read_text()) for n in [*GPU_EXECUTORS, "export-dataset"]}


@pytest.mark.parametrize("name", list(GPU_EXECUTORS))
def test_gpu_tasks_get_the_fields_kfp_writes_for_constants(compiled, kfp_constants, name):
    executors = compiled[name]["deploymentSpec"]["executors"]
    gpu = gpu_executors(compiled[name])
    assert sorted({re.sub(r"^exec-|(-\d+)+$", "", g) for g in gpu}) == sorted(GPU_EXECUTORS[name])
    for executor in gpu:
        assert executors[executor]["container"]["resources"] == kfp_constants, executor
    others = [k for k in executors if k not in gpu]
    assert all("resources" not in executors[k]["container"] for k in others)


@pytest.mark.parametrize("name", list(GPU_EXECUTORS))
def test_the_settings_leave_the_interface_and_reach_the_tasks_as_constants(compiled, name):
    doc = compiled[name]
    params = doc["root"]["inputDefinitions"]["parameters"]
    assert not set(PARAMETERS) & set(params)
    refs = [
        spec for task in doc["root"]["dag"]["tasks"].values()
        for spec in task.get("inputs", {}).get("parameters", {}).values()
    ]
    assert not [s for s in refs if s.get("componentInputParameter") in PARAMETERS]
    constants = [s["runtimeValue"]["constant"] for s in refs if "runtimeValue" in s]
    assert all(c in constants for c in ("NVIDIA_L4", 2.0, "8", "32G"))


def test_a_pipeline_without_gpu_tasks_is_compiled_unchanged(compiled, tmp_path):
    from tuneloop.pipelines.local_runner import compile_pipeline

    plain = yaml.safe_load(compile_pipeline("export-dataset", tmp_path / "e.yaml").read_text())
    assert compiled["export-dataset"] == plain


def test_without_the_options_the_settings_stay_parameters():
    from tests.conftest import ROOT

    doc = yaml.safe_load((ROOT / "compile" / "tune-and-promote.yaml").read_text())
    assert set(PARAMETERS) <= set(doc["root"]["inputDefinitions"]["parameters"])
    tunes = [e for e in gpu_executors(doc) if e.startswith("exec-tune-model")]
    assert len(tunes) == 5  # one per unrolled attempt of the GPU branch
    for tune in tunes:
        res = doc["deploymentSpec"]["executors"][tune]["container"]["resources"]
        assert res["accelerator"]["resourceType"].startswith("{{$.inputs.parameters[") and "type" not in res["accelerator"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gpu", "NVIDIA_L4X:1"], "did you mean 'NVIDIA_L4'"),
        (["--gpu", "nvidia_tesla_t4"], "did you mean 'NVIDIA_TESLA_T4'"),
        (["--gpu", "NVIDIA_L4:3"], "no machine with 3 x NVIDIA_L4"),
        (["--gpu", "NVIDIA_TESLA_K80:1"], "end of support"),
        (["--memory", "32GB"], "write '32G'"),
        (["--memory", "1.5Gi"], "write '1536Mi'"),
        (["--cpu", "8 cores"], "write '8'"),
    ],
)
def test_bad_constants_are_refused_before_anything_is_written(tmp_path, args, message):
    result = CliRunner().invoke(app, ["compile", "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not list(tmp_path.glob("*.yaml"))
