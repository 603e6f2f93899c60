"""``make demo``: two continuous-tuning loops, each run twice, on embedded defaults (no cloud account).

The support loop (an intent classifier, sklearn):

1. Build a DuckDB warehouse of support messages (8+ intents, human corrections, malformed rows).
2. Run ``continuous-tuning`` under kfp.local: no champion yet, so v1 is judged on value thresholds.
3. New traffic lands; run again: v2 is judged against v1 on the same eval rows.

The game loop (a chat model that plays a social-deduction game, oss-lora on a tiny model on the CPU):

1. Build a DuckDB warehouse of finished games (AI seats that survived and that were voted out, short
   games, malformed rows) and a tiny Llama-style base model that has read the game's chat.
2. Run ``continuous-tuning`` with ``task=chat`` and ``extract_query=ai_survived_games``: the games the AI
   survived become conversations; v1 is judged on chrF / ROUGE-L value thresholds (no paid judge).
3. New games land; run again: the candidate and v1 answer the same eval prompts, side by side.

Each run prints a table and the path of its ``summary.json`` and report.
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
GAME_MODEL = "game-player"
# oss-lora on the tiny base: seconds per run on 2 CPU cores (short replies, a few dozen LoRA steps).
GAME_HYPERPARAMETERS = {"max_steps": 60, "batch_size": 8, "max_seq_len": 256, "learning_rate": 3e-3,
                        "rank": 8, "alpha": 16, "eval_interval": 0, "checkpoint_interval": 0,
                        "max_new_tokens": 24}


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
    parser.add_argument("--games", type=int, default=300, help="games in the game warehouse before run 1")
    parser.add_argument("--new-games", type=int, default=200, help="games that land before game run 2")
    parser.add_argument("--no-game", action="store_true", help="run the support loop only")
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
        _print_run(run, path)
    print(f"\nregistry: tuneloop registry show --registry {out / 'registry'} --model support-intent")
    print(f"reports:  tuneloop report open {out}  ·  tuneloop report history --registry {out / 'registry'} "
          "--model support-intent")
    if not args.no_game:
        game_loop(out / "game", seed=args.seed, games=args.games, new_games=args.new_games, verbose=args.verbose)
    return 0


def _print_run(run: int, path: Path) -> None:
    summary = json.loads(path.read_text())
    manifest = None
    if summary.get("dataset_uri"):
        manifest, _ = storage.read_json(storage.join(summary["dataset_uri"], "manifest.json"))
    print(_table(run, summary, manifest))
    print(f"  summary: {path}")
    if summary.get("report_uri"):
        print(f"  report:  {summary['report_uri']}")


def game_texts(rows) -> list[str]:
    """Generated games as the chat the tiny base pre-trains on: each AI seat's side of its game as one
    conversation in the base's ChatML template (the same shaping as ``ai_survived_games``), so the base
    has seen who speaks when before LoRA teaches it the survivors' replies."""
    from tuneloop.examples import ExampleError
    from tuneloop.warehouse.game_chat import conversation_from_row

    texts = []
    for row in rows:
        for seat in row.get("ai_seats") or []:
            flat = {**row, "seat_player": seat.get("player"), "seat_outcome": "survived"}
            try:
                ex = conversation_from_row(flat)
            except ExampleError:
                continue  # the malformed games: nothing to read
            texts.append("".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in ex.messages))
    return texts


def game_loop(out: Path, *, seed: int = 0, games: int = 300, new_games: int = 200, verbose: bool = False) -> None:
    """The game loop, twice: generated games -> ``ai_survived_games`` -> oss-lora chat -> chrF / ROUGE-L."""
    from transformers.utils import logging as hf_logging

    from tuneloop import demo_games
    from tuneloop.pipelines.local_runner import run_local
    from tuneloop.providers.oss_lora import tiny
    from tuneloop.warehouse import duckdb_uri

    hf_logging.disable_progress_bar()  # the base is saved in one shard: no bar to watch
    out.mkdir(parents=True, exist_ok=True)
    warehouse = duckdb_uri(str(out / "games.duckdb"))
    print(f"\n--- the game loop: {GAME_MODEL} (chat, oss-lora on a tiny model, CPU) ---")
    base = tiny.build_base(out / "tiny-base", pretrain_steps=150, seed=seed,
                           texts=game_texts(demo_games.generate_games(400, seed=seed + 100)), vocab_size=1024)
    print(f"tiny base model (built from a config, pre-trained on generated game chat): {base}")
    built = demo_games.load_demo_games(warehouse, games, seed=seed)
    print(f"warehouse: {out / 'games.duckdb'} ({built})")
    reports = out / "reports"
    params = {
        **demo_games.GAME_LOOP_PARAMS,
        "warehouse_uri": warehouse,
        "dataset_root": str(out / "datasets"),
        "registry_uri": str(out / "registry"),
        "model_name": GAME_MODEL,
        "task": "chat",
        "provider": "oss-lora",
        "base_model": str(base),
        "hyperparameters": GAME_HYPERPARAMETERS,
        # no paid judge here: reference metrics decide (a judge is one parameter: judge="openai:MODEL")
        "min_values": {"chrf": 0.05},
        "max_drop": {"chrf": 0.02, "rouge_l": 0.02},
        "reports_uri": str(reports),
    }
    seen: set[Path] = set()
    for run in (1, 2):
        if run == 2:
            added = demo_games.load_demo_games(warehouse, new_games, seed=seed + 1)
            print(f"\nnew games: {added} landed in the warehouse")
        print(f"\nrunning continuous-tuning (game run {run}) under kfp.local ...", flush=True)
        run_local("continuous-tuning", params, pipeline_root=out / "pipeline-root", quiet=not verbose)
        path = _summary_of(reports, seen)
        seen.add(path)
        _print_run(run, path)
    print(f"\nregistry: tuneloop registry show --registry {out / 'registry'} --model {GAME_MODEL}")


if __name__ == "__main__":
    sys.exit(main())
