"""Caching is decided in the compiled pipeline, task by task (docs/google-cloud.md#caching).

Every task of every committed template is checked: a task whose result depends on state outside its
inputs (the warehouse, the dataset root, the registry, the clock) must be compiled with caching off,
so it runs however the template is named, uploaded or scheduled. Only the tasks listed in CACHEABLE
(their outputs follow from their inputs) may be answered from cache. Sub-pipeline and condition
tasks are off too: nothing under them is reused by accident.
"""

from __future__ import annotations

import re

import pytest
import yaml

from tests.conftest import ROOT

NAMES = ["continuous-tuning", "export-dataset", "label-examples", "select-model", "selfplay-training", "tune-and-promote"]
# component -> why its result follows from its inputs alone
CACHEABLE = {
    "tune-model": "a content-addressed dataset + base model + hyperparameters; hosted jobs are keyed the same way",
    "plan-attempt": "the attempt's blessing and result card, the history and limits it is given",
    "play-selfplay-shard": "seeded games of a given (immutable) champion version",
    "gate-training-set": "counts the games of its input artifact",
    "train-policy-value-net": "seeded training on its input artifact",
    "run-gauntlet": "seeded games of its input model against fixed opponents",
}
# component -> the outside state that makes it uncacheable (each must appear in some template)
NEVER_CACHED = {
    "check-config": "the registry, and the credentials in the task's environment",
    "extract-examples": "the warehouse since the watermark",
    "prepare-dataset": "the dataset root's state (previous dataset, watermark); it publishes",
    "claim-tuning": "the claims under the dataset root; it writes one",
    "evaluate-model": "the registry's current champion",
    "promote-model": "the registry (compare-and-set of the champion)",
    "record-skip": "the registry's champion; writes the summary",
    "check-selfplay-config": "the registry's champion",
    "combine-exports": "earlier runs' exports under data_root; it keeps this run's",
    "promote-selfplay": "the registry (compare-and-set of the champion)",
    "deploy-champion": "the registry's champion and the endpoint's deployments; it moves traffic",
    "label-examples": "the warehouse (unlabelled rows, the review table's corrections) and the labeller's answers; it writes both tables",
    "select-model": "the clock (end-of-life dates), the credentials in the task's environment, the ranker's answer",
    "record-selfplay-skip": "the registry's champion and curriculum record; writes the summary",
}


def _component(ref: str) -> str:
    return re.sub(r"(-\d+)+$", "", ref.removeprefix("comp-"))


def _tasks(doc: dict):
    """(dag name, task name, component, is a container task, caching options) for every task."""
    dags = [("root", doc["root"]["dag"])]
    dags += [(name, c["dag"]) for name, c in doc["components"].items() if "dag" in c]
    for dag_name, dag in dags:
        for task_name, task in dag["tasks"].items():
            ref = task["componentRef"]["name"]
            container = "executorLabel" in doc["components"][ref]
            yield dag_name, task_name, _component(ref), container, task.get("cachingOptions", {})


@pytest.fixture(scope="module")
def docs() -> dict[str, dict]:
    return {n: yaml.safe_load((ROOT / "compile" / f"{n}.yaml").read_text()) for n in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_every_task_caches_only_if_its_result_follows_from_its_inputs(docs, name):
    wrong = []
    for dag, task, component, container, caching in _tasks(docs[name]):
        cached = bool(caching.get("enableCache", False))
        if container:
            assert component in CACHEABLE or component in NEVER_CACHED, (
                f"{name}: task {task} ({component}) is in neither CACHEABLE nor NEVER_CACHED: decide whether "
                "its result depends on state outside its inputs, set_caching_options accordingly, list it here"
            )
            expected = component in CACHEABLE
        else:
            expected = False  # sub-pipelines off; condition groups carry no caching options at all
        if cached != expected:
            wrong.append(f"{dag}/{task} ({component}): enableCache={cached}, expected {expected}")
    assert wrong == [], f"{name}.yaml:\n" + "\n".join(wrong)


def test_every_stateful_component_appears_uncached_and_tune_may_cache(docs):
    seen: dict[str, set[bool]] = {}
    for name in NAMES:
        for _, _, component, container, caching in _tasks(docs[name]):
            if container:
                seen.setdefault(component, set()).add(bool(caching.get("enableCache", False)))
    assert {c for c in NEVER_CACHED if c in seen} == set(NEVER_CACHED), set(NEVER_CACHED) - set(seen)
    assert all(seen[c] == {False} for c in NEVER_CACHED)
    assert seen["tune-model"] == {True} and seen["extract-examples"] == {False}
