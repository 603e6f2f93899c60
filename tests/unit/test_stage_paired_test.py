"""The paired test at the stage level: evaluate records b/c with the champion and the candidate on the
right sides (two models that differ, so a swap would show)."""

from __future__ import annotations

import json

from tuneloop import datasets, demo_data, stages
from tuneloop.evaluation import parse_label
from tuneloop.providers.sklearn import SklearnProvider
from tuneloop.warehouse import duckdb_uri

THRESHOLDS = {"min_values": {"macro_f1": 0.0}, "max_drop": {}}


def _tune(ds_uri: str, out, hp: dict) -> None:
    stages.tune(provider="sklearn", dataset_uri=ds_uri, base_model="", hyperparameters=hp,
                model_dir=str(out / "model"), job_record_path=str(out / "job.json"))


def test_evaluate_counts_rows_only_the_candidate_or_only_the_champion_got_right(tmp_path):
    wh = tmp_path / "wh.duckdb"
    demo_data.build_demo_warehouse(str(wh), n_initial=400, seed=11, table="interactions")
    stages.extract(warehouse_uri=duckdb_uri(str(wh)), table="interactions", dataset_root=str(tmp_path / "ds"),
                   examples_path=str(tmp_path / "ex.parquet"), quarantine_path=str(tmp_path / "q.jsonl"))
    ready = stages.prepare_dataset(examples_path=str(tmp_path / "ex.parquet"), quarantine_path=str(tmp_path / "q.jsonl"),
                                   dataset_root=str(tmp_path / "ds"), work_dir=str(tmp_path / "work"), watermark="",
                                   provider="sklearn", min_new_examples=1)
    uri = ready["dataset_uri"]
    common = {"registry_uri": str(tmp_path / "registry"), "model_name": "m", "thresholds": THRESHOLDS}
    # champion: a deliberately weak model (unigrams seen in 8+ texts, heavy regularisation)
    weak, strong = tmp_path / "weak", tmp_path / "strong"
    _tune(uri, weak, {"ngram_max": 1, "min_df": 8, "C": 0.01})
    stages.evaluate(provider="sklearn", model_dir=str(weak / "model"), dataset_uri=uri,
                    blessing_path=str(weak / "blessing.json"), **common)
    stages.promote(blessing_path=str(weak / "blessing.json"), model_dir=str(weak / "model"), run_name="r1",
                   reports_uri="", summary_path=str(weak / "summary.json"), registry_uri=common["registry_uri"],
                   model_name="m")
    _tune(uri, strong, {})
    record = stages.evaluate(provider="sklearn", model_dir=str(strong / "model"), dataset_uri=uri,
                             blessing_path=str(strong / "blessing.json"), **common)

    rows = datasets.load_dataset(uri, splits=("eval",)).splits["eval"]
    labels = sorted({e.target for e in rows})
    provider = SklearnProvider()

    def right(model_dir) -> list[bool]:
        answers = provider.predict(str(model_dir / "model"), rows)
        return [parse_label(a, labels) == e.target for a, e in zip(answers, rows, strict=True)]

    cand, champ = right(strong), right(weak)
    only_candidate = sum(c and not h for c, h in zip(cand, champ, strict=True))
    only_champion = sum(h and not c for c, h in zip(cand, champ, strict=True))
    assert only_candidate != only_champion  # the sides are distinguishable
    paired = json.loads((strong / "blessing.json").read_text())["paired_test"]
    assert record["champion_version"] == "v1"
    assert (paired["only_candidate_right"], paired["only_champion_right"]) == (only_candidate, only_champion)
    assert (paired["c"], paired["b"]) == (only_candidate, only_champion)  # decide's documented convention
    assert f"b={only_champion}, c={only_candidate}" in record["reason"]
