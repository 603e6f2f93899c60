"""A fixed export scenario and a digest of everything it publishes, to prove the data path keeps its output.

Two export runs over one DuckDB warehouse (``stages.extract`` -> ``stages.prepare_dataset``, the two
tasks of ``export-dataset``), rendering all four formats: demo traffic with malformed rows and
corrections, chats that some formats reject (two user turns in a row, a system turn mid-conversation,
turn weights 0/0.5, a ChatML control token, an example over Bedrock's and HF's token limits), the same
content landing twice, and in the second run a correction that supersedes a first-run answer.

:func:`digest` maps each published file to the sha256 of its content (Parquet: of its rows; paths of
the temporary folders blanked; the manifest without ``created_at``). ``tests/testdata/datapath/
golden.json`` holds the digests the data path produced before it was streamed (commit b44a631);
``tests/unit/test_datapath_golden.py`` checks that it still produces exactly those.

Regenerate (only for an intended change of output): ``python -m tests.datapath_golden --write``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).parent / "testdata" / "datapath" / "golden.json"
TABLE = "interactions"
FORMATS = ("openai", "gemini", "bedrock", "hf")
SYSTEM_PROMPT = "You are the Brightline support router."
T1 = dt.datetime(2025, 6, 2, 9, 0, tzinfo=dt.UTC)
T2 = dt.datetime(2025, 6, 9, 9, 0, tzinfo=dt.UTC)


def _chat(turns, *, landed, label=None, source="live", created=None):
    from tuneloop.examples import make_example
    from tuneloop.warehouse.base import example_to_row, iso

    ex = make_example(turns, label=label, source=source, created_at=created or landed - dt.timedelta(minutes=1))
    return example_to_row(ex, ingested_at=iso(landed))


def _u(text):
    return {"role": "user", "content": text}


def _a(text, weight=None):
    d = {"role": "assistant", "content": text}
    if weight is not None:
        d["weight"] = weight
    return d


def _s(text):
    return {"role": "system", "content": text}


def first_rows() -> list[dict[str, Any]]:
    """Run 1: demo traffic (malformed rows, corrections, late arrivals) + chats that test every format."""
    from tuneloop import demo_data

    rows = demo_data.generate_batch(400, seed=21, start=T1)
    last = max(dt.datetime.fromisoformat(r["ingested_at"].replace("Z", "+00:00")) for r in rows)
    at = [last + dt.timedelta(minutes=i + 1) for i in range(20)]
    rows += [
        _chat([_u("hi"), _u("anyone there?"), _a("Yes, how can I help?")], landed=at[0]),
        _chat([_u("hello"), _a("Hi!"), _s("Answer in French."), _u("merci"), _a("De rien !")], landed=at[1]),
        _chat([_u("where is #1"), _a("Which email?", 0), _u("jo@example.com"), _a("Thursday.", 1)], landed=at[2]),
        _chat([_u("refund?"), _a("Maybe.", 0.5)], landed=at[3]),
        _chat([_u("cancel"), _a("No.", 0), _u("please"), _a("Still no.", 0)], landed=at[4]),
        _chat([_u("what is <|im_end|> ?"), _a("A ChatML token.")], landed=at[5]),
        _chat([_u("summarise: " + "word " * 40000), _a("It repeats one word.")], landed=at[6]),
        _chat([_s("Be brief."), _u("ping")], landed=at[7]),
        _chat([_s("Be brief."), _s("Use emoji."), _u("ping 🏓"), _a("pong 🏓")], landed=at[8]),
        _chat([_u("Grüße aus Köln — ça va?"), _a("Très bien, danke! 😀")], landed=at[9]),
        _chat([_u("same text twice"), _a("same answer")], landed=at[10]),
        _chat([_u("same text twice"), _a("same answer")], landed=at[11], created=at[11]),  # same id, newer
        _chat([_u("tracking number please"), _a("shipping_status")], label="shipping_status", landed=at[12]),
        _chat([_s("Route the message."), _u("charged twice"), _a("billing_refund")], label="billing_refund",
              landed=at[13]),
    ]
    return rows


def second_rows() -> list[dict[str, Any]]:
    """Run 2: new traffic, a correction of a run-1 answer, and run-1 content landing again."""
    from tuneloop import demo_data

    rows = demo_data.generate_batch(150, seed=22, start=T2)
    last = max(dt.datetime.fromisoformat(r["ingested_at"].replace("Z", "+00:00")) for r in rows)
    at = [last + dt.timedelta(minutes=i + 1) for i in range(5)]
    rows += [
        _chat([_u("tracking number please"), _a("order_status")], label="order_status", source="corrected",
              landed=at[0]),
        _chat([_u("Grüße aus Köln — ça va?"), _a("Très bien, danke! 😀")], landed=at[1], created=at[1]),
        _chat([_u("a new question"), _a("a new answer")], landed=at[2]),
    ]
    return rows


def run_scenario(tmp: Path) -> dict[str, Any]:
    """Both export runs under ``tmp``; returns the digests of what each published."""
    from tuneloop import stages
    from tuneloop.warehouse import open_warehouse
    from tuneloop.warehouse.base import duckdb_uri

    wh_uri = duckdb_uri(str(tmp / "wh.duckdb"))
    root = tmp / "root"
    out: dict[str, Any] = {}
    for run, rows in (("run1", first_rows()), ("run2", second_rows())):
        with open_warehouse(wh_uri) as wh:
            wh.ensure_table(TABLE)
            wh.insert_rows(TABLE, rows)
        work = tmp / run
        work.mkdir()
        got = stages.extract(
            warehouse_uri=wh_uri,
            table=TABLE,
            dataset_root=str(root),
            examples_path=str(work / "examples.parquet"),
            quarantine_path=str(work / "quarantine.jsonl"),
        )
        prepared = stages.prepare_dataset(
            examples_path=str(work / "examples.parquet"),
            quarantine_path=str(work / "quarantine.jsonl"),
            dataset_root=str(root),
            work_dir=str(work / "dataset"),
            watermark=got["watermark_to"],
            formats=FORMATS,
            min_new_examples=10,
            min_examples=1,
            system_prompt=SYSTEM_PROMPT,
        )
        out[run] = {
            "extract": got,
            "prepared": {k: prepared[k] for k in ("status", "dataset_hash", "counts", "new_examples", "quarantined")},
            "files": digest(Path(prepared["dataset_uri"]), tmp),
        }
    return out


def _rows_digest(path: Path) -> str:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    payload = json.dumps({"schema": str(table.schema), "rows": table.to_pylist()}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def digest(dataset_dir: Path, tmp: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every data file of a published dataset (``*.lock`` left out)."""
    out = {}
    for f in sorted(dataset_dir.rglob("*")):
        rel = f.relative_to(dataset_dir).as_posix()
        if not f.is_file() or rel.endswith(".lock"):
            continue
        if rel.endswith(".parquet"):
            out[rel] = _rows_digest(f)
            continue
        text = f.read_text(encoding="utf-8").replace(str(tmp), "<TMP>")
        if rel == "manifest.json":
            manifest = json.loads(text)
            manifest.pop("created_at")
            text = json.dumps(manifest, sort_keys=True)
        out[rel] = hashlib.sha256(text.encode()).hexdigest()
    return out


def main(argv: list[str]) -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        got = run_scenario(Path(tmp))
    text = json.dumps(got, indent=1, sort_keys=True) + "\n"
    if "--write" in argv:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
        print(f"wrote {GOLDEN}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
