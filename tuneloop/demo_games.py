"""Realistic finished games of the social-deduction chat game, for the demo and for tests.

Four to seven players chat; one or two seats are played by an AI model (provider, model id, registry
version), and at the end the humans vote: each AI seat either ``survived`` or was ``voted_out``. The
chats run through the phases real games have (hellos, small talk and "prove you're human" questions,
suspicions and defences, the vote call), with names, typos, lower-casing and emoji the way people type.
Like a real game backend's table it also holds:

- short games (fewer lines than ``ai_survived_games``' ``min_messages``): skipped by the query;
- malformed rows (:data:`MALFORMED_KINDS`) that the extract must quarantine with a reason: an empty
  chat log, an outcome that is no outcome (``won``, ``disconnected``, NULL), a line with a NULL text, a
  line without a speaker. They are written straight to the table, as a backend that bypasses the
  Firestore mapping (:func:`tuneloop.warehouse.games.game_from_document`) would.

:func:`generate_games` is a pure function of its arguments (``random.Random(seed)``, no clock);
:func:`load_demo_games` writes N of them into a DuckDB (or any) warehouse's game table.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tuneloop.warehouse.games import GAMES_TABLE, OUTCOME_SURVIVED, OUTCOME_VOTED_OUT

DEMO_START = dt.datetime(2026, 5, 4, 18, 0, tzinfo=dt.UTC)
GAME_GAP_S = (60, 600)  # seconds between two games ending
LINE_GAP_S = (3, 40)  # seconds between two chat lines
MALFORMED_KINDS = ("empty_chat", "unknown_outcome", "null_text", "missing_speaker")
SHORT_FRACTION = 0.08
MALFORMED_FRACTION = 0.08
SURVIVAL_RATE = 0.55
# What export-dataset / continuous-tuning take to read these games (the demo's game loop).
GAME_LOOP_PARAMS = {"table": GAMES_TABLE, "extract_query": "ai_survived_games", "query_params": {"min_messages": 6},
                    "task": "chat"}

NAMES = (
    "maya", "jordan", "priya", "tom", "lena", "sam", "alex", "noor", "diego", "kai", "zoe", "ben", "ivy",
    "omar", "ruth", "felix", "hana", "leo", "nia", "gus",
)
MODELS = (
    ("openai", "ft:gpt-4o-mini-2024-07-18:acme:impostor:a1", "v3"),
    ("openai", "ft:gpt-4o-mini-2024-07-18:acme:impostor:b2", "v4"),
    ("gemini", "projects/acme/locations/us-central1/endpoints/impostor-7", "v2"),
    ("claude", "claude-3-haiku-fewshot", None),
)
PERSONAS = (
    None,
    "You are Sam, a college student who plays this game between classes. Keep it short and lowercase.",
    "You play a friendly regular of this game. Joke around, ask the others questions, never admit being an AI.",
)
TOPICS = ("lunch", "the weather", "weekend plans", "music", "that new show", "homework", "coffee", "pets")

OPENERS = (
    "hi everyone", "hey all", "yo", "hello hello", "hiii", "evening folks", "sup", "ok who's ready",
    "hey, first game today", "hi :)",
)
SMALL_TALK = (
    "anyone else eating {topic} rn", "what's everyone up to this weekend", "ok quick, favourite {topic}?",
    "i can't stop thinking about {topic} tbh", "honestly {topic} has been wild lately",
    "{name} what did you have for lunch", "real question: cats or dogs", "how's everyone's day going",
)
QUESTIONS = (
    "{name} what's 2 days before tuesday", "{name} describe your room in 3 words",
    "{name} say something only a human would say", "{name} what's the last thing you ate",
    "{name} why so quiet", "ok {name}, what's your favourite colour and why",
    "{name} type the word banana backwards", "{name} what time is it where you are",
)
ANSWERS = (
    "sunday obviously", "messy, cold, loud", "my cat just knocked over my water lol", "cereal. at 4pm. don't judge",
    "i'm just typing slow, relax", "green, reminds me of my grandma's garden", "ananab. happy?",
    "like 9pm, why does that matter", "uhh pizza from yesterday", "i was getting a snack ok",
)
SUSPICIONS = (
    "{name} is typing way too fast", "idk {name} feels off to me", "{name}'s answers are too perfect",
    "sus of {name} ngl", "{name} hasn't made a single typo", "why did {name} dodge the question",
    "{name} literally sounds like a chatbot", "not gonna lie {name} is giving AI vibes",
)
DEFENCES = (
    "bro i'm literally at work", "lol no, i just type fast", "that's exactly what an AI would say about me",
    "i made like 3 typos already", "ok fair but look at {name}", "why would i be the bot, {name} is way quieter",
    "i'm human i promise, my dog is barking at me rn", "wow ok, trust issues",
)
VOTE_CALLS = (
    "ok time to vote", "voting {name}", "i'm going with {name}", "final answer {name}", "{name}, sorry not sorry",
    "we have like 30 seconds, vote", "gut says {name}",
)
REACTIONS = ("lol", "haha", "true", "wait what", "hmm", "fair", "ok ok", "😂", "no way", "same", "+1")


def _typo(text: str, rng: random.Random) -> str:
    if len(text) < 6 or rng.random() > 0.15:
        return text
    i = rng.randrange(1, len(text) - 1)
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]


def _say(template: str, rng: random.Random, others: Sequence[str]) -> tuple[str, str]:
    """The line and the player it names."""
    name = rng.choice(others)
    text = template.format(name=name, topic=rng.choice(TOPICS))
    if rng.random() < 0.2:
        text = text.capitalize()
    return _typo(text, rng), name


def _chat(players: Sequence[str], n_lines: int, rng: random.Random, ai: Sequence[str] = ()) -> list[tuple[str, str]]:
    """``n_lines`` (speaker, text) pairs through the phases of a game: whoever is asked usually answers; the
    AI seats talk a little more than most (an AI that stays silent is voted out)."""
    lines: list[tuple[str, str]] = []
    last = addressed = None
    while len(lines) < n_lines:
        i = len(lines)
        answering = addressed is not None and addressed != last and rng.random() < 0.75
        pool_players = [p for p in players if p != last] or list(players)
        weights = [2.0 if p in ai else 1.0 for p in pool_players]
        speaker = addressed if answering else rng.choices(pool_players, weights)[0]
        others = [p for p in players if p != speaker]
        phase = i / max(n_lines - 1, 1)
        if i < min(3, n_lines - 1):
            pool = OPENERS
        elif answering:
            pool = ANSWERS + DEFENCES
        elif phase < 0.35:
            pool = SMALL_TALK + QUESTIONS
        elif phase < 0.8:
            pool = SUSPICIONS + DEFENCES + QUESTIONS + REACTIONS
        else:
            pool = VOTE_CALLS + REACTIONS
        template = rng.choice(pool)
        text, named = _say(template, rng, others)
        lines.append((speaker, text))
        addressed = named if template in QUESTIONS or template in SUSPICIONS else None
        if rng.random() < 0.12 and len(lines) < n_lines:  # the same player sends a second line right away
            lines.append((speaker, _say(rng.choice(REACTIONS + ANSWERS), rng, others)[0]))
        last = speaker
    return lines


def generate_games(n: int, *, seed: int = 0, start: dt.datetime = DEMO_START,
                   malformed_fraction: float = MALFORMED_FRACTION, short_fraction: float = SHORT_FRACTION
                   ) -> list[dict[str, Any]]:
    """``n`` game rows (columns of :data:`tuneloop.warehouse.games.GAME_COLUMNS`, without ``ingested_at``).

    A pure function of its arguments. Game ``i`` of seed ``s`` has document path
    ``game_results/demo-s<s>-<i>``; games end ``GAME_GAP_S`` apart from ``start`` on.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n={n!r} must be an integer >= 0")
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    ended = start
    broken = 0
    for i in range(n):
        ended += dt.timedelta(seconds=rng.randint(*GAME_GAP_S))
        players = rng.sample(NAMES, rng.randint(4, 7))
        n_ai = 2 if rng.random() < 0.3 else 1
        ai_players = rng.sample(players, n_ai)
        seats = []
        for p in ai_players:
            provider, model_id, version = rng.choice(MODELS)
            outcome = OUTCOME_SURVIVED if rng.random() < SURVIVAL_RATE else OUTCOME_VOTED_OUT
            seats.append({"player": p, "provider": provider, "model_id": model_id, "registry_version": version,
                          "outcome": outcome})
        short = rng.random() < short_fraction
        n_lines = rng.randint(2, 5) if short else rng.randint(8, 26)
        pairs = _chat(players, n_lines, rng, ai_players)
        at = ended - dt.timedelta(seconds=sum(rng.randint(*LINE_GAP_S) for _ in pairs))
        chat = []
        for speaker, text in pairs:
            at += dt.timedelta(seconds=rng.randint(*LINE_GAP_S))
            chat.append({"speaker": speaker, "text": text, "sent_at": min(at, ended)})
        row = {
            "document_path": f"game_results/demo-s{seed}-{i:05d}",
            "game_id": f"demo-s{seed}-{i:05d}",
            "ended_at": ended,
            "players": list(players),
            "ai_seats": seats,
            "chat_log": chat,
            "persona_prompt": rng.choice(PERSONAS),
        }
        if not short and rng.random() < malformed_fraction:
            _break(row, MALFORMED_KINDS[broken % len(MALFORMED_KINDS)], rng)  # every kind, in turn
            broken += 1
        rows.append(row)
    return rows


def _break(row: dict[str, Any], kind: str, rng: random.Random) -> None:
    """Make ``row`` malformed in the way ``kind`` names; its AI seats survive, so the query reads it."""
    for seat in row["ai_seats"]:
        seat["outcome"] = OUTCOME_SURVIVED
    row["malformed"] = kind
    if kind == "empty_chat":
        row["chat_log"] = []
    elif kind == "unknown_outcome":
        for seat in row["ai_seats"]:
            seat["outcome"] = rng.choice(("won", "disconnected", None))
    else:
        line = row["chat_log"][rng.randrange(len(row["chat_log"]))]
        if kind == "null_text":
            line["text"] = None
        else:
            line["speaker"] = rng.choice((None, ""))


def describe_games(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts: games, AI seats, survived / voted out, malformed by kind, short games."""
    seats = [s for r in rows for s in r["ai_seats"]]
    return {
        "games": len(rows),
        "ai_seats": len(seats),
        "survived": sum(s["outcome"] == OUTCOME_SURVIVED for s in seats),
        "voted_out": sum(s["outcome"] == OUTCOME_VOTED_OUT for s in seats),
        "malformed": dict(sorted(Counter(r["malformed"] for r in rows if r.get("malformed")).items())),
        "short": sum(0 < len(r["chat_log"]) < 6 for r in rows),
    }


def load_demo_games(warehouse: Any, n: int, *, seed: int = 0, table: str = GAMES_TABLE,
                    start: dt.datetime | None = None, ingested_at: dt.datetime | None = None) -> dict[str, Any]:
    """Write ``n`` generated games into ``table`` (created with its dead-letter table if missing).

    Args:
        warehouse: A warehouse URI (``duckdb:///path.duckdb``; opened and closed here) or an open warehouse.
        n: How many games.
        seed: The games are a pure function of the seed (and ``start``); use another seed for new games.
        start: When the first game ends (default: ``n`` games back from now, so the games are recent).
        ingested_at: When the rows landed (default: now), the watermark column.

    Returns:
        :func:`describe_games` of what was written, plus ``table``.
    """
    from tuneloop.warehouse import games, open_warehouse

    now = dt.datetime.now(dt.UTC)
    if start is None:
        start = now - dt.timedelta(seconds=GAME_GAP_S[1] * (n + 1))
    rows = generate_games(n, seed=seed, start=start)
    records = [{**{k: v for k, v in r.items() if k != "malformed"}, "ingested_at": ingested_at or now} for r in rows]
    wh = open_warehouse(warehouse) if isinstance(warehouse, str) else warehouse
    try:
        games.ensure_tables(wh, table, f"{table}_dead_letter")
        if records:
            wh.insert_records(table, records, row_ids=[games.row_id_of(r["document_path"]) for r in records])
    finally:
        if isinstance(warehouse, str):
            wh.close()
    return {**describe_games(rows), "table": table}
