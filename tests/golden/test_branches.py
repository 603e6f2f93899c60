"""The compiled tune-and-promote spec: the first task picks one of two branches (where the provider's
tasks run: CPU or GPU), the provider is a task parameter, and the GPU task's settings.

The spec is parsed and walked (root task -> condition -> sub-pipeline -> task -> executor), so these
hold whatever else changes in the YAML; test_compiled_yaml.py keeps the committed file current.
"""

from __future__ import annotations

import re

import pytest
import yaml
from tuneloop.components.images import BASE_IMAGE, GPU_IMAGE
from tuneloop.pipelines.tune_and_promote import CPU, GPU

from tuneloop.providers import registry

BRANCHES = {"cpu": "tune-evaluate-promote", "gpu": "gpu-tune-evaluate-promote"}
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


def _branches_dag(spec: dict) -> tuple[str, dict]:
    """The root's tune-branches task and its sub-pipeline's DAG (where the two conditions are)."""
    name, task = _only(spec["root"]["dag"]["tasks"], "tune-branches")
    return name, _dag(spec, task["componentRef"]["name"])


def branch(spec: dict, image: str) -> dict:
    """The condition task for ``image``, its sub-pipeline task, and that sub-pipeline's tasks.

    ``chain`` holds (component, task) pairs from the inside out: the sub-pipeline's component, then each
    enclosing DAG (None = the root) with its task that runs the level inside:
    ``[(sub-pipeline, None), (condition, sub-pipeline task), (tune-branches, condition task),
    (None, tune-branches task)]``.
    """
    wanted = f"inputs.parameter_values['pipelinechannel--image'] == '{image}'"
    tb_name, tb_dag = _branches_dag(spec)
    tb_component = spec["root"]["dag"]["tasks"][tb_name]["componentRef"]["name"]
    hits = [(n, t) for n, t in tb_dag["tasks"].items() if t.get("triggerPolicy", {}).get("condition") == wanted]
    assert len(hits) == 1, f"expected one branch on image == {image!r}, found {[n for n, _ in hits]}"
    cond_name, cond = hits[0]
    cond_component = cond["componentRef"]["name"]
    # The branch's sub-pipeline; beside it, for served providers, the optional deploy step's condition.
    [(sub_name, sub)] = [(n, t) for n, t in _dag(spec, cond_component)["tasks"].items() if "triggerPolicy" not in t]
    sub_component = sub["componentRef"]["name"]
    return {
        "condition": cond,
        "sub": sub,
        "tasks": _dag(spec, sub_component)["tasks"],
        "chain": [(sub_component, None), (cond_component, sub_name), (tb_component, cond_name), (None, tb_name)],
    }


def resolve(spec: dict, chain: list, task: str, param: str):
    """Follow input ``param`` of ``task`` (in chain[0]'s DAG) up to a root pipeline parameter or a constant.

    Returns ``("parameter", name)``, ``("constant", value)`` or ``("output", "task.key")``.
    """
    for component, task_name in [(chain[0][0], task), *chain[1:]]:
        while True:
            value = _dag(spec, component)["tasks"][task_name]["inputs"]["parameters"][param]
            if "taskOutputParameter" in value:
                out = value["taskOutputParameter"]
                return ("output", f"{out['producerTask']}.{out['outputParameterKey']}")
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


def test_the_branch_constants_are_the_images_providers_declare():
    assert sorted([CPU, GPU]) == sorted(registry.IMAGES) == sorted(BRANCHES)
    assert {c.image for c in registry.provider_classes().values()} <= set(registry.IMAGES)


def test_check_config_runs_first_and_picks_one_of_two_branches(spec):
    root = spec["root"]["dag"]["tasks"]
    check = root["check-config"]
    for param in ("provider", "hyperparameters", "budget_usd", "eval_options", "registry_uri"):
        assert check["inputs"]["parameters"][param] == {"componentInputParameter": param}
    assert sorted(root) == ["check-config", "tune-branches"]  # nothing runs outside a branch
    assert root["tune-branches"]["dependentTasks"] == ["check-config"]
    _, dag = _branches_dag(spec)
    assert len(dag["tasks"]) == len(BRANCHES)  # one branch per image, not one per provider
    assert all("condition" in t["triggerPolicy"] for t in dag["tasks"].values())


def _promotion(spec: dict, b: dict) -> tuple[dict, dict, list]:
    """Attempt 1's two gates (next attempt if its plan says go, else promotion) and the promotion's DAG."""
    [(cb_name, cb)] = [(n, t) for n, t in b["tasks"].items() if n.startswith("condition-branches")]
    gates = {t["taskInfo"]["name"]: (n, t) for n, t in _dag(spec, cb["componentRef"]["name"])["tasks"].items()}
    assert sorted(gates) == ["attempt-2", "promote-attempt-1"]
    _, go = gates["attempt-2"]
    stop_name, stop = gates["promote-attempt-1"]
    stop_condition = "inputs.parameter_values['pipelinechannel--plan-attempt-go'] != true"
    assert stop["triggerPolicy"]["condition"] == stop_condition
    assert go["triggerPolicy"]["condition"] == f"!({stop_condition})"
    chain = [(stop["componentRef"]["name"], None), (cb["componentRef"]["name"], stop_name),
             (b["chain"][0][0], cb_name), *b["chain"][1:]]
    return go, _dag(spec, stop["componentRef"]["name"])["tasks"], chain


@pytest.mark.parametrize("image", sorted(BRANCHES))
def test_each_branch_tunes_evaluates_plans_and_promotes_with_the_checked_provider(spec, image):
    b = branch(spec, image)
    assert b["condition"]["taskInfo"]["name"] == f"{image}-branch"
    assert b["sub"]["componentRef"]["name"] == f"comp-{BRANCHES[image]}"
    tune, _ = _only(b["tasks"], "tune-model")
    evaluate, ev = _only(b["tasks"], "evaluate-model")
    plan, pl = _only(b["tasks"], "plan-attempt")
    assert ev["dependentTasks"] == [tune] and sorted(pl["dependentTasks"]) == sorted([tune, evaluate])
    assert all(n in (tune, evaluate, plan) or n.startswith("condition-branches") for n in b["tasks"])
    # attempt 2 (dsl.If on the plan's go) or, else, promotion of this attempt's candidate
    go, promotion, chain = _promotion(spec, b)
    promote, _ = _only(promotion, "promote-model")
    [(gate_name, gate)] = [(n, t) for n, t in promotion.items() if "triggerPolicy" in t]
    # the optional deployment: after promotion, only when deploy_endpoint is set
    assert gate["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--deploy_endpoint'] != ''"
    assert gate["dependentTasks"] == [promote]
    [(deploy_name, _)] = _dag(spec, gate["componentRef"]["name"])["tasks"].items()
    assert deploy_name.startswith("deploy-champion")
    for task in (tune, evaluate, plan):  # the first task's canonical name, not the raw pipeline parameter
        assert resolve(spec, b["chain"], task, "provider") == ("output", "check-config.provider")
    # the tune task trains with the config the first task parsed (and the budget it merged in)
    assert resolve(spec, b["chain"], tune, "hyperparameters") == ("output", "check-config.hyperparameters")
    assert resolve(spec, b["chain"], plan, "max_attempts") == ("parameter", "max_attempts")
    assert "budget_usd" not in b["tasks"][tune]["inputs"]["parameters"]
    for task, param in (
        (tune, "dataset_uri"),
        (tune, "base_model"),
        (evaluate, "registry_uri"),
        (evaluate, "eval_options"),
    ):
        assert resolve(spec, b["chain"], task, param) == ("parameter", param)
    assert resolve(spec, chain, promote, "reports_uri") == ("parameter", "reports_uri")
    assert resolve(spec, chain, promote, "attempts") == ("output", "plan-attempt.attempts")
    # promotion is registry I/O: the CPU image, no accelerator
    container = executor(spec, chain, promote)
    assert container["image"] == BASE_IMAGE and "resources" not in container


@pytest.mark.parametrize("image", sorted(BRANCHES))
def test_each_branch_unrolls_five_attempts_with_one_promotion_each(spec, image):
    """Attempt k+1 runs only behind attempt k's plan (the Else of its promotion's condition); every attempt
    has its own promotion (one of them runs), and the fifth attempt promotes without another gate."""
    b = branch(spec, image)
    tasks, depth = b["tasks"], 1
    while True:
        _only(tasks, "tune-model")
        _only(tasks, "plan-attempt")
        branches = [t for n, t in tasks.items() if n.startswith("condition-branches")]
        if not branches:
            _only(tasks, "promote-model")
            break
        [cb] = branches
        gates = {t["taskInfo"]["name"]: t for t in _dag(spec, cb["componentRef"]["name"])["tasks"].values()}
        assert sorted(gates) == [f"attempt-{depth + 1}", f"promote-attempt-{depth}"]
        _only(_dag(spec, gates[f"promote-attempt-{depth}"]["componentRef"]["name"])["tasks"], "promote-model")
        tasks, depth = _dag(spec, gates[f"attempt-{depth + 1}"]["componentRef"]["name"])["tasks"], depth + 1
    assert depth == 5


def test_cpu_branch_tunes_and_evaluates_on_the_base_image(spec):
    b = branch(spec, "cpu")
    for name in ("tune-model", "evaluate-model"):  # hosted models answer remotely: the CPU image
        task, _ = _only(b["tasks"], name)
        container = executor(spec, b["chain"], task)
        assert container["image"] == BASE_IMAGE and "resources" not in container


def test_gpu_branch_tunes_on_the_gpu_image_with_accelerator_settings_from_pipeline_parameters(spec):
    b = branch(spec, "gpu")
    for name in ("tune-model", "evaluate-model"):
        task, _ = _only(b["tasks"], name)
        container = executor(spec, b["chain"], task)
        assert container["image"] == GPU_IMAGE
        for keys, parameter in GPU_RESOURCES.items():
            value = container["resources"]
            for k in keys:
                value = value[k]
            m = _PLACEHOLDER.match(value)
            assert m, f"resources.{'.'.join(keys)}={value!r} is not read from a task input"
            assert resolve(spec, b["chain"], task, m["name"]) == ("parameter", parameter), keys
