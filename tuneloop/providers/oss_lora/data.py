"""Examples -> token rows: the tokenizer's chat template, assistant-only loss weights, and packing.

Three pure steps, each testable alone:

1. :func:`encode_chat` renders a conversation with the tokenizer's own chat template and gives every
   token a loss weight. Only assistant turns carry weight (every one of them in a multi-turn chat),
   and each turn's span runs to the end of its rendering, so the end-of-turn token (``<|im_end|>``,
   ``<|eot_id|>``, ``<end_of_turn>``...) is learned too: a model that never sees it as a target never
   learns to stop. A turn with ``weight=0`` gets no loss; the example's own weight (2.0 for
   corrections) multiplies the rest. A conversation longer than ``max_len`` keeps its system turns and
   its latest turns (:func:`window`): the oldest exchanges are dropped, never the reply it ends on.
2. :func:`pack` places encoded examples into rows of at most ``max_len`` tokens (best-fit decreasing,
   deterministic), so almost no compute goes to padding.
3. :func:`collate` builds a batch: positions restart at 0 for each example and attention is
   per example (each token sees only earlier tokens of its own example: attention.py, or a
   block-diagonal causal mask), so a packed example computes exactly what it would alone.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuneloop.examples import Example, Message

IGNORE = 0.0
LABELS, REPLIES = "labels", "replies"  # what a tuned causal LM answers (the model manifest's "answers")


class TemplateError(ValueError):
    """The tokenizer's chat template cannot be used to locate assistant turns."""


@dataclass(frozen=True)
class Encoded:
    """One example as tokens. ``weights[i]`` is the loss weight of predicting token ``i`` (0 = none)."""

    input_ids: tuple[int, ...]
    weights: tuple[float, ...]
    truncated: bool = False  # something was cut to fit max_len (turns dropped, or the tail cut)
    dropped_turns: int = 0  # oldest non-system turns left out to fit max_len

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def supervised(self) -> int:
        return sum(1 for w in self.weights if w > 0)


def answers_of(examples: Sequence[Example]) -> str:
    """What a model tuned on ``examples`` answers: labels when every example has one (a classification
    task), else chat replies (a chat task: the target is the last assistant turn)."""
    return LABELS if examples and all(ex.label is not None for ex in examples) else REPLIES


def _dicts(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def render(tokenizer, messages: Sequence[Message], *, add_generation_prompt: bool = False) -> str:
    """The chat template's text for ``messages`` (the prompt for generation when asked)."""
    try:
        return tokenizer.apply_chat_template(
            _dicts(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except Exception as exc:  # jinja raises its own types (e.g. "System role not supported")
        raise TemplateError(
            f"the tokenizer's chat template failed on roles {[m.role for m in messages]}: {exc}; "
            "drop the unsupported turn or give the base model a template that accepts it"
        ) from exc


def assistant_spans(tokenizer, messages: Sequence[Message]) -> tuple[str, list[tuple[int, int, float]]]:
    """The rendered text and ``(start, end, weight)`` character spans of the assistant turns.

    A turn's span starts after the generation prompt (``<|im_start|>assistant\\n``) and ends where
    the rendering of the conversation up to that turn ends, so it includes the end-of-turn token.
    Works for any template whose renderings of a conversation's prefixes are prefixes of each other
    (Llama 3, Qwen, Phi-3, Mistral, Gemma, ChatML); others are refused with a clear error.
    """
    full = render(tokenizer, messages)
    spans = []
    for i, m in enumerate(messages):
        if m.role != "assistant":
            continue
        weight = 1.0 if m.weight is None else float(m.weight)
        prompt = render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        upto = render(tokenizer, messages[: i + 1])
        if not (upto.startswith(prompt) and full.startswith(upto)):
            raise TemplateError(
                f"messages[{i}]: the chat template renders this conversation's prefixes inconsistently "
                "(a later turn rewrites an earlier one), so assistant tokens cannot be located; "
                "use a template without history rewriting or set packing-free classification"
            )
        spans.append((len(prompt), len(upto), weight))
    return full, spans


def _encode_weighted(tokenizer, messages: Sequence[Message], example_weight: float) -> tuple[list[int], list[float]]:
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    weights = [IGNORE] * len(ids)
    for j, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        for s, e, w in spans:
            if s <= start < e:
                weights[j] = w * example_weight
                break
    if weights:
        weights[0] = IGNORE  # the first token has nothing before it to predict it from
    return ids, weights


def window(messages: Sequence[Message], fits, *, before: int | None = None) -> tuple[list[Message], int] | None:
    """The latest turns of ``messages`` that ``fits`` accepts: leading system turns are always kept, and
    the kept part starts at a user turn (templates such as Gemma's and Mistral's require user first).

    ``fits(messages)`` says whether a candidate is short enough. The kept part starts before index
    ``before`` (default: anywhere, so the shortest candidate is the system turns + the last user turn
    and what follows it). Returns (messages, turns dropped), or None when even the shortest is too long.
    Binary search over the start: a rendering only gets shorter as turns are dropped.
    """
    msgs = list(messages)
    head = 0
    while head < len(msgs) and msgs[head].role == "system":
        head += 1
    end = len(msgs) if before is None else before
    starts = [i for i in range(head + 1, end) if msgs[i].role == "user"]
    lo, hi, best = 0, len(starts) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = msgs[:head] + msgs[starts[mid]:]
        if fits(candidate):
            best, hi = mid, mid - 1
        else:
            lo = mid + 1
    if best is None:
        return None
    return msgs[:head] + msgs[starts[best]:], starts[best] - head


def encode_chat(tokenizer, example: Example, max_len: int) -> Encoded:
    """Tokenize ``example`` with its chat template; weights mark the assistant tokens (see module doc).

    Longer than ``max_len``: the oldest exchanges are dropped (:func:`window`) while the rest still holds
    an assistant turn to learn from; else the tail is cut (reported as ``truncated``).
    """
    ids, weights = _encode_weighted(tokenizer, example.messages, example.weight)
    if len(ids) <= max_len:
        return Encoded(tuple(ids), tuple(weights))

    def fits(msgs):
        return len(tokenizer(render(tokenizer, msgs), add_special_tokens=False)["input_ids"]) <= max_len

    last_reply = max((i for i, m in enumerate(example.messages) if m.role == "assistant" and m.weight != 0),
                     default=None)
    kept = window(example.messages, fits, before=last_reply) if last_reply is not None else None
    if kept is not None:
        ids, weights = _encode_weighted(tokenizer, kept[0], example.weight)
        if len(ids) <= max_len:
            return Encoded(tuple(ids), tuple(weights), True, kept[1])
    return Encoded(tuple(ids[:max_len]), tuple(weights[:max_len]), True)


def prompt_messages(example: Example) -> list[Message]:
    """The turns a reply is generated from: the conversation up to (without) its last assistant turn."""
    msgs = list(example.messages)
    if msgs and msgs[-1].role == "assistant":
        msgs = msgs[:-1]
    return msgs


def encode_prompt(tokenizer, example: Example, max_len: int | None = None) -> list[int]:
    """Token ids of the prompt for generation: every turn before the final assistant turn, rendered with
    the generation prompt (``<|im_start|>assistant\n``...).

    With ``max_len``, a longer prompt keeps its system turns and its latest turns (:func:`window`); if
    even the last user turn is too long, its last ``max_len`` tokens are kept.
    """
    msgs = prompt_messages(example)

    def ids_of(m):
        return tokenizer(render(tokenizer, m, add_generation_prompt=True), add_special_tokens=False)["input_ids"]

    ids = ids_of(msgs)
    if max_len is None or len(ids) <= max_len:
        return ids
    kept = window(msgs, lambda m: len(ids_of(m)) <= max_len)
    if kept is not None:
        return ids_of(kept[0])
    return ids[-max_len:]


_SENTINEL = "tuneloop-end-of-turn-probe"


def end_of_turn_ids(tokenizer) -> list[int]:
    """The token(s) the chat template closes an assistant turn with (``<|im_end|>``, ``<|eot_id|>``,
    ``<end_of_turn>``, ``<|end|>``...): the first special token after an assistant turn's content.

    Generation stops there even when the tokenizer's ``eos_token`` is another token (Llama 3's
    ``<|end_of_text|>``, Gemma's ``<eos>``). Empty when the template closes turns with plain text.
    """
    probe = [Message("user", "hi"), Message("assistant", _SENTINEL)]
    try:
        text = render(tokenizer, probe)
    except TemplateError:
        return []
    at = text.rfind(_SENTINEL)
    if at < 0:
        return []
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    special |= {i for i, t in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items()
                if getattr(t, "special", False)}
    for i in tokenizer(text[at + len(_SENTINEL):], add_special_tokens=False)["input_ids"]:
        if i in special:
            return [i]
    return []


# -- packing ---------------------------------------------------------------------------------------


def pack(lengths: Sequence[int], max_len: int) -> list[list[int]]:
    """Best-fit-decreasing bin packing: rows of example indices, each row's total length <= max_len.

    Deterministic (ties broken by index). Every index appears exactly once; an example longer than
    ``max_len`` must be truncated first.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (space left, row index)
    for i in order:
        n = lengths[i]
        if n > max_len:
            raise ValueError(f"example {i} has {n} tokens > max_len={max_len}; truncate it before packing")
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            space, r = free.pop(k)
            rows[r].append(i)
            bisect.insort(free, (space - n, r))
        else:
            rows.append([i])
            bisect.insort(free, (max_len - n, len(rows) - 1))
    return rows


def rows_for(encoded: Sequence[Encoded], max_len: int, packing: bool) -> list[list[int]]:
    """Packed rows, or one example per row when packing is off."""
    if packing:
        return pack([len(e) for e in encoded], max_len)
    return [[i] for i in range(len(encoded))]


def real_token_fraction(encoded: Sequence[Encoded], rows: Sequence[Sequence[int]], batch_size: int) -> float:
    """Share of non-pad tokens when ``rows`` are batched in order and padded to the longest in a batch."""
    real = padded = 0
    for b in range(0, len(rows), batch_size):
        lens = [sum(len(encoded[i]) for i in row) for row in rows[b : b + batch_size]]
        real += sum(lens)
        padded += max(lens) * len(lens)
    return real / padded if padded else 1.0


@dataclass
class Batch:
    """Tensors of one micro-batch (see :func:`collate`).

    Isolation of packed examples comes either from ``segments`` (per-example attention, see
    attention.py; no mask is built) or, in mask mode, from a block-diagonal causal ``attention_mask``.
    """

    input_ids: Any  # (B, L) long
    position_ids: Any  # (B, L) long, restarting at 0 per example
    target_weights: Any  # (B, L-1) float: weight of predicting input_ids[:, 1:]
    real_tokens: int
    segments: Any  # attention.PackedSegments
    attention_mask: Any = None  # (B, 1, L, L) bool, True = may attend (mask mode only)
    weight_sum: float = 0.0  # sum of target_weights, known without a device sync

    def to(self, device) -> Batch:
        mask = None if self.attention_mask is None else self.attention_mask.to(device)
        return Batch(self.input_ids.to(device), self.position_ids.to(device), self.target_weights.to(device),
                     self.real_tokens, self.segments.to(device), mask, self.weight_sum)

    def model_inputs(self) -> Mapping[str, Any]:
        """Keyword arguments for the model call (mask mode, or packed segments for varlen attention)."""
        inputs: dict[str, Any] = {"input_ids": self.input_ids, "position_ids": self.position_ids}
        if self.attention_mask is not None:
            inputs["attention_mask"] = self.attention_mask
        else:
            inputs["packed_segments"] = self.segments
        return inputs


def collate(encoded: Sequence[Encoded], rows: Sequence[Sequence[int]], pad_id: int,
            pad_to_multiple: int = 8, *, mask: bool = False) -> Batch:
    """One batch of packed rows: ids, restarting positions, target weights, and the example layout
    (per-example attention segments; with ``mask`` also the block-diagonal causal mask)."""
    import torch

    from tuneloop.providers.oss_lora.attention import build_segments

    lens = [sum(len(encoded[i]) for i in row) for row in rows]
    width = max(lens)
    width = -(-width // pad_to_multiple) * pad_to_multiple
    b = len(rows)
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    pos = torch.zeros((b, width), dtype=torch.long)
    seg = torch.zeros((b, width), dtype=torch.long)  # 0 = padding
    w = torch.zeros((b, width), dtype=torch.float32)
    spans = []
    for r, row in enumerate(rows):
        at = 0
        for k, i in enumerate(row, start=1):
            e = encoded[i]
            n = len(e)
            ids[r, at : at + n] = torch.tensor(e.input_ids)
            pos[r, at : at + n] = torch.arange(n)
            seg[r, at : at + n] = k
            w[r, at : at + n] = torch.tensor(e.weights)
            spans.append((r, at, n))
            at += n
    targets = w[:, 1:].contiguous()
    return Batch(ids, pos, targets, int(sum(lens)), build_segments(spans, b, width),
                 block_causal_mask(seg) if mask else None, float(targets.sum()))


def block_causal_mask(segments):
    """(B, L) segment ids (0 = pad) -> (B, 1, L, L) bool mask: causal within a segment, nothing across.

    A pad position attends to itself only, so no attention row is empty (an empty row gives NaN).
    """
    import torch

    n = segments.shape[1]
    same = segments[:, :, None] == segments[:, None, :]
    causal = torch.ones((n, n), dtype=torch.bool).tril_()
    mask = same & causal
    pad = segments == 0
    eye = torch.eye(n, dtype=torch.bool)
    mask = torch.where(pad[:, :, None], eye, mask)
    return mask[:, None]
