"""HTML reports from records: what each section shows, escaping, no URL, and the report CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reports_fixtures import ESCAPED_XSS, XSS, chat_blessing, classification_record, gauntlet_inputs
from tuneloop.reports import render_evaluation, render_gauntlet, render_history
from tuneloop.reports.html import CSP

URL = re.compile(r"(?i)\b(?:https?|ftp|wss?):|//[a-z0-9.-]+\.[a-z]{2,}/|\bsrc\s*=|@import|url\(\s*['\"]?(?!#)")


def assert_safe(html: str) -> None:
    """No markup from user text, no script at all, nothing that could be fetched."""
    assert "<script" not in html.lower()
    assert ESCAPED_XSS in html
    assert not URL.findall(html), URL.findall(html)[:5]
    assert f'content="{CSP}"' in html and "default-src 'none'" in CSP


def rows_of(html: str, section_id: str) -> list[list[str]]:
    """The text of each body row of the first table in a section."""
    body = html.split(f'id="{section_id}"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def charts(html: str) -> list[str]:
    return re.findall(r'<figure class="chart" data-chart="([^"]+)"', html)


def test_classification_report_shows_the_decision_deltas_and_labels_that_moved_most_first():
    record = classification_record()
    html = render_evaluation(record)
    assert_safe(html)
    top = html.split('id="decision"', 1)[1][:2000]
    assert "BLESSED" in top and "compared with champion v3" in top
    metrics = {r[0]: r for r in rows_of(html, "metrics")}
    cand, champ = record["candidate_metrics"]["macro_f1"], record["champion_metrics"]["macro_f1"]
    assert metrics["macro_f1"][1:4] == [f"{cand:.3f}", f"{champ:.3f}", f"{cand - champ:+.3f}"]
    # billing moved most (F1 +0.56), then the XSS label (+0.25), then refund, the one that got worse (-0.13)
    labels = [r[0] for r in rows_of(html, "per-label")]
    assert labels == ["billing", ESCAPED_XSS, "refund"]
    refund = rows_of(html, "per-label")[2]
    assert refund[-1] == "-0.133"
    assert charts(html) == ["metrics", "confusion-candidate", "confusion-champion", "per-label-f1"]
    # the unparseable candidate answer is a column of the candidate's heat map, not the champion's
    cand_svg = html.split('data-chart="confusion-candidate"', 1)[1].split("</figure>", 1)[0]
    champ_svg = html.split('data-chart="confusion-champion"', 1)[1].split("</figure>", 1)[0]
    assert "(unparseable)" in cand_svg and "(unparseable)" not in champ_svg
    paired = dict((r[0], r[1]) for r in rows_of(html, "paired"))
    assert paired["candidate right, champion v3 wrong (c)"] == str(record["paired_test"]["c"]) == "4"
    assert paired["champion v3 right, candidate wrong (b)"] == str(record["paired_test"]["b"]) == "2"


def test_classification_report_shows_the_dataset_quarantine_and_the_spend():
    html = render_evaluation(classification_record())
    data = dict(r[:2] for r in rows_of(html, "dataset"))
    assert data["valid new examples extracted"] == "37" and data["rows quarantined at extract"] == "5"
    assert data["train / validation / eval"] == "80 / 8 / 12"
    assert "label: empty; give every row a label" in html and "Rows the openai validator quarantined: 1" in html
    spend = dict(r[:2] for r in rows_of(html, "spend"))
    assert spend["estimated training cost (preflight)"] == "$0.1237"
    assert spend["trained tokens (reported by the provider)"] == "41,230"
    requests = html.split("Evaluation requests", 1)[1]
    assert re.search(r"<td>candidate</td><td class=\"num\">14</td>", requests)
    assert re.search(r"<td>champion</td><td class=\"num\">12</td>", requests)


def test_first_run_report_says_so_and_orders_labels_weakest_first():
    html = render_evaluation(classification_record(with_champion=False))
    assert_safe(html)
    assert "no champion (first run" in html and 'id="paired"' not in html
    assert [r[0] for r in rows_of(html, "per-label")] == ["refund", "billing", ESCAPED_XSS]
    assert charts(html) == ["metrics", "confusion-candidate"]


def test_local_provider_has_no_spend_section():
    record = classification_record()
    record["spend"] = {"hosted": False, "preflight": None, "predict": {}}
    assert 'id="spend"' not in render_evaluation(record)


def test_chat_report_renders_reference_metrics_judge_bars_and_twenty_samples():
    record = chat_blessing(n_samples=25)
    html = render_evaluation(record)
    assert_safe(html)
    assert "NOT BLESSED" in html.split('id="decision"', 1)[1][:300]
    ref = {r[0]: r for r in rows_of(html, "chat-reference")}
    # candidate chrF 44.5 vs champion 35.25: every one of the 30 rows better; ROUGE-L 24 better, 5 worse, 1 equal
    assert ref["chrF"][1:7] == ["44.500", "35.250", "+9.250", "30", "0", "0"]
    assert ref["ROUGE-L"][4:7] == ["24", "5", "1"]
    verdicts = dict(r[:2] for r in rows_of(html, "chat-judge"))
    assert verdicts == {"win": "14", "tie": "3", "loss": "7", "inconsistent": "5", "malformed": "1"}
    assert "one-sided 95% lower bound" in html and '<span class="fail">fail</span>' in html  # 0.421 < 0.45
    assert charts(html)[:1] == ["metrics"] and {"per-row-chrf", "per-row-rouge_l", "judge"} <= set(charts(html))
    samples = html.split('id="chat-samples"', 1)[1]
    assert "Side-by-side samples (20)" in samples and samples.count('<details class="sample"') == 20
    assert "game-19-seat-2" in samples and "game-20-seat-2" not in samples
    assert f"not me!! {ESCAPED_XSS}" in samples and "champion reply 0" in samples
    assert "candidate_first: A; champion_first: B" in samples
    # a classification-only section has nothing to show for a chat record
    assert 'id="confusion"' not in html and 'id="per-label"' not in html


def test_chat_report_without_a_champion_or_judge_shows_reference_metrics_only():
    record = chat_blessing(n_samples=0)
    for key in ("judge", "champion_metrics", "champion_version"):
        record.pop(key)
    for row in record["per_row"]:
        row["champion"] = None
    html = render_evaluation(record)
    assert 'id="chat-judge"' not in html and 'id="chat-samples"' not in html
    ref = {r[0]: r for r in rows_of(html, "chat-reference")}
    assert ref["chrF"][1:3] == ["44.500", "-"]


def test_rendering_is_deterministic():
    """The evaluate task's artifact and the copy the promote task writes must be the same bytes."""
    record = classification_record()
    assert render_evaluation(json.loads(json.dumps(record))) == render_evaluation(record)


def test_a_record_that_is_not_a_blessing_is_refused():
    with pytest.raises(ValueError, match="blessing record"):
        render_evaluation({"candidate_metrics": {}})


def test_gauntlet_report_shows_win_rates_against_bars_games_and_the_elo_ladder():
    results, summary, versions = gauntlet_inputs(registered=False)
    html = render_gauntlet(results, summary, versions)
    assert_safe(html)
    assert "NOT BLESSED" in html and "too weak against heuristic" in html
    rates = {r[0]: r for r in rows_of(html, "win-rates")}
    assert rates["random"][1:] == ["20", "19 / 0 / 1", "0.950", "[0.760, 0.990]", "0.85", "pass"]
    assert rates["heuristic"][3:] == ["0.575", "[0.430, 0.720]", "0.60", "fail"]
    games = {r[0]: r for r in rows_of(html, "early-stop")}
    assert games["random"][1:4] == ["20 / 40", "yes", "above"]
    assert games["heuristic"][1:3] == ["40 / 40", "no"]
    assert games["random"][5] == "[-2.94, 2.94]"  # log(0.05/0.95), log(0.95/0.05)
    assert charts(html) == ["win-rates", "games", "elo-ladder"]
    ladder = html.split('data-chart="elo-ladder"', 1)[1]
    assert "this run" in ladder and ">v3 g3<" in ladder and "not promoted" in ladder
    elo_tables = html.split('id="elo"', 1)[1]
    assert "<td>this run</td><td class=\"num\">412</td>" in elo_tables
    assert "<td>v2 g2</td><td class=\"num\">300</td>" in elo_tables


def test_gauntlet_report_of_a_promoted_candidate_marks_its_version():
    results, summary, versions = gauntlet_inputs(registered=True)
    html = render_gauntlet(results, summary, versions)
    assert "BLESSED — promoted v4" in html
    elo = html.split('id="elo"', 1)[1]
    assert "<td>this run</td>" not in elo and "<td>v4 g4</td><td class=\"num\">412</td>" in elo


@pytest.fixture
def registry(tmp_path):
    """A file registry with v1..v3 promoted in turn (macro_f1 0.70, 0.78, 0.74) and one rollback."""
    from tuneloop.registry import FileRegistry

    reg = FileRegistry(str(tmp_path / "registry"), "support-intent")
    previous = None
    for f1 in (0.70, 0.78, 0.74):
        rec = reg.register(provider="sklearn", model_ref="m", model_dir=None, metrics={"macro_f1": f1, "n": 50},
                           data_hash="d", example_ids=["a"], config={}, blessing={"blessed": True})
        reg.set_champion(rec.version, expected=previous, reason=f"blessed: macro_f1 {f1}")
        previous = rec.version
    reg.rollback(reason=f"v3 answers badly in prod {XSS}")
    return reg


def test_history_marks_promotions_and_rollbacks(registry):
    from tuneloop.reports.history import history_record

    record = history_record(registry)
    html = render_history(record)
    assert_safe(html)
    head = html.split("<h2", 1)[0]
    assert "<td>champion now</td><td>v2</td>" in head
    assert "<td>promotions</td><td>3</td>" in head and "<td>rollbacks</td><td>1</td>" in head
    events = rows_of(html, "timeline")
    assert [e[2:5] for e in events] == [["promote", "v1", "-"], ["promote", "v2", "v1"], ["promote", "v3", "v2"],
                                        ["rollback", "v2", "v3"]]
    assert events[-1][5] == f"v3 answers badly in prod {ESCAPED_XSS}"
    timeline = html.split('data-chart="champion-timeline"', 1)[1].split("</figure>", 1)[0]
    assert "rolled back to" in timeline and "from v3" in timeline
    versions = {r[0]: r for r in rows_of(html, "versions")}
    assert [versions[v][4] for v in ("v1", "v2", "v3")] == ["0.700", "0.780", "0.740"]
    assert versions["v2"][-1] == "champion" and versions["v3"][-1] == ""
    assert "n by version" not in html  # a count is not drawn as a metric


def test_history_of_an_empty_registry_says_so(tmp_path):
    from tuneloop.registry import FileRegistry
    from tuneloop.reports.history import history_record

    html = render_history(history_record(FileRegistry(str(tmp_path), "nothing-yet")))
    assert "has no registered versions yet" in html and "No champion has been promoted yet" in html


def test_report_history_cli_writes_the_page(registry, tmp_path):
    from typer.testing import CliRunner

    from tuneloop.cli import app

    out = tmp_path / "pages" / "history.html"
    result = CliRunner().invoke(app, ["report", "history", "--registry", registry.root, "--model",
                                      "support-intent", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 versions, champion v2" in result.output
    assert out.read_text().startswith("<!DOCTYPE html>") and "rolled back to" in out.read_text()
    bad = CliRunner().invoke(app, ["report", "history", "--registry", registry.root, "--model", "bad/name"])
    assert bad.exit_code == 2 and "model_name='bad/name'" in bad.output


def _run_dir(tmp_path: Path) -> tuple[Path, Path]:
    """A kfp.local-like run: an older report.html copy and a newer evaluate-model/report artifact."""
    run = tmp_path / "runs" / "continuous-tuning-2026-01-01"
    older = run / "reports" / "report.html"
    newer = run / "evaluate-model" / "report"
    for p, when in ((older, 1_000_000), (newer, 2_000_000)):
        p.parent.mkdir(parents=True)
        p.write_text(render_evaluation(classification_record()) if p is newer else "<!DOCTYPE html><p>old</p>")
        os.utime(p, (when, when))
    (run / "evaluate-model" / "blessing").write_text("{}")  # not a report
    return run, newer


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuneloop.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_report_open_finds_the_latest_report_and_opens_it_in_the_browser(tmp_path):
    run, newer = _run_dir(tmp_path)
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    env = {**os.environ, "BROWSER": f"{browser} %s"}
    env.pop("DISPLAY", None)
    result = _cli(["report", "open", str(run)], env)
    assert result.returncode == 0, result.stderr
    shown = Path(result.stdout.splitlines()[0])
    assert shown.suffix == ".html" and shown.read_bytes() == newer.read_bytes()  # the KFP artifact, as .html
    assert opened.read_text().strip() == shown.as_uri()
    # a run name under --pipeline-root, and 'latest', find the same report
    for name in (run.name, "latest"):
        again = _cli(["report", "open", name, "--pipeline-root", str(run.parent), "--no-browser"], env)
        assert again.returncode == 0 and again.stdout.splitlines() == [str(shown)]


def test_report_open_prints_the_path_when_no_browser_can_be_opened(tmp_path):
    run, newer = _run_dir(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY")}
    env["PATH"] = str(Path(sys.executable).parent)  # no browser of any kind on PATH
    result = _cli(["report", "open", str(run)], env)
    assert result.returncode == 0, result.stderr
    path, message = result.stdout.splitlines()
    assert Path(path).read_bytes() == newer.read_bytes()
    assert message == f"no browser could be opened here; open {path} in a browser"


def test_report_open_names_the_runs_it_knows_when_nothing_matches(tmp_path):
    from typer.testing import CliRunner

    from tuneloop.cli import app

    run, _ = _run_dir(tmp_path)
    result = CliRunner().invoke(app, ["report", "open", "no-such-run", "--pipeline-root", str(run.parent)])
    assert result.exit_code == 1
    assert "no-such-run" in result.output and run.name in result.output
    empty = tmp_path / "empty-run"
    empty.mkdir()
    result = CliRunner().invoke(app, ["report", "open", str(empty)])
    assert result.exit_code == 1 and "no report under" in result.output


def test_a_task_with_many_labels_and_a_long_history_stays_a_readable_page(tmp_path):
    """200 labels: the heat map keeps the 40 most frequent, the table the 60 that moved most."""
    from tuneloop.evaluation import compute_metrics
    from tuneloop.registry import FileRegistry
    from tuneloop.reports.history import history_record

    labels = [f"intent_{i:03d}" for i in range(200)]
    truth = [lab for i, lab in enumerate(labels) for _ in range(1 + (i % 7 == 0) * 5)]
    pred = [t if k % 3 else labels[(labels.index(t) + 1) % 200] for k, t in enumerate(truth)]
    record = {"blessed": False, "reason": "not blessed: test", "candidate_metrics": compute_metrics(truth, pred, labels),
              "champion_metrics": compute_metrics(truth, truth, labels), "champion_version": "v1"}
    html = render_evaluation(record)
    assert "The 40 most frequent of 200 labels" in html and "(other labels)" in html
    heat = html.split('data-chart="confusion-candidate"', 1)[1].split("</figure>", 1)[0]
    assert "intent_196" in heat and "intent_199" not in heat  # 6 rows vs 1 row (the 1-row ties go by name)
    assert len(rows_of(html, "per-label")) == 60 and "140 more labels not shown" in html
    assert len(html) < 1_500_000

    reg = FileRegistry(str(tmp_path), "long")
    previous = None
    for i in range(120):
        rec = reg.register(provider="sklearn", model_ref="m", model_dir=None, metrics={"macro_f1": 0.5 + i / 1000},
                           data_hash="d", example_ids=[], config={}, blessing=None)
        reg.set_champion(rec.version, expected=previous, reason="blessed")
        previous = rec.version
    page = render_history(history_record(reg))
    widths = [float(w) for w in re.findall(r'<svg role="img"[^>]*?width="([0-9.]+)pt"', page)]
    assert widths and max(widths) <= 12 * 72 + 1  # pt: no chart wider than 12 in
    assert len(rows_of(page, "versions")) == 120
