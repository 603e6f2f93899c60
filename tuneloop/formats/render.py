"""Rendering a dataset: canonical splits -> a provider's training files, validated, with a quarantine.

:class:`DatasetWriter` takes examples a chunk at a time (so a caller can stream a dataset of any size
through it with bounded memory) and :func:`format_dataset` is the whole-dataset entry point built on
it. Each example is rendered, counted and validated in one pass (:meth:`Format.format_many`);
accepted rows go to ``<split>.jsonl`` in input order, rejected ones to ``quarantine.jsonl`` with
their reasons (split by split, in input order), and ``report.json`` holds the counts, tokens, the
estimated training bill and the top reasons. Every input example ends up in exactly one output file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from tuneloop.examples import SPLITS, Example
from tuneloop.formats.base import Format, Limits
from tuneloop.formats.jsonl import encode_line, encode_str, paused_gc
from tuneloop.formats.registry import resolve
from tuneloop.formats.reports import FormatReport, ReasonCounter, TooFewExamplesError

if TYPE_CHECKING:  # pragma: no cover
    from tuneloop.catalog import Catalog

SPLIT_FILES: Mapping[str, str] = {s: f"{s}.jsonl" for s in SPLITS}
QUARANTINE_FILE = "quarantine.jsonl"
REPORT_FILE = "report.json"
QUARANTINE_KEYS = ("id", "split", "reasons", "row")
_TMP = ".tmp"
FLUSH_ROWS = 512  # accepted lines written together (small enough to stay in the CPU cache)


def _tokenizer_label(f: Format) -> str:
    return getattr(f, "tokenizer_label", "exact" if f.tokens_exact else "estimate")


def _write_lines(path: Path, lines: Sequence[str]) -> int:
    """Write lines (each + newline) via a temp file + rename; returns bytes written."""
    tmp = path.with_name(path.name + _TMP)
    data = ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
    with tmp.open("wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return len(data)


class DatasetWriter:
    """Render canonical examples into one provider format's files, a chunk at a time.

    Call :meth:`write` for each chunk (any split, any order of chunks; rows keep their order within
    a split), then :meth:`close` for the report. Nothing is final until :meth:`close`: split files are
    written under temporary names and renamed then, and the quarantine is assembled split by split.
    Used as a context manager, an exception removes the temporary files.

    Args:
        fmt: one of FORMAT_NAMES, or a Format instance (e.g. ``HFFormat(template=...)``).
        out_dir: output directory (created).
        min_examples: fewest accepted training rows to go on with; the provider's own minimum from
            the catalog applies if higher.
        system_prompt: system text for examples that do not start with a system turn.
        model: the base model whose limits and price apply (default: the catalog's default for the
            format's provider).
        limits: override the catalog limits.
        epochs: epochs to price (default: the model's default, else the provider's auto rule).
        catalog: another catalog (default: the packaged one).
        format_options: options for :func:`get_format` (e.g. ``{"template": ...}`` for hf).
        check_duplicates: quarantine an example whose id was already written (in any split). A caller
            whose ids are unique by construction may turn it off: the check holds every id in memory.

    Raises:
        ValueError: an unknown format or model, or a bad ``min_examples`` (nothing is created).
    """

    def __init__(
        self,
        fmt: str | Format,
        out_dir: str | os.PathLike[str],
        *,
        min_examples: int = 10,
        system_prompt: str | None = None,
        model: str | None = None,
        limits: Limits | None = None,
        epochs: int | None = None,
        catalog: Catalog | None = None,
        format_options: Mapping[str, Any] | None = None,
        check_duplicates: bool = True,
    ):
        if isinstance(min_examples, bool) or not isinstance(min_examples, int) or min_examples < 1:
            raise ValueError(f"min_examples={min_examples!r} must be an integer >= 1")
        self.format, self.info = resolve(fmt, model, catalog, format_options)
        self.limits = limits or Limits.from_model(self.info)
        plain = isinstance(fmt, str) and catalog is None and not format_options
        self._spec = (fmt, model, self.limits, system_prompt) if plain else None
        self.minimum = max(min_examples, self.limits.min_examples)
        self.system_prompt = system_prompt
        self.epochs = epochs
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self._seen: dict[str, str] | None = {} if check_duplicates else None
        self._files: dict[str, BinaryIO] = {}
        self._quarantine: dict[str, BinaryIO] = {}
        self._reasons = ReasonCounter()
        self.input_counts = dict.fromkeys(SPLITS, 0)
        self.counts = dict.fromkeys(SPLITS, 0)
        self.quarantined_by_split = dict.fromkeys(SPLITS, 0)
        self.tokens = dict.fromkeys(SPLITS, 0)
        self.sizes = dict.fromkeys(SPLITS, 0)
        self.max_tokens = 0
        self.weighted_turns = 0
        self.weighted_examples = 0
        self._closed = False

    def _file(self, table: dict[str, BinaryIO], split: str, name: str) -> BinaryIO:
        fh = table.get(split)
        if fh is None:
            fh = table[split] = (self.out / name).open("wb")
        return fh

    def write(self, split: str, examples: Iterable[Example]) -> None:
        """Render, count and validate ``examples`` of ``split``, appending to its file or the quarantine.

        Raises:
            ValueError: an unknown split, or the writer is closed.
        """
        self._check_open(split)
        chunk = examples if isinstance(examples, list | tuple) else list(examples)
        if not chunk:
            return
        with paused_gc():  # many small acyclic objects; see paused_gc
            results = list(self.format.format_many(chunk, self.limits, system_prompt=self.system_prompt))
        self.write_formatted(split, [ex.id for ex in chunk], [ex.weight for ex in chunk], results)

    def format_spec(self) -> tuple[str, str | None, Limits, str | None] | None:
        """What another process needs to format rows exactly as this writer does (:func:`format_rows`):
        ``(format name, model, limits, system_prompt)``; None when the format was given as an instance
        or with options (it may hold things that do not cross processes: a template, a tokenizer)."""
        return self._spec

    def write_formatted(self, split: str, ids: Sequence[str], weights: Sequence[float],
                        results: Sequence[tuple[str | None, Any, int, list[str], int]]) -> None:
        """:meth:`write` for rows already formatted (``Format.format_many`` results, e.g. from
        :func:`format_rows` in a worker process), with each row's example id and weight."""
        self._check_open(split)
        if results:
            self.write_chunk(split, formatted_chunk(split, ids, weights, results, self._seen))

    def write_chunk(self, split: str, chunk: FormattedChunk) -> None:
        """Append rows formatted and summed by :func:`formatted_chunk` (e.g. in a worker process; this
        writer's duplicate check, when on, must have been applied there: pass it only to a writer made
        with ``check_duplicates=False``, or from :meth:`write_formatted`)."""
        self._check_open(split)
        if chunk.data:
            self._file(self._files, split, SPLIT_FILES[split] + _TMP).write(chunk.data)
            self.sizes[split] += len(chunk.data)
        if chunk.bad:
            data = ("\n".join(chunk.bad) + "\n").encode("utf-8")
            self._file(self._quarantine, split, f".{QUARANTINE_FILE}.{split}{_TMP}").write(data)
            for reasons in chunk.bad_reasons:
                self._reasons.add(reasons)
        self.input_counts[split] += chunk.rows
        self.counts[split] += chunk.kept
        self.quarantined_by_split[split] += len(chunk.bad)
        self.tokens[split] += chunk.tokens
        self.max_tokens = max(self.max_tokens, chunk.biggest)
        self.weighted_turns += chunk.dropped_turns
        self.weighted_examples += chunk.weighted

    def _check_open(self, split: str) -> None:
        if split not in SPLIT_FILES:
            raise ValueError(f"split={split!r} is not one of {', '.join(SPLITS)}")
        if self._closed:
            raise ValueError("this DatasetWriter is closed; start a new one")

    def close(self) -> FormatReport:
        """Finish the files and write ``report.json``; returns the report.

        Raises:
            TooFewExamplesError: fewer than the minimum training rows survived. The split files,
                quarantine and report.json (``"ok": false``) are written first, so the reasons can be read.
        """
        if self._closed:
            raise ValueError("this DatasetWriter is already closed")
        self._closed = True
        f, info, limits, out = self.format, self.info, self.limits, self.out
        files: dict[str, str] = {}
        for split in SPLITS:
            fh = self._files.pop(split, None)
            path = out / SPLIT_FILES[split]
            if fh is None:
                _write_lines(path, [])
            else:
                fh.close()
                os.replace(path.with_name(path.name + _TMP), path)
            files[split] = str(path)
            if self.counts[split] + self.quarantined_by_split[split] != self.input_counts[split]:  # pragma: no cover
                raise RuntimeError(f"{split}: rows lost while formatting; this is a tuneloop bug")
        qpath = out / QUARANTINE_FILE
        qtmp = qpath.with_name(qpath.name + _TMP)
        with qtmp.open("wb") as q:
            for split in SPLITS:
                part = self._quarantine.pop(split, None)
                if part is None:
                    continue
                part.close()
                with open(part.name, "rb") as src:
                    while block := src.read(1 << 20):
                        q.write(block)
                os.unlink(part.name)
        os.replace(qtmp, qpath)

        counts = self.counts
        warnings: list[str] = []
        for split in SPLITS:
            warnings += f.file_issues(split, counts[split], self.sizes[split], limits)
        if self.weighted_turns:
            warnings.append(
                f"{self.weighted_turns} assistant turns had a weight below 1 that the {f.name} format cannot "
                "express (no per-turn weight); they are trained on like any other turn"
            )
        if self.weighted_examples:
            warnings.append(
                f"{self.weighted_examples} examples have an example weight other than 1 (e.g. corrections at "
                f"2.0); the {f.name} format has no example weight, so they train at weight 1"
            )
        n_epochs = info.epochs_for(counts["train"], self.epochs)
        top = self._reasons.top()
        rpath = out / REPORT_FILE
        report = FormatReport(
            format=f.name,
            provider=info.provider,
            model=info.name,
            out_dir=str(out),
            files=files,
            quarantine_path=str(qpath),
            report_path=str(rpath),
            input_counts=dict(self.input_counts),
            counts=dict(counts),
            quarantined=sum(self.quarantined_by_split.values()),
            quarantined_by_split=dict(self.quarantined_by_split),
            tokens=dict(self.tokens),
            max_example_tokens=self.max_tokens,
            tokens_exact=f.tokens_exact,
            tokenizer=_tokenizer_label(f),
            min_examples=self.minimum,
            epochs=n_epochs,
            price_per_1m_training_tokens=info.price_per_1m_training_tokens,
            estimated_cost_usd=info.training_cost_usd(self.tokens["train"], n_epochs),
            top_reasons=tuple(top),
            warnings=tuple(warnings),
            limits=asdict(limits),
        )
        ok = counts["train"] >= self.minimum
        payload = report.to_dict() | {"ok": ok}
        _write_lines(rpath, [json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True)])
        if not ok:
            raise TooFewExamplesError(
                f.name, counts["train"], self.minimum, str(qpath), top, total=self.input_counts["train"]
            )
        return report

    def abort(self) -> None:
        """Drop the temporary files (the split files of a run that failed half-way)."""
        self._closed = True
        for table in (self._files, self._quarantine):
            for fh in table.values():
                fh.close()
                Path(fh.name).unlink(missing_ok=True)
            table.clear()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        if exc_type is not None and not self._closed:
            self.abort()


def format_dataset(
    splits: Mapping[str, Sequence[Example]],
    fmt: str | Format,
    out_dir: str | os.PathLike[str],
    *,
    min_examples: int = 10,
    system_prompt: str | None = None,
    model: str | None = None,
    limits: Limits | None = None,
    epochs: int | None = None,
    catalog: Catalog | None = None,
    format_options: Mapping[str, Any] | None = None,
) -> FormatReport:
    """Render canonical splits into a provider's training files, validated, with a quarantine.

    Writes ``train.jsonl``, ``validation.jsonl``, ``eval.jsonl`` (accepted rows, input order),
    ``quarantine.jsonl`` (one ``{"id", "split", "reasons", "row"}`` per rejected example) and
    ``report.json`` into ``out_dir``. Every input example is in exactly one of them. An example whose
    id already appeared (in the same or an earlier split) is quarantined, so eval never leaks into train.

    Args:
        splits: ``{"train": [...], "validation": [...], "eval": [...]}`` (missing splits = empty),
            e.g. from ``tuneloop.examples.split_examples`` (hash of id, stable across runs).
        fmt: one of FORMAT_NAMES, or a Format instance (e.g. ``HFFormat(template=...)``).
        out_dir: output directory (created).
        min_examples: fewest accepted training rows to go on with; the provider's own minimum from
            the catalog applies if higher.
        system_prompt: system text for examples that do not start with a system turn.
        model: the base model whose limits and price apply (default: the catalog's default for
            the format's provider).
        limits: override the catalog limits.
        epochs: epochs to price (default: the model's default, else the provider's auto rule).
        catalog: another catalog (default: the packaged one).
        format_options: options for :func:`get_format` (e.g. ``{"template": ...}`` for hf).

    Returns:
        A FormatReport (also written to ``report.json``).

    Raises:
        TooFewExamplesError: fewer than the minimum training rows survived. The split files,
            quarantine and report.json (``"ok": false``) are written first, so the reasons can be read.
        ValueError: an unknown format, split name or model.
    """
    if isinstance(min_examples, bool) or not isinstance(min_examples, int) or min_examples < 1:
        raise ValueError(f"min_examples={min_examples!r} must be an integer >= 1")
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"splits has unknown split(s) {unknown}; use {', '.join(SPLITS)}")
    with paused_gc(), DatasetWriter(  # one pause for all splits: see paused_gc
        fmt, out_dir, min_examples=min_examples, system_prompt=system_prompt, model=model, limits=limits,
        epochs=epochs, catalog=catalog, format_options=format_options,
    ) as writer:
        for split in SPLITS:
            writer.write(split, splits.get(split, ()))
        return writer.close()


_FORMATS: dict[tuple[str, str | None], Format] = {}


def format_rows(spec: tuple[str, str | None, Limits, str | None], examples: Sequence[Example]) -> list[tuple]:
    """``Format.format_many`` results for ``examples`` under a :meth:`DatasetWriter.format_spec` (the
    format is built once per process): what a worker process returns for :meth:`DatasetWriter.write_formatted`."""
    name, model, limits, system_prompt = spec
    fmt = _FORMATS.get((name, model))
    if fmt is None:
        fmt = _FORMATS[(name, model)] = resolve(name, model, None, None)[0]
    with paused_gc():
        return list(fmt.format_many(examples, limits, system_prompt=system_prompt))


@dataclass
class FormattedChunk:
    """Rows of one split, formatted and summed for :meth:`DatasetWriter.write_chunk`: the accepted lines
    as the file's bytes, the rejected ones as quarantine lines, and the report's counts. Small to send
    between processes (one bytes object instead of a tuple per row)."""

    data: bytes = b""  # accepted lines, each ending in a newline
    bad: list[str] = field(default_factory=list)  # quarantine lines
    bad_reasons: list[list[str]] = field(default_factory=list)  # each rejected row's reasons
    rows: int = 0
    kept: int = 0
    tokens: int = 0
    biggest: int = 0
    dropped_turns: int = 0
    weighted: int = 0


def formatted_chunk(split: str, ids: Sequence[str], weights: Sequence[float],
                    results: Sequence[tuple[str | None, Any, int, list[str], int]],
                    seen: dict[str, str] | None = None) -> FormattedChunk:
    """``Format.format_many`` results of ``split`` (with each row's example id and weight) as a
    :class:`FormattedChunk`. ``seen`` (id -> split of every id written so far, updated here) quarantines
    an id seen before; None: no duplicate check."""
    encode = encode_line
    out = FormattedChunk(rows=len(results))
    kept: list[str] = []
    pieces: list[bytes] = []
    bad, bad_reasons = out.bad, out.bad_reasons
    total = biggest = dropped_turns = weighted = n_kept = 0
    with paused_gc():  # many small acyclic objects; see paused_gc
        for example_id, weight, (line, row, tokens, reasons, dropped) in zip(ids, weights, results, strict=True):
            dropped_turns += dropped
            if weight != 1.0:
                weighted += 1
            if seen is not None:
                first = seen.get(example_id)
                if first is None:
                    seen[example_id] = split
                else:
                    where = "earlier in this split" if first == split else f"already in split {first!r}"
                    dup = f"id: duplicate example {where}; each example may appear once (no split leakage)"
                    reasons = [dup, *reasons]
                    if line is not None:  # the rendered line is the row, spelled as encode_line spells it
                        bad_reasons.append(reasons)
                        bad.append(f'{{"id":{encode_str(example_id)},"split":"{split}","reasons":{encode(reasons)},'
                                   f'"row":{line}}}')
                        continue
            if line is not None:
                kept.append(line)
                total += tokens
                if tokens > biggest:
                    biggest = tokens
                if len(kept) >= FLUSH_ROWS:
                    n_kept += len(kept)
                    pieces.append(("\n".join(kept) + "\n").encode("utf-8"))
                    kept = []
            else:
                bad_reasons.append(reasons)
                bad.append(encode({"id": example_id, "split": split, "reasons": reasons, "row": row}))
    if kept:
        n_kept += len(kept)
        pieces.append(("\n".join(kept) + "\n").encode("utf-8"))
    out.data = b"".join(pieces)
    out.kept, out.tokens, out.biggest, out.dropped_turns, out.weighted = n_kept, total, biggest, dropped_turns, weighted
    return out
