"""``make demo``: the continuous-tuning loop, twice, on embedded defaults (no cloud account).

1. Build a DuckDB warehouse of support messages (8+ intents, human corrections, malformed rows).
2. Run ``continuous-tuning`` under kfp.local: no champion yet, so v1 is judged on value thresholds.
3. New traffic lands; run again: v2 is judged against v1 on the same eval rows.
4. Print a table per run and the path of each run's ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from tuneloop import storage

TABLE = "interactions"


def _summary_of(reports: Path, known: set[Path]) -> Path:
    new = sorted(set(reports.glob("*/summary.json")) - known, key=lambda p: p.stat().st_mtime)
    if not new:
        raise RuntimeError(f"the run wrote no summary.json under {reports}")
    return new[-1]


def _table(run: int, summary: dict[str, Any], manifest: dict[str, Any] | None) -> str:
    from tuneloop.runview import summary_table

    return summary_table(summary, manifest or {}, title=f"run {run} ({summary.get('provider')})")


def main(argv: list[str] | None = None) -> int:
    from tuneloop import demo_data
    from tuneloop.pipelines.local_runner import run_local
    from tuneloop.warehouse import duckdb_uri

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="everything the demo writes")
    parser.add_argument("--initial", type=int, default=1200, help="rows in the warehouse before run 1")
    parser.add_argument("--new-traffic", type=int, default=600, help="rows that arrive before run 2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="show the kfp.local task logs")
    args = parser.parse_args(argv)

    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    warehouse = out / "warehouse.duckdb"
    reports = out / "reports"
    built = demo_data.build_demo_warehouse(str(warehouse), n_initial=args.initial, seed=args.seed, table=TABLE)
    print(f"warehouse: {warehouse} ({built})")
    params = {
        "warehouse_uri": duckdb_uri(str(warehouse)),
        "table": TABLE,
        "dataset_root": str(out / "datasets"),
        "registry_uri": str(out / "registry"),
        "model_name": "support-intent",
        "provider": "sklearn",
        "formats": "openai,gemini,bedrock,hf",
        "reports_uri": str(reports),
    }
    seen: set[Path] = set()
    for run in (1, 2):
        if run == 2:
            added = demo_data.add_traffic(str(warehouse), args.new_traffic, seed=args.seed + 1, table=TABLE)
            print(f"\nnew traffic: {added} rows landed in the warehouse")
        print(f"\nrunning continuous-tuning (run {run}) under kfp.local ...", flush=True)
        run_local("continuous-tuning", params, pipeline_root=out / "pipeline-root", quiet=not args.verbose)
        path = _summary_of(reports, seen)
        seen.add(path)
        summary = json.loads(path.read_text())
        manifest = None
        if summary.get("dataset_uri"):
            manifest, _ = storage.read_json(storage.join(summary["dataset_uri"], "manifest.json"))
        print(_table(run, summary, manifest))
        print(f"  summary: {path}")
        if summary.get("report_uri"):
            print(f"  report:  {summary['report_uri']}")
    print(f"\nregistry: tuneloop registry show --registry {out / 'registry'} --model support-intent")
    print(f"reports:  tuneloop report open {out}  ·  tuneloop report history --registry {out / 'registry'} "
          "--model support-intent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
