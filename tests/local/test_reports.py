"""Reports from kfp.local runs (classification, self-play) and a chat blessing; in headless Chromium too.

The default tests run each pipeline once on small data and check the HTML artifacts against the
run's own records. The slow test opens every report in Chromium (``make chromium`` installs
Debian's package) and checks what a person's browser would do: no console error, no request, the
decision text and the charts on the page, a hostile label shown as text; it saves screenshots under
the test's tmp folder.
"""

from __future__ import annotations

import csv
import json
from html import escape as html_escape
from pathlib import Path

import pytest

from tests.local.conftest import run, summaries
from tests.reports_fixtures import ESCAPED_XSS, XSS, chat_blessing, classification_record
from tuneloop.reports import render_evaluation

# A selfplay-training run in seconds: 4 games, a 1x8 net, 6 gauntlet games per pairing, bars it clears: the
# candidate searches (16 PUCT simulations) against one-simulation opponents, so it scores 4-6 of 6 whatever
# the run name seeds (with 2 games and a raw policy it lost both to the heuristic in 3 of 4 runs).
TINY_SELFPLAY = {
    "model_name": "hex5-agent", "board_config": "hex5_2p", "total_games": 4, "num_shards": 1, "simulations": 8,
    "min_games": 1, "blocks": 1, "channels": 8, "steps": 5, "batch_size": 16, "gauntlet_games": 6,
    "candidate_simulations": 16, "heuristic_simulations": 1,
    "min_vs_random": 0.01, "min_vs_heuristic": 0.01, "min_vs_best": 0.01,
}


@pytest.fixture(scope="module")
def classification_run(tmp_path_factory):
    """One continuous-tuning run on a warehouse where one intent's label is ``XSS``."""
    from tuneloop import demo_data
    from tuneloop.loading import load_file

    tmp = tmp_path_factory.mktemp("classification")
    warehouse = tmp / "wh.duckdb"
    demo_data.build_demo_warehouse(str(warehouse), n_initial=400, seed=7, table="interactions")
    hostile = tmp / "hostile.csv"
    with hostile.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([f"the exploit widget number {i} pops an alert box", XSS] for i in range(60))
    load_file(str(hostile), f"duckdb:///{warehouse}", "interactions")
    params = {"warehouse_uri": f"duckdb:///{warehouse}", "dataset_root": str(tmp / "datasets"),
              "registry_uri": str(tmp / "registry"), "reports_uri": str(tmp / "reports"), "min_new_examples": 100}
    run_dir = run("continuous-tuning", params, tmp / "runs")
    [summary] = summaries(tmp / "reports")
    return {"run_dir": run_dir, "summary": summary, "reports": tmp / "reports", "params": params}


@pytest.fixture(scope="module")
def selfplay_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("selfplay")
    params = {"registry_uri": str(tmp / "registry"), "reports_uri": str(tmp / "reports"), **TINY_SELFPLAY}
    run_dir = run("selfplay-training", params, tmp / "runs")
    [summary] = summaries(tmp / "reports")
    return {"run_dir": run_dir, "summary": summary, "params": params, "reports": tmp / "reports"}


def test_evaluate_task_writes_the_report_artifact_and_the_same_file_next_to_the_summary(classification_run):
    from tuneloop import storage

    run_dir, summary = classification_run["run_dir"], classification_run["summary"]
    [artifact] = list(run_dir.rglob("evaluate-model/report"))
    html = artifact.read_text()
    assert (Path(summary["report_uri"]).parent / "summary.json").is_file()  # next to the summary
    assert Path(summary["report_uri"]).read_bytes() == artifact.read_bytes()
    # the page says what the run decided, and is the page of this run's blessing record
    blessing = json.loads(next(run_dir.rglob("evaluate-model/blessing")).read_text())
    assert html == render_evaluation(blessing)
    top = html.split('id="decision"', 1)[1][:3000]
    assert "BLESSED" in top and html_escape(summary["decision"]["reason"]) in top
    # the hostile label is a real label of this run: escaped in tables and in the charts' tick labels
    assert "<script" not in html.lower() and ESCAPED_XSS in html
    heatmap = html.split('data-chart="confusion-candidate"', 1)[1].split("</figure>", 1)[0]
    assert "&lt;script&gt;alert(1)&lt;/scr" in heatmap
    # the dataset numbers are the published manifest's
    manifest, _ = storage.read_json(storage.join(summary["dataset_uri"], "manifest.json"))
    facts = blessing["dataset"]
    assert facts["new_examples"] == manifest["new_examples"] > 0
    assert facts["quarantined_at_extract"] == manifest["quarantined_at_extract"] > 0
    assert sum(n for _, n in facts["extract_reasons"]) >= 1
    assert f"<td>rows quarantined at extract</td><td>{manifest['quarantined_at_extract']}</td>" in html
    assert blessing["spend"]["hosted"] is False and 'id="spend"' not in html  # sklearn spends nothing


def test_selfplay_promote_task_writes_the_gauntlet_report(selfplay_run):
    run_dir, summary = selfplay_run["run_dir"], selfplay_run["summary"]
    [artifact] = list(run_dir.rglob("promote-selfplay/report"))
    copy = selfplay_run["reports"] / summary["run"] / "report.html"  # next to this run's summary.json
    assert copy.read_bytes() == artifact.read_bytes()
    html = artifact.read_text()
    results = json.loads(next(run_dir.rglob("run-gauntlet/results")).read_text())
    assert ("BLESSED" if summary["decision"]["blessed"] else "NOT BLESSED") in html.split('id="decision"', 1)[1][:200]
    for name, p in results["pairings"].items():
        assert f"<td>{name}</td><td class=\"num\">{p['games']}</td>" in html
    assert "v1 g1" in html  # the registry's first generation on the Elo ladder
    assert 'data-chart="elo-ladder"' in html and 'data-chart="win-rates"' in html


# -- in a browser ------------------------------------------------------------------------------------

PROBE = {
    "decision": "document.getElementById('decision') ? document.getElementById('decision').innerText : null",
    "charts": "document.querySelectorAll('figure.chart > svg').length",
    "chart_shapes": "document.querySelectorAll('figure.chart svg path').length",
    "scripts": "document.scripts.length",
    "text": "document.body.innerText",
    "width": "document.documentElement.scrollWidth",
}


@pytest.mark.slow
def test_reports_load_in_headless_chromium_without_errors_or_requests(classification_run, selfplay_run, tmp_path):
    from tests.chromium import find_chromium, load_page
    from tuneloop.registry import open_registry
    from tuneloop.reports.history import history_record, render_history

    if find_chromium() is None:
        pytest.skip("no chromium found on PATH: run `make chromium` (apt-get install chromium) or set $CHROMIUM")
    pages = {
        "classification": (next(classification_run["run_dir"].rglob("evaluate-model/report")), 2,
                           classification_run["summary"]["decision"]["reason"]),
        "selfplay": (next(selfplay_run["run_dir"].rglob("promote-selfplay/report")), 3,
                     selfplay_run["summary"]["decision"]["reason"]),
    }
    for name, record in (("classification-vs-champion", classification_record()), ("chat", chat_blessing())):
        p = tmp_path / f"{name}.html"
        p.write_text(render_evaluation(record))
        pages[name] = (p, 4, record["reason"])
    history = tmp_path / "history.html"
    params = classification_run["params"]
    history.write_text(render_history(history_record(open_registry(params["registry_uri"], "support-intent"))))
    pages["history"] = (history, 2, None)

    for name, (path, min_charts, reason) in pages.items():
        page = path if path.suffix == ".html" else tmp_path / f"{name}.html"
        if page != path:
            page.write_bytes(path.read_bytes())  # a KFP artifact has no .html suffix
        shot = tmp_path / "screenshots" / f"{name}.png"
        got = load_page(page, screenshot=shot, expressions=PROBE)
        assert got.errors == [], f"{name}: console errors {got.errors}"
        assert got.fetches == [], f"{name}: network requests {got.fetches}"
        assert got.dialogs == [] and got.values["scripts"] == 0, f"{name}: a script ran"
        assert got.values["charts"] >= min_charts and got.values["chart_shapes"] > 20, (name, got.values["charts"])
        if reason is not None:
            verdict = got.values["decision"]
            assert verdict.startswith(("BLESSED", "NOT BLESSED")) and reason in verdict, (name, verdict[:300])
        assert got.values["width"] <= 1280 + 1, f"{name}: the page scrolls sideways ({got.values['width']}px)"
        assert shot.stat().st_size > 20_000
    # the hostile label and reply are on screen as text, in a browser's own rendering
    chat_text = load_page(pages["chat"][0], expressions={"text": PROBE["text"]}).values["text"]
    assert f"not me!! {XSS}" in chat_text


@pytest.mark.slow
def test_the_browser_probe_sees_errors_requests_and_scripts(tmp_path):
    """The checks above can fail: a page that fetches, logs an error and runs a script is caught."""
    from tests.chromium import find_chromium, load_page

    if find_chromium() is None:
        pytest.skip("no chromium found on PATH: run `make chromium` (apt-get install chromium) or set $CHROMIUM")
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><p id="decision">x</p><img src="http://127.0.0.1:9/pixel.png">'
                   '<script>console.error("boom"); alert(1)</script>')
    got = load_page(bad, expressions=PROBE)
    assert "http://127.0.0.1:9/pixel.png" in got.fetches
    assert "boom" in got.errors and got.dialogs == ["1"] and got.values["scripts"] == 1
