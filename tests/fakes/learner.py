"""What a stand-in "tuned model" knows: nearest training prompt by word overlap -> its answer.

A fake tuning job reads the training file it was given and builds a :class:`Memory`; the fake's
prediction endpoint answers with it. That makes a candidate's accuracy depend on the data really
uploaded (an empty or wrong file gives a useless model), without any ML in the tests.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


class Memory:
    """(prompt, answer) pairs; :meth:`answer` returns the answer of the most similar prompt.

    Similarity is the summed inverse document frequency of the shared words, so rare, telling
    words ("invoice") outweigh filler ("please help").
    """

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()):
        self.pairs = [(words(p), a) for p, a in pairs if a]
        df = Counter(w for ws, _ in self.pairs for w in ws)
        n = len(self.pairs) or 1
        self.idf = {w: math.log(n / c) for w, c in df.items()}

    def __len__(self) -> int:
        return len(self.pairs)

    def answer(self, prompt: str, default: str = "I don't know") -> str:
        q = words(prompt)
        best, best_score = default, 0.0
        for w, a in self.pairs:
            score = sum(self.idf.get(x, 0.0) for x in q & w)
            if score > best_score:
                best, best_score = a, score
        return best


# Answers a misbehaving model gives: none of them names exactly one label.
MALFORMED = ("", "I am not sure, it could be anything.", "{\"label\": ", "¯\\_(ツ)_/¯ maybe both")


def last(role: str, messages: list[dict], key: str = "content") -> str:
    """The text of the last turn with ``role`` in an OpenAI/Anthropic-style message list."""
    for m in reversed(messages):
        if m.get("role") == role:
            content = m.get(key)
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content or ""
    return ""
