"""Packing isolation: an example packed with others computes exactly what it computes alone."""

from __future__ import annotations

import copy

import pytest
import torch

from tuneloop.providers.oss_lora import tiny
from tuneloop.providers.oss_lora.attention import register as register_varlen
from tuneloop.providers.oss_lora.data import collate, encode_chat
from tuneloop.providers.oss_lora.trainer import causal_nll


@pytest.fixture(scope="module")
def packed_setup(tiny_tokenizer):
    model = tiny.build_llama(tiny_tokenizer, seed=3).eval()
    # different lengths, so the per-example attention uses more than one length bucket
    exs = [*tiny.topic_examples(3, seed=11), tiny.topic_examples(1, seed=12, prefix="x " * 20)[0]]
    enc = [encode_chat(tiny_tokenizer, ex, 128) for ex in exs]
    return model, enc, tiny_tokenizer.pad_token_id


def attention_for(model, mode: str):
    """The model set up for a packed-isolation mode: per-example attention, or SDPA with the 4D mask."""
    model.set_attn_implementation(register_varlen() if mode == "varlen" else "sdpa")
    return model


def logits_alone(model, enc, pad, k, mode):
    alone = collate(enc, [[k]], pad, mask=mode == "mask")
    return model(**alone.model_inputs(), use_cache=False).logits[0, : len(enc[k])]


@pytest.mark.parametrize("mode", ["varlen", "mask"])
def test_packed_logits_equal_logits_alone(packed_setup, mode):
    model, enc, pad = packed_setup
    attention_for(model, mode)
    packed = collate(enc, [[0, 1], [2, 3]], pad, mask=mode == "mask")
    assert len({len(e) for e in enc}) > 1 and len(packed.segments.gathers) > 1
    with torch.no_grad():
        logits = model(**packed.model_inputs(), use_cache=False).logits
        for r, row in enumerate([[0, 1], [2, 3]]):
            start = 0
            for k in row:
                n = len(enc[k])
                torch.testing.assert_close(logits[r, start : start + n], logits_alone(model, enc, pad, k, mode),
                                           atol=1e-5, rtol=1e-5)
                start += n


@pytest.mark.parametrize("mode", ["varlen", "mask"])
def test_packed_loss_equals_loss_alone(packed_setup, mode):
    model, enc, pad = packed_setup
    attention_for(model, mode)
    with torch.no_grad():
        nll_packed, w_packed = causal_nll(model, collate(enc, [[0, 1, 2, 3]], pad, mask=mode == "mask"))
        alone = [causal_nll(model, collate(enc, [[k]], pad, mask=mode == "mask")) for k in range(len(enc))]
    torch.testing.assert_close(nll_packed, torch.cat([n for n, _ in alone]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w_packed, torch.cat([w for _, w in alone]))
    assert w_packed.numel() == sum(e.supervised for e in enc)


def test_without_the_block_mask_packed_examples_leak_into_each_other(packed_setup):
    """The control: plain causal attention over the same packed row changes the second example."""
    model, enc, pad = packed_setup
    attention_for(model, "mask")
    packed = collate(enc, [[0, 1]], pad)
    n0, n1 = len(enc[0]), len(enc[1])
    with torch.no_grad():
        leaky = model(input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=True).logits[0]
        alone = logits_alone(model, enc, pad, 1, "mask")
    assert (leaky[n0 : n0 + n1] - alone).abs().max() > 1e-3


@pytest.mark.parametrize("window", [None, 5])
def test_cpu_low_precision_attention_path_matches_sdpa(window):
    """The explicit softmax(QK^T)V used for bf16 on CPU computes what SDPA computes (checked in fp32)."""
    import torch.nn.functional as F

    from tuneloop.providers.oss_lora.attention import _explicit_causal

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 12, 8, generator=g) for _ in range(3))
    mask = torch.ones(12, 12, dtype=torch.bool).tril()
    if window:
        mask &= torch.ones(12, 12, dtype=torch.bool).triu(-(window - 1))
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(_explicit_causal(q, k, v, 8**-0.5, window), expected, atol=1e-5, rtol=1e-5)


def test_bf16_packed_loss_matches_loss_alone(packed_setup):
    model, enc, pad = packed_setup
    model = attention_for(copy.deepcopy(model).to(torch.bfloat16), "varlen")
    with torch.no_grad():
        nll_packed, _ = causal_nll(model, collate(enc, [[0, 1, 2, 3]], pad))
        alone = torch.cat([causal_nll(model, collate(enc, [[k]], pad))[0] for k in range(len(enc))])
    torch.testing.assert_close(nll_packed, alone, atol=2e-2, rtol=2e-2)
