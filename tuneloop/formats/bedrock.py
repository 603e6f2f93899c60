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
from tuneloop.formats.base import Format, RenderPass, remember
from tuneloop.formats.jsonl import encode_str
from tuneloop.formats.rules import RoleOrder, clean_text, role_reason, text_reason, type_name, unknown_keys
from tuneloop.formats.tokens import DEFAULT_ENCODING, TOKENS_PER_MESSAGE, get_counter

ROW_KEYS = ("system", "messages")
MESSAGE_KEYS = ("role", "content")
ROLES = ("user", "assistant")
MIN_TURNS = 2

ORDER = RoleOrder(
    first="user",
    last="assistant",
    alternate=("user", "assistant"),
    first_fix="the first turn must be the user's",
    last_fix="the last turn must be the assistant's answer",
)
SYSTEM_HINT = "Bedrock takes system text only in the top-level 'system' field"

_ROW_KEYS = frozenset(ROW_KEYS)
_MESSAGE_KEYS = frozenset(MESSAGE_KEYS)
# '{"role":"user","content":' and so on: the start of a turn, before its content
_TURN_START = {r: '{"role":' + encode_str(r) + ',"content":' for r in ("system", "user", "assistant")}


def _turn(memo: dict, role: str, content: str) -> tuple[str, int, bool, str]:
    """One distinct turn: ``(its JSON, its tokens with the framing, content ok, the content as JSON)``."""
    start = _TURN_START.get(role) or '{"role":' + encode_str(role) + ',"content":'
    esc = encode_str(content)
    tokens = TOKENS_PER_MESSAGE + get_counter(DEFAULT_ENCODING).count_uncached(content)
    return remember(memo, (role, content), (start + esc + "}", tokens, clean_text(content), esc))


class BedrockFormat(Format):
    """Bedrock Claude (Haiku) customization rows."""

    name = "bedrock"
    provider = "claude"
    keeps_turn_weights = False
    tokens_exact = False
    tokenizer_label = f"{DEFAULT_ENCODING} count (estimate; Claude's tokenizer is not available offline)"

    def render_pass(self, example: Example, system_prompt: str | None = None) -> RenderPass:
        """Leading system turns -> ``system``; the rest -> ``messages`` (role, content only)."""
        memo = get_counter(DEFAULT_ENCODING).memo("bedrock")
        get = memo.get
        msgs = example.messages
        system: list[str] = []
        turns: list[str] = []
        roles: list[str] = []
        weights: list[float | None] | None = None
        ok = True
        n = 0
        for m in msgs:
            role, content, w = m.role, m.content, m.weight
            if role == "system" and not turns:
                system.append(content)
                if not clean_text(content):
                    ok = False
            else:
                hit = get((role, content))
                if hit is None:
                    hit = _turn(memo, role, content)
                turns.append(hit[0])
                n += hit[1]
                if not hit[2]:
                    ok = False
            if w is not None and weights is None:
                weights = [None] * len(roles)
            if weights is not None:
                weights.append(w)
            roles.append(role)
        messages = '"messages":[' + ",".join(turns) + "]}"
        if system:
            text = "\n\n".join(system)
        elif system_prompt:
            text = system_prompt
            ok = ok and clean_text(text)
        else:
            return "{" + messages, n, roles, weights, ok
        hit = get(("", text)) or _turn(memo, "", text)  # role "": the top-level system text
        return '{"system":' + hit[3] + "," + messages, n + hit[1], roles, weights, ok

    def check_row(self, row: Any) -> list[str]:
        if type(row) is not dict:
            return [f"row: expected a JSON object with 'messages', got {type_name(row)}"]
        reasons: list[str] = []
        unknown_keys(row, _ROW_KEYS, "", "a Bedrock Claude row", ROW_KEYS, reasons)
        if "system" in row:
            why = text_reason("system", row["system"], empty="is empty; fill it or drop the key", missing=None)
            if why:
                reasons.append(why)
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
            where = f"messages[{i}]"
            if type(m) is not dict:
                reasons.append(f"{where}: expected an object with role and content, got {type_name(m)}")
                prev = None
                continue
            unknown_keys(m, _MESSAGE_KEYS, f"{where}.", "a turn", MESSAGE_KEYS, reasons)
            role = m.get("role")
            why = role_reason(where, role, ROLES, system_hint=SYSTEM_HINT)
            if why:
                reasons.append(why)
            else:
                ORDER.turn_reasons("messages", i, role, prev, last_i, reasons)
            prev = role
            why = text_reason(f"{where}.content", m.get("content"))
            if why:
                reasons.append(why)
        return reasons

    def count_tokens(self, rows: Sequence[Any]) -> list[int]:
        """Estimated tokens: o200k_base count of the system text and every turn + 3 per turn."""
        count = get_counter(DEFAULT_ENCODING).count
        out: list[int] = []
        for row in rows:
            if type(row) is not dict:
                out.append(0)
                continue
            n = 0
            system = row.get("system")
            if type(system) is str:
                n += TOKENS_PER_MESSAGE + count(system)
            msgs = row.get("messages")
            if type(msgs) is list:
                for m in msgs:
                    if type(m) is dict:
                        n += TOKENS_PER_MESSAGE
                        content = m.get("content")
                        if type(content) is str:
                            n += count(content)
            out.append(n)
        return out
