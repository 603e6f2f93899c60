"""What formatting and validating report: the dataset report, the file report, the too-few failure.

* :class:`FormatReport` — what :func:`tuneloop.formats.format_dataset` wrote (``report.json``).
* :class:`ValidationReport` / :class:`RowProblem` — what :func:`tuneloop.formats.validate_file` found.
* :class:`TooFewExamplesError` — too few rows survived; names the quarantine and the top reasons.
* :class:`ReasonCounter`, :func:`reason_kind`, :func:`top_reasons` — rejected rows grouped by the kind of
  problem (specifics blanked), counted once per row.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

TOP_REASONS = 5


class TooFewExamplesError(ValueError):
    """Fewer training rows survived validation than the minimum; nothing was uploaded.

    Attributes:
        format: the format name.
        survived: training rows that passed validation.
        minimum: the minimum that applied (the larger of the caller's and the provider's).
        quarantine_path: where the rejected rows and their reasons are.
        top_reasons: ``(reason, rows)`` pairs, most frequent first.
    """

    def __init__(
        self,
        format: str,
        survived: int,
        minimum: int,
        quarantine_path: str,
        top_reasons: Sequence[tuple[str, int]],
        total: int,
    ):
        self.format = format
        self.survived = survived
        self.minimum = minimum
        self.quarantine_path = quarantine_path
        self.top_reasons = tuple(top_reasons)
        reasons = "; ".join(f"{r} ({n} rows)" for r, n in self.top_reasons) or "none (the input was short)"
        super().__init__(
            f"{format}: only {survived} of {total} training examples survived validation, fewer than the "
            f"minimum of {minimum}. Rejected rows are in {quarantine_path} with a reason each; top reasons: "
            f"{reasons}. Fix the source data, or lower min_examples (it cannot go below the provider's minimum)."
        )


_INDEX = re.compile(r"\[\d+\]")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\d[\d,]*")


def reason_kind(reason: str) -> str:
    """A reason with its specifics (indices, quoted values, numbers) blanked, for counting kinds."""
    return _NUMBER.sub("N", _QUOTED.sub("'…'", _INDEX.sub("[i]", reason)))


def top_reasons(reason_lists: Iterable[Sequence[str]], n: int = TOP_REASONS) -> list[tuple[str, int]]:
    """The ``n`` most frequent reason kinds (counted once per row), most frequent first."""
    counter = ReasonCounter()
    for reasons in reason_lists:
        counter.add(reasons)
    return counter.top(n)


class ReasonCounter:
    """Counts reason kinds over rejected rows as they stream by (each kind once per row)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._kinds: dict[str, str] = {}  # reason -> its kind (the same reasons repeat across rows)

    def add(self, reasons: Sequence[str]) -> None:
        kinds = self._kinds
        if len(kinds) > 1 << 14:
            kinds.clear()
        found = set()
        for r in reasons:
            kind = kinds.get(r)
            if kind is None:
                kind = kinds[r] = reason_kind(r)
            found.add(kind)
        self.counts.update(found)

    def top(self, n: int = TOP_REASONS) -> list[tuple[str, int]]:
        """The ``n`` most frequent kinds, most frequent first (ties by name)."""
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


@dataclass(frozen=True)
class FormatReport:
    """What :func:`format_dataset` wrote and what the training run will cost.

    Attributes:
        format: the format name.
        provider: the catalog provider whose limits and price applied.
        model: the model priced (the provider's default if none was given).
        out_dir: where the files are.
        files: split -> path of the rendered JSONL.
        quarantine_path: path of quarantine.jsonl (always written, possibly empty).
        report_path: path of report.json.
        input_counts: split -> canonical examples given.
        counts: split -> rows accepted and written.
        quarantined: rows rejected, all splits (each is a line of quarantine.jsonl).
        quarantined_by_split: split -> rows rejected.
        tokens: split -> total tokens of the accepted rows.
        max_example_tokens: the largest accepted row's tokens.
        tokens_exact: True if counts are the model's own tokenizer, False if estimates.
        tokenizer: how tokens were counted.
        min_examples: the minimum that applied to the train split.
        epochs: epochs priced (given, the model's default, or the auto rule).
        price_per_1m_training_tokens: USD per 1M training tokens, None if unpublished.
        estimated_cost_usd: price x train tokens x epochs, None if unpriced.
        top_reasons: ``(reason kind, rows)``, most frequent first.
        warnings: file-level issues and lossy conversions (never silent).
        limits: the limits enforced.
    """

    format: str
    provider: str
    model: str
    out_dir: str
    files: Mapping[str, str]
    quarantine_path: str
    report_path: str
    input_counts: Mapping[str, int]
    counts: Mapping[str, int]
    quarantined: int
    quarantined_by_split: Mapping[str, int]
    tokens: Mapping[str, int]
    max_example_tokens: int
    tokens_exact: bool
    tokenizer: str
    min_examples: int
    epochs: int
    price_per_1m_training_tokens: float | None
    estimated_cost_usd: float | None
    top_reasons: tuple[tuple[str, int], ...] = ()
    warnings: tuple[str, ...] = ()
    limits: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (what report.json holds, plus ``ok`` there)."""
        d = asdict(self)
        d["top_reasons"] = [list(x) for x in self.top_reasons]
        d["warnings"] = list(self.warnings)
        return d


@dataclass(frozen=True)
class RowProblem:
    """One rejected line of a validated file (1-based line number)."""

    line: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ValidationReport:
    """The result of :func:`validate_file`.

    Attributes:
        path: the file checked.
        format: the format it was checked against.
        model: whose limits applied.
        split: which split's file rules applied (train: min/max rows, file size).
        rows_total: non-blank lines.
        rows_ok: lines that passed every rule.
        problems: rejected lines with their reasons (broken JSON included), in file order.
        file_errors: file-level problems (row counts, size).
        tokens_total / tokens_max: over the accepted rows.
        tokens_exact: True if counts are the model's own tokenizer, False if estimates.
        estimated_cost_usd: the training bill if this file were the train split, None if unpriced.
        epochs: epochs priced.
    """

    path: str
    format: str
    model: str
    split: str
    rows_total: int
    rows_ok: int
    problems: tuple[RowProblem, ...]
    file_errors: tuple[str, ...]
    tokens_total: int
    tokens_max: int
    tokens_exact: bool
    estimated_cost_usd: float | None
    epochs: int

    @property
    def ok(self) -> bool:
        """True if every line passed and the file-level rules hold."""
        return not self.problems and not self.file_errors

    @property
    def rows_rejected(self) -> int:
        """Lines rejected (broken JSON included)."""
        return len(self.problems)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (for ``tuneloop validate --json``)."""
        d = asdict(self)
        d["problems"] = [{"line": p.line, "reasons": list(p.reasons)} for p in self.problems]
        d["file_errors"] = list(self.file_errors)
        d["ok"] = self.ok
        return d

    def summary(self, max_lines: int = 20) -> str:
        """Human-readable report for the CLI (first ``max_lines`` problems)."""
        kind = "exact" if self.tokens_exact else "estimated"
        cost = "unpriced" if self.estimated_cost_usd is None else f"${self.estimated_cost_usd:,.2f}"
        model = "any local model" if self.model == "*" else self.model
        out = [
            f"{self.path}: {self.format} rows for {model}: {self.rows_ok}/{self.rows_total} ok, "
            f"{self.rows_rejected} rejected",
            f"tokens ({kind}): total {self.tokens_total:,}, max per row {self.tokens_max:,}; "
            f"training cost at {self.epochs} epochs: {cost}",
        ]
        out += [f"file: {e}" for e in self.file_errors]
        for p in self.problems[:max_lines]:
            out += [f"line {p.line}: {r}" for r in p.reasons]
        if len(self.problems) > max_lines:
            out.append(f"... and {len(self.problems) - max_lines} more rejected lines")
        out.append("OK" if self.ok else "FAILED")
        return "\n".join(out)
