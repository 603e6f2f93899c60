"""Offline token counting: exact for OpenAI encodings (o200k_base, cl100k_base), estimates elsewhere.

Counts come from ``bpe-openai`` (a Rust BPE with OpenAI's published merge tables), so no network
and no hub download. :class:`TokenCounter` counts ordinary text (special-token strings such as
``<|endoftext|>`` inside user content are counted as plain text, the way the API treats content),
batch-first, with a small cache so repeated strings (system prompts, canned replies) are counted once.

Gemini, Claude and local models have no offline tokenizer here: their counts are *estimates*
(the o200k_base count of the same text) and are always reported with ``exact=False``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path

ENCODINGS = ("o200k_base", "cl100k_base")
DEFAULT_ENCODING = "o200k_base"

# OpenAI's documented chat framing (cookbook "How to count tokens with tiktoken", also used by
# the fine-tuning data-prep cookbook): every message costs 3 tokens plus the tokens of each of its
# values (role, content, name), a name costs 1 more, and 3 tokens prime the assistant's reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_REPLY_PRIMING = 3

CACHE_LIMIT = 1 << 16  # cached strings per counter
# Texts and their token counts in each encoding (the public bpe_openai encoder's, checked by the tests).
PROBES = {
    "o200k_base": (("Order #48213 hasn't arrived.\n  Can you help? ünïcödé 😀 <|endoftext|>", 24),
                   ("<|im_start|>assistant\nShipped Thursday.<|im_end|>\n", 17)),
    "cl100k_base": (("Order #48213 hasn't arrived.\n  Can you help? ünïcödé 😀 <|endoftext|>", 27),
                    ("<|im_start|>assistant\nShipped Thursday.<|im_end|>\n", 17)),
}
MEMO_LIMIT = 1 << 14  # rendered turns remembered per renderer (see TokenCounter.memo)


def _public_counter(encoding: str) -> Callable[[str], int]:
    import warnings

    with warnings.catch_warnings():  # bpe_openai 0.1.4 loads its tables with a deprecated importlib API
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai

        enc = bpe_openai.get_encoding(encoding)

    def count(text: str) -> int:
        return len(enc.encode_ordinary(text))

    return count


@functools.lru_cache(maxsize=1)
def _bindings():
    """bpe_openai's compiled backend, loaded on its own when possible.

    Importing the ``bpe_openai`` package builds every encoding's merge table in Python (about 1.5 s
    per process); the compiled module counts without them. Falls back to the package import.
    """
    import importlib.machinery
    import importlib.util

    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or spec.origin is None:  # pragma: no cover - not installed
        return None
    folder = Path(spec.origin).parent
    for path in sorted(folder.glob("_bindings*.so")) + sorted(folder.glob("_bindings*.pyd")):
        try:
            loader = importlib.machinery.ExtensionFileLoader("bpe_openai._bindings", str(path))
            module = importlib.util.module_from_spec(
                importlib.util.spec_from_file_location("bpe_openai._bindings", str(path), loader=loader)
            )
            loader.exec_module(module)
            return module
        except (ImportError, OSError):  # pragma: no cover - another build
            continue
    try:  # pragma: no cover - a wheel laid out differently
        from bpe_openai import _bindings
    except ImportError:  # pragma: no cover
        return None
    return _bindings


def _native_counter(encoding: str) -> Callable[[str], int] | None:
    """The Rust tokenizer's own ``count`` (no token list built); None if this build lacks it.

    It raises UnicodeEncodeError on lone surrogates; callers fall back to :func:`_sanitize`.
    """
    module = _bindings()
    if module is None:  # pragma: no cover - depends on the installed wheel
        return None
    return getattr(module.tokenizer_for_encoding(encoding), "count", None)


def _sanitize(text: str) -> str:
    """Replace lone surrogates the way bpe_openai's encoder does before counting."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class TokenCounter:
    """Exact token counts for one OpenAI encoding.

    Args:
        encoding: ``o200k_base`` (gpt-4o, gpt-4.1, o-series) or ``cl100k_base`` (gpt-3.5, gpt-4).

    Attributes:
        encoding: the encoding name.
        exact: always True (the counts are the encoding's, not an estimate).
    """

    exact = True

    def __init__(self, encoding: str = DEFAULT_ENCODING):
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding={encoding!r} is not one of {', '.join(ENCODINGS)}")
        self.encoding = encoding
        native = _native_counter(encoding)
        # Use the native count only if it gives the encoding's known counts (else the public encoder).
        if native is None or any(native(text) != n for text, n in PROBES[encoding]):  # pragma: no cover
            native = _public_counter(encoding)
        self.native: Callable[[str], int] = native
        self.cache: dict[str, int] = {}
        self._memos: dict[str, dict] = {}

    def count_uncached(self, text: str) -> int:
        """Tokens in ``text``, without the cache (the hot loops inline the cache themselves)."""
        try:
            return self.native(text)
        except UnicodeEncodeError:  # lone surrogates: count the replacement text, as encode does
            return self.native(_sanitize(text))

    def count(self, text: str) -> int:
        """Tokens in ``text`` (ordinary text; special-token strings count as plain text)."""
        n = self.cache.get(text)
        if n is None:
            n = self.count_uncached(text)
            self.remember(text, n)
        return n

    def remember(self, text: str, n: int) -> None:
        """Cache a count (the cache is emptied when it reaches its size limit)."""
        cache = self.cache
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[text] = n

    def count_many(self, texts: Iterable[str]) -> list[int]:
        """Token counts for many texts, in order."""
        get = self.cache.get
        native = self.native
        remember = self.remember
        out = []
        append = out.append
        for text in texts:
            n = get(text)
            if n is None:
                try:
                    n = native(text)
                except UnicodeEncodeError:
                    n = native(_sanitize(text))
                remember(text, n)
            append(n)
        return out

    def memo(self, name: str) -> dict:
        """A renderer's memo of distinct turns, e.g. ``(role, content) -> (its JSON, its tokens, ...)``.

        Formats render, count and check each distinct turn once (system prompts and stock replies
        repeat across a dataset). The renderer keeps it under :data:`MEMO_LIMIT` entries; it lives
        here so that :meth:`clear_cache` forgets it with the counts.
        """
        memo = self._memos.get(name)
        if memo is None:
            memo = self._memos[name] = {}
        return memo

    def clear_cache(self) -> None:
        """Forget cached counts and rendered turns (benchmarks call this between runs)."""
        self.cache.clear()
        for memo in self._memos.values():
            memo.clear()


@functools.lru_cache(maxsize=len(ENCODINGS))
def get_counter(encoding: str = DEFAULT_ENCODING) -> TokenCounter:
    """A shared :class:`TokenCounter` per encoding (loading the merge table takes ~0.1 s)."""
    return TokenCounter(encoding)


def estimate_tokens(text: str) -> int:
    """A rough token estimate for models without an offline tokenizer: the o200k_base count."""
    return get_counter(DEFAULT_ENCODING).count(text)
