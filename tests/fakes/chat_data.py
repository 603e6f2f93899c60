"""Tiny game conversations for the chat tests, built with tuneloop.examples (no labels: chat examples).

Each conversation is a system persona, other players' lines as user turns (``Name: text``) and the AI
seat's lines as assistant turns; the target is the last assistant turn. The same prompts exist in two
styles of AI reply: ``casual`` (how the human players write: lower case, "lol", "ngl") and ``robotic``
(stiff, complete sentences). A stand-in judge that prefers the casual markers (:func:`prefer_casual`)
then has a deterministic preference that follows the data a model was tuned on.
"""

from __future__ import annotations

import random
import re

from tuneloop.examples import Example, make_example

PERSONA = "You are Sam, a player in Impostor. Chat like the other players; never say you are an AI."
PLAYERS = ["Maya", "Kai", "Ravi", "Lena", "Omar", "Zoe", "Theo", "Ines"]
PLACES = ["reactor", "kitchen", "library", "garage", "garden", "attic", "cellar", "balcony", "harbour", "chapel"]
CASUAL = ["lol i was in the {place} with {friend} the whole time", "nah not me, {friend} saw me at the {place}",
          "ngl the {place} was empty when i got there", "idk {friend} was acting weird near the {place} tbh",
          "haha no i was fixing stuff in the {place}"]
ROBOTIC = ["I was located in the {place} together with {friend} for the entire round.",
           "I am not the impostor. {friend} observed me in the {place}.",
           "The {place} was unoccupied when I arrived there.",
           "I believe that {friend} behaved suspiciously near the {place}.",
           "I was performing my assigned tasks in the {place}."]
MARKERS = ("lol", "nah", "ngl", "idk", "tbh", "haha")
_WORD = re.compile(r"[a-z]+")


def game_chats(n: int, style: str = "casual", seed: int = 0, *, ai_first: bool = False) -> list[Example]:
    """``n`` conversations (2-3 exchanges each) whose AI replies are in ``style`` (casual or robotic).

    ``ai_first``: the AI seat speaks first and two players then speak in a row (turns that do not
    alternate, as a game log gives them before its lines are merged).
    """
    templates = {"casual": CASUAL, "robotic": ROBOTIC}[style]
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        place, friend = PLACES[i % len(PLACES)], PLAYERS[(i // len(PLACES)) % len(PLAYERS)]
        asker = PLAYERS[(i + 3) % len(PLAYERS)]
        msgs = [{"role": "system", "content": PERSONA}]
        if ai_first:
            msgs += [{"role": "assistant", "content": "hey all"}, {"role": "user", "content": f"{friend}: hi sam"}]
        msgs.append({"role": "user", "content": f"{asker}: ok who was near the {place} in round {i}?"})
        for turn in range(rng.randint(1, 2)):
            msgs.append({"role": "assistant", "content": rng.choice(templates).format(place=place, friend=friend)})
            msgs.append({"role": "user", "content": f"{PLAYERS[(i + turn) % len(PLAYERS)]}: sam where were you, "
                                                    f"the {place} thing is sus #{i}"})
        msgs.append({"role": "assistant", "content": templates[i % len(templates)].format(place=place, friend=friend)})
        rows.append(make_example(msgs, created_at=f"2026-11-{1 + i % 28:02d}T12:00:00Z"))
    return rows


def casualness(text: str) -> int:
    """How much a reply reads like the human players: their slang words, and no capital letters."""
    words = _WORD.findall(text.lower())
    return sum(w in MARKERS for w in words) + (text == text.lower())


def prefer_casual(conversation: str, reply_a: str, reply_b: str) -> str:  # noqa: ARG001
    """A judge with a deterministic preference: the more casual reply, TIE when equal."""
    a, b = casualness(reply_a), casualness(reply_b)
    return "A" if a > b else "B" if b > a else "TIE"


def always_first(conversation: str, reply_a: str, reply_b: str) -> str:  # noqa: ARG001
    """A position-biased judge: reply A, whatever it says."""
    return "A"


def rambling(conversation: str, reply_a: str, reply_b: str) -> str:  # noqa: ARG001
    """A judge that never answers in the asked format."""
    return "Both replies have merits; it depends on the player."


def judge_parts(text: str) -> dict[str, str]:
    """What a judge request shows, read from its tagged blocks: ``{conversation, reply_a, reply_b}``."""
    out = {}
    for name in ("conversation", "reply_a", "reply_b"):
        m = re.search(rf"<{name}>\n?(.*?)\n?</{name}>", text, re.DOTALL)
        out[name] = m.group(1) if m else ""
    return out
