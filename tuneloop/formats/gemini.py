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
from tuneloop.formats.base import Format, type_name
from tuneloop.formats.tokens import DEFAULT_ENCODING, TOKENS_PER_MESSAGE, get_counter

ROW_KEYS = ("contents", "systemInstruction", "tools")
CONTENT_KEYS = ("role", "parts")
SYSTEM_KEYS = ("role", "parts")
ROLES = ("user", "model")
PART_KEYS = ("text", "fileData")
FILE_DATA_KEYS = ("mimeType", "fileUri")

_ROW_KEYS = frozenset(ROW_KEYS)
_CONTENT_KEYS = frozenset(CONTENT_KEYS)
_ROLE_LIST = ", ".join(ROLES)
_ROLE_MAP = {"user": "user", "assistant": "model", "system": "system"}


class GeminiFormat(Format):
    """Vertex Gemini SFT rows (``contents`` / ``parts``, ``systemInstruction``)."""

    name = "gemini"
    provider = "gemini"
    keeps_turn_weights = False
    tokens_exact = False
    tokenizer_label = f"{DEFAULT_ENCODING} count (estimate; Gemini's tokenizer is not available offline)"

    def render(self, example: Example, *, system_prompt: str | None = None) -> dict[str, Any]:
        """Leading system turns -> ``systemInstruction``; user -> user; assistant -> model."""
        msgs = example.messages
        i = 0
        system_parts = []
        while i < len(msgs) and msgs[i].role == "system":
            system_parts.append({"text": msgs[i].content})
            i += 1
        if not system_parts and system_prompt:
            system_parts.append({"text": system_prompt})
        contents = [{"role": _ROLE_MAP[m.role], "parts": [{"text": m.content}]} for m in msgs[i:]]
        if system_parts:
            return {"systemInstruction": {"parts": system_parts}, "contents": contents}
        return {"contents": contents}

    def check_row(self, row: Any) -> list[str]:
        if type(row) is not dict:
            return [f"row: expected a JSON object with 'contents', got {type_name(row)}"]
        reasons: list[str] = []
        if not _ROW_KEYS.issuperset(row):
            for k in row:
                if k not in _ROW_KEYS:
                    reasons.append(f"{k}: unknown key; a Gemini tuning row has only {', '.join(ROW_KEYS)}")
        if "systemInstruction" in row:
            si = row["systemInstruction"]
            if type(si) is not dict:
                reasons.append(f"systemInstruction: expected an object with parts, got {type_name(si)}")
            else:
                for k in si:
                    if k not in SYSTEM_KEYS:
                        reasons.append(f"systemInstruction.{k}: unknown key; it has only {', '.join(SYSTEM_KEYS)}")
                if "role" in si and type(si["role"]) is not str:
                    reasons.append(f"systemInstruction.role: must be a string, got {type_name(si['role'])}")
                _check_parts("systemInstruction.parts", si.get("parts"), reasons, text_only=True)
        contents = row.get("contents")
        if contents is None:
            reasons.append('contents: missing; a row is {"contents": [{"role": "user", "parts": [{"text": ...}]}, ...]}')
            return reasons
        if type(contents) is not list or not contents:
            reasons.append(f"contents: must be a non-empty list of turns, got {type_name(contents)}"
                           + (" (empty)" if contents == [] else ""))
            return reasons
        prev = None
        last_i = len(contents) - 1
        for i, c in enumerate(contents):
            if type(c) is not dict:
                reasons.append(f"contents[{i}]: expected an object with role and parts, got {type_name(c)}")
                prev = None
                continue
            if not _CONTENT_KEYS.issuperset(c):
                for k in c:
                    if k not in _CONTENT_KEYS:
                        reasons.append(f"contents[{i}].{k}: unknown key; a turn has only {', '.join(CONTENT_KEYS)}")
            role = c.get("role")
            if role == "user" or role == "model":
                if i == 0 and role != "user":
                    reasons.append(f"contents[0].role: {role!r}; the conversation must start with a user turn")
                elif role == prev:
                    reasons.append(
                        f"contents[{i}].role: {role!r} follows another {role!r} turn; user and model "
                        "turns must alternate (merge the two turns)"
                    )
                if i == last_i and role != "model":
                    reasons.append(f"contents[{i}].role: {role!r}; the last turn must be the model's answer")
            elif role is None:
                reasons.append(f"contents[{i}].role: missing; use one of {_ROLE_LIST}")
            elif role == "system":
                reasons.append(
                    f"contents[{i}].role: 'system' is not one of {_ROLE_LIST}; Gemini takes system text only "
                    "in systemInstruction, at the start of the conversation"
                )
            else:
                reasons.append(f"contents[{i}].role: {role!r} is not one of {_ROLE_LIST}")
            prev = role
            parts = c.get("parts")
            if type(parts) is list and len(parts) == 1:  # fast path: one non-empty text part
                p = parts[0]
                if type(p) is dict and len(p) == 1:
                    text = p.get("text")
                    if type(text) is str and text and not text.isspace():
                        continue
            _check_parts(f"contents[{i}].parts", parts, reasons)
        return reasons

    def count_tokens(self, rows: Sequence[Any]) -> list[int]:
        """Estimated tokens: o200k_base count of every text + 3 per turn."""
        counter = get_counter(DEFAULT_ENCODING)
        cache_get = counter.cache.get
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
                            t = cache_get(text)
                            n += t if t is not None else counter.count(text)
            out.append(n)
        return out


def _check_parts(where: str, parts: Any, reasons: list[str], *, text_only: bool = False) -> None:
    if parts is None:
        reasons.append(f"{where}: missing; give [{{\"text\": ...}}]")
        return
    if type(parts) is not list or not parts:
        reasons.append(f"{where}: must be a non-empty list of parts, got {type_name(parts)}"
                       + (" (empty)" if parts == [] else ""))
        return
    allowed = ("text",) if text_only else PART_KEYS
    for j, p in enumerate(parts):
        if type(p) is not dict:
            reasons.append(f"{where}[{j}]: expected an object like {{\"text\": ...}}, got {type_name(p)}")
            continue
        if len(p) == 1 and "text" in p:  # the common case
            text = p["text"]
            if type(text) is not str:
                reasons.append(f"{where}[{j}].text: must be a string, got {type_name(text)}")
            elif not text or text.isspace():
                reasons.append(f"{where}[{j}].text: is empty; fill it or drop the part")
            continue
        for k in p:
            if k not in allowed:
                reasons.append(f"{where}[{j}].{k}: unknown key; a part has only {', '.join(allowed)}")
        data = [k for k in allowed if k in p]
        if len(data) != 1:
            reasons.append(f"{where}[{j}]: needs exactly one of {', '.join(allowed)}, has {len(data)}")
        if "text" in p:
            text = p["text"]
            if type(text) is not str or not text.strip():
                reasons.append(f"{where}[{j}].text: must be a non-empty string")
        if "fileData" in p:
            fd = p["fileData"]
            if type(fd) is not dict or any(type(fd.get(k)) is not str or not fd.get(k) for k in FILE_DATA_KEYS):
                reasons.append(f"{where}[{j}].fileData: must be {{\"mimeType\": str, \"fileUri\": str}}")
