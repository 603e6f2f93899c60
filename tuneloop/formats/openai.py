"""OpenAI chat fine-tuning JSONL: ``{"messages": [{"role", "content", "weight"?}, ...]}``.

Rules enforced (OpenAI supervised fine-tuning guide, and the checks of the cookbook "Data
preparation and analysis for chat model fine-tuning"):

* a row is an object with ``messages`` (and optionally ``tools``, ``functions``,
  ``parallel_tool_calls``); no other keys;
* ``messages`` is a non-empty list of objects with keys among role, content, name, weight,
  tool_calls, tool_call_id, function_call; no other keys;
* ``role`` is one of system, user, assistant, tool; a tool turn has a ``tool_call_id``;
* ``content`` is a non-empty string (or a list of text/image parts); an assistant turn may omit it
  only when it carries ``tool_calls`` / ``function_call``;
* ``weight`` appears only on assistant turns and is 0 or 1; at least one assistant turn, and at
  least one with weight 1 (else the example trains nothing);
* the example's tokens stay under the model's limit (catalog); the file has at least the model's
  minimum number of examples (10).

Token counts are exact for the model's encoding (o200k_base for gpt-4o / gpt-4.1, cl100k_base for
gpt-3.5), with OpenAI's documented framing: 3 tokens per message + its role/content/name tokens
(+1 per name), + 3 tokens priming the reply.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tuneloop.catalog import Catalog, load_catalog
from tuneloop.examples import Example
from tuneloop.formats.base import Format, RenderPass, remember
from tuneloop.formats.jsonl import encode_number, encode_str
from tuneloop.formats.rules import (
    clean_text,
    non_empty_list,
    role_reason,
    text_reason,
    type_name,
    unknown_keys,
    weight_reason,
)
from tuneloop.formats.tokens import (
    DEFAULT_ENCODING,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_NAME,
    TOKENS_REPLY_PRIMING,
    TokenCounter,
    get_counter,
)

ROW_KEYS = ("messages", "tools", "functions", "parallel_tool_calls")
MESSAGE_KEYS = ("role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call")
ROLES = ("system", "user", "assistant", "tool")
PART_TYPES = ("text", "image_url")

_ROW_KEYS = frozenset(ROW_KEYS)
_MESSAGE_KEYS = frozenset(MESSAGE_KEYS)
# '{"role":"user","content":' and so on: the start of a turn, before its content
_TURN_START = {r: '{"role":' + encode_str(r) + ',"content":' for r in ROLES}


class OpenAIFormat(Format):
    """OpenAI chat fine-tuning rows.

    Args:
        encoding: the model's tokenizer (``o200k_base`` or ``cl100k_base``); ``get_format("openai",
            model=...)`` picks it from the catalog.
    """

    name = "openai"
    provider = "openai"
    keeps_turn_weights = True
    tokens_exact = True

    def __init__(self, encoding: str = DEFAULT_ENCODING):
        super().__init__()
        self.encoding = encoding
        self.tokenizer_label = f"{encoding} (exact)"
        self._counter: TokenCounter | None = None
        self._role_tokens: dict[str, int] = {}

    @classmethod
    def for_model(cls, model: str, catalog: Catalog | None = None, **options: Any) -> OpenAIFormat:
        """The format with the exact tokenizer of ``model`` (from the catalog) unless ``encoding`` is given."""
        if "encoding" not in options:
            info = (catalog or load_catalog()).model(cls.provider, model)
            options["encoding"] = info.tokenizer or DEFAULT_ENCODING
        return cls(**options)

    @property
    def counter(self) -> TokenCounter:
        if self._counter is None:
            self._counter = get_counter(self.encoding)
            self._role_tokens = {r: self._counter.count(r) for r in ROLES}
        return self._counter

    # -- render + count (one pass) -------------------------------------------------------
    def render_pass(self, example: Example, system_prompt: str | None = None) -> RenderPass:
        """``{"messages": [...]}``; turn weights 0/1 are kept (as integers) on assistant turns."""
        memo = self.counter.memo("openai")
        get = memo.get
        msgs = example.messages
        parts: list[str] = []
        roles: list[str] = []
        weights: list[float | None] | None = None
        ok = True
        n = TOKENS_REPLY_PRIMING
        if system_prompt and (not msgs or msgs[0].role != "system"):
            hit = get(("system", system_prompt)) or self._turn(memo, "system", system_prompt)
            parts.append(hit[0])
            n += hit[2]
            ok = hit[3]
        for m in msgs:
            role, content, w = m.role, m.content, m.weight
            hit = get((role, content))
            if hit is None:
                hit = self._turn(memo, role, content)
            if w is None:
                parts.append(hit[0])
                if weights is not None:
                    weights.append(None)
            else:
                if weights is None:
                    weights = [None] * len(roles)
                weights.append(w)
                parts.append(hit[0][:-1] + ',"weight":' + ("0" if w == 0 else "1" if w == 1 else encode_number(w)) + "}")
            n += hit[2]
            roles.append(role)
            if not hit[3]:
                ok = False
        return '{"messages":[' + ",".join(parts) + "]}", n, roles, weights, ok

    def _turn(self, memo: dict, role: str, content: str) -> tuple[str, str, int, bool]:
        """One distinct turn: ``(its JSON, its content as JSON, its tokens with the framing, content ok)``."""
        start = _TURN_START.get(role) or '{"role":' + encode_str(role) + ',"content":'
        esc = encode_str(content)
        counter = self.counter
        rt = self._role_tokens.get(role)
        tokens = TOKENS_PER_MESSAGE + (rt if rt is not None else counter.count(role)) + counter.count_uncached(content)
        return remember(memo, (role, content), (start + esc + "}", esc, tokens, clean_text(content)))

    # -- validate ------------------------------------------------------------------------
    def check_row(self, row: Any) -> list[str]:
        if type(row) is not dict:
            return [f"row: expected a JSON object with 'messages', got {type_name(row)}"]
        reasons: list[str] = []
        unknown_keys(row, _ROW_KEYS, "", "an OpenAI chat row", ROW_KEYS, reasons)
        msgs = row.get("messages")
        if msgs is None:
            reasons.append("messages: missing; a row is {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}")
            return reasons
        if not non_empty_list(msgs, "messages", "turns", reasons):
            return reasons
        assistants = 0
        trainable = 0
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
            if type(content) is list:
                reasons.extend(_check_parts(i, content))
            elif not (content is None and role == "assistant" and (m.get("tool_calls") or m.get("function_call"))):
                why = text_reason(f"{where}.content", content)
                if why:
                    reasons.append(why)
            if "weight" in m:
                why = weight_reason(where, role, m["weight"])
                if why:
                    reasons.append(why)
            if role == "assistant":
                assistants += 1
                if m.get("weight", 1) != 0:
                    trainable += 1
            elif role == "tool" and not m.get("tool_call_id"):
                reasons.append(f"{where}.tool_call_id: missing; a tool turn answers a tool call by id")
            if "name" in m:
                name = m["name"]
                if type(name) is not str or not name.strip():
                    reasons.append(f"{where}.name: {name!r} must be a non-empty string")
        if not assistants:
            reasons.append("messages: no assistant turn; an example needs at least one assistant message to learn")
        elif not trainable:
            reasons.append("messages: every assistant turn has weight 0; give at least one weight 1")
        return reasons

    # -- tokens --------------------------------------------------------------------------
    def count_tokens(self, rows: Sequence[Any]) -> list[int]:
        """Exact tokens per row with OpenAI's chat framing; malformed rows count what they have."""
        count = self.counter.count
        out: list[int] = []
        append = out.append
        for row in rows:
            msgs = row.get("messages") if type(row) is dict else None
            if type(msgs) is not list:
                append(0)
                continue
            n = TOKENS_REPLY_PRIMING
            for m in msgs:
                if type(m) is not dict:
                    continue
                n += TOKENS_PER_MESSAGE
                role = m.get("role")
                if type(role) is str:
                    n += count(role)
                content = m.get("content")
                if type(content) is str:
                    n += count(content)
                elif type(content) is list:
                    for part in content:
                        if type(part) is dict and type(part.get("text")) is str:
                            n += count(part["text"])
                if len(m) > 2:  # rarely: name, tool calls
                    name = m.get("name")
                    if type(name) is str:
                        n += count(name) + TOKENS_PER_NAME
                    calls = m.get("tool_calls") or m.get("function_call")
                    if calls:  # approximate: the JSON text of the call
                        n += count(json.dumps(calls, ensure_ascii=False))
            append(n)
        return out


def _check_parts(i: int, parts: list[Any]) -> list[str]:
    if not parts:
        return [f"messages[{i}].content: is an empty list; give text"]
    reasons = []
    for j, part in enumerate(parts):
        where = f"messages[{i}].content[{j}]"
        if type(part) is not dict:
            reasons.append(f"{where}: expected an object with type and text, got {type_name(part)}")
            continue
        kind = part.get("type")
        if kind not in PART_TYPES:
            reasons.append(f"{where}.type: {kind!r} is not one of {', '.join(PART_TYPES)}")
        elif kind == "text":
            text = part.get("text")
            if type(text) is not str or not text.strip():
                reasons.append(f"{where}.text: must be a non-empty string")
    return reasons
