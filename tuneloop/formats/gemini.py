"""Vertex AI Gemini supervised tuning JSONL: ``{"systemInstruction"?, "contents": [...]}``.

A row::

    {"systemInstruction": {"parts": [{"text": "..."}]},
     "contents": [{"role": "user", "parts": [{"text": "..."}]},
                  {"role": "model", "parts": [{"text": "..."}]}]}

Rules enforced (Vertex "Prepare supervised fine-tuning data for Gemini models" and the limits of
"About supervised fine-tuning for Gemini models"):

* row keys: ``contents`` (required), ``systemInstruction``, ``tools``; nothing else;
* ``systemInstruction`` is ``{"role"?: str, "parts": [{"text": non-empty}]}`` (its role is ignored);
* ``contents`` is a non-empty list of ``{"role": "user"|"model", "parts": [...]}``; a part is
  ``{"text": non-empty str}`` or ``{"fileData": {"mimeType", "fileUri"}}``;
* turns alternate user/model, starting with user and ending with model;
* the example stays under the model's token limit (131,072 for Gemini 2.5).

Canonical system turns at the start become ``systemInstruction`` parts; a system turn later in a
conversation cannot be expressed and is rendered as a ``system`` turn, which the validator rejects
(the row goes to quarantine with that reason, never silently changed). Per-turn weights cannot be
expressed either; format_dataset reports how many were dropped.

Token counts are estimates (Gemini's tokenizer is not available offline): the o200k_base count of
every text plus 3 per turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuneloop.examples import Example
from tuneloop.formats.base import Format, RenderPass, remember
from tuneloop.formats.jsonl import encode_str
from tuneloop.formats.rules import (
    RoleOrder,
    clean_text,
    non_empty_list,
    role_reason,
    text_reason,
    type_name,
    unknown_keys,
)
from tuneloop.formats.tokens import DEFAULT_ENCODING, TOKENS_PER_MESSAGE, get_counter

ROW_KEYS = ("contents", "systemInstruction", "tools")
CONTENT_KEYS = ("role", "parts")
SYSTEM_KEYS = ("role", "parts")
ROLES = ("user", "model")
PART_KEYS = ("text", "fileData")
FILE_DATA_KEYS = ("mimeType", "fileUri")

ORDER = RoleOrder(
    first="user",
    last="model",
    alternate=("user", "model"),
    first_fix="the conversation must start with a user turn",
    last_fix="the last turn must be the model's answer",
)
SYSTEM_HINT = "Gemini takes system text only in systemInstruction, at the start of the conversation"

_ROW_KEYS = frozenset(ROW_KEYS)
_CONTENT_KEYS = frozenset(CONTENT_KEYS)
_SYSTEM_KEYS = frozenset(SYSTEM_KEYS)
_ROLE_MAP = {"user": "user", "assistant": "model", "system": "system"}
# '{"role":"model","parts":[' and so on: the start of a turn, before its parts
_TURN_START = {r: '{"role":' + encode_str(g) + ',"parts":[' for r, g in _ROLE_MAP.items()}


class GeminiFormat(Format):
    """Vertex Gemini SFT rows (``contents`` / ``parts``, ``systemInstruction``)."""

    name = "gemini"
    provider = "gemini"
    keeps_turn_weights = False
    tokens_exact = False
    tokenizer_label = f"{DEFAULT_ENCODING} count (estimate; Gemini's tokenizer is not available offline)"

    def render_pass(self, example: Example, system_prompt: str | None = None) -> RenderPass:
        """Leading system turns -> ``systemInstruction``; user -> user; assistant -> model."""
        memo = get_counter(DEFAULT_ENCODING).memo("gemini")
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
            hit = get((role, content))
            if hit is None:
                hit = _turn(memo, role, content)
            if role == "system" and not turns:
                system.append(hit[1])
            else:
                turns.append(hit[0])
            n += hit[2]
            if w is not None and weights is None:
                weights = [None] * len(roles)
            if weights is not None:
                weights.append(w)
            roles.append(role)
            if not hit[3]:
                ok = False
        if system:  # the systemInstruction is one turn, however many parts
            n -= TOKENS_PER_MESSAGE * (len(system) - 1)
        elif system_prompt:
            hit = get(("system", system_prompt)) or _turn(memo, "system", system_prompt)
            system.append(hit[1])
            n += hit[2]
            ok = ok and hit[3]
        contents = '"contents":[' + ",".join(turns) + "]}"
        if system:
            return '{"systemInstruction":{"parts":[' + ",".join(system) + "]}," + contents, n, roles, weights, ok
        return "{" + contents, n, roles, weights, ok

    def check_row(self, row: Any) -> list[str]:
        if type(row) is not dict:
            return [f"row: expected a JSON object with 'contents', got {type_name(row)}"]
        reasons: list[str] = []
        unknown_keys(row, _ROW_KEYS, "", "a Gemini tuning row", ROW_KEYS, reasons)
        if "systemInstruction" in row:
            si = row["systemInstruction"]
            if type(si) is not dict:
                reasons.append(f"systemInstruction: expected an object with parts, got {type_name(si)}")
            else:
                unknown_keys(si, _SYSTEM_KEYS, "systemInstruction.", "it", SYSTEM_KEYS, reasons)
                if "role" in si and type(si["role"]) is not str:
                    reasons.append(f"systemInstruction.role: must be a string, got {type_name(si['role'])}")
                _check_parts("systemInstruction.parts", si.get("parts"), reasons, text_only=True)
        contents = row.get("contents")
        if contents is None:
            reasons.append('contents: missing; a row is {"contents": [{"role": "user", "parts": [{"text": ...}]}, ...]}')
            return reasons
        if not non_empty_list(contents, "contents", "turns", reasons):
            return reasons
        prev = None
        last_i = len(contents) - 1
        for i, c in enumerate(contents):
            where = f"contents[{i}]"
            if type(c) is not dict:
                reasons.append(f"{where}: expected an object with role and parts, got {type_name(c)}")
                prev = None
                continue
            unknown_keys(c, _CONTENT_KEYS, f"{where}.", "a turn", CONTENT_KEYS, reasons)
            role = c.get("role")
            why = role_reason(where, role, ROLES, system_hint=SYSTEM_HINT)
            if why:
                reasons.append(why)
            else:
                ORDER.turn_reasons("contents", i, role, prev, last_i, reasons)
            prev = role
            _check_parts(f"{where}.parts", c.get("parts"), reasons)
        return reasons

    def count_tokens(self, rows: Sequence[Any]) -> list[int]:
        """Estimated tokens: o200k_base count of every text + 3 per turn."""
        count = get_counter(DEFAULT_ENCODING).count
        out: list[int] = []
        for row in rows:
            if type(row) is not dict:
                out.append(0)
                continue
            n = 0
            si = row.get("systemInstruction")
            turns = [si] if type(si) is dict else []
            contents = row.get("contents")
            if type(contents) is list:
                turns += contents
            for c in turns:
                if type(c) is not dict:
                    continue
                n += TOKENS_PER_MESSAGE
                parts = c.get("parts")
                if type(parts) is not list:
                    continue
                for p in parts:
                    if type(p) is dict:
                        text = p.get("text")
                        if type(text) is str:
                            n += count(text)
            out.append(n)
        return out


def _turn(memo: dict, role: str, content: str) -> tuple[str, str, int, bool]:
    """One distinct turn: ``(its JSON as a turn, as a systemInstruction part, its tokens, content ok)``."""
    part = '{"text":' + encode_str(content) + "}"
    tokens = TOKENS_PER_MESSAGE + get_counter(DEFAULT_ENCODING).count_uncached(content)
    turn = _TURN_START[role] + part + "]}"  # KeyError for a role Gemini has no name for
    return remember(memo, (role, content), (turn, part, tokens, clean_text(content)))


def _check_parts(where: str, parts: Any, reasons: list[str], *, text_only: bool = False) -> None:
    if parts is None:
        reasons.append(f"{where}: missing; give [{{\"text\": ...}}]")
        return
    if not non_empty_list(parts, where, "parts", reasons):
        return
    allowed = ("text",) if text_only else PART_KEYS
    for j, p in enumerate(parts):
        if type(p) is not dict:
            reasons.append(f"{where}[{j}]: expected an object like {{\"text\": ...}}, got {type_name(p)}")
            continue
        if len(p) == 1 and "text" in p:  # the common case
            why = text_reason(f"{where}[{j}].text", p["text"], empty="is empty; fill it or drop the part", missing=None)
            if why:
                reasons.append(why)
            continue
        unknown_keys(p, frozenset(allowed), f"{where}[{j}].", "a part", allowed, reasons)
        data = [k for k in allowed if k in p]
        if len(data) != 1:
            reasons.append(f"{where}[{j}]: needs exactly one of {', '.join(allowed)}, has {len(data)}")
        if "text" in p and not clean_text(p["text"]):
            reasons.append(f"{where}[{j}].text: must be a non-empty string")
        if "fileData" in p:
            fd = p["fileData"]
            if type(fd) is not dict or any(type(fd.get(k)) is not str or not fd.get(k) for k in FILE_DATA_KEYS):
                reasons.append(f"{where}[{j}].fileData: must be {{\"mimeType\": str, \"fileUri\": str}}")
