"""Amazon Bedrock Claude fine-tuning JSONL: ``{"system"?: str, "messages": [{"role", "content"}]}``.

Rules enforced (Bedrock "Prepare data for fine-tuning" for Anthropic Claude 3 Haiku, and
Anthropic's "Finetuning Claude 3 Haiku on Bedrock" guide):

* row keys: ``system`` (optional, a non-empty string) and ``messages``; no extraneous keys;
* ``messages`` has at least two turns, each exactly ``{"role": "user"|"assistant", "content": str}``
  with non-empty content;
* the first turn is the user's, the last the assistant's, and they alternate;
* the record stays under the model's token limit (32,000 for Claude 3 Haiku) and the training file
  has between the catalog's minimum and maximum records (32 .. 10,000; validation at most 1,000).

Canonical system turns at the start become ``system`` (joined by a blank line); a system turn later
in a conversation is rendered as a ``system`` turn, which the validator rejects (quarantined with
that reason). Per-turn weights cannot be expressed; format_dataset reports how many were dropped.

Token counts are estimates (Claude's tokenizer is not available offline): the o200k_base count of
every text plus 3 per turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuneloop.examples import Example
from tuneloop.formats.base import Format, type_name
from tuneloop.formats.tokens import DEFAULT_ENCODING, TOKENS_PER_MESSAGE, get_counter

ROW_KEYS = ("system", "messages")
MESSAGE_KEYS = ("role", "content")
ROLES = ("user", "assistant")
MIN_TURNS = 2

_ROW_KEYS = frozenset(ROW_KEYS)
_MESSAGE_KEYS = frozenset(MESSAGE_KEYS)
_ROLE_LIST = ", ".join(ROLES)


class BedrockFormat(Format):
    """Bedrock Claude (Haiku) customization rows."""

    name = "bedrock"
    provider = "claude"
    keeps_turn_weights = False
    tokens_exact = False
    tokenizer_label = f"{DEFAULT_ENCODING} count (estimate; Claude's tokenizer is not available offline)"

    def render(self, example: Example, *, system_prompt: str | None = None) -> dict[str, Any]:
        """Leading system turns -> ``system``; the rest -> ``messages`` (role, content only)."""
        msgs = example.messages
        i = 0
        system = []
        while i < len(msgs) and msgs[i].role == "system":
            system.append(msgs[i].content)
            i += 1
        messages = [{"role": m.role, "content": m.content} for m in msgs[i:]]
        if system:
            return {"system": "\n\n".join(system), "messages": messages}
        if system_prompt:
            return {"system": system_prompt, "messages": messages}
        return {"messages": messages}

    def check_row(self, row: Any) -> list[str]:
        if type(row) is not dict:
            return [f"row: expected a JSON object with 'messages', got {type_name(row)}"]
        reasons: list[str] = []
        if not _ROW_KEYS.issuperset(row):
            for k in row:
                if k not in _ROW_KEYS:
                    reasons.append(f"{k}: unknown key; a Bedrock Claude row has only {', '.join(ROW_KEYS)}")
        if "system" in row:
            system = row["system"]
            if type(system) is not str:
                reasons.append(f"system: must be a string, got {type_name(system)}")
            elif not system or system.isspace():
                reasons.append("system: is empty; fill it or drop the key")
        msgs = row.get("messages")
        if msgs is None:
            reasons.append('messages: missing; a row is {"messages": [{"role": "user", "content": ...}, ...]}')
            return reasons
        if type(msgs) is not list:
            reasons.append(f"messages: must be a list of turns, got {type_name(msgs)}")
            return reasons
        if len(msgs) < MIN_TURNS:
            reasons.append(f"messages: has {len(msgs)} turn(s); at least {MIN_TURNS} (user, then assistant)")
        prev = None
        last_i = len(msgs) - 1
        for i, m in enumerate(msgs):
            if type(m) is not dict:
                reasons.append(f"messages[{i}]: expected an object with role and content, got {type_name(m)}")
                prev = None
                continue
            if not _MESSAGE_KEYS.issuperset(m):
                for k in m:
                    if k not in _MESSAGE_KEYS:
                        reasons.append(f"messages[{i}].{k}: unknown key; a turn has only role, content")
            role = m.get("role")
            if role == "user" or role == "assistant":
                if i == 0 and role != "user":
                    reasons.append(f"messages[0].role: {role!r}; the first turn must be the user's")
                elif role == prev:
                    reasons.append(
                        f"messages[{i}].role: {role!r} follows another {role!r} turn; user and assistant "
                        "turns must alternate (merge the two turns)"
                    )
                if i == last_i and role != "assistant":
                    reasons.append(f"messages[{i}].role: {role!r}; the last turn must be the assistant's answer")
            elif role is None:
                reasons.append(f"messages[{i}].role: missing; use one of {_ROLE_LIST}")
            elif role == "system":
                reasons.append(
                    f"messages[{i}].role: 'system' is not one of {_ROLE_LIST}; Bedrock takes system text only "
                    "in the top-level 'system' field"
                )
            else:
                reasons.append(f"messages[{i}].role: {role!r} is not one of {_ROLE_LIST}")
            prev = role
            content = m.get("content")
            if type(content) is str:
                if not content or content.isspace():
                    reasons.append(f"messages[{i}].content: is empty; fill the turn or drop it")
            elif content is None:
                reasons.append(f"messages[{i}].content: missing; every turn needs text")
            else:
                reasons.append(f"messages[{i}].content: must be a string, got {type_name(content)}")
        return reasons

    def count_tokens(self, rows: Sequence[Any]) -> list[int]:
        """Estimated tokens: o200k_base count of the system text and every turn + 3 per turn."""
        counter = get_counter(DEFAULT_ENCODING)
        cache_get = counter.cache.get
        out: list[int] = []
        for row in rows:
            if type(row) is not dict:
                out.append(0)
                continue
            n = 0
            system = row.get("system")
            if type(system) is str:
                t = cache_get(system)
                n += TOKENS_PER_MESSAGE + (t if t is not None else counter.count(system))
            msgs = row.get("messages")
            if type(msgs) is list:
                for m in msgs:
                    if type(m) is dict:
                        n += TOKENS_PER_MESSAGE
                        content = m.get("content")
                        if type(content) is str:
                            t = cache_get(content)
                            n += t if t is not None else counter.count(content)
            out.append(n)
        return out
