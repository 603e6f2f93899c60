"""The tuning loop's stages with Vertex Model Registry as the registry (``vertex://`` registry URI)."""

from __future__ import annotations

import shutil
import uuid

import pytest

from tests.fakes.data import support_messages
from tuneloop import datasets, stages
from tuneloop.registry import open_registry
from tuneloop.registry.vertex import VertexRegistry

PROJECT, REGION = "tuneloop-test", "us-central1"
THRESHOLDS = {"min_values": {"macro_f1": 0.3}, "max_drop": {"macro_f1": 0.05}}


def _run(tmp_path, name, dataset_uri, registry_uri, model_name):
    work = tmp_path / name
    stages.tune(provider="sklearn", dataset_uri=dataset_uri, base_model="", hyperparameters={},
                model_dir=str(work / "model"), job_record_path=str(work / "job.json"))
    common = {"registry_uri": registry_uri, "model_name": model_name}
    blessing = stages.evaluate(provider="sklearn", model_dir=str(work / "model"), dataset_uri=dataset_uri,
                               thresholds=THRESHOLDS, blessing_path=str(work / "blessing.json"), **common)
    summary = stages.promote(blessing_path=str(work / "blessing.json"), model_dir=str(work / "model"),
                             run_name=name, reports_uri="", summary_path=str(work / "summary.json"), **common)
    return work, blessing, summary


def test_the_loop_promotes_into_vertex_and_judges_the_next_run_from_the_stored_copy(vertex, gcs, tmp_path):
    model_name = f"intent-{uuid.uuid4().hex[:6]}"
    uri = f"vertex://{PROJECT}/{REGION}?artifact_root={gcs}/models"
    d1 = tmp_path / "d1"
    datasets.build_dataset(support_messages(160, seed=3), d1, previous=None, formats=[], min_examples=8)

    work1, b1, s1 = _run(tmp_path, "run1", str(d1), uri, model_name)
    assert b1["champion_version"] is None and s1["promoted_version"] == "v1"
    registry = open_registry(uri, model_name)
    assert isinstance(registry, VertexRegistry) and registry.champion().version == "v1"
    stored = vertex.models[model_name]["versions"]["1"]
    assert stored["labels"]["provider"] == "sklearn" and stored["artifactUri"].startswith(f"{gcs}/models/")

    # The first run's task folder is gone (as on Vertex once a run ends): the champion must answer from
    # the copy the registry holds, on the same eval rows as the candidate.
    shutil.rmtree(work1)
    _, b2, s2 = _run(tmp_path, "run2", str(d1), uri, model_name)
    assert b2["champion_version"] == "v1"
    assert b2["champion_metrics"]["macro_f1"] == pytest.approx(b1["candidate_metrics"]["macro_f1"])
    assert s2["champion_after"] == ("v2" if s2["promoted_version"] else "v1")


def test_a_hosted_model_or_a_bad_vertex_uri_is_refused_by_the_first_task():
    common = {"model_name": "intents", "thresholds": THRESHOLDS,
              "hyperparameters": {}}
    good = f"vertex://{PROJECT}/{REGION}?artifact_root=gs://bucket/models"
    with pytest.raises(stages.ConfigError, match="lives at its provider"):
        stages.check_config(provider="openai", registry_uri=good, **common)
    with pytest.raises(stages.ConfigError, match=r"vertex://PROJECT/REGION\?artifact_root="):
        stages.check_config(provider="sklearn", registry_uri=f"vertex://{PROJECT}/{REGION}", **common)
    assert stages.check_config(provider="sklearn", registry_uri=good, **common)["provider"] == "sklearn"
