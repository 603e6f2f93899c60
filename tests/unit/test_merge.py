"""The on-disk merge (DuckDB) keeps exactly what the in-memory rules keep, in the same order.

``tuneloop.merge.Merge`` replaced ``resolve_corrections`` + ``dedupe`` over lists in the pipeline; on
random inputs built to hit every rule (corrections, repeated ids with equal and different
``created_at``, unlabelled chats, turn weights) both give the same examples, field for field.
"""

from __future__ import annotations

import random

import pytest

from tuneloop import examples as ex
from tuneloop.datasets import resolve_corrections
from tuneloop.merge import Merge

PROMPTS = ["where is my order", "refund me", "cancel it", "hi", "reset my password", "two turns"]
LABELS = ["shipping", "billing", "cancel", "greeting", None]
TIMES = [f"2025-06-0{d}T0{h}:00:00Z" for d in (1, 2) for h in (1, 2)]


def random_examples(rng: random.Random, n: int) -> list[ex.Example]:
    out = []
    for _ in range(n):
        prompt = rng.choice(PROMPTS)
        label = rng.choice(LABELS)
        answer = label or rng.choice(["sure", "on its way", "done"])
        turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        if prompt == "two turns":
            turns = [{"role": "system", "content": "be brief"}, *turns,
                     {"role": "user", "content": "and?"}, {"role": "assistant", "content": answer,
                                                           "weight": rng.choice([None, 0.0, 1.0])}]
        source = rng.choice(["live", "live", "imported", "corrected"])
        out.append(ex.make_example(turns, label=label, source=source, created_at=rng.choice(TIMES),
                                   meta={"n": rng.randrange(1000)}))
    return out


def merged_on_disk(tmp, old_splits, new):
    paths = []
    for i, rows in enumerate(old_splits):
        paths.append(tmp / f"old{i}.parquet")
        ex.write_parquet(paths[-1], rows)
    ex.write_parquet(tmp / "new.parquet", new)
    with Merge(tmp / "new.parquet", paths) as m:
        total = m.run()
        rows = [ex.example_from_row(r) for b in m.batches(batch_rows=7) for r in b.to_pylist()]
        assert total == len(rows)
        return rows, m.superseded, m.labels(), m.dataset_hash()


@pytest.mark.parametrize("seed", range(6))
def test_the_disk_merge_keeps_what_the_list_merge_keeps(tmp_path, seed):
    rng = random.Random(seed)
    pool = random_examples(rng, 80)
    old = ex.dedupe(rng.sample(pool, 40))  # a previous dataset holds one row per id
    old_splits = [[e for e in old if ex.split_of(e.id) == s] for s in ex.SPLITS]
    new = random_examples(rng, 50) + rng.sample(pool, 10)  # new rows, some the same examples again
    expected, superseded = resolve_corrections([*[e for s in old_splits for e in s], *new])
    rows, got_superseded, labels, digest = merged_on_disk(tmp_path, old_splits, new)
    assert rows == expected
    assert got_superseded == superseded
    assert superseded > 0 and len({e.id for e in [*old, *new]}) > len(rows)  # both rules did something
    assert labels == sorted({e.label for e in expected if e.label is not None})
    assert digest == ex.dataset_hash(expected)


def test_counts_of_new_rows_and_new_ids(tmp_path):
    rows = random_examples(random.Random(1), 30)
    ex.write_parquet(tmp_path / "old.parquet", rows[:10])
    ex.write_parquet(tmp_path / "new.parquet", rows[5:] + rows[5:8])
    with Merge(tmp_path / "new.parquet", [tmp_path / "old.parquet"]) as m:
        assert m.new_rows() == 28
        assert m.new_ids() == len({e.id for e in rows[5:]} - {e.id for e in rows[:10]})
        with pytest.raises(RuntimeError, match="run"):
            list(m.batches())


def test_a_merge_closed_while_its_batches_stream_stops_cleanly_and_its_hash_matches_when_read(tmp_path):
    rows = ex.dedupe(random_examples(random.Random(3), 200))
    ex.write_parquet(tmp_path / "new.parquet", rows)
    m = Merge(tmp_path / "new.parquet")
    m.run()
    stream = m.batches(batch_rows=5)
    next(stream)  # the hash is computed beside the stream
    stream.close()
    m.close()  # an error in the caller's loop closes it early: no hang, nothing raised
    with Merge(tmp_path / "new.parquet") as again:
        again.run()
        assert again.dataset_hash() == ex.dataset_hash(resolve_corrections(rows)[0])  # without reading the batches


def test_a_merge_of_400k_rows_stays_within_a_small_duckdb_memory_limit(tmp_path):
    """The merge spills instead of failing when its working set exceeds DuckDB's budget: 400k rows
    (a previous dataset of 360k and 40k new ones) merge, sort and hash within 80 MB. Joining and sorting
    in one statement ran out of memory here (and now and then at 1.6M rows under the 256 MB default)."""
    import duckdb

    seed = [ex.make_example([{"role": "user", "content": f"where is order {i}"},
                             {"role": "assistant", "content": LABELS[i % 4]}], label=LABELS[i % 4],
                            source="live", created_at=TIMES[i % 4]) for i in range(1_000)]
    ex.write_parquet(tmp_path / "seed.parquet", seed)
    con = duckdb.connect()
    for name, lo, hi in (("old", 0, 360), ("new", 360, 400)):  # copies of the seed rows with distinct ids
        con.execute(f"COPY (SELECT * REPLACE (substr(md5(id || k::VARCHAR), 1, 32) AS id) "
                    f"FROM read_parquet('{tmp_path / 'seed.parquet'}'), range({lo}, {hi}) t(k)) "
                    f"TO '{tmp_path / name}.parquet' (FORMAT parquet)")
    con.close()
    with Merge(tmp_path / "new.parquet", [tmp_path / "old.parquet"], memory_limit="80MB") as m:
        assert m.run() == 400_000
        keys, rows = [], 0
        for batch in m.batches():
            cols = batch.select(["created_at", "id"]).to_pydict()
            keys.extend(zip(cols["created_at"], cols["id"], strict=True))
            rows += batch.num_rows
        assert rows == 400_000 and keys == sorted(keys) and len(set(keys)) == rows
        assert len(m.dataset_hash()) == 64
