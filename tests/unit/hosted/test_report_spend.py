"""What a hosted evaluation spent reaches its report: the preflight estimate and the requests sent."""

from __future__ import annotations

import json

from tests.unit.hosted.conftest import FAST
from tuneloop import stages
from tuneloop.catalog import load_catalog

THRESHOLDS = {"min_values": {"accuracy": 0.0}, "max_drop": {"macro_f1": 1.0}}
MODEL = "gpt-4.1-mini-2025-04-14"


def _evaluate(dataset, tmp_path, run: str) -> tuple[dict, str]:
    work = tmp_path / run
    stages.tune(provider="openai", dataset_uri=dataset.uri, base_model=MODEL, hyperparameters=FAST,
                model_dir=str(work / "model"), job_record_path=str(work / "job.json"))
    common = {"registry_uri": str(tmp_path / "registry"), "model_name": "intents"}
    record = stages.evaluate(provider="openai", model_dir=str(work / "model"), dataset_uri=dataset.uri,
                             thresholds=THRESHOLDS, blessing_path=str(work / "blessing.json"),
                             report_path=str(work / "report.html"), **common)
    stages.promote(blessing_path=str(work / "blessing.json"), model_dir=str(work / "model"), run_name=run,
                   reports_uri=str(tmp_path / "reports"), summary_path=str(work / "summary.json"), **common)
    html = (work / "report.html").read_text()
    assert (tmp_path / "reports" / run / "report.html").read_text() == html
    return record, html


def test_openai_evaluation_records_the_estimate_and_the_requests_of_both_models(openai_fake, dataset, tmp_path):
    n = len(dataset.splits["eval"])
    before = openai_fake.http.calls("chat.create")
    first, html = _evaluate(dataset, tmp_path, "run1")
    spend = first["spend"]
    assert spend["hosted"] is True
    pre = spend["preflight"]
    # the estimate preflight accepted: catalog price x the tokens it counted x epochs
    info = load_catalog(FAST.get("catalog")).model("openai", MODEL)
    epochs = pre["estimated_cost_usd"] / info.training_cost_usd(pre["training_tokens"], 1)
    assert pre["estimated_cost_usd"] > 0 and round(epochs, 6) == int(round(epochs)) >= 1
    assert pre["examples"] == len(dataset.splits["train"])
    assert spend["predict"] == {"candidate": {"requests": n, "answers": n, "failed": 0, "errors": []}}
    assert openai_fake.http.calls("chat.create") - before == n
    assert f"${pre['estimated_cost_usd']:,.4f}" in html and "Evaluation requests" in html

    # the second run asks its candidate and the champion (v1): each sends one request per eval row
    second, html = _evaluate(dataset, tmp_path, "run2")
    assert second["champion_version"] == "v1"
    assert set(second["spend"]["predict"]) == {"candidate", "champion"}
    assert second["spend"]["predict"]["champion"]["requests"] == n
    # the job was adopted (same data and config), so this run accepted no new estimate
    assert second["spend"]["preflight"] is None
    assert "not recorded (an adopted job" in html
    assert json.loads((tmp_path / "run2" / "blessing.json").read_text())["spend"] == second["spend"]
