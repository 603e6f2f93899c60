"""The one JSON spelling of every line the formats write: compact, UTF-8 (not ``\\u`` escapes).

:func:`encode_line` serialises a row; :func:`encode_str` / :func:`encode_number` spell one value the
same way, so a format can build a line from its parts without building the row first
(``encode_line(row) == "".join(parts)`` is checked by the tests for every format).
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterator
from json.encoder import encode_basestring
from typing import Any

# Compact, UTF-8; C-accelerated.
LINE_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

#: ``str -> JSON string literal``, exactly as :func:`encode_line` spells strings (the C function).
encode_str = encode_basestring


def encode_number(value: Any) -> str:
    """A number as :func:`encode_line` spells it (``1``, ``0.5``, ``NaN``)."""
    return LINE_ENCODER.encode(value)


def _line_encoder():
    """``row -> compact JSON``, identical to ``LINE_ENCODER.encode``.

    ``JSONEncoder.encode`` builds a new C encoder on every call; building it once saves ~1-2 us per
    row. The C constructor is private, so it is used only if it reproduces the public encoder on a
    probe; otherwise the public one is used. Rows are built here and acyclic, so no circular check.
    """
    probe = {"a": [1, 2.5, None, True, False], "b": "é\n\"\\", "c": {"d": []}}
    try:
        from json.encoder import c_make_encoder

        def default(o: Any) -> Any:
            raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

        fast = c_make_encoder(None, default, encode_basestring, None, ":", ",", False, False, True)
        join = "".join

        def encode(row: Any) -> str:
            return join(fast(row, 0))

        if encode(probe) == LINE_ENCODER.encode(probe):
            return encode
    except Exception:  # pragma: no cover - another Python's private API
        pass
    return LINE_ENCODER.encode  # pragma: no cover


encode_line = _line_encoder()


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic rows, then restore it.

    Rendering 100k+ rows creates millions of small objects; each automatic collection would re-walk
    all of them (and every canonical example), which made bulk formatting several times slower. Rows
    hold no cycles, so nothing leaks while paused.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
