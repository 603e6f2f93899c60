"""Vertex Model Registry backend against the Vertex REST stand-in with the real aiplatform client."""

from __future__ import annotations

import uuid

import pytest

from tuneloop import storage
from tuneloop.registry import ChampionMoved, RegistryError
from tuneloop.registry.vertex import VertexRegistry, metric_labels

PROJECT, REGION = "tuneloop-test", "us-central1"


@pytest.fixture
def registry(vertex, gcs):
    return VertexRegistry(PROJECT, REGION, f"intent-{uuid.uuid4().hex[:6]}", artifact_root=f"{gcs}/models")


def _register(reg, tmp_path, data_hash, f1, *, files=True):
    model_dir = None
    if files:
        model_dir = tmp_path / data_hash[:6]
        model_dir.mkdir()
        (model_dir / "adapter_model.safetensors").write_bytes(data_hash.encode())
    return reg.register(
        provider="oss-lora",
        model_ref=str(model_dir or "remote"),
        model_dir=str(model_dir) if model_dir else None,
        metrics={"macro_f1": f1, "confusion": [[1, 0], [0, 1]]},
        data_hash=data_hash,
        example_ids=["e1", "e2"],
        config={"r": 8},
        blessing={"blessed": True, "reason": "ok"},
    )


def test_versions_carry_labels_record_and_files(registry, vertex, tmp_path):
    v1 = _register(registry, tmp_path, "ab" * 32, 0.71)
    v2 = _register(registry, tmp_path, "cd" * 32, 0.78, files=False)
    assert (v1.version, v2.version) == ("v1", "v2")
    assert [r.version for r in registry.versions()] == ["v1", "v2"]
    assert registry.get("v1").metrics["macro_f1"] == 0.71 and registry.get(1).config == {"r": 8}
    stored = vertex.models[registry.model_name]["versions"]["1"]
    assert stored["labels"]["m_macro_f1"] == "0_7100" and stored["labels"]["data_hash"] == ("ab" * 32)[:63]
    assert stored["labels"]["provider"] == "oss-lora" and stored["artifactUri"] == v1.model_uri
    assert storage.read_bytes(f"{v1.model_uri}/adapter_model.safetensors") == ("ab" * 32).encode()
    assert storage.read_bytes(v1.example_ids_uri) == b"e1\ne2\n"
    with pytest.raises(RegistryError, match="no version v9; registered versions are \\['v1', 'v2'\\]"):
        registry.get("v9")


def test_champion_moves_only_from_the_evaluated_champion_and_rolls_back(registry, tmp_path):
    for i, f1 in enumerate((0.70, 0.75, 0.80)):
        _register(registry, tmp_path, f"{i}" * 64, f1, files=False)
    assert registry.champion() is None
    registry.set_champion("v1", expected=None, reason="first run")
    registry.set_champion("v2", expected="v1", reason="+0.05 macro F1")
    with pytest.raises(ChampionMoved) as moved:
        registry.set_champion("v3", expected="v1", reason="evaluated against an old champion")
    assert moved.value.current == "v2" and registry.champion().version == "v2"
    registry.set_champion("v3", expected="v2", reason="+0.05 macro F1")
    assert registry.rollback(reason="bad in production").version == "v2"
    assert registry.rollback(reason="still bad").version == "v1"
    with pytest.raises(RegistryError, match="first champion"):
        registry.rollback(reason="nothing left")
    assert registry.show()["champion"] == "v1"


def test_hosted_provider_models_belong_in_the_file_registry(registry):
    with pytest.raises(ValueError, match="file/GCS registry"):
        registry.register(
            provider="openai",
            model_ref="ft:gpt-4o-mini:acme::x",
            model_dir=None,
            metrics={},
            data_hash="ab" * 32,
            example_ids=[],
            config={},
            blessing=None,
        )


def test_metric_labels_follow_vertex_label_rules():
    assert metric_labels({"macro_f1": 0.8123, "Accuracy Top-1": 1, "cm": [[1]], "ok": True}) == {
        "m_accuracy_top-1": "1_0000",
        "m_macro_f1": "0_8123",
    }
