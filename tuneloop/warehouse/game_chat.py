"""The game loop's examples: one row of the ``ai_survived_games`` query -> one training conversation.

The packaged query (``queries/ai_survived_games.sql``) selects, on BigQuery and on DuckDB alike, one
row per AI seat that survived a game landed after the watermark, with the game's chat log as an
array. This module shapes that row in Python, the same on both engines (the rows are the same), into
a canonical chat example:

* a **system** turn with the persona prompt: the ``persona_prompt`` query parameter, else the game's
  ``persona_prompt`` column, else :data:`DEFAULT_PERSONA`;
* the seat's own lines are **assistant** turns (the text as written); every other player's line is a
  **user** turn prefixed with the speaker's name, ``Name: text``;
* consecutive lines of the same role are merged into one turn (joined by a newline), since Gemini
  and Bedrock require user and assistant turns to alternate;
* the conversation starts with a user turn (the seat's opening lines, before anyone else spoke,
  are dropped: there is nothing they answer) and ends with an assistant turn (trailing lines of the
  others are trimmed), so the target is the seat's last reply;
* a line whose text is empty or only whitespace is skipped (nothing was said).

A row that cannot make such a conversation raises :class:`tuneloop.examples.ExampleError` naming the
field (``chat_log[3].text``), and the extract quarantines it with that reason: an empty chat log, a
line without a speaker or with a NULL text, an outcome that is neither ``survived`` nor
``voted_out``, a seat that never answered anyone.

The example's id is the content hash of its messages, as for every example: the same game and seat
(with the same persona) give the same id on every run and engine, so a re-read game is deduplicated
by the dataset merge. ``meta`` records where it came from: ``game_id``, ``document_path``, ``seat``,
``provider``, ``model_id``, ``registry_version``, ``ended_at`` and the query name.

This module imports only the standard library (and :mod:`tuneloop.examples`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from tuneloop.examples import Example, ExampleError, make_example

QUERY_NAME = "ai_survived_games"
DEFAULT_PERSONA = (
    "You are a player in a social-deduction chat game. Some players are AIs; the humans vote out whoever "
    "they think is one. Chat the way the other players do: short, casual messages, with opinions, jokes "
    "and suspicions of your own. Never say or hint that you are an AI."
)
DEFAULT_MIN_MESSAGES = 6
# The columns the query returns (and this module reads).
ROW_COLUMNS = (
    "document_path", "game_id", "ended_at", "seat_player", "seat_provider", "seat_model_id",
    "seat_registry_version", "seat_outcome", "chat_log", "persona_prompt", "ingested_at",
)
SURVIVED, VOTED_OUT = "survived", "voted_out"


def _norm_outcome(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip().lower().replace("-", "_").replace(" ", "_")


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        ts = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def conversation_from_row(row: Mapping[str, Any], *, default_persona: str = DEFAULT_PERSONA) -> Example:
    """One ``ai_survived_games`` row as a chat example (see the module docstring for the rules).

    Raises:
        ExampleError: the row cannot make a conversation; the message names the field and why.
    """
    player = row.get("seat_player")
    if not isinstance(player, str) or not player.strip():
        raise ExampleError("ai_seats.player", f"{player!r}: the AI seat names no player; the game backend must "
                                              "write the seat's player name")
    player = player.strip()
    outcome = _norm_outcome(row.get("seat_outcome"))
    if outcome != SURVIVED:
        raise ExampleError(
            "ai_seats.outcome",
            f"{row.get('seat_outcome')!r} (seat {player!r}) is not an outcome; the game backend must write "
            f"{SURVIVED!r} or {VOTED_OUT!r}",
        )
    log = row.get("chat_log") or []
    if not log:
        raise ExampleError("chat_log", "is empty: the game recorded no chat, so there is no conversation to learn from")
    turns: list[tuple[str, list[str]]] = []
    for i, line in enumerate(log):
        if not isinstance(line, Mapping):
            raise ExampleError(f"chat_log[{i}]", f"is {line!r}, not a {{speaker, text, sent_at}} line")
        speaker = line.get("speaker")
        if not isinstance(speaker, str) or not speaker.strip():
            raise ExampleError(f"chat_log[{i}].speaker", f"is {speaker!r}; every line needs the name of who wrote it")
        text = line.get("text")
        if not isinstance(text, str):
            raise ExampleError(f"chat_log[{i}].text", f"is {text!r} (speaker {speaker.strip()!r}); every line needs "
                                                      "its text (an empty string for an empty message)")
        if not text.strip():
            continue
        speaker = speaker.strip()
        role = "assistant" if speaker == player else "user"
        content = text.strip() if role == "assistant" else f"{speaker}: {text.strip()}"
        if turns and turns[-1][0] == role:
            turns[-1][1].append(content)
        else:
            turns.append((role, [content]))
    while turns and turns[0][0] == "assistant":
        turns.pop(0)
    while turns and turns[-1][0] == "user":
        turns.pop()
    if not turns:
        raise ExampleError(
            "chat_log", f"AI seat {player!r} never answered another player ({len(log)} lines): no assistant turn "
                        "to learn from"
        )
    persona = row.get("persona_prompt")
    persona = persona.strip() if isinstance(persona, str) and persona.strip() else default_persona
    messages = [{"role": "system", "content": persona}]
    messages += [{"role": role, "content": "\n".join(parts)} for role, parts in turns]
    meta = {
        "query": QUERY_NAME,
        "game_id": row.get("game_id"),
        "document_path": row.get("document_path"),
        "seat": player,
        "provider": row.get("seat_provider"),
        "model_id": row.get("seat_model_id"),
        "registry_version": row.get("seat_registry_version"),
        "ended_at": _iso(row.get("ended_at")),
    }
    created = row.get("ended_at") or row.get("ingested_at")
    return make_example(messages, source="live", created_at=created, meta=meta)
