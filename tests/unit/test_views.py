"""The per-model views and `tuneloop report models` on the embedded warehouse, with known numbers."""

from __future__ import annotations

import datetime as dt

from typer.testing import CliRunner

from tuneloop.cli import app
from tuneloop.ingest import Recorder
from tuneloop.warehouse import games, open_warehouse
from tuneloop.warehouse.views import create_views, model_report

DAY1, DAY2 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC), dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)


def game(path, when, seats):
    players = [s[0] for s in seats] + ["human1", "human2"]
    return games.game_from_document(path, {
        "ended_at": when, "players": players,
        "ai_seats": [{"player": p, "provider": "openai", "model_id": f"ft:{v}", "registry_version": v, "outcome": o}
                     for p, v, o in seats],
        "chat_log": [{"speaker": "human1", "text": "hi", "sent_at": when}],
    })


def fill(uri: str, spill) -> None:
    """Day 1: v1 plays 3 games (4 seats, 2 survive); v2 plays 1 game (1 seat, survives). Day 2: v2, 2 games, 0 of 2.

    Support, day 1: v1 answers 10 rows, 1 corrected to another label + 1 confirmed; v2 answers 5, 1 corrected."""
    wh = open_warehouse(uri)
    games.ensure_tables(wh)
    rows = [
        game("g/1", DAY1, [("a1", "v1", "survived"), ("a2", "v1", "voted_out")]),
        game("g/2", DAY1, [("a1", "v1", "survived")]),
        game("g/3", DAY1, [("a1", "v1", "voted_out"), ("a2", "v2", "survived")]),
        game("g/4", DAY2, [("a1", "v2", "voted_out")]),
        game("g/5", DAY2, [("a1", "v2", "voted out")]),
    ]
    games.insert_games(wh, games.GAMES_TABLE, rows)
    games.insert_games(wh, games.GAMES_TABLE, rows[:2])  # a redelivery counts once
    wh.close()
    with Recorder(uri, config={"spill_dir": str(spill)}, start=False) as rec:
        ids = {}
        for version, n in (("v1", 10), ("v2", 5)):
            for i in range(n):
                ids[(version, i)] = rec.record_interaction(f"{version} message {i}", predicted_label="billing",
                                                           model_version=version, created_at=DAY1)
        rec.record_correction(ids[("v1", 0)], "refund", text="v1 message 0", predicted_label="billing",
                              created_at=DAY1 + dt.timedelta(hours=1))
        rec.record_correction(ids[("v1", 1)], "billing", text="v1 message 1", predicted_label="billing")  # confirmed
        rec.record_correction(ids[("v2", 0)], "shipping", text="v2 message 0", predicted_label="billing")


def test_views_count_games_survival_corrections_and_accuracy_per_model_per_day(tmp_path):
    uri = f"duckdb:///{tmp_path}/wh.duckdb"
    fill(uri, tmp_path / "spill")
    wh = open_warehouse(uri)
    report = model_report(wh, days=None)
    g = {(r["day"].isoformat(), r["model_version"]): r for r in report["game_models_daily"]}
    assert (g[("2026-03-01", "v1")]["games"], g[("2026-03-01", "v1")]["ai_seats"]) == (3, 4)
    assert g[("2026-03-01", "v1")]["survival_rate"] == 0.5
    assert g[("2026-03-01", "v2")]["survival_rate"] == 1.0
    assert (g[("2026-03-02", "v2")]["games"], g[("2026-03-02", "v2")]["survival_rate"]) == (2, 0.0)
    assert [k for k in g] == [("2026-03-02", "v2"), ("2026-03-01", "v1"), ("2026-03-01", "v2")]  # newest first
    s = {r["model_version"]: r for r in report["support_models_daily"]}
    assert (s["v1"]["live_rows"], s["v1"]["reviewed"], s["v1"]["corrected"]) == (10, 2, 1)
    assert (s["v1"]["correction_rate"], s["v1"]["accuracy"]) == (0.1, 0.5)
    assert (s["v2"]["live_rows"], s["v2"]["correction_rate"], s["v2"]["accuracy"]) == (5, 0.2, 0.0)
    assert model_report(wh, days=1, today=dt.date(2026, 3, 2))["support_models_daily"] == []
    assert create_views(wh) == ["tuneloop_game_models_daily", "tuneloop_support_models_daily"]
    from_view = wh.query("SELECT * FROM {{v}} ORDER BY model_version", {},
                         identifiers={"v": "tuneloop_support_models_daily"}).to_pylist()
    assert [(r["model_version"], r["correction_rate"]) for r in from_view] == [("v1", 0.1), ("v2", 0.2)]
    wh.close()


def test_report_models_prints_both_tables(tmp_path):
    uri = f"duckdb:///{tmp_path}/wh.duckdb"
    fill(uri, tmp_path / "spill")
    runner = CliRunner()
    out = runner.invoke(app, ["report", "models", "--warehouse", uri, "--days", "0"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == "game_models_daily" and "survival_rate" in lines[1]
    assert any("2026-03-01" in line and "v1" in line and "0.500" in line for line in lines)
    assert "support_models_daily" in lines
    assert any(line.split()[:5] == ["2026-03-01", "v1", "10", "2", "1"] and "0.100" in line for line in lines)
    views = runner.invoke(app, ["report", "views", "--warehouse", uri])
    assert views.exit_code == 0 and "view tuneloop_support_models_daily" in views.output
    empty = runner.invoke(app, ["report", "models", "--warehouse", f"duckdb:///{tmp_path}/empty.duckdb"])
    assert empty.exit_code == 0 and "no game or interaction table" in empty.output
    bad = runner.invoke(app, ["report", "models", "--warehouse", "mysql://x"])
    assert bad.exit_code == 2 and "unknown scheme" in bad.output
