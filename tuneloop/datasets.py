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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop import examples as ex
from tuneloop import storage

MANIFEST = "manifest.json"
STATE = "state.json"
CANONICAL_DIR = "canonical"
QUARANTINE = "quarantine.jsonl"
DEFAULT_MIN_NEW_EXAMPLES = 100  # support-intent system: retrain only on 100+ new samples


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
    local = storage.download_dir(uri) if storage.is_remote(uri) else Path(uri)  # gs://: a cached mirror
    data = {s: ex.read_parquet(local / CANONICAL_DIR / f"{s}.parquet") for s in splits}
    return Dataset(uri=uri, manifest=manifest, splits=data)


def resolve_corrections(examples: Iterable[ex.Example]) -> tuple[list[ex.Example], int]:
    """A human correction supersedes every other answer to the same prompt.

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
) -> dict[str, Any]:
    """Merge ``new_examples`` into ``previous``, split by id hash, render each format; returns the manifest.

    Raises ``formats.TooFewExamplesError`` when a format keeps fewer than ``min_examples`` train rows.
    """
    from tuneloop.formats import format_dataset

    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    old = [e for split in (previous.splits.values() if previous else []) for e in split]
    merged, superseded = resolve_corrections([*old, *new_examples])
    splits = ex.split_examples(merged, fractions)
    for name, rows in splits.items():
        ex.write_parquet(out / CANONICAL_DIR / f"{name}.parquet", rows)
    ex.write_jsonl(out / QUARANTINE, quarantined)
    labels = sorted({e.target for e in merged if e.label is not None and e.target is not None})
    reports = {}
    for fmt in formats:
        report = format_dataset(
            splits, fmt, str(out / fmt), min_examples=min_examples, system_prompt=system_prompt, model=model
        )
        reports[fmt] = report.to_dict() if hasattr(report, "to_dict") else dict(vars(report))
    manifest = {
        "dataset_hash": ex.dataset_hash(merged),
        "counts": {name: len(rows) for name, rows in splits.items()},
        "total": len(merged),
        "new_examples": len(new_examples),
        "superseded_by_corrections": superseded,
        "quarantined_at_extract": len(quarantined),
        "labels": labels,
        "fractions": list(fractions),
        "watermark": watermark,
        "previous": previous.hash if previous else None,
        "formats": reports,
        "created_at": ex.utc_now(),
    }
    storage.write_json(str(out / MANIFEST), manifest)
    return manifest


def publish(built_dir: str | Path, dataset_root: str, *, expected: RootState) -> str:
    """Copy a built dataset to its content address and move ``state.json`` (compare-and-set).

    Re-publishing the same content is a no-op for the files. Raises ``storage.ConflictError`` when
    another run published since ``expected`` was read (its rows would otherwise be read twice).
    """
    manifest, _ = storage.read_json(storage.join(str(built_dir), MANIFEST))
    uri = dataset_uri(dataset_root, manifest["dataset_hash"])
    if not storage.exists(storage.join(uri, MANIFEST)):
        # the manifest goes last: a dataset with a manifest is complete
        for f in sorted(Path(built_dir).rglob("*")):
            rel = f.relative_to(built_dir).as_posix()
            if f.is_file() and rel != MANIFEST:
                storage.write(storage.join(uri, rel), f.read_bytes(), if_generation="*")
        storage.write(
            storage.join(uri, MANIFEST), (Path(built_dir) / MANIFEST).read_bytes(), if_generation="*"
        )
    state = {"watermark": manifest.get("watermark"), "latest": manifest["dataset_hash"]}
    try:
        storage.write_json(storage.join(dataset_root, STATE), state, if_generation=expected.generation)
    except storage.ConflictError as exc:
        raise storage.ConflictError(
            f"{storage.join(dataset_root, STATE)} was moved by another run while this one built dataset "
            f"{manifest['dataset_hash'][:12]}; nothing was lost — rerun to pick up from the new watermark"
        ) from exc
    return uri
