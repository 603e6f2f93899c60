"""Provider formats: render round-trips, every validator rule on real files, token counts."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TESTDATA
from tuneloop.examples import make_example
from tuneloop.formats import (
    FORMAT_NAMES,
    Limits,
    format_for_provider,
    get_format,
    reason_kind,
    validate_file,
)
from tuneloop.formats.hf import HFFormat

DATA = TESTDATA / "formats"
LIMIT = 100  # token limit used with the bad files (their "too long" row has ~200 tokens)
SMALL = Limits(max_tokens_per_example=LIMIT, model="test-model")


def chat(*turns, weights=None):
    roles = {"s": "system", "u": "user", "a": "assistant"}
    msgs = []
    for i, t in enumerate(turns):
        role, content = t.split(":", 1)
        m = {"role": roles[role], "content": content}
        if weights and i in weights:
            m["weight"] = weights[i]
        msgs.append(m)
    return make_example(msgs)


SUPPORT = chat(
    "s:You are Nova, Brightline's support bot.",
    "u:Where is order #100231?",
    "a:Which email is it under?",
    "u:jo@example.com",
    "a:It shipped with UPS and arrives Thursday.",
    weights={2: 0, 4: 1},
)


# -- registry ----------------------------------------------------------------------------


def test_format_names_and_provider_mapping():
    assert FORMAT_NAMES == ("openai", "gemini", "bedrock", "hf")
    assert [get_format(n).name for n in FORMAT_NAMES] == list(FORMAT_NAMES)
    assert {p: format_for_provider(p) for p in ("openai", "gemini", "claude", "oss-lora", "sklearn")} == {
        "openai": "openai", "gemini": "gemini", "claude": "bedrock", "oss-lora": "hf", "sklearn": None,
    }


def test_unknown_names_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="'jsonl' is not one of openai, gemini, bedrock, hf"):
        get_format("jsonl")
    with pytest.raises(ValueError, match="'anthropic' is not one of openai, gemini, claude"):
        format_for_provider("anthropic")


# -- render round-trips ---------------------------------------------------------------------


def test_openai_render_round_trips_turns_and_weights():
    row = get_format("openai").render(SUPPORT)
    assert list(row) == ["messages"]
    assert row["messages"] == [m.to_dict() for m in SUPPORT.messages]
    assert row["messages"][2]["weight"] == 0 and isinstance(row["messages"][2]["weight"], int)
    assert get_format("openai").validate(row, SMALL) == []
    # the canonical record can be rebuilt from the row: same content hash
    assert make_example(row["messages"]).id == SUPPORT.id


def test_gemini_render_maps_system_and_roles():
    row = get_format("gemini").render(SUPPORT)
    assert row["systemInstruction"] == {"parts": [{"text": "You are Nova, Brightline's support bot."}]}
    assert [(c["role"], c["parts"][0]["text"]) for c in row["contents"]] == [
        ("user", "Where is order #100231?"),
        ("model", "Which email is it under?"),
        ("user", "jo@example.com"),
        ("model", "It shipped with UPS and arrives Thursday."),
    ]
    assert get_format("gemini").validate(row, SMALL) == []


def test_bedrock_render_maps_system_and_drops_nothing_but_weights():
    row = get_format("bedrock").render(SUPPORT)
    assert row["system"] == "You are Nova, Brightline's support bot."
    assert row["messages"] == [{"role": m.role, "content": m.content} for m in SUPPORT.messages[1:]]
    assert get_format("bedrock").validate(row, SMALL) == []


def test_hf_render_is_chatml_ending_with_the_assistant_and_end_token():
    ex = chat("u:hi", "a:Hello!")
    row = get_format("hf").render(ex, system_prompt="Be brief.")
    assert row["text"] == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
    )
    assert row["messages"][0] == {"role": "system", "content": "Be brief."}
    assert get_format("hf").validate(row, SMALL) == []


def test_hf_custom_jinja_template_needs_and_checks_its_end_token():
    template = (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    )
    with pytest.raises(ValueError, match="end_token is required"):
        HFFormat(template)
    fmt = HFFormat(template, end_token="</s>", turn_start="<|", assistant_marker="<|assistant|>")
    row = fmt.render(chat("u:hi", "a:Hello!"))
    assert row["text"] == "<|user|>\nhi</s>\n<|assistant|>\nHello!</s>\n"
    assert fmt.validate(row, SMALL) == []
    assert any("does not end with the end token '</s>'" in r for r in fmt.validate({"text": "<|user|>\nhi\n"}, SMALL))


def test_system_prompt_applies_only_when_the_example_has_none():
    with_system = get_format("openai").render(SUPPORT, system_prompt="OTHER")
    assert with_system["messages"][0]["content"] == "You are Nova, Brightline's support bot."
    without = get_format("bedrock").render(chat("u:hi", "a:Hello!"), system_prompt="Be brief.")
    assert without["system"] == "Be brief."


def test_system_turn_mid_conversation_is_rejected_not_dropped():
    ex = chat("u:hi", "a:Hello!", "s:Now answer in French.", "u:merci", "a:De rien !")
    for name in ("gemini", "bedrock"):
        fmt = get_format(name)
        row = fmt.render(ex)
        reasons = fmt.validate(row, SMALL)
        assert any("'system' is not one of" in r for r in reasons), (name, reasons)
        assert "Now answer in French." in json.dumps(row)  # kept in the row, for the quarantine file


# -- every rule, from the bad files -------------------------------------------------------------

BAD = {
    "openai": [
        (1, "row: expected a JSON object with 'messages', got list"),
        (2, "messages: missing"),
        (2, "conversation: unknown key"),
        (3, "messages: must be a non-empty list of turns, got list (empty)"),
        (4, "metadata: unknown key"),
        (5, "messages[1].emotion: unknown key"),
        (6, "messages[0].role: 'bot' is not one of system, user, assistant, tool"),
        (7, "messages[0].role: missing"),
        (8, "messages[1].content: is empty"),
        (9, "messages[0].content: is empty"),
        (10, "messages[0].content: must be a string, got int"),
        (11, "messages[0].content: missing"),
        (12, "messages: no assistant turn"),
        (13, "messages[0].weight: only assistant turns may carry a weight"),
        (14, "messages[1].weight: 0.5 must be 0 or 1"),
        (15, "messages: every assistant turn has weight 0"),
        (16, "messages[1].tool_call_id: missing"),
        (17, "tokens: 217 exceed the 100-token example limit of test-model"),
        (18, "line: invalid JSON: Unterminated string starting at column 43; fix or remove the line"),
        (19, "messages[1].weight: True must be 0 or 1"),
    ],
    "gemini": [
        (1, "messages: unknown key"),
        (1, "contents: missing"),
        (2, "contents: must be a non-empty list of turns, got list (empty)"),
        (3, "contents[1].role: 'assistant' is not one of user, model"),
        (4, "contents[0].role: 'model'; the conversation must start with a user turn"),
        (5, "contents[1].role: 'user' follows another 'user' turn"),
        (6, "contents[2].role: 'user'; the last turn must be the model's answer"),
        (7, "contents[1].parts[0].text: is empty"),
        (8, "contents[1].parts: missing"),
        (9, "contents[1].parts[0].txt: unknown key"),
        (10, "systemInstruction.lang: unknown key"),
        (10, "systemInstruction.parts: must be a non-empty list of parts, got list (empty)"),
        (11, "contents[1].role: 'system' is not one of user, model; Gemini takes system text only"),
        (12, "contents[1].text: unknown key"),
        (13, "tokens (estimated): "),
        (14, "contents[0].role: missing"),
    ],
    "bedrock": [
        (1, "id: unknown key"),
        (2, "messages: has 1 turn(s); at least 2"),
        (2, "messages[0].role: 'user'; the last turn must be the assistant's answer"),
        (3, "messages[0].role: 'assistant'; the first turn must be the user's"),
        (4, "messages[1].role: 'user' follows another 'user' turn"),
        (5, "messages[2].role: 'user'; the last turn must be the assistant's answer"),
        (6, "messages[0].role: 'system' is not one of user, assistant; Bedrock takes system text only"),
        (7, "messages[1].content: is empty"),
        (8, "messages[1].content: must be a string, got list"),
        (9, "system: is empty"),
        (10, "messages[1].weight: unknown key"),
        (11, "messages: missing"),
        (12, "tokens (estimated): "),
    ],
    "hf": [
        (1, "text: missing"),
        (2, "text: does not end with the end token '<|im_end|>'"),
        (3, "text: the last turn is not the assistant's"),
        (4, "label: unknown key"),
        (5, "messages[2].role: 'user'; the last turn must be the assistant's"),
        (6, "messages[1].content: contains the template control token '<|im_end|>'"),
        (7, "text: is empty"),
        (8, "messages[0].weight: only assistant turns may carry a weight"),
        (9, "tokens (estimated): "),
    ],
}


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_good_file_passes_every_rule(name):
    report = validate_file(DATA / f"{name}_good.jsonl", name, limits=SMALL)
    assert report.problems == () and report.file_errors == (), report.summary()
    assert report.ok and report.rows_ok == report.rows_total > 0
    assert report.tokens_total > 0 and 0 < report.tokens_max <= LIMIT


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_bad_file_rejects_each_row_with_its_reason(name):
    report = validate_file(DATA / f"{name}_bad.jsonl", name, limits=SMALL, split="validation")
    by_line = {p.line: p.reasons for p in report.problems}
    expected_lines = {line for line, _ in BAD[name]}
    assert set(by_line) == expected_lines, report.summary()  # every row rejected, nothing else
    assert report.rows_ok == 0 and not report.ok
    for line, fragment in BAD[name]:
        assert any(fragment in r for r in by_line[line]), (line, fragment, by_line[line])


def test_validate_file_reports_broken_json_by_line_and_keeps_going(tmp_path):
    good = (DATA / "openai_good.jsonl").read_text().splitlines()
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([good[0], '{"messages": [', "", good[1], "not json at all", good[2]]) + "\n")
    report = validate_file(path, "openai")
    assert [(p.line, p.reasons) for p in report.problems] == [
        (2, ("line: invalid JSON: Expecting value at column 15; fix or remove the line",)),
        (5, ("line: invalid JSON: Expecting value at column 1; fix or remove the line",)),
    ]
    assert report.rows_total == 5 and report.rows_ok == 3  # the blank line 3 is skipped, numbering kept
    assert report.file_errors == ("train: 3 rows, fewer than the 10 required for gpt-4.1-mini-2025-04-14",)
    assert "line 2: line: invalid JSON" in report.summary() and report.summary().endswith("FAILED")


def test_validate_file_applies_the_catalog_minimum_and_prices_the_file():
    report = validate_file(DATA / "bedrock_good.jsonl", "bedrock")  # default: Claude 3 Haiku, min 32
    assert report.ok and report.rows_ok == 32 and report.model == "anthropic.claude-3-haiku-20240307-v1:0"
    assert report.epochs == 2 and report.estimated_cost_usd == pytest.approx(4.0 * report.tokens_total * 2 / 1e6)
    assert not report.tokens_exact


def test_reason_kinds_group_rows_with_the_same_problem():
    assert reason_kind("messages[2].role: 'bot' is not one of a, b") == reason_kind(
        "messages[7].role: 'robot' is not one of a, b"
    )


# -- tokens --------------------------------------------------------------------------------------


def encoding(name):
    """The public bpe_openai encoder, for counting by hand (the formatter's own path is separate)."""
    import warnings

    with warnings.catch_warnings():  # bpe_openai 0.1.4 loads its tables with a deprecated importlib API
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai

    return bpe_openai.get_encoding(name)


def hand_count(name, messages):
    enc = encoding(name)
    return 3 + sum(3 + len(enc.encode(m["role"])) + len(enc.encode(m["content"])) for m in messages)


def test_openai_token_count_is_exact_for_the_models_encoding():
    rows = [json.loads(line) for line in (DATA / "openai_good.jsonl").read_text().splitlines()]
    fmt = get_format("openai")
    assert fmt.tokens_exact
    assert fmt.count_tokens(rows) == [hand_count("o200k_base", r["messages"]) for r in rows]
    old = get_format("openai", model="gpt-3.5-turbo-0125")
    assert old.encoding == "cl100k_base"
    assert old.count_tokens(rows) == [hand_count("cl100k_base", r["messages"]) for r in rows]
    assert old.count_tokens(rows) != fmt.count_tokens(rows)


def test_special_token_text_in_content_counts_as_plain_text():
    msg = {"role": "user", "content": "what does <|endoftext|> mean?"}
    enc = encoding("o200k_base")
    expected = 3 + 3 + len(enc.encode("user")) + len(enc.encode_ordinary(msg["content"]))
    assert get_format("openai").count_tokens([{"messages": [msg]}]) == [expected]


def test_token_counts_never_raise_on_malformed_rows():
    rows = [None, [], {"messages": "x"}, {"contents": [1, {"parts": "x"}]}, {"text": 5}, {}]
    for name in FORMAT_NAMES:
        counts = get_format(name).count_tokens(rows)
        assert len(counts) == len(rows) and counts[:3] == [0, 0, 0] and counts[-1] == 0, (name, counts)


def test_hf_token_counter_hook_makes_counts_exact():
    fmt = HFFormat(token_counter=lambda texts: [len(t.split()) for t in texts])
    row = fmt.render(chat("u:one two", "a:three"))
    assert fmt.tokens_exact and fmt.count_tokens([row]) == [len(row["text"].split())]


WEIRD = [None, 0, 1.5, True, "", " ", "x", [], [1], {}, {"a": 1}, [{"text": 1}]]


def _mutations(value):
    """Every copy of a JSON value with one slot (or the whole value) replaced by a weird value."""
    yield from WEIRD
    if isinstance(value, dict):
        for k, v in value.items():
            for sub in _mutations(v):
                yield {**value, k: sub}
    elif isinstance(value, list):
        for i, v in enumerate(value):
            for sub in _mutations(v):
                yield value[:i] + [sub] + value[i + 1:]


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_validators_never_raise_on_any_json_shape(name):
    fmt = get_format(name)
    row = fmt.render(SUPPORT)
    rows = list(_mutations(row))
    tokens = fmt.count_tokens(rows)
    results = [fmt.validate(r, SMALL, tokens=t) for r, t in zip(rows, tokens, strict=True)]
    assert all(isinstance(r, list) and all(isinstance(x, str) and ": " in x for x in r) for r in results)
    assert sum(1 for r in results if r) > len(rows) // 2  # most single-slot corruptions are caught


def test_hf_counts_a_turn_at_a_time_exactly_as_the_whole_text():
    import itertools

    from tuneloop.formats.tokens import get_counter

    hf = get_format("hf")
    counter = get_counter("o200k_base")
    contents = ["hello", " leading space", "\n\nnewlines\n", "trailing ", "1234", "émoji 🎉", "a\r\nb", "x" * 300]
    rows = [
        hf.render(make_example([{"role": "user", "content": a}, {"role": "assistant", "content": b}]))
        for a, b in itertools.product(contents, repeat=2)
    ]
    edited = {**rows[0], "text": rows[0]["text"] + "extra words after the end"}  # text no longer = messages
    rows += [edited, {"text": rows[1]["text"]}, {"messages": rows[2]["messages"]}, "not a row"]
    counter.clear_cache()
    expected = [counter.count_uncached(r["text"]) if isinstance(r, dict) and "text" in r else 0 for r in rows]
    assert hf.count_tokens(rows) == expected
    assert hf.count_tokens(rows) == expected  # and again, from the turn cache
