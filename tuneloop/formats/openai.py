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

from tuneloop.examples import Example
from tuneloop.formats.base import Format, type_name
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
_ROLES = frozenset(ROLES)
_PLAIN_ROLES = frozenset(("system", "user", "assistant"))  # roles that need no other key
_ROLE_LIST = ", ".join(ROLES)


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
        self.encoding = encoding
        self.tokenizer_label = f"{encoding} (exact)"
        self._counter: TokenCounter | None = None

    @property
    def counter(self) -> TokenCounter:
        if self._counter is None:
            self._counter = get_counter(self.encoding)
        return self._counter

    # -- render --------------------------------------------------------------------------
    def render(self, example: Example, *, system_prompt: str | None = None) -> dict[str, Any]:
        """``{"messages": [...]}``; turn weights 0/1 are kept (as integers) on assistant turns."""
        msgs = example.messages
        out: list[dict[str, Any]] = []
        if system_prompt and (not msgs or msgs[0].role != "system"):
            out.append({"role": "system", "content": system_prompt})
        for m in msgs:
            w = m.weight
            if w is None:
                out.append({"role": m.role, "content": m.content})
            else:
                out.append({"role": m.role, "content": m.content, "weight": int(w) if w in (0.0, 1.0) else w})
        return {"messages": out}

    # -- validate ------------------------------------------------------------------------
    def check_row(self, row: Any) -> list[str]:
        if type(row) is not dict:
            return [f"row: expected a JSON object with 'messages', got {type_name(row)}"]
        reasons: list[str] = []
        if not _ROW_KEYS.issuperset(row):
            for k in row:
                if k not in _ROW_KEYS:
                    reasons.append(f"{k}: unknown key; an OpenAI chat row has only {', '.join(ROW_KEYS)}")
        msgs = row.get("messages")
        if msgs is None:
            reasons.append("messages: missing; a row is {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}")
            return reasons
        if type(msgs) is not list or not msgs:
            reasons.append(f"messages: must be a non-empty list of turns, got {type_name(msgs)}"
                           + (" (empty)" if msgs == [] else ""))
            return reasons
        assistants = 0
        trainable = 0
        for i, m in enumerate(msgs):
            if type(m) is dict and len(m) == 2:  # fast path: a plain {role, content} turn that is fine
                role = m.get("role")
                content = m.get("content")
                if (type(role) is str and role in _PLAIN_ROLES and type(content) is str and content
                        and not content.isspace()):
                    if role == "assistant":
                        assistants += 1
                        trainable += 1
                    continue
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
            if type(content) is str:
                if not content or content.isspace():
                    reasons.append(f"messages[{i}].content: is empty; fill the turn or drop it")
            elif content is None:
                if not (role == "assistant" and (m.get("tool_calls") or m.get("function_call"))):
                    reasons.append(f"messages[{i}].content: missing; every turn needs text")
            elif type(content) is list:
                reasons.extend(_check_parts(i, content))
            else:
                reasons.append(f"messages[{i}].content: must be a string, got {type_name(content)}")
            if "weight" in m:
                w = m["weight"]
                if role != "assistant":
                    reasons.append(f"messages[{i}].weight: only assistant turns may carry a weight (role {role!r})")
                elif isinstance(w, bool) or w not in (0, 1):
                    reasons.append(f"messages[{i}].weight: {w!r} must be 0 or 1")
            if role == "assistant":
                assistants += 1
                if m.get("weight", 1) != 0:
                    trainable += 1
            elif role == "tool" and not m.get("tool_call_id"):
                reasons.append(f"messages[{i}].tool_call_id: missing; a tool turn answers a tool call by id")
            if "name" in m:
                name = m["name"]
                if type(name) is not str or not name.strip():
                    reasons.append(f"messages[{i}].name: {name!r} must be a non-empty string")
        if not assistants:
            reasons.append("messages: no assistant turn; an example needs at least one assistant message to learn")
        elif not trainable:
            reasons.append("messages: every assistant turn has weight 0; give at least one weight 1")
        return reasons

    # -- tokens --------------------------------------------------------------------------
    def count_tokens(self, rows: Sequence[Any]) -> list[int]:
        """Exact tokens per row with OpenAI's chat framing; malformed rows count what they have."""
        counter = self.counter
        count = counter.count
        cache_get = counter.cache.get
        native = counter.native
        remember = counter.remember
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
                    t = cache_get(role)
                    n += t if t is not None else count(role)
                content = m.get("content")
                if type(content) is str:  # the hot path: cache inlined
                    t = cache_get(content)
                    if t is None:
                        try:
                            t = native(content)
                        except UnicodeEncodeError:
                            t = counter.count_uncached(content)
                        remember(content, t)
                    n += t
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
