"""Chat template, assistant-only loss weights, packing and the packed attention mask (tokenizer only)."""

from __future__ import annotations

import random

import pytest
import torch

from tests.oss_lora_fixtures import supervised_text
from tuneloop.examples import make_example
from tuneloop.providers.oss_lora import OssLoraProvider, tiny
from tuneloop.providers.oss_lora.config import ConfigError, LoraConfig
from tuneloop.providers.oss_lora.data import (
    TemplateError,
    collate,
    encode_chat,
    encode_prompt,
    pack,
    real_token_fraction,
    rows_for,
)


def test_loss_only_on_assistant_turns_including_end_of_turn(tiny_tokenizer):
    ex = make_example([
        {"role": "system", "content": "answer in one word"},
        {"role": "user", "content": "topic of: the cat"},
        {"role": "assistant", "content": "animal"},
        {"role": "user", "content": "and the rain?"},
        {"role": "assistant", "content": "tool", "weight": 0},  # a wrong answer kept for context only
        {"role": "user", "content": "no, the rain"},
        {"role": "assistant", "content": "weather"},
    ])
    enc = encode_chat(tiny_tokenizer, ex, max_len=512)
    # Exactly the two weighted answers, each through its end-of-turn token; nothing else.
    assert supervised_text(tiny_tokenizer, enc) == ["animal<|im_end|>\n", "weather<|im_end|>\n"]
    eot = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    eot_weights = [w for i, w in zip(enc.input_ids, enc.weights, strict=True) if i == eot]
    assert eot_weights == [0, 0, 1, 0, 0, 0, 1]  # system, user, answer, user, weight-0 answer, user, answer


def test_example_weight_scales_the_loss_weights(tiny_tokenizer):
    msgs = [{"role": "user", "content": "topic of: the cat"}, {"role": "assistant", "content": "animal"}]
    plain = encode_chat(tiny_tokenizer, make_example(msgs), max_len=512)
    corrected = encode_chat(tiny_tokenizer, make_example(msgs, source="corrected"), max_len=512)
    assert plain.input_ids == corrected.input_ids
    assert {w for w in corrected.weights if w} == {2.0}
    assert [w > 0 for w in plain.weights] == [w > 0 for w in corrected.weights]


def test_prompt_is_the_conversation_up_to_the_generation_prompt(tiny_tokenizer):
    ex = tiny.topic_examples(1, seed=5)[0]
    prompt = tiny_tokenizer.decode(encode_prompt(tiny_tokenizer, ex))
    assert prompt.endswith("<|im_start|>assistant\n")
    assert ex.target not in prompt.split("<|im_start|>assistant")[-1]
    full = encode_chat(tiny_tokenizer, ex, 512)
    assert list(full.input_ids[: len(encode_prompt(tiny_tokenizer, ex))]) == encode_prompt(tiny_tokenizer, ex)


def test_truncation_is_reported(tiny_tokenizer):
    ex = tiny.topic_examples(1, seed=5)[0]
    enc = encode_chat(tiny_tokenizer, ex, max_len=16)
    assert enc.truncated and len(enc) == 16


def test_template_that_rewrites_history_is_refused(tiny_tokenizer):
    tok = tiny.build_tokenizer()
    # Renders only the last message: prefixes of the conversation are not prefixes of the whole.
    tok.chat_template = "{{ messages[-1]['content'] }}{% if add_generation_prompt %}>>{% endif %}"
    ex = make_example([{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"}])
    with pytest.raises(TemplateError, match=r"messages\[1\]"):
        encode_chat(tok, ex, 64)


def test_best_fit_packing_places_every_example_once_within_the_row():
    rng = random.Random(0)
    lengths = [rng.randint(5, 120) for _ in range(500)]
    rows = pack(lengths, 256)
    placed = sorted(i for row in rows for i in row)
    assert placed == list(range(500))
    assert all(sum(lengths[i] for i in row) <= 256 for row in rows)
    lower_bound = -(-sum(lengths) // 256)
    assert len(rows) <= lower_bound + 2
    with pytest.raises(ValueError, match="max_len"):
        pack([300], 256)


def test_packed_rows_are_almost_all_real_tokens(tiny_tokenizer):
    enc = [encode_chat(tiny_tokenizer, ex, 512) for ex in tiny.topic_examples(400, seed=1)]
    packed = rows_for(enc, 512, packing=True)
    unpacked = rows_for(enc, 512, packing=False)
    assert real_token_fraction(enc, packed, 8) >= 0.95
    assert len(packed) < len(unpacked) / 10


def test_collate_restarts_positions_and_isolates_examples(tiny_tokenizer):
    exs = tiny.topic_examples(3, seed=7)
    enc = [encode_chat(tiny_tokenizer, ex, 128) for ex in exs]
    batch = collate(enc, [[0, 1], [2]], pad_id=tiny_tokenizer.pad_token_id, mask=True)
    n0, n1, n2 = (len(e) for e in enc)
    assert batch.input_ids.shape[1] % 8 == 0 and batch.real_tokens == n0 + n1 + n2
    pos = batch.position_ids[0].tolist()
    assert pos[:n0] == list(range(n0)) and pos[n0 : n0 + n1] == list(range(n1))
    mask = batch.attention_mask[0, 0]
    assert not mask[n0 : n0 + n1, :n0].any()  # example 2 never sees example 1
    assert mask[n0 : n0 + n1, n0 : n0 + n1].equal(torch.ones(n1, n1, dtype=torch.bool).tril())  # itself, causally
    assert mask.sum(-1).min() >= 1  # no empty attention row (padding attends to itself)
    # no target predicted across the boundary: the first token of example 2 carries no weight
    assert batch.target_weights[0, n0 - 1] == 0


def test_config_names_the_bad_field_and_refuses_unknown_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'lerning_rate' \(did you mean 'learning_rate'\?\)"):
        OssLoraProvider.parse_config({"lerning_rate": 1e-4})
    with pytest.raises(ConfigError, match="rank: 0"):
        LoraConfig(rank=0)
    with pytest.raises(ConfigError, match="target_modules"):
        LoraConfig(target_modules=("attention", "q_proj"))
    cfg = OssLoraProvider.parse_config({"max_steps": 10.0, "merge": "true", "target_modules": "q_proj,v_proj",
                                           "alpha": 8})
    assert cfg.max_steps == 10 and cfg.merge is True and cfg.target_modules == ("q_proj", "v_proj")
    assert cfg.alpha == 8.0 and cfg.shape()["target_modules"] == ["q_proj", "v_proj"]
