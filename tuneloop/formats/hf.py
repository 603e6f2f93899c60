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
from tuneloop.formats.base import Format, RenderPass, remember
from tuneloop.formats.jsonl import encode_line, encode_number, encode_str
from tuneloop.formats.rules import (
    RoleOrder,
    clean_text,
    non_empty_list,
    role_reason,
    text_reason,
    type_name,
    unknown_keys,
    weight_reason,
)
from tuneloop.formats.tokens import DEFAULT_ENCODING, get_counter

ROW_KEYS = ("text", "messages")
MESSAGE_KEYS = ("role", "content", "weight")
ROLES = ("system", "user", "assistant")
ORDER = RoleOrder(last="assistant", last_fix="the last turn must be the assistant's")

CHATML_START = "<|im_start|>"
CHATML_END = "<|im_end|>"

_CHATML_CONTROLS = (CHATML_END, CHATML_START)
_CONTROL_PREFIX = "<|im_"  # both control tokens start with it: one scan rules both out
_TAIL = f"{CHATML_END}\n"  # what closes a ChatML turn
_TAIL_JSON = encode_str(_TAIL)[1:-1]
# role -> (tokens, JSON) of "<|im_start|>{role}\n", the head of a ChatML turn (canonical roles; filled on first use)
_HEADS: dict[str, tuple[int, str]] = {}
_ROW_KEYS = frozenset(ROW_KEYS)
_MESSAGE_KEYS = frozenset(MESSAGE_KEYS)
# '{"role":"user","content":' and so on: the start of a turn, before its content
_TURN_START = {r: '{"role":' + encode_str(r) + ',"content":' for r in ROLES}


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
        super().__init__()
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

    # -- render + count (one pass) -------------------------------------------------------
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

    def render_pass(self, example: Example, system_prompt: str | None = None) -> RenderPass:
        """``{"messages": [...], "text": <template applied to messages>}``; 0/1 turn weights kept."""
        if self._jinja is not None or self._token_counter is not None:
            return self._render_pass_custom(example, system_prompt)
        # The built-in ChatML template, a turn at a time: each distinct (role, content) is rendered,
        # JSON-escaped, counted and checked once (see _chatml_turn). With no control token in any
        # content the text's rules (end token, assistant last) follow from the roles alone, so the
        # shape verdict covers them.
        memo = get_counter(DEFAULT_ENCODING).memo("hf")
        get = memo.get
        own_controls = self._controls == _CHATML_CONTROLS
        msgs = example.messages
        parts: list[str] = []
        texts: list[str] = []
        roles: list[str] = []
        weights: list[float | None] | None = None
        ok = True
        n = 0
        if system_prompt and (not msgs or msgs[0].role != "system"):
            hit = get(("system", system_prompt)) or _chatml_turn(memo, "system", system_prompt)
            parts.append(hit[0])
            texts.append(hit[2])
            n += hit[3]
            ok = hit[4] if own_controls else self._clean_content(system_prompt)
        for m in msgs:
            role, content, w = m.role, m.content, m.weight
            hit = get((role, content))
            if hit is None:
                hit = _chatml_turn(memo, role, content)
            if w is None:
                parts.append(hit[0])
                if weights is not None:
                    weights.append(None)
            else:
                if weights is None:
                    weights = [None] * len(roles)
                weights.append(w)
                parts.append(hit[0][:-1] + ',"weight":' + ("0" if w == 0 else "1" if w == 1 else encode_number(w)) + "}")
            texts.append(hit[2])
            n += hit[3]
            roles.append(role)
            if not (hit[4] if own_controls else self._clean_content(content)):
                ok = False
        return '{"messages":[' + ",".join(parts) + '],"text":"' + "".join(texts) + '"}', n, roles, weights, ok

    def _render_pass_custom(self, example: Example, system_prompt: str | None) -> RenderPass:
        """A Jinja template or a custom tokenizer: the whole text is rendered, counted and checked."""
        msgs = example.messages
        turns: list[dict[str, Any]] = []
        if system_prompt and (not msgs or msgs[0].role != "system"):
            turns.append({"role": "system", "content": system_prompt})
        weights: list[float | None] | None = None
        for i, m in enumerate(msgs):
            if m.weight is None:
                turns.append({"role": m.role, "content": m.content})
            else:
                if weights is None:
                    weights = [None] * i
                turns.append({"role": m.role, "content": m.content, "weight": _weight(m.weight)})
            if weights is not None:
                weights.append(m.weight)
        text = self.render_text(turns)
        ok = all(self._clean_content(t["content"]) for t in turns) and not self._text_reasons(text)
        line = encode_line({"messages": turns, "text": text})
        return line, self._count_texts([text])[0], [m.role for m in msgs], weights, ok

    def _clean_content(self, content: Any) -> bool:
        """A turn's content keeps the rules: non-blank text without the template's control tokens."""
        return clean_text(content) and not any(tok in content for tok in self._controls)

    # -- validate ------------------------------------------------------------------------
    def check_row(self, row: Any) -> list[str]:
        if type(row) is not dict:
            return [f"row: expected a JSON object with 'text', got {type_name(row)}"]
        reasons: list[str] = []
        unknown_keys(row, _ROW_KEYS, "", "an hf row", ROW_KEYS, reasons)
        text = row.get("text")
        why = text_reason("text", text, empty="is empty",
                          missing="missing; give the conversation rendered with the chat template")
        if why:
            reasons.append(why)
        else:
            reasons.extend(self._text_reasons(text))
        if "messages" in row:
            self._check_messages(row["messages"], reasons)
        return reasons

    def _text_reasons(self, text: str) -> list[str]:
        """The rules on the templated text: it ends with the end token, and with the assistant's turn."""
        reasons = []
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
        return reasons

    def _check_messages(self, msgs: Any, reasons: list[str]) -> None:
        if not non_empty_list(msgs, "messages", "turns", reasons):
            return
        controls = self._controls
        for i, m in enumerate(msgs):
            where = f"messages[{i}]"
            if type(m) is not dict:
                reasons.append(f"{where}: expected an object with role and content, got {type_name(m)}")
                continue
            unknown_keys(m, _MESSAGE_KEYS, f"{where}.", "a turn", MESSAGE_KEYS, reasons)
            role = m.get("role")
            why = role_reason(where, role, ROLES)
            if why:
                reasons.append(why)
            content = m.get("content")
            why = text_reason(f"{where}.content", content, missing=None)
            if why:
                reasons.append(why)
            else:
                for tok in controls:
                    if tok in content:
                        reasons.append(
                            f"{where}.content: contains the template control token {tok!r}, which would "
                            "cut the turn short; remove or escape it"
                        )
            if "weight" in m:
                why = weight_reason(where, role, m["weight"])
                if why:
                    reasons.append(why)
        last = msgs[-1]
        if type(last) is dict:
            why = ORDER.last_reason("messages", len(msgs) - 1, last.get("role"))
            if why:
                reasons.append(why)

    # -- tokens --------------------------------------------------------------------------
    def count_tokens(self, rows: Sequence[Any]) -> list[int]:
        """Tokens of each row's ``text`` (exact with a token_counter, else the o200k_base estimate)."""
        texts = [row.get("text") if type(row) is dict else None for row in rows]
        present = [t if type(t) is str else "" for t in texts]
        if self._token_counter is None and self._jinja is None:
            return self._count_chatml(rows, present)
        return self._count_texts(present)

    def _count_texts(self, texts: list[str]) -> list[int]:
        if self._token_counter is not None:
            counts = list(self._token_counter(texts))
            if len(counts) != len(texts):
                raise ValueError(
                    f"token_counter returned {len(counts)} counts for {len(texts)} texts; it must return one per text"
                )
            return [int(c) for c in counts]
        return get_counter(DEFAULT_ENCODING).count_many(texts)

    def _count_chatml(self, rows: Sequence[Any], texts: list[str]) -> list[int]:
        """The built-in template's counts, a turn at a time: repeated turns are counted once.

        o200k_base pre-tokenizes at each ChatML turn boundary (``...<|im_end|>\n`` | ``<|im_start|>``),
        so the text's count is the sum of its turns' counts exactly. A row whose ``text`` is not its
        ``messages`` rendered (a hand-edited file) is counted as the text itself.
        """
        counter = get_counter(DEFAULT_ENCODING)
        memo = counter.memo("hf")
        get = memo.get
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
                    hit = get((role, content)) or _chatml_turn(memo, role, content)
                    pieces.append(f"{CHATML_START}{role}\n{content}{CHATML_END}\n")
                    n += hit[3]
            if pieces and "".join(pieces) == text:
                append(n)
            else:
                append(counter.count(text) if text else 0)
        return out


def _chatml_turn(memo: dict, role: str, content: str) -> tuple[str, str, str, int, bool]:
    """One distinct ChatML turn: ``(its message as JSON, the content as JSON, the templated turn as JSON
    without quotes, the turn's tokens, clean)``; ``clean``: the content is non-blank and holds no ChatML
    control token."""
    counter = get_counter(DEFAULT_ENCODING)
    if not _HEADS:
        _HEADS.update({r: (counter.count_uncached(f"{CHATML_START}{r}\n"), _head_json(r)) for r in ROLES})
    start = _TURN_START.get(role) or '{"role":' + encode_str(role) + ',"content":'
    esc = encode_str(content)
    head = _HEADS.get(role)
    lead = content[: len(content) - len(content.lstrip())]
    if head is None or "\n" in lead or "\r" in lead:
        tokens = counter.count_uncached(f"{CHATML_START}{role}\n{content}{CHATML_END}\n")
    else:  # o200k pre-tokenizes "<|im_start|>role\n" on its own unless the content opens with a newline
        tokens = head[0] + counter.count_uncached(content + _TAIL)
    turn = (head[1] if head else _head_json(role)) + esc[1:-1] + _TAIL_JSON
    clean = clean_text(content) and (_CONTROL_PREFIX not in content or not any(t in content for t in _CHATML_CONTROLS))
    return remember(memo, (role, content), (start + esc + "}", esc, turn, tokens, clean))


def _head_json(role: str) -> str:
    return encode_str(f"{CHATML_START}{role}\n")[1:-1]


def _weight(w: float) -> float | int:
    return int(w) if w in (0.0, 1.0) else w


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
