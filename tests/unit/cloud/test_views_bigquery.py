"""The packaged views on BigQuery (bqemulator) return what they return on DuckDB, from the same rows."""

from __future__ import annotations

from tests.unit.test_views import fill
from tuneloop.warehouse import open_warehouse
from tuneloop.warehouse.views import create_views, model_report


def test_the_views_give_the_same_rows_on_bigquery_and_duckdb(bq_uri, tmp_path):
    duck = f"duckdb:///{tmp_path}/wh.duckdb"
    fill(duck, tmp_path / "spill-duck")
    fill(bq_uri, tmp_path / "spill-bq")
    reports = []
    for uri in (duck, bq_uri):
        wh = open_warehouse(uri)
        reports.append(model_report(wh, days=None))
        if uri == bq_uri:
            assert create_views(wh) == ["tuneloop_game_models_daily", "tuneloop_support_models_daily"]
            rows = wh.query("SELECT model_version, games FROM {{v}} ORDER BY day, model_version", {},
                            identifiers={"v": "tuneloop_game_models_daily"}).to_pylist()
            assert rows == [{"model_version": "v1", "games": 3}, {"model_version": "v2", "games": 1},
                            {"model_version": "v2", "games": 2}]
        wh.close()
    assert reports[0] == reports[1]
    assert len(reports[0]["game_models_daily"]) == 3 and len(reports[0]["support_models_daily"]) == 2
