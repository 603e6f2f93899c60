"""Hugging Face chat-template rows for local LoRA SFT: ``{"messages": [...], "text": "<templated>"}``.

``messages`` keeps the canonical turns (role, content and any 0/1 ``weight``), so a trainer can
mask non-trained turns or apply the model's own template; ``text`` is the conversation rendered with
a chat template, ready for a plain causal-LM trainer.

The default template is ChatML (no hub tokenizer is available offline)::

    <|im_start|>system\\n{content}<|im_end|>\\n<|im_start|>user\\n{content}<|im_end|>\\n
    <|im_start|>assistant\\n{content}<|im_end|>\\n

Any Hugging Face ``chat_template`` (a Jinja string, as in a tokenizer_config.json) can replace it:
``HFFormat(template=tok.chat_template, end_token=tok.eos_token)``. It is rendered in Jinja's
sandbox with ``messages``, ``bos_token``, ``eos_token`` and ``add_generation_prompt=False``.

Rules enforced: row keys ``text`` (required) and ``messages``; ``text`` is a non-empty string that
ends with an assistant turn and the template's end token (so the model learns to stop); each turn
has role system/user/assistant and non-empty content without the template's control tokens; the
last turn is the assistant's; weights only on assistant turns, 0 or 1; tokens under the limit
(catalog ``oss-lora``, tuneloop's default sequence length).

Token counts are estimates (o200k_base count of ``text``) unless a ``token_counter`` for the real
model tokenizer is given, e.g. ``lambda texts: [len(x) for x in tok(texts)["input_ids"]]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tuneloop.examples import Example
from tuneloop.formats.base import Format, type_name
from tuneloop.formats.tokens import DEFAULT_ENCODING, get_counter

ROW_KEYS = ("text", "messages")
MESSAGE_KEYS = ("role", "content", "weight")
ROLES = ("system", "user", "assistant")

CHATML_START = "<|im_start|>"
CHATML_END = "<|im_end|>"

_ROW_KEYS = frozenset(ROW_KEYS)
_MESSAGE_KEYS = frozenset(MESSAGE_KEYS)
_ROLES = frozenset(ROLES)
_ROLE_LIST = ", ".join(ROLES)


class HFFormat(Format):
    """Chat-template text (+ the turns) for a local Hugging Face model.

    Args:
        template: a Jinja chat template; None = the built-in ChatML template.
        end_token: the token that closes an assistant turn (required with a custom template).
        bos_token / eos_token: values the template may reference (eos defaults to end_token).
        turn_start: the text that opens every turn (ChatML: ``<|im_start|>``), used to check that the
            last turn is the assistant's; None = not checked in text (only in ``messages``).
        assistant_marker: the text that opens an assistant turn (ChatML: ``<|im_start|>assistant``).
        token_counter: counts texts with the real tokenizer (then counts are exact).
    """

    name = "hf"
    provider = "oss-lora"
    keeps_turn_weights = True

    def __init__(
        self,
        template: str | None = None,
        *,
        end_token: str | None = None,
        bos_token: str = "",
        eos_token: str | None = None,
        turn_start: str | None = None,
        assistant_marker: str | None = None,
        token_counter: Callable[[list[str]], list[int]] | None = None,
    ):
        if template is None:
            self.end_token = end_token or CHATML_END
            self.turn_start = turn_start if turn_start is not None else CHATML_START
            self.assistant_marker = assistant_marker or f"{CHATML_START}assistant"
            self._jinja = None
        else:
            if not end_token:
                raise ValueError(
                    "end_token is required with a custom template: pass the token that closes an "
                    "assistant turn in it (e.g. the tokenizer's eos_token, '</s>' or '<|eot_id|>')"
                )
            self.end_token = end_token
            self.turn_start = turn_start
            self.assistant_marker = assistant_marker
            self._jinja = _compile(template)
        self.template = template
        self.bos_token = bos_token
        self.eos_token = eos_token if eos_token is not None else self.end_token
        self._token_counter = token_counter
        self.tokens_exact = token_counter is not None
        self.tokenizer_label = (
            "custom tokenizer (exact)" if token_counter else f"{DEFAULT_ENCODING} count of text (estimate)"
        )
        self._controls = tuple(t for t in (self.end_token, self.turn_start) if t)

    # -- render --------------------------------------------------------------------------
    def render_text(self, messages: Sequence[dict[str, Any]]) -> str:
        """The chat-template text of a list of ``{role, content}`` turns."""
        if self._jinja is None:
            return "".join(f"{CHATML_START}{m['role']}\n{m['content']}{CHATML_END}\n" for m in messages)
        return self._jinja.render(
            messages=list(messages),
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            add_generation_prompt=False,
        )

    def render(self, example: Example, *, system_prompt: str | None = None) -> dict[str, Any]:
        """``{"messages": [...], "text": <template applied to messages>}``."""
        msgs = example.messages
        turns: list[dict[str, Any]] = []
        if system_prompt and (not msgs or msgs[0].role != "system"):
            turns.append({"role": "system", "content": system_prompt})
        for m in msgs:
            if m.weight is None:
                turns.append({"role": m.role, "content": m.content})
            else:
                w = m.weight
                turns.append({"role": m.role, "content": m.content, "weight": int(w) if w in (0.0, 1.0) else w})
        return {"messages": turns, "text": self.render_text(turns)}

    # -- validate ------------------------------------------------------------------------
    def check_row(self, row: Any) -> list[str]:
        if type(row) is not dict:
            return [f"row: expected a JSON object with 'text', got {type_name(row)}"]
        reasons: list[str] = []
        if not _ROW_KEYS.issuperset(row):
            for k in row:
                if k not in _ROW_KEYS:
                    reasons.append(f"{k}: unknown key; an hf row has only {', '.join(ROW_KEYS)}")
        text = row.get("text")
        if text is None:
            reasons.append("text: missing; give the conversation rendered with the chat template")
        elif type(text) is not str:
            reasons.append(f"text: must be a string, got {type_name(text)}")
        elif not text or text.isspace():
            reasons.append("text: is empty")
        else:
            body = text.rstrip()
            if not body.endswith(self.end_token):
                reasons.append(
                    f"text: does not end with the end token {self.end_token!r}; the model would not learn to stop"
                )
            if self.assistant_marker:
                at = body.rfind(self.assistant_marker)
                if at < 0:
                    reasons.append(f"text: has no assistant turn ({self.assistant_marker!r} not found)")
                elif self.turn_start and body.rfind(self.turn_start) > at:
                    reasons.append("text: the last turn is not the assistant's; end with the answer to learn")
        if "messages" in row:
            self._check_messages(row["messages"], reasons)
        return reasons

    def _check_messages(self, msgs: Any, reasons: list[str]) -> None:
        if type(msgs) is not list or not msgs:
            reasons.append(f"messages: must be a non-empty list of turns, got {type_name(msgs)}"
                           + (" (empty)" if msgs == [] else ""))
            return
        controls = self._controls
        for i, m in enumerate(msgs):
            if type(m) is not dict:
                reasons.append(f"messages[{i}]: expected an object with role and content, got {type_name(m)}")
                continue
            if not _MESSAGE_KEYS.issuperset(m):
                for k in m:
                    if k not in _MESSAGE_KEYS:
                        reasons.append(f"messages[{i}].{k}: unknown key; a turn has only {', '.join(MESSAGE_KEYS)}")
            role = m.get("role")
            if type(role) is not str or role not in _ROLES:
                if role is None:
                    reasons.append(f"messages[{i}].role: missing; use one of {_ROLE_LIST}")
                else:
                    reasons.append(f"messages[{i}].role: {role!r} is not one of {_ROLE_LIST}")
            content = m.get("content")
            if type(content) is not str:
                reasons.append(f"messages[{i}].content: must be a string, got {type_name(content)}")
            elif not content or content.isspace():
                reasons.append(f"messages[{i}].content: is empty; fill the turn or drop it")
            else:
                for tok in controls:
                    if tok in content:
                        reasons.append(
                            f"messages[{i}].content: contains the template control token {tok!r}, which would "
                            "cut the turn short; remove or escape it"
                        )
            if "weight" in m:
                w = m["weight"]
                if role != "assistant":
                    reasons.append(f"messages[{i}].weight: only assistant turns may carry a weight (role {role!r})")
                elif isinstance(w, bool) or w not in (0, 1):
                    reasons.append(f"messages[{i}].weight: {w!r} must be 0 or 1")
        last = msgs[-1]
        if type(last) is dict and last.get("role") != "assistant":
            reasons.append(f"messages[{len(msgs) - 1}].role: {last.get('role')!r}; the last turn must be the assistant's")

    # -- tokens --------------------------------------------------------------------------
    def count_tokens(self, rows: Sequence[Any]) -> list[int]:
        """Tokens of each row's ``text`` (exact with a token_counter, else the o200k_base estimate)."""
        texts = [row.get("text") if type(row) is dict else None for row in rows]
        present = [t if type(t) is str else "" for t in texts]
        if self._token_counter is not None:
            counts = list(self._token_counter(present))
            if len(counts) != len(present):
                raise ValueError(
                    f"token_counter returned {len(counts)} counts for {len(present)} texts; it must return one per text"
                )
            return [int(c) for c in counts]
        if self._jinja is None:
            return self._count_chatml(rows, present)
        return get_counter(DEFAULT_ENCODING).count_many(present)

    def _count_chatml(self, rows: Sequence[Any], texts: list[str]) -> list[int]:
        """The built-in template's counts, a turn at a time: repeated turns are counted once.

        o200k_base pre-tokenizes at each ChatML turn boundary (``...<|im_end|>\n`` | ``<|im_start|>``),
        so the text's count is the sum of its turns' counts exactly. A row whose ``text`` is not its
        ``messages`` rendered (a hand-edited file) is counted as the text itself.
        """
        counter = get_counter(DEFAULT_ENCODING)
        count = counter.count_uncached
        cache = counter.turns
        if len(cache) > 1 << 20:
            cache.clear()
        get = cache.get
        out: list[int] = []
        append = out.append
        for row, text in zip(rows, texts, strict=True):
            msgs = row.get("messages") if type(row) is dict else None
            n, pieces = 0, []
            if type(msgs) is list and text:
                for m in msgs:
                    role = m.get("role") if type(m) is dict else None
                    content = m.get("content") if role is not None else None
                    if type(role) is not str or type(content) is not str:
                        pieces = None
                        break
                    hit = get((role, content))
                    if hit is None:
                        turn = f"{CHATML_START}{role}\n{content}{CHATML_END}\n"
                        hit = cache[(role, content)] = (turn, count(turn))
                    pieces.append(hit[0])
                    n += hit[1]
            if pieces and "".join(pieces) == text:
                append(n)
            else:
                append(counter.count(text) if text else 0)
        return out


def _compile(template: str):
    try:
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as exc:  # pragma: no cover - jinja2 ships with kfp/transformers
        raise ImportError("a custom hf template needs jinja2: pip install jinja2") from exc

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template)
    except TemplateError as exc:
        raise ValueError(f"template: not a valid Jinja chat template ({exc})") from exc
