"""Published datasets: merge new examples into the last published set, split, render, publish.

A dataset is a directory, content-addressed under ``<dataset_root>/datasets/<sha256>/``::

    manifest.json                 identity, counts, labels, watermark, format reports
    canonical/{train,validation,eval}.parquet
    quarantine.jsonl              rows rejected at extract in the run that published it
    <format>/{train,validation,eval,quarantine}.jsonl, report.json   one folder per rendered format

``<dataset_root>/state.json`` holds the warehouse watermark and the latest dataset hash. It is moved by
compare-and-set, so a dataset is published, and the watermark advanced, exactly once; rows read past
the watermark are only "consumed" once a dataset holding them is published.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop import examples as ex
from tuneloop import storage
from tuneloop.merge import Merge

MANIFEST = "manifest.json"
STATE = "state.json"
CANONICAL_DIR = "canonical"
QUARANTINE = "quarantine.jsonl"
DEFAULT_MIN_NEW_EXAMPLES = 100  # support-intent system: retrain only on 100+ new samples
_NOT_DATA = (".lock", ".tmp")  # what a writer may leave beside the data; never published
# More candidate rows than this many merge batches: rendering runs in worker processes (tuneloop.parallel).
PARALLEL_AFTER_BATCHES = 2


@dataclass(frozen=True)
class RootState:
    """What ``state.json`` says, plus the generation it was read at (for the compare-and-set)."""

    watermark: str | None
    latest: str | None
    generation: str | None

    @classmethod
    def read(cls, dataset_root: str) -> RootState:
        value, gen = storage.read_json(storage.join(dataset_root, STATE))
        value = value or {}
        return cls(watermark=value.get("watermark"), latest=value.get("latest"), generation=gen)


@dataclass(frozen=True)
class Dataset:
    uri: str
    manifest: Mapping[str, Any]
    splits: Mapping[str, list[ex.Example]] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return self.manifest["dataset_hash"]

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.get("labels", []))

    def format_file(self, fmt: str, split: str) -> str:
        return storage.join(self.uri, fmt, f"{split}.jsonl")


def dataset_uri(dataset_root: str, dataset_hash: str) -> str:
    return storage.join(dataset_root, "datasets", dataset_hash)


def load_dataset(uri: str, *, splits: Sequence[str] = ex.SPLITS) -> Dataset:
    """Read a published (or freshly built) dataset directory."""
    manifest, _ = storage.read_json(storage.join(uri, MANIFEST))
    if manifest is None:
        raise storage.StorageError(
            f"dataset_uri={uri!r} has no {MANIFEST}; pass the dataset_uri printed by export-dataset"
        )
    files = dict(zip(ex.SPLITS, canonical_files(uri), strict=True))  # gs://: a cached mirror of canonical/
    data = {s: ex.read_parquet(files[s]) for s in splits}
    return Dataset(uri=uri, manifest=manifest, splits=data)


def resolve_corrections(examples: Iterable[ex.Example]) -> tuple[list[ex.Example], int]:
    """A human correction supersedes every other answer to the same prompt (in memory; the pipeline
    merges on disk with :class:`tuneloop.merge.Merge`, which follows exactly these rules).

    Examples are grouped by their prompt (all turns before the final assistant turn); where a group
    holds a ``corrected`` example, the non-corrected ones with another answer are dropped.
    Returns the kept examples and how many were superseded.
    """

    def prompt_key(e: ex.Example) -> str:
        turns = list(e.messages)
        if turns and turns[-1].role == "assistant":
            turns = turns[:-1]
        return json.dumps([m.to_dict() for m in turns], sort_keys=True)

    groups: dict[str, list[ex.Example]] = {}
    for e in examples:
        groups.setdefault(prompt_key(e), []).append(e)
    kept: list[ex.Example] = []
    superseded = 0
    for group in groups.values():
        corrected = [e for e in group if e.source == "corrected"]
        if not corrected:
            kept.extend(group)
            continue
        answers = {e.target for e in corrected}
        for e in group:
            if e.source == "corrected" or e.target in answers:
                kept.append(e)
            else:
                superseded += 1
    return ex.dedupe(kept), superseded


def canonical_files(uri: str) -> list[Path]:
    """Local paths of a published dataset's canonical Parquet files in split order (``gs://``: only
    ``canonical/`` is mirrored, streamed to disk)."""
    folder = storage.join(uri, CANONICAL_DIR)
    local = storage.download_dir(folder) if storage.is_remote(uri) else Path(folder)
    return [local / f"{s}.parquet" for s in ex.SPLITS]


def build_dataset(
    new_examples: Sequence[ex.Example],
    out_dir: str | Path,
    *,
    previous: Dataset | None,
    formats: Sequence[str] = (),
    fractions: Sequence[float] = ex.DEFAULT_FRACTIONS,
    min_examples: int = 10,
    system_prompt: str | None = None,
    model: str | None = None,
    watermark: str | None = None,
    quarantined: Sequence[Mapping[str, Any]] = (),
    task: str | None = None,
) -> dict[str, Any]:
    """Merge ``new_examples`` into ``previous``, split by id hash, render each format; returns the manifest.

    The in-memory form of :func:`build_dataset_files` (which see), for callers that hold the examples.

    Raises ``formats.TooFewExamplesError`` when a format keeps fewer than ``min_examples`` train rows.
    """
    with tempfile.TemporaryDirectory(prefix="tuneloop-build-") as tmp:
        new_path, q_path = Path(tmp) / "new.parquet", Path(tmp) / QUARANTINE
        ex.write_parquet(new_path, new_examples)
        ex.write_jsonl(q_path, quarantined)
        return build_dataset_files(
            new_path, out_dir, previous_uri=previous.uri if previous else None,
            previous_hash=previous.hash if previous else None, formats=formats, fractions=fractions,
            min_examples=min_examples, system_prompt=system_prompt, model=model, watermark=watermark,
            quarantine_path=q_path, task=task,
        )


def build_dataset_files(
    new_path: str | Path,
    out_dir: str | Path,
    *,
    previous_uri: str | None,
    previous_hash: str | None = None,
    formats: Sequence[str] = (),
    fractions: Sequence[float] = ex.DEFAULT_FRACTIONS,
    min_examples: int = 10,
    system_prompt: str | None = None,
    model: str | None = None,
    watermark: str | None = None,
    quarantine_path: str | Path | None = None,
    merge: Merge | None = None,
    batch_rows: int | None = None,
    task: str | None = None,
) -> dict[str, Any]:
    """Merge the new examples (a canonical Parquet file) into the previous dataset, split, render; returns the manifest.

    Streams: the merge runs on disk (:class:`tuneloop.merge.Merge`) and the merged examples pass
    through the splitter, the canonical Parquet writers and every format's writer
    ``batch_rows`` at a time, so memory does not grow with the dataset. The output is the same as
    merging in memory: :func:`resolve_corrections`, then split by id hash, then each format.

    Args:
        new_path: the new examples (canonical Parquet).
        out_dir: the dataset folder to build (replaced if it exists).
        previous_uri: the previous published dataset (its canonical files are merged), or None.
        previous_hash: its hash, recorded as ``previous`` in the manifest.
        formats / min_examples / system_prompt / model: what to render (see ``formats.format_dataset``).
        fractions: train/validation/eval shares of the id-hash split.
        watermark: recorded in the manifest.
        quarantine_path: the rows the extract rejected (JSONL), copied into the dataset.
        merge: an open Merge of the same files (a caller that already counted new ids with it).
        batch_rows: examples per batch (default :data:`tuneloop.merge.BATCH_ROWS`).
        task: the task kind recorded in the manifest (``classification`` or ``chat``); None = inferred
            from the examples (labels = classification).

    Raises:
        formats.TooFewExamplesError: a format keeps fewer than ``min_examples`` train rows.
    """
    from tuneloop.formats import DatasetWriter

    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    own = merge is None
    if own:
        merge = Merge(new_path, canonical_files(previous_uri) if previous_uri else ())
    pool = None
    try:
        new_rows = merge.new_rows()
        pool = _render_pool(merge, bool(formats), batch_rows)
        total = merge.run()
        n_quarantined = 0
        if quarantine_path is not None:
            with open(quarantine_path, "rb") as src, (out / QUARANTINE).open("wb") as dst:
                for line in src:  # the extract's lines as they are (written the way write_jsonl writes)
                    if line.strip():
                        dst.write(line if line.endswith(b"\n") else line + b"\n")
                        n_quarantined += 1
        else:
            (out / QUARANTINE).write_bytes(b"")
        counts = dict.fromkeys(ex.SPLITS, 0)
        split_of = ex.splitter(fractions)
        writers = [
            DatasetWriter(fmt, out / fmt, min_examples=min_examples, system_prompt=system_prompt, model=model,
                          check_duplicates=False)  # ids are unique: the merge keeps one row per id
            for fmt in formats
        ]
        parquet = {s: ex.ExamplesParquetWriter(out / CANONICAL_DIR / f"{s}.parquet") for s in ex.SPLITS}
        specs = [w.format_spec() for w in writers]
        try:
            for batch, prepared in _formatted_batches(merge.batches(batch_rows), specs, fractions, pool):
                if prepared is None:  # a format that renders only here: split and render in this process
                    rows: dict[str, list[int]] = {s: [] for s in ex.SPLITS}
                    for i, example_id in enumerate(batch.column("id").to_pylist()):
                        rows[split_of(example_id)].append(i)
                    prepared = {split: (picked, None) for split, picked in rows.items() if picked}
                for split, (picked, chunks) in prepared.items():
                    counts[split] += len(picked)
                    part = batch.take(picked)
                    parquet[split].write_arrow(part)
                    if chunks is not None:
                        for w, chunk in zip(writers, chunks, strict=True):
                            w.write_chunk(split, chunk)
                    elif writers:
                        examples = ex.examples_from_batch(part)
                        for w in writers:
                            w.write(split, examples)
        except BaseException:
            for w in writers:
                w.abort()
            raise
        finally:
            for p in parquet.values():
                p.close()
        reports = {}
        for i, (fmt, w) in enumerate(zip(formats, writers, strict=True)):
            try:
                reports[fmt] = w.close().to_dict()
            except BaseException:  # e.g. too few rows survived: the formats after it are not finished
                for rest in writers[i + 1 :]:
                    rest.abort()
                raise
        labels = merge.labels()
        manifest = {
            "task": task or ("classification" if labels else "chat"),
            "dataset_hash": merge.dataset_hash(),
            "counts": counts,
            "total": total,
            "new_examples": new_rows,
            "superseded_by_corrections": merge.superseded,
            "quarantined_at_extract": n_quarantined,
            "labels": labels,
            "fractions": list(fractions),
            "watermark": watermark,
            "previous": previous_hash,
            "formats": reports,
            "created_at": ex.utc_now(),
        }
    finally:
        if pool is not None:
            pool.close()
        if own:
            merge.close()
    storage.write_json(str(out / MANIFEST), manifest)
    return manifest


def _render_pool(merge: Merge, rendering: bool, batch_rows: int | None) -> Any:
    """Worker processes for rendering, started before the merge runs (they import while DuckDB works),
    when there is rendering to do, more than two batches of candidate rows, and more than one CPU; else None."""
    from tuneloop import merge as merging
    from tuneloop.parallel import Pool, default_workers

    rows_per_batch = batch_rows or merging.BATCH_ROWS
    if not rendering or default_workers() < 2 or merge.candidate_rows() <= PARALLEL_AFTER_BATCHES * rows_per_batch:
        return None
    return Pool(preload=(__name__, "tuneloop.formats.render"))


def _formatted_batches(batches: Iterable[Any], specs: Sequence[Any], fractions: Sequence[float],
                       pool: Any = None) -> Iterator[tuple[Any, Any]]:
    """``(batch, prepared)`` per merged batch: ``prepared`` = :func:`format_batch`'s result when every
    format can be rendered in another process (:meth:`DatasetWriter.format_spec`), computed across the
    machine's cores (``pool``, a started :class:`tuneloop.parallel.Pool`, or
    :func:`tuneloop.parallel.ordered_map`), else None (the caller splits and renders in process)."""
    from tuneloop.parallel import ordered_map

    if not specs or any(spec is None for spec in specs):
        for batch in batches:
            yield batch, None
        return
    held: deque[Any] = deque()

    def tasks() -> Iterator[tuple[Any, Sequence[Any], Sequence[float]]]:
        for batch in batches:
            held.append(batch)
            yield batch, specs, fractions

    results = pool.map(format_batch, tasks()) if pool is not None else ordered_map(format_batch, tasks())
    for prepared in results:
        yield held.popleft(), prepared


def format_batch(task: tuple[Any, Sequence[Any], Sequence[float]]) -> dict[str, tuple[list[int], list[Any]]]:
    """A merged batch split by id hash and rendered in every format (in a worker process or here):
    ``split -> (the batch's row indices in it, one FormattedChunk per format)``, splits without rows left out."""
    from tuneloop.formats.jsonl import paused_gc
    from tuneloop.formats.render import format_rows, formatted_chunk

    batch, specs, fractions = task
    split_of = ex.splitter(fractions)
    with paused_gc():  # one batch of small acyclic objects (see paused_gc)
        examples = ex.examples_from_batch(batch)
        picked: dict[str, list[int]] = {s: [] for s in ex.SPLITS}
        for i, e in enumerate(examples):
            picked[split_of(e.id)].append(i)
        out = {}
        for split, rows in picked.items():
            if not rows:
                continue
            part = [examples[i] for i in rows]
            ids, weights = [e.id for e in part], [e.weight for e in part]
            out[split] = (rows, [formatted_chunk(split, ids, weights, format_rows(spec, part)) for spec in specs])
        return out


def data_files(built_dir: str | Path) -> list[str]:
    """The files of a built dataset that are published, relative, sorted: data only (no lock or
    temporary files a writer may have left), the manifest last."""
    root = Path(built_dir)
    names = sorted(
        f.relative_to(root).as_posix()
        for f in root.rglob("*")
        if f.is_file() and not f.name.endswith(_NOT_DATA) and not f.name.startswith(".")
    )
    return [n for n in names if n != MANIFEST] + ([MANIFEST] if MANIFEST in names else [])


def publish(built_dir: str | Path, dataset_root: str, *, expected: RootState) -> str:
    """Copy a built dataset to its content address and move ``state.json`` (compare-and-set).

    Only data files are published (see :func:`data_files`), each streamed, the manifest last: a
    dataset with a manifest is complete. Re-publishing the same content is a no-op for the files.
    Raises ``storage.ConflictError`` when another run published since ``expected`` was read (its rows
    would otherwise be read twice).
    """
    manifest, _ = storage.read_json(storage.join(str(built_dir), MANIFEST))
    uri = dataset_uri(dataset_root, manifest["dataset_hash"])
    if not storage.exists(storage.join(uri, MANIFEST)):
        for rel in data_files(built_dir):
            storage.upload_file(Path(built_dir) / rel, storage.join(uri, rel))
    state = {"watermark": manifest.get("watermark"), "latest": manifest["dataset_hash"]}
    try:
        storage.write_json(storage.join(dataset_root, STATE), state, if_generation=expected.generation)
    except storage.ConflictError as exc:
        raise storage.ConflictError(
            f"{storage.join(dataset_root, STATE)} was moved by another run while this one built dataset "
            f"{manifest['dataset_hash'][:12]}; nothing was lost — rerun to pick up from the new watermark"
        ) from exc
    return uri
