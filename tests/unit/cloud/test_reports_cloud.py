"""Reports against the Google Cloud stand-ins: a gs:// dataset and reports_uri, a Vertex registry's history."""

from __future__ import annotations

import uuid

from tests.fakes.data import support_messages
from tuneloop import datasets, stages, storage
from tuneloop.registry.vertex import VertexRegistry

PROJECT, REGION = "tuneloop-test", "us-central1"


def test_an_evaluation_on_a_gcs_dataset_reports_its_quarantine_next_to_the_gcs_summary(gcs, tmp_path):
    quarantined = [{"row": {"text": "", "label": "x"}, "reason": f"text: empty at row {i}; give every row a text"}
                   for i in range(3)]
    built = tmp_path / "built"
    datasets.build_dataset(support_messages(120, seed=4), built, previous=None, formats=[], min_examples=8,
                           quarantined=quarantined)
    uri = datasets.publish(built, f"{gcs}/datasets", expected=datasets.RootState.read(f"{gcs}/datasets"))
    work = tmp_path / "run"
    stages.tune(provider="sklearn", dataset_uri=uri, base_model="", hyperparameters={},
                model_dir=str(work / "model"), job_record_path=str(work / "job.json"))
    common = {"registry_uri": str(tmp_path / "registry"), "model_name": "intents"}
    record = stages.evaluate(provider="sklearn", model_dir=str(work / "model"), dataset_uri=uri,
                             thresholds={"min_values": {"macro_f1": 0.1}}, blessing_path=str(work / "blessing.json"),
                             report_path=str(work / "report.html"), **common)
    # the three rows differ only by their row number: one reason kind, counted three times
    assert record["dataset"]["quarantined_at_extract"] == 3
    assert record["dataset"]["extract_reasons"] == [["text: empty at row N; give every row a text", 3]]
    summary = stages.promote(blessing_path=str(work / "blessing.json"), model_dir=str(work / "model"),
                             run_name="run-1", reports_uri=f"{gcs}/reports", summary_path=str(work / "summary.json"),
                             **common)
    assert summary["report_uri"] == f"{gcs}/reports/run-1/report.html"
    assert storage.read_bytes(summary["report_uri"]) == (work / "report.html").read_bytes()
    assert storage.exists(f"{gcs}/reports/run-1/summary.json")


def test_history_of_a_vertex_registry_shows_versions_and_says_it_has_no_alias_history(vertex, gcs):
    from tuneloop.reports import render_history
    from tuneloop.reports.history import history_record

    reg = VertexRegistry(PROJECT, REGION, f"intent-{uuid.uuid4().hex[:6]}", artifact_root=f"{gcs}/models")
    previous = None
    for f1 in (0.62, 0.71):
        rec = reg.register(provider="oss-lora", model_ref="remote", model_dir=None, metrics={"macro_f1": f1},
                           data_hash=uuid.uuid4().hex, example_ids=["e1"], config={}, blessing={"blessed": True})
        reg.set_champion(rec.version, expected=previous, reason="blessed")
        previous = rec.version
    record = history_record(reg)
    assert record["history"] is None and record["champion"] == "v2"
    html = render_history(record)
    assert "keeps no alias history" in html
    assert "<td>v1</td>" in html and "0.620" in html and "0.710" in html
    assert 'data-chart="versions-macro_f1"' in html and 'data-chart="champion-timeline"' not in html
