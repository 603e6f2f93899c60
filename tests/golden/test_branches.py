"""The compiled tune-and-promote spec: one dsl.If branch per provider, and the GPU task's settings.

The spec is parsed and walked (root task -> condition -> sub-pipeline -> task -> executor), so these
hold whatever else changes in the YAML; test_compiled_yaml.py keeps the committed file current.
"""

from __future__ import annotations

import re

import pytest
import yaml
from tuneloop.components.images import BASE_IMAGE, GPU_IMAGE

CPU_PROVIDERS = ["sklearn", "openai", "gemini", "claude"]
GPU_PROVIDERS = ["oss-lora"]
PROVIDERS = CPU_PROVIDERS + GPU_PROVIDERS
# The GPU task's resources -> the pipeline parameter each comes from.
GPU_RESOURCES = {
    ("accelerator", "resourceType"): "accelerator_type",
    ("accelerator", "resourceCount"): "accelerator_count",
    ("resourceCpuLimit",): "cpu_limit",
    ("resourceMemoryLimit",): "memory_limit",
}
_PLACEHOLDER = re.compile(r"^\{\{\$\.inputs\.parameters\['(?P<name>[^']+)'\]\}\}$")


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    from tuneloop.pipelines.local_runner import compile_pipeline

    path = compile_pipeline("tune-and-promote", tmp_path_factory.mktemp("branches") / "tune-and-promote.yaml")
    return yaml.safe_load(path.read_text())


def _dag(spec: dict, component: str | None) -> dict:
    return spec["root"]["dag"] if component is None else spec["components"][component]["dag"]


def _only(tasks: dict, prefix: str) -> tuple[str, dict]:
    """The one task named ``prefix`` or ``prefix-<n>`` in a DAG."""
    found = [(n, t) for n, t in tasks.items() if re.fullmatch(rf"{re.escape(prefix)}(-\d+)?", n)]
    assert len(found) == 1, f"expected one {prefix} task, found {sorted(n for n, _ in found)}"
    return found[0]


def branch(spec: dict, provider: str) -> dict:
    """The root's condition task for ``provider``, its sub-pipeline task, and that sub-pipeline's tasks.

    ``chain`` holds (component, task) pairs from the inside out: the sub-pipeline's component, then each
    enclosing DAG (None = the root) with its task that runs the level inside:
    ``[(sub-pipeline, None), (condition, sub-pipeline task), (None, condition task)]``.
    """
    wanted = f"inputs.parameter_values['pipelinechannel--check-config-Output'] == '{provider}'"
    root = spec["root"]["dag"]["tasks"]
    hits = [(n, t) for n, t in root.items() if t.get("triggerPolicy", {}).get("condition") == wanted]
    assert len(hits) == 1, f"expected one branch on provider == {provider!r}, found {[n for n, _ in hits]}"
    cond_name, cond = hits[0]
    cond_component = cond["componentRef"]["name"]
    # The branch's sub-pipeline; beside it, for served providers, the optional deploy step's condition.
    [(sub_name, sub)] = [(n, t) for n, t in _dag(spec, cond_component)["tasks"].items() if "triggerPolicy" not in t]
    sub_component = sub["componentRef"]["name"]
    return {
        "condition": cond,
        "sub": sub,
        "tasks": _dag(spec, sub_component)["tasks"],
        "chain": [(sub_component, None), (cond_component, sub_name), (None, cond_name)],
    }


def resolve(spec: dict, chain: list, task: str, param: str):
    """Follow input ``param`` of ``task`` (in chain[0]'s DAG) up to a root pipeline parameter or a constant.

    Returns ``("parameter", name)`` or ``("constant", value)``.
    """
    for component, task_name in [(chain[0][0], task), *chain[1:]]:
        while True:
            value = _dag(spec, component)["tasks"][task_name]["inputs"]["parameters"][param]
            constant = value.get("runtimeValue", {}).get("constant")
            if constant is None:
                param = value["componentInputParameter"]
                break  # an input of this DAG's component: look it up one level out
            m = _PLACEHOLDER.match(constant) if isinstance(constant, str) else None
            if not m:
                return ("constant", constant)
            param = m["name"]  # a placeholder for another input of the same task
    return ("parameter", param)


def executor(spec: dict, chain: list, task: str) -> dict:
    component = _dag(spec, chain[0][0])["tasks"][task]["componentRef"]["name"]
    return spec["deploymentSpec"]["executors"][spec["components"][component]["executorLabel"]]["container"]


def test_pipeline_parameters_carry_the_branch_choice_budget_and_gpu_defaults(spec):
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["provider"]["defaultValue"] == "sklearn"
    assert (
        params["budget_usd"]["parameterType"] == "NUMBER_DOUBLE"
        and params["budget_usd"]["defaultValue"] == 0.0
    )
    assert params["accelerator_type"]["defaultValue"] == "NVIDIA_L4"
    assert params["accelerator_count"]["parameterType"] == "NUMBER_INTEGER"
    assert params["accelerator_count"]["defaultValue"] == 1
    assert params["cpu_limit"]["defaultValue"] == "8" and params["memory_limit"]["defaultValue"] == "32G"


def test_check_config_runs_first_and_knows_every_branch(spec):
    root = spec["root"]["dag"]["tasks"]
    check = root["check-config"]
    assert check["inputs"]["parameters"]["branches"]["runtimeValue"]["constant"] == PROVIDERS
    assert check["inputs"]["parameters"]["provider"] == {"componentInputParameter": "provider"}
    branches = [t for n, t in root.items() if n != "check-config"]
    assert len(branches) == len(PROVIDERS)  # nothing runs outside a branch
    for t in branches:
        assert t["dependentTasks"] == ["check-config"] and "condition" in t["triggerPolicy"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_provider_has_a_branch_that_tunes_evaluates_and_promotes_with_it(spec, provider):
    b = branch(spec, provider)
    assert b["condition"]["taskInfo"]["name"] == f"provider-{provider}"
    assert b["sub"]["inputs"]["parameters"]["provider"] == {"runtimeValue": {"constant": provider}}
    tune, _ = _only(b["tasks"], "tune-model")
    evaluate, ev = _only(b["tasks"], "evaluate-model")
    promote, pr = _only(b["tasks"], "promote-model")
    assert set(b["tasks"]) == {tune, evaluate, promote}
    assert ev["dependentTasks"] == [tune] and sorted(pr["dependentTasks"]) == sorted([tune, evaluate])
    for task in (tune, evaluate):  # the branch's own provider, not the raw pipeline parameter
        assert resolve(spec, b["chain"], task, "provider") == ("constant", provider)
    for task, param in (
        (tune, "dataset_uri"),
        (tune, "hyperparameters"),
        (tune, "base_model"),
        (evaluate, "registry_uri"),
        (promote, "reports_uri"),
    ):
        assert resolve(spec, b["chain"], task, param) == ("parameter", param)
    # promotion is registry I/O: the CPU image, no accelerator
    container = executor(spec, b["chain"], promote)
    assert container["image"] == BASE_IMAGE and "resources" not in container


@pytest.mark.parametrize("provider", CPU_PROVIDERS)
def test_cpu_branches_tune_on_the_base_image_with_the_pipeline_budget(spec, provider):
    b = branch(spec, provider)
    tune, _ = _only(b["tasks"], "tune-model")
    container = executor(spec, b["chain"], tune)
    assert container["image"] == BASE_IMAGE and "resources" not in container
    assert resolve(spec, b["chain"], tune, "budget_usd") == ("parameter", "budget_usd")
    evaluate, _ = _only(b["tasks"], "evaluate-model")  # hosted models answer remotely: the CPU image
    container = executor(spec, b["chain"], evaluate)
    assert container["image"] == BASE_IMAGE and "resources" not in container


def test_oss_lora_tunes_on_the_gpu_image_with_accelerator_settings_from_pipeline_parameters(spec):
    b = branch(spec, "oss-lora")
    tune, _ = _only(b["tasks"], "tune-model")
    container = executor(spec, b["chain"], tune)
    assert container["image"] == GPU_IMAGE
    for keys, parameter in GPU_RESOURCES.items():
        value = container["resources"]
        for k in keys:
            value = value[k]
        m = _PLACEHOLDER.match(value)
        assert m, f"resources.{'.'.join(keys)}={value!r} is not read from a task input"
        assert resolve(spec, b["chain"], tune, m["name"]) == ("parameter", parameter), keys
    assert resolve(spec, b["chain"], tune, "budget_usd") == ("constant", 0.0)  # no hosted bill on own GPUs


@pytest.mark.parametrize("provider", PROVIDERS)
def test_served_branches_deploy_after_promotion_only_when_deploy_endpoint_is_set(spec, provider):
    from tuneloop.deploy import SERVED_PROVIDERS

    wanted = f"inputs.parameter_values['pipelinechannel--check-config-Output'] == '{provider}'"
    [cond] = [t for t in spec["root"]["dag"]["tasks"].values() if t.get("triggerPolicy", {}).get("condition") == wanted]
    inner = _dag(spec, cond["componentRef"]["name"])["tasks"]
    gates = {n: t for n, t in inner.items() if "triggerPolicy" in t}
    if provider not in SERVED_PROVIDERS:
        assert gates == {}
        return
    [(gate_name, gate)] = gates.items()
    assert gate["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--deploy_endpoint'] != ''"
    [sub_name] = [n for n in inner if n != gate_name]
    [(task_name, deploy)] = _dag(spec, gate["componentRef"]["name"])["tasks"].items()
    assert task_name.startswith("deploy-champion") and gate["dependentTasks"] == [sub_name]  # after promote
