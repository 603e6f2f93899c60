"""Packing isolation: an example packed with others computes exactly what it computes alone."""

from __future__ import annotations

import pytest
import torch

from tuneloop.providers.oss_lora import tiny
from tuneloop.providers.oss_lora.data import collate, encode_chat
from tuneloop.providers.oss_lora.trainer import causal_nll


@pytest.fixture(scope="module")
def packed_setup(tiny_tokenizer):
    model = tiny.build_llama(tiny_tokenizer, seed=3).eval()
    enc = [encode_chat(tiny_tokenizer, ex, 128) for ex in tiny.topic_examples(4, seed=11)]
    return model, enc, tiny_tokenizer.pad_token_id


def test_packed_logits_equal_logits_alone(packed_setup):
    model, enc, pad = packed_setup
    packed = collate(enc, [[0, 1, 2, 3]], pad)
    with torch.no_grad():
        logits_packed = model(**packed.model_inputs(), use_cache=False).logits[0]
        start = 0
        for k, e in enumerate(enc):
            alone = collate(enc, [[k]], pad)
            logits_alone = model(**alone.model_inputs(), use_cache=False).logits[0, : len(e)]
            torch.testing.assert_close(logits_packed[start : start + len(e)], logits_alone, atol=1e-5, rtol=1e-5)
            start += len(e)


def test_packed_loss_equals_loss_alone(packed_setup):
    model, enc, pad = packed_setup
    with torch.no_grad():
        nll_packed, w_packed = causal_nll(model, collate(enc, [[0, 1, 2, 3]], pad))
        alone = [causal_nll(model, collate(enc, [[k]], pad)) for k in range(len(enc))]
    torch.testing.assert_close(nll_packed, torch.cat([n for n, _ in alone]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w_packed, torch.cat([w for _, w in alone]))
    assert w_packed.numel() == sum(e.supervised for e in enc)


def test_without_the_block_mask_packed_examples_leak_into_each_other(packed_setup):
    """The control: plain causal attention over the same packed row changes the second example."""
    model, enc, pad = packed_setup
    packed = collate(enc, [[0, 1]], pad)
    n0, n1 = len(enc[0]), len(enc[1])
    with torch.no_grad():
        leaky = model(input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=True).logits[0]
        alone = model(**collate(enc, [[1]], pad).model_inputs(), use_cache=False).logits[0, :n1]
    assert (leaky[n0 : n0 + n1] - alone).abs().max() > 1e-3
