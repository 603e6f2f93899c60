"""The provider format interface and the limits a validator enforces.

A :class:`Format` renders a canonical example into one provider row, counts its tokens and checks it
against the provider's rules — all three in one pass over the example (:meth:`Format.format_example`).
The same rules check a user's own JSONL rows (:meth:`Format.validate`). Rules that several formats
share live in :mod:`tuneloop.formats.rules`; the entry points are :func:`tuneloop.formats.format_dataset`
and :func:`tuneloop.formats.validate_file`.

Reasons are strings ``"<field path>: <what is wrong>[; fix]"``, e.g.
``"messages[2].role: 'bot' is not one of system, user, assistant, tool"``.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from tuneloop.catalog import ModelInfo
from tuneloop.examples import Example, Message
from tuneloop.formats.jsonl import paused_gc
from tuneloop.formats.rules import token_reason, type_name
from tuneloop.formats.tokens import MEMO_LIMIT

__all__ = ["Format", "Limits", "RenderPass", "remember", "type_name"]

#: What one pass over an example yields: ``(line, tokens, roles, weights, texts_ok)`` — the row as one
#: JSON line, its token count, the canonical role of each turn, each turn's weight (None when no turn
#: has one), and whether every text in the row keeps the format's content rules (non-blank, no
#: control tokens). The structural rules are judged from the roles and weights (see Format.shape_ok).
RenderPass = tuple[str, int, list[str], "list[float | None] | None", bool]

# Distinct conversation shapes judged per Format instance before the memo starts over.
SHAPE_MEMO_LIMIT = 1 << 12
_SHAPE_TEXT = "x"  # the text of every turn of a synthetic example judged for its shape


@dataclass(frozen=True)
class Limits:
    """The provider limits a validator enforces (usually built from the catalog by :meth:`from_model`).

    Attributes:
        max_tokens_per_example: tokens one row may have (input + output); None = unchecked.
        min_examples: fewest training rows the provider accepts.
        max_examples: most training rows the provider accepts; None = unchecked.
        max_validation_examples: most validation rows accepted; None = unchecked.
        max_file_bytes: largest training file accepted; None = unchecked.
        model: the model the limits belong to (named in reasons).
    """

    max_tokens_per_example: int | None = None
    min_examples: int = 1
    max_examples: int | None = None
    max_validation_examples: int | None = None
    max_file_bytes: int | None = None
    model: str = ""

    def __post_init__(self) -> None:
        for key in ("max_tokens_per_example", "max_examples", "max_validation_examples", "max_file_bytes"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"Limits.{key}={value!r} must be a positive integer or None (unchecked)")
        if isinstance(self.min_examples, bool) or not isinstance(self.min_examples, int) or self.min_examples < 1:
            raise ValueError(f"Limits.min_examples={self.min_examples!r} must be an integer >= 1")

    @classmethod
    def from_model(cls, info: ModelInfo) -> Limits:
        """The limits a catalog entry publishes."""
        return cls(
            max_tokens_per_example=info.max_tokens_per_example,
            min_examples=info.min_examples,
            max_examples=info.max_examples,
            max_validation_examples=info.max_validation_examples,
            max_file_bytes=info.max_file_bytes,
            model=info.name,
        )


def remember(memo: dict, key: Any, value: tuple) -> tuple:
    """Store a rendered turn in a :meth:`TokenCounter.memo`, emptying it first when it is full."""
    if len(memo) >= MEMO_LIMIT:
        memo.clear()
    memo[key] = value
    return value


def _dropped_weights(weights: Sequence[float | None]) -> int:
    """Turn weights a format without per-turn weights loses (weight 1 is the default, so not lost)."""
    return sum(1 for w in weights if w is not None and w != 1.0)


class Format(abc.ABC):
    """A provider training format: render canonical examples, count tokens, validate rows.

    Subclasses set ``name`` (one of FORMAT_NAMES) and ``provider`` (the catalog provider whose limits
    and prices apply), and implement :meth:`render_pass` (canonical example -> line + tokens in one
    pass), :meth:`check_row` (the structural rules, on any JSON) and :meth:`count_tokens` (any JSON).
    ``tokens_exact`` says whether counts are the provider's own or an estimate.

    One pass per example (:meth:`format_example`): :meth:`render_pass` builds the JSON line and counts
    the tokens while it walks the turns, and notes whether every text is acceptable. Whether the row
    keeps the structural rules depends only on the conversation's shape (the roles in order, which turn
    weights, whether a system prompt applies), so :meth:`check_row` judges each distinct shape once,
    on a synthetic example of that shape, and the verdict is remembered. A row that fails is checked
    again in full, which words its reasons; that is the only second look, and only at rejected rows.
    """

    name: ClassVar[str]
    provider: ClassVar[str]
    keeps_turn_weights: ClassVar[bool] = False  # False: per-turn weights cannot be expressed (dropped)
    tokens_exact: bool = False
    tokenizer_label: str = "estimate"

    def __init__(self) -> None:
        self._shapes: dict[tuple, bool] = {}

    # -- one pass ------------------------------------------------------------------------------
    @abc.abstractmethod
    def render_pass(self, example: Example, system_prompt: str | None = None) -> RenderPass:
        """Render one canonical example as a JSON line and count its tokens, in one walk over its turns.

        ``system_prompt`` is used when the example does not start with a system turn of its own.
        Returns ``(line, tokens, roles, weights, texts_ok)``; see :data:`RenderPass`.
        """

    def shape_ok(self, roles: Sequence[str], weights: Sequence[float | None] | None,
                 system_prompt: str | None) -> bool:
        """Whether a conversation of this shape keeps every structural rule (:meth:`check_row`); memoized."""
        if weights is not None:
            weights = tuple(w if w is None or w == 0.0 or w == 1.0 else -1.0 for w in weights) \
                if self.keeps_turn_weights else None
        key = (bool(system_prompt), tuple(roles), weights)
        shapes = self._shapes
        ok = shapes.get(key)
        if ok is None:
            if len(shapes) >= SHAPE_MEMO_LIMIT:
                shapes.clear()
            ok = shapes[key] = self._judge_shape(*key)
        return ok

    def _judge_shape(self, system_prompt: bool, roles: tuple[str, ...], weights: tuple | None) -> bool:
        msgs = tuple(
            Message(role, _SHAPE_TEXT, None if weights is None else weights[i]) for i, role in enumerate(roles)
        )
        try:
            line, _, _, _, texts_ok = self.render_pass(
                Example(id="shape", messages=msgs), _SHAPE_TEXT if system_prompt else None
            )
            return texts_ok and not self.check_row(json.loads(line))
        except Exception:  # a shape the renderer refuses: every row of it gets the full check
            return False

    def format_many(
        self, examples: Iterable[Example], limits: Limits, *, system_prompt: str | None = None
    ) -> Iterator[tuple[str | None, Any, int, list[str], int]]:
        """Render, count and validate each example in one pass, in order.

        Yields:
            ``(line, row, tokens, reasons, dropped)`` per example: accepted -> ``(line, None, tokens,
            [], dropped)``; rejected -> ``(None, row, tokens, reasons, dropped)`` with the rendered row
            (None if it did not render) for the quarantine file. ``dropped`` counts the example's turn
            weights other than 1 that this format cannot express (0 for formats that keep them).
        """
        render, shape_ok, validate, loads = self.render_pass, self.shape_ok, self.validate, json.loads
        limit = limits.max_tokens_per_example
        keeps = self.keeps_turn_weights
        for example in examples:
            try:
                line, tokens, roles, weights, texts_ok = render(example, system_prompt)
            except Exception as exc:
                dropped = 0 if keeps else _dropped_weights([m.weight for m in example.messages])
                yield None, None, 0, [f"render: {type(exc).__name__}: {exc}"], dropped
                continue
            dropped = 0 if keeps or weights is None else _dropped_weights(weights)
            if texts_ok and (limit is None or tokens <= limit) and shape_ok(roles, weights, system_prompt):
                yield line, None, tokens, [], dropped
                continue
            row = loads(line)
            reasons = validate(row, limits, tokens=tokens)
            if reasons:
                yield None, row, tokens, reasons, dropped
            else:  # pragma: no cover - the verdicts are exact; a conservative miss still passes here
                yield line, None, tokens, [], dropped

    def format_example(
        self, example: Example, limits: Limits, *, system_prompt: str | None = None
    ) -> tuple[str | None, Any, int, list[str]]:
        """Render, count and validate one example in one pass: :meth:`format_many` for one example.

        Returns:
            ``(line, None, tokens, [])`` when accepted; ``(None, row, tokens, reasons)`` when rejected.
        """
        line, row, tokens, reasons, _ = next(self.format_many((example,), limits, system_prompt=system_prompt))
        return line, row, tokens, reasons

    # -- rows ----------------------------------------------------------------------------------
    def render(self, example: Example, *, system_prompt: str | None = None) -> dict[str, Any]:
        """One canonical example as one provider row (a JSON object).

        ``system_prompt`` is used when the example does not start with a system turn of its own.
        """
        return json.loads(self.render_pass(example, system_prompt)[0])

    def render_many(self, examples: Iterable[Example], *, system_prompt: str | None = None) -> list[dict]:
        """Render many examples (in order)."""
        render = self.render
        with paused_gc():
            return [render(ex, system_prompt=system_prompt) for ex in examples]

    @abc.abstractmethod
    def check_row(self, row: Any) -> list[str]:
        """The structural rules of the format (keys, roles, order, content); token limits excluded."""

    @abc.abstractmethod
    def count_tokens(self, rows: Sequence[Any]) -> list[int]:
        """Tokens per row, in order (exact if ``tokens_exact``, else an estimate). Never raises on bad rows."""

    def validate(self, row: Any, limits: Limits, *, tokens: int | None = None) -> list[str]:
        """Every rule ``row`` breaks, as reasons naming the field; ``[]`` means the row is accepted.

        Args:
            row: a parsed JSON row.
            limits: the limits to enforce (see :meth:`Limits.from_model`).
            tokens: the row's token count if already known (from :meth:`format_example` or a batch
                :meth:`count_tokens`).
        """
        reasons = self.check_row(row)
        if limits.max_tokens_per_example is not None and isinstance(row, dict):
            if tokens is None:
                tokens = self.count_tokens([row])[0]
            over = token_reason(tokens, limits, exact=self.tokens_exact)
            if over:
                reasons.append(over)
        return reasons

    def validate_many(
        self, rows: Sequence[Any], limits: Limits, tokens: Sequence[int] | None = None
    ) -> list[list[str]]:
        """:meth:`validate` for many rows (tokens counted in one batch if not given)."""
        if tokens is None:
            tokens = self.count_tokens(rows)
        validate = self.validate
        with paused_gc():
            return [validate(row, limits, tokens=t) for row, t in zip(rows, tokens, strict=True)]

    def file_issues(self, split: str, n_rows: int, n_bytes: int, limits: Limits) -> list[str]:
        """File-level rules (row counts, file size) for one split file."""
        issues = []
        model = f" for {limits.model}" if limits.model else ""
        if split == "train":
            if n_rows < limits.min_examples:
                issues.append(f"train: {n_rows} rows, fewer than the {limits.min_examples} required{model}")
            if limits.max_examples is not None and n_rows > limits.max_examples:
                issues.append(f"train: {n_rows:,} rows, more than the {limits.max_examples:,} allowed{model}")
            if limits.max_file_bytes is not None and n_bytes > limits.max_file_bytes:
                issues.append(
                    f"train: file is {n_bytes:,} bytes, over the {limits.max_file_bytes:,}-byte limit{model}"
                )
        elif split == "validation":
            cap = limits.max_validation_examples
            if cap is not None and n_rows > cap:
                issues.append(f"validation: {n_rows:,} rows, more than the {cap:,} allowed{model}")
        return issues

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
