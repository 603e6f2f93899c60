"""Tiny labelled support messages (five intents) for the hosted-provider tests."""

from __future__ import annotations

import random

from tuneloop.examples import Example, classification_example

KEYWORDS = {
    "billing": ["invoice", "charged twice", "payment failed", "refund my card", "billing statement", "overcharged"],
    "shipping": ["parcel", "tracking number", "delivery late", "package lost", "courier", "arrived damaged"],
    "account": ["password reset", "login", "username", "two factor", "locked out", "email change"],
    "technical": ["app crashes", "error code", "bug", "page not loading", "sync fails", "screen freezes"],
    "cancellation": ["cancel subscription", "close my account", "stop renewal", "unsubscribe", "end my plan"],
}
FILLER = ["hi", "hello", "please help", "urgent", "thanks", "my", "the", "again", "today", "can you", "why is"]
LABELS = sorted(KEYWORDS)


def support_messages(n: int, seed: int = 0) -> list[Example]:
    """``n`` short messages: three filler words + one intent phrase, labelled with the intent."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        words = [*rng.sample(FILLER, 3), rng.choice(KEYWORDS[label]), f"#{i}"]
        rng.shuffle(words)
        rows.append(classification_example(" ".join(words), label))
    return rows
