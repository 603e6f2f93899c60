"""Merging new examples into the last published dataset on disk, in bounded memory (DuckDB).

The rules are those of :func:`tuneloop.datasets.resolve_corrections` and :func:`tuneloop.examples.dedupe`,
applied to Parquet files instead of lists, so a dataset of any size merges with about the same memory:

1. every row of the previous dataset (train, validation, eval, in file order) and then every new row
   (in landing order) is one candidate;
2. a human correction supersedes the other answers to the same prompt (all turns before the final
   assistant turn): a non-corrected row whose answer is not one of the corrections' is dropped;
3. one row per id (the id is the content hash) survives: the latest ``created_at``, and among equal
   ones the later candidate;
4. the survivors come out ordered by ``(created_at, id)``, a record batch at a time.

DuckDB keeps its working set under :data:`MEMORY_LIMIT` and spills the rest to a temporary folder.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tuneloop.examples import RECORD_KEYS

MEMORY_LIMIT = "256MB"
BATCH_ROWS = 20_000  # rows per record batch streamed out
_COLUMNS = ", ".join(RECORD_KEYS)


def _literal(path: str | Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


class Merge:
    """The previous dataset's canonical files and the new examples, merged on disk.

    Args:
        new_path: the new examples (canonical Parquet, e.g. the extract step's output).
        previous: the previous dataset's canonical Parquet files in split order (train, validation,
            eval); empty for a first dataset.
        memory_limit: DuckDB's memory budget (it spills to a temporary folder beyond it).
    """

    def __init__(self, new_path: str | Path, previous: Sequence[str | Path] = (), *, memory_limit: str = MEMORY_LIMIT):
        import duckdb

        self._tmp = tempfile.TemporaryDirectory(prefix="tuneloop-merge-")
        self._con = duckdb.connect(str(Path(self._tmp.name) / "merge.duckdb"))
        for setting in (f"memory_limit = '{memory_limit}'", f"temp_directory = {_literal(self._tmp.name)}",
                        "preserve_insertion_order = true",
                        "enable_progress_bar = false"):  # a long merge would draw a bar on the task's stdout
            self._run(f"SET {setting}")
        files = [*previous, new_path]
        parts = " UNION ALL ".join(
            f"SELECT {i} AS part, file_row_number AS rn, {_COLUMNS} "
            f"FROM read_parquet({_literal(f)}, file_row_number = true)"
            for i, f in enumerate(files)
        )
        self._new_part = len(files) - 1
        self._run(f"CREATE VIEW src AS {parts}")
        self._merged = False
        self._sorted = False
        self._hasher: threading.Thread | None = None
        self._hash_con: Any = None
        self._hash = ""
        self._hash_error: BaseException | None = None
        self.superseded = 0

    # -- before merging ----------------------------------------------------------------------
    def new_rows(self) -> int:
        """Rows in the new file."""
        return self._one(f"SELECT count(*) FROM src WHERE part = {self._new_part}")

    def candidate_rows(self) -> int:
        """Rows in all the files (previous and new), before duplicates are resolved (file metadata: cheap)."""
        return self._one("SELECT count(*) FROM src")

    def new_ids(self) -> int:
        """Distinct ids among the new rows that the previous dataset does not hold."""
        return self._one(
            f"SELECT count(DISTINCT n.id) FROM src n WHERE n.part = {self._new_part} AND NOT EXISTS "
            f"(SELECT 1 FROM src o WHERE o.part < {self._new_part} AND o.id = n.id)"
        )

    # -- the merge -----------------------------------------------------------------------------
    def run(self) -> int:
        """Resolve corrections and duplicates; returns how many examples the merged dataset holds."""
        run = self._run
        run("""
            CREATE TEMP TABLE keys AS
            SELECT part, rn, id, source, created_at, label,
                   sha256(to_json(CASE WHEN len(messages) > 0 AND messages[len(messages)].role = 'assistant'
                                       THEN list_slice(messages, 1, len(messages) - 1) ELSE messages END)) AS prompt,
                   COALESCE(label, list_filter(messages, lambda m: m.role = 'assistant')[-1].content) AS target
            FROM src
        """)
        run("CREATE TEMP TABLE corr AS SELECT DISTINCT prompt, target FROM keys WHERE source = 'corrected'")
        run("""
            CREATE TEMP TABLE kept AS
            SELECT k.* FROM keys k
            WHERE k.source = 'corrected'
               OR NOT EXISTS (SELECT 1 FROM corr c WHERE c.prompt = k.prompt)
               OR EXISTS (SELECT 1 FROM corr c WHERE c.prompt = k.prompt AND c.target IS NOT DISTINCT FROM k.target)
        """)
        self.superseded = self._one("SELECT count(*) FROM keys") - self._one("SELECT count(*) FROM kept")
        run("""
            CREATE TEMP TABLE chosen AS
            SELECT part, rn, id, created_at, label FROM kept
            QUALIFY row_number() OVER (PARTITION BY id ORDER BY created_at DESC, part DESC, rn DESC) = 1
        """)
        for name in ("keys", "corr", "kept"):
            run(f"DROP TABLE {name}")
        self._merged = True
        return self._one("SELECT count(*) FROM chosen")

    def batches(self, batch_rows: int | None = None) -> Iterator[Any]:
        """The merged examples ordered by ``(created_at, id)``, as Arrow record batches of the canonical columns.

        Starts :meth:`dataset_hash` on a second connection in a thread, so the hash is ready when the
        caller has read the batches."""
        self._sort()
        self._start_hash()
        yield from self._stream("SELECT * FROM merged", batch_rows or BATCH_ROWS)

    def _sort(self) -> None:
        self._require_merged()
        if not self._sorted:
            # Sorted into a table of this on-disk database first, then read back in insertion order: a
            # streamed ORDER BY result of millions of rows can run out of DuckDB's memory limit while the
            # reader is slow (seen at 1.6M rows), where a table's blocks are written out to the file.
            # The chosen rows are materialised first and sorted by a second statement: one statement
            # that joins and sorts needs both operators' memory at once and ran out of 256 MB at 1.6M
            # rows now and then; apart, 1.6M rows merge within 112 MB and 6.4M within 256 MB.
            cols = ", ".join(f"s.{c}" for c in RECORD_KEYS)
            self._run(f"CREATE TABLE picked AS SELECT {cols} FROM src s SEMI JOIN chosen c "
                      f"ON s.part = c.part AND s.rn = c.rn")
            self._run("CREATE TABLE merged AS SELECT * FROM picked ORDER BY created_at, id")
            self._run("DROP TABLE picked")
            self._sorted = True

    def labels(self) -> list[str]:
        """The distinct labels of the merged examples, sorted."""
        self._require_merged()
        rows = self._run("SELECT DISTINCT label FROM chosen WHERE label IS NOT NULL")
        return sorted(r[0] for r in rows)

    def dataset_hash(self) -> str:
        """:func:`tuneloop.examples.dataset_hash` of the merged examples, streamed in id order (computed
        while :meth:`batches` streamed, when it did)."""
        self._sort()
        self._start_hash()
        self._hasher.join()
        if self._hash_error is not None:
            raise self._hash_error
        return self._hash

    def _start_hash(self) -> None:
        if self._hasher is None:
            self._hash_con = self._con.cursor()
            self._hasher = threading.Thread(target=self._compute_hash, args=(self._hash_con,), daemon=True)
            self._hasher.start()

    def _compute_hash(self, con: Any) -> None:
        # Its own connection (DuckDB connections are not shared between threads) and its own table in id
        # order, read back in insertion order (see _sort): the main stream and this one run at once.
        try:
            h = hashlib.sha256()
            con.execute("CREATE TABLE hash_rows AS SELECT id, source, weight FROM merged ORDER BY id").fetchall()
            rel = con.sql("SELECT * FROM hash_rows")
            reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_record_batch
            for batch in reader(BATCH_ROWS):
                cols = batch.to_pydict()
                h.update("".join(f"{i}|{s}|{w}\n" for i, s, w in zip(cols["id"], cols["source"], cols["weight"],
                                                                      strict=True)).encode())
            self._hash = h.hexdigest()
        except BaseException as exc:  # noqa: BLE001 - raised by dataset_hash in the caller's thread
            self._hash_error = exc
        finally:
            con.close()

    # -- plumbing --------------------------------------------------------------------------------
    def _run(self, query: str) -> list[tuple]:
        return self._con.execute(query).fetchall()  # fetched to the end: the connection is free again

    def _one(self, query: str) -> int:
        return int(self._run(query)[0][0])

    def _stream(self, query: str, batch_rows: int) -> Iterator[Any]:
        rel = self._con.sql(query)
        reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_record_batch
        yield from reader(batch_rows)

    def _require_merged(self) -> None:
        if not self._merged:
            raise RuntimeError("call Merge.run() first")

    def close(self) -> None:
        """Close DuckDB and remove its temporary files (idempotent)."""
        if self._hasher is not None:
            if self._hasher.is_alive():  # closed early (an error while streaming): stop the hash
                try:
                    self._hash_con.interrupt()
                except Exception:  # noqa: BLE001 - it may just have finished
                    pass
            self._hasher.join()
        self._con.close()
        self._tmp.cleanup()

    def __enter__(self) -> Merge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
