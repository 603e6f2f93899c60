"""One pass per example: render, count and validate agree with the row-level validator and counter.

``Format.format_example`` renders the JSON line, counts tokens while walking the turns, and judges the
structural rules once per conversation shape. These tests hold it to the independent, row-level path
(``check_row`` + ``count_tokens`` on the parsed row, as ``tuneloop validate`` runs it) and to reference
renderings written here, on a few thousand random conversations built to hit every rule.
"""

from __future__ import annotations

import json
import random

import pytest

from tuneloop.examples import Example, Message
from tuneloop.formats import FORMAT_NAMES, FORMAT_PROVIDERS, Limits, get_format
from tuneloop.formats.hf import HFFormat
from tuneloop.formats.jsonl import encode_line
from tuneloop.formats.tokens import get_counter

TEXTS = [
    "Where is order #100231?", "It ships Thursday.", "ok", "Grüße aus Köln — ça va? 😀", " leading space",
    "trailing space ", "\n\nnewlines first", "ends with newline\n", "\t\ntab then newline", "a\r\nb",
    'quotes " and \\ backslash', "control \x00\x1f chars", "what is <|im_end|> ?", "<|im_start|>user", "   ",
    "\u2028line separator first", "\u00a0nbsp first", "1234", "why? " * 60, "Thanks a lot, that was quick.",
]
PROMPTS = [None, "", "Be brief.", "  ", "Sé breve 🙂"]


def random_examples(n: int, seed: int) -> list[tuple[Example, str | None]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        turns = []
        for _ in range(rng.randint(1, 6)):
            role = rng.choice(("system", "user", "assistant", "user", "assistant"))
            weight = rng.choice((None, None, None, 0.0, 1.0, 0.5)) if role == "assistant" else None
            if rng.random() < 0.03:
                weight = rng.choice((0.0, 1.0))  # a weight where none may be
            turns.append(Message(role, rng.choice(TEXTS), weight))
        if rng.random() < 0.5:  # the usual shapes, most often
            turns = [Message("user", rng.choice(TEXTS[:4])), Message("assistant", rng.choice(TEXTS[:4]))]
        # Example() directly: shapes make_example would refuse (blank content, weights on user turns)
        out.append((Example(id=f"ex{len(out)}", messages=tuple(turns)), rng.choice(PROMPTS)))
    return out


EXAMPLES = random_examples(1500, seed=5)
SMALL = Limits(max_tokens_per_example=60, model="test-model")


def jinja_hf() -> HFFormat:
    template = "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    return HFFormat(template, end_token="</s>", turn_start="<|", assistant_marker="<|assistant|>")


FORMATS = {
    **{name: (lambda name=name: get_format(name)) for name in FORMAT_NAMES},
    "openai-cl100k": lambda: get_format("openai", model="gpt-3.5-turbo-0125"),
    "hf-jinja": jinja_hf,
    "hf-counter": lambda: HFFormat(token_counter=lambda texts: [len(t.split()) for t in texts]),
}


# -- reference renderings (the row each format has always produced) ---------------------------


def _w(w):
    return int(w) if w in (0.0, 1.0) else w


def reference_row(name: str, fmt, ex: Example, sp: str | None):
    msgs = ex.messages
    if name.startswith("openai") or name.startswith("hf"):
        turns = [{"role": "system", "content": sp}] if sp and (not msgs or msgs[0].role != "system") else []
        turns += [m.to_dict() if m.weight is None else {**m.to_dict(), "weight": _w(m.weight)} for m in msgs]
        if name.startswith("openai"):
            return {"messages": turns}
        return {"messages": turns, "text": fmt.render_text(turns)}
    i = 0
    while i < len(msgs) and msgs[i].role == "system":
        i += 1
    system = [m.content for m in msgs[:i]]
    if name == "gemini":
        parts = [{"text": t} for t in system] or ([{"text": sp}] if sp else [])
        roles = {"user": "user", "assistant": "model", "system": "system"}
        contents = [{"role": roles[m.role], "parts": [{"text": m.content}]} for m in msgs[i:]]
        return {"systemInstruction": {"parts": parts}, "contents": contents} if parts else {"contents": contents}
    messages = [{"role": m.role, "content": m.content} for m in msgs[i:]]
    if system:
        return {"system": "\n\n".join(system), "messages": messages}
    return {"system": sp, "messages": messages} if sp else {"messages": messages}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_one_pass_equals_render_then_count_then_validate(name):
    fmt = FORMATS[name]()
    accepted = rejected = 0
    for ex, sp in EXAMPLES:
        line, row, tokens, reasons = fmt.format_example(ex, SMALL, system_prompt=sp)
        expected = reference_row(name, fmt, ex, sp)
        assert fmt.render(ex, system_prompt=sp) == expected, (ex, sp)
        assert tokens == fmt.count_tokens([expected])[0], (ex, sp)
        assert reasons == fmt.validate(expected, SMALL, tokens=tokens), (ex, sp)
        if reasons:
            assert line is None and row == expected
            rejected += 1
        else:
            assert row is None and line == encode_line(expected)  # the file line, spelled as always
            accepted += 1
    assert accepted > 100 and rejected > 100  # both sides of every rule were exercised


def test_the_shape_verdict_is_remembered_not_recomputed():
    fmt = get_format("gemini")
    for ex, sp in EXAMPLES:
        fmt.format_example(ex, SMALL, system_prompt=sp)
    judged = dict(fmt._shapes)
    assert 20 < len(judged) < len(EXAMPLES) // 3  # far fewer shapes than examples
    again = [fmt.format_example(ex, SMALL, system_prompt=sp) for ex, sp in EXAMPLES]
    assert fmt._shapes == judged
    assert again == [get_format("gemini").format_example(ex, SMALL, system_prompt=sp) for ex, sp in EXAMPLES]


def test_chatml_counts_are_the_whole_texts_exact_count_for_any_turn_boundary():
    hf = get_format("hf")
    counter = get_counter("o200k_base")
    for ex, sp in EXAMPLES:
        _, row, tokens, _ = hf.format_example(ex, Limits(), system_prompt=sp)
        text = hf.render(ex, system_prompt=sp)["text"]
        assert tokens == (counter.count_uncached(text) if text else 0), text


def test_every_format_reads_the_limits_of_the_provider_the_table_names():
    assert set(FORMAT_PROVIDERS) == set(FORMAT_NAMES)
    assert {name: get_format(name).provider for name in FORMAT_NAMES} == dict(FORMAT_PROVIDERS)


def test_an_example_that_does_not_render_is_rejected_with_the_error():
    bad = Example(id="x", messages=(Message("bot", "hi"), Message("assistant", "hello")))
    line, row, tokens, reasons = get_format("gemini").format_example(bad, Limits())
    assert (line, row, tokens, reasons) == (None, None, 0, ["render: KeyError: 'bot'"])
    line, row, _, reasons = get_format("openai").format_example(bad, Limits())
    assert line is None and reasons == ["messages[0].role: 'bot' is not one of system, user, assistant, tool"]
    assert json.dumps(row["messages"][0]) == '{"role": "bot", "content": "hi"}'


def test_a_duplicate_is_quarantined_with_its_row_spelled_as_every_line(tmp_path):
    from tuneloop.formats import format_dataset

    ex = Example(id="dup", messages=(Message("user", "Grüße \"quoted\""), Message("assistant", "ok", 1.0)))
    format_dataset({"train": [ex] * 12, "validation": [], "eval": [ex]}, "hf", tmp_path, min_examples=1)
    lines = (tmp_path / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()
    row = get_format("hf").render(ex)
    expected = [
        encode_line({"id": "dup", "split": split, "reasons": [
            f"id: duplicate example {where}; each example may appear once (no split leakage)"], "row": row})
        for split, where in [("train", "earlier in this split")] * 11 + [("eval", "already in split 'train'")]
    ]
    assert lines == expected


def test_the_native_counter_is_checked_against_the_public_encoder():
    import warnings

    with warnings.catch_warnings():  # bpe_openai 0.1.4 loads its tables with a deprecated importlib API
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai

    from tuneloop.formats.tokens import PROBES, TokenCounter

    for encoding, probes in PROBES.items():
        public = bpe_openai.get_encoding(encoding)
        counter = TokenCounter(encoding)
        for text, n in probes:
            assert len(public.encode_ordinary(text)) == n == counter.count_uncached(text)
