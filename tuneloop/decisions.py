"""The decision log: every automatic choice a run makes, as a structured record.

A labeller's label, the model a selection picked, the hyperparameters of the next attempt, a retry of a
failed provider job: each is one :class:`Decision` (stage, decision, reasoning, confidence, the hash of
the inputs it was made from, and details). Steps append records to a JSON Lines file
(``decisions.jsonl``) next to their other outputs; the run's summary carries them under ``decisions``
and the HTML report shows them, so a person can audit why the loop did what it did.

Records are plain JSON; :func:`read` refuses a line that is not one, naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DECISIONS = "decisions.jsonl"
FIELDS = ("stage", "decision", "reasoning", "confidence", "inputs_hash", "details")


def inputs_hash(inputs: Any) -> str:
    """``sha256:`` of the canonical JSON of ``inputs`` (sorted keys; non-JSON values by ``str``)."""
    data = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


@dataclass(frozen=True)
class Decision:
    """One automatic choice.

    Attributes:
        stage: The step that decided (``label``, ``select-model``, ``attempt``, ``retry``, ...).
        decision: What it decided, in a few words (``label=billing``, ``openai:gpt-4.1-mini``).
        reasoning: Why, in a sentence a person can check.
        confidence: 0-1 where the step has one (a labeller's confidence), else None.
        inputs_hash: :func:`inputs_hash` of what the decision was made from.
        details: Anything else the record should keep (candidates considered, the attempt's config).
    """

    stage: str
    decision: str
    reasoning: str
    confidence: float | None = None
    inputs_hash: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("stage", "decision", "reasoning"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"decision record: {name} must be a non-empty string, got {getattr(self, name)!r}")
        c = self.confidence
        if c is not None and (isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c)
                              or not 0.0 <= c <= 1.0):
            raise ValueError(f"decision record: confidence must be a number in [0, 1] or None, got {c!r}")

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        out = asdict(self)
        out["details"] = dict(self.details)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """A record back from :meth:`to_dict` (unknown keys refused)."""
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise ValueError(f"decision record: unknown field(s) {unknown}; the fields are {list(FIELDS)}")
        return cls(**{k: data[k] for k in FIELDS if k in data})


def append(path: str | Path, records: Iterable[Decision]) -> int:
    """Append records to the JSON Lines file at ``path`` (created with its folder); returns how many."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with p.open("a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_dict(), sort_keys=True, ensure_ascii=False, default=str) + "\n")
            n += 1
    return n


def read(path: str | Path) -> list[Decision]:
    """The records of a decision log (an absent file is an empty log)."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(Decision.from_dict(json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{p}: line {i} is not a decision record: {exc}") from exc
    return out
