"""Chat tasks: multi-turn conversations with a system turn, tuned on every assistant turn, answered with
just the reply (cut at the end of turn), the same in a batch as alone."""

from __future__ import annotations

import dataclasses
import re

import pytest

from tests.oss_lora_fixtures import supervised_text
from tuneloop.examples import dataset_hash, make_example
from tuneloop.providers.base import TuneRequest, run_job
from tuneloop.providers.oss_lora import OssLoraProvider, tiny
from tuneloop.providers.oss_lora import checkpoint as ckpt
from tuneloop.providers.oss_lora.config import CHAT_NEW_TOKENS, LABEL_NEW_TOKENS
from tuneloop.providers.oss_lora.data import encode_chat, encode_prompt, end_of_turn_ids
from tuneloop.providers.oss_lora.predict import generate, load_predictor

# Measured on the tiny base: 40 steps on all linear layers take held-out exact match from 0 to ~0.97.
CHAT_HP = {"rank": 8, "alpha": 16, "learning_rate": 6e-3, "batch_size": 8, "max_steps": 40, "max_seq_len": 256,
           "target_modules": "all-linear", "eval_interval": 20, "checkpoint_interval": 0, "log_interval": 10}


def test_every_assistant_turn_of_a_multi_turn_chat_is_trained_and_nothing_else(tiny_tokenizer):
    ex = tiny.chat_examples(1, seed=4, exchanges=(3, 3))[0]
    roles = [m.role for m in ex.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    enc = encode_chat(tiny_tokenizer, ex, max_len=512)
    replies = [m.content for m in ex.messages if m.role == "assistant"]
    assert supervised_text(tiny_tokenizer, enc) == [r + "<|im_end|>\n" for r in replies]
    text = tiny_tokenizer.decode(enc.input_ids)
    assert text.startswith("<|bos|><|im_start|>system\n" + tiny.CHAT_SYSTEM)  # the system turn is context
    assert not enc.truncated and enc.dropped_turns == 0


def test_a_conversation_too_long_keeps_its_system_turn_and_latest_turns(tiny_tokenizer):
    ex = tiny.chat_examples(1, seed=5, exchanges=(8, 8))[0]
    full = encode_chat(tiny_tokenizer, ex, max_len=4096)
    enc = encode_chat(tiny_tokenizer, ex, max_len=len(full) // 2)
    assert len(enc) <= len(full) // 2 and enc.truncated and enc.dropped_turns >= 2
    text = tiny_tokenizer.decode(enc.input_ids)
    assert text.startswith("<|bos|><|im_start|>system\n" + tiny.CHAT_SYSTEM + "<|im_end|>\n<|im_start|>user\n")
    kept = supervised_text(tiny_tokenizer, enc)
    assert kept[-1] == ex.messages[-1].content + "<|im_end|>\n"  # the reply it ends on is still learned
    assert len(kept) < 8
    # the prompt for generation is windowed the same way and still ends with the generation prompt
    budget = len(encode_prompt(tiny_tokenizer, ex)) // 2
    prompt = encode_prompt(tiny_tokenizer, ex, max_len=budget)
    shown = tiny_tokenizer.decode(prompt)
    assert len(prompt) <= budget and shown.endswith(ex.messages[-2].content + "<|im_end|>\n<|im_start|>assistant\n")
    assert tiny.CHAT_SYSTEM in shown
    # a single turn longer than the budget: its last tokens, generation prompt included
    huge = make_example([{"role": "user", "content": "the cat sat. " * 200}, {"role": "assistant", "content": "ok"}])
    assert tiny_tokenizer.decode(encode_prompt(tiny_tokenizer, huge, max_len=40)).endswith("<|im_start|>assistant\n")


def test_the_end_of_turn_token_comes_from_the_template_not_eos(tiny_tokenizer):
    assert end_of_turn_ids(tiny_tokenizer) == [tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")]
    tok = tiny.build_tokenizer()  # a Llama 3 style template: turns end in <|eot_id|>, eos is another token
    tok.add_special_tokens({"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    tok.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    )
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    assert end_of_turn_ids(tok) == [eot] and eot != tok.eos_token_id


# Tuning the chat model takes ~35 s on 2 shared cores: the tests that use it are marked slow.
@pytest.fixture(scope="module")
def chat_run(tiny_base, tmp_path_factory):
    """An oss-lora model tuned through the provider on multi-turn chats (no labels)."""
    out = tmp_path_factory.mktemp("chat")
    train, validation = tiny.chat_examples(240, seed=1), tiny.chat_examples(16, seed=2)
    request = TuneRequest(train=train, validation=validation, dataset_hash=dataset_hash([*train, *validation]),
                          base_model=tiny_base, hyperparameters=CHAT_HP, output_dir=str(out / "runs"))
    provider = OssLoraProvider(output_dir=request.output_dir, log=lambda _: None)
    result = run_job(provider, request, record_path=out / "job.json", log=lambda _: None)
    return provider, result


@pytest.mark.slow
def test_a_tuned_chat_model_answers_with_the_reply_text_only(chat_run, tiny_base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    provider, result = chat_run
    held_out = tiny.chat_examples(40, seed=3)
    replies = provider.predict(result.model_ref, held_out)
    references = [ex.target for ex in held_out]
    base = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    before = generate(base, AutoTokenizer.from_pretrained(tiny_base), held_out, max_new_tokens=16)
    match_before = sum(a == r for a, r in zip(before, references, strict=True)) / len(held_out)
    match_after = sum(a == r for a, r in zip(replies, references, strict=True)) / len(held_out)
    assert match_before == 0 and match_after >= 0.8, f"exact match {match_before:.0%} -> {match_after:.0%}"
    # just the reply: no template tokens, no role header, nothing of the prompt
    for reply, ex in zip(replies, held_out, strict=True):
        assert re.fullmatch(r"that is an? [a-z]+\.", reply), reply
        assert not any(t in reply for t in ("<|im_start|>", "<|im_end|>", "<|bos|>", "assistant", "\n"))
        assert all(m.content not in reply for m in ex.messages if m.role != "assistant")


@pytest.mark.slow
def test_chat_models_get_a_reply_length_and_label_models_a_short_one(chat_run, trained):
    _, result = chat_run
    manifest = ckpt.read_manifest(result.model_ref)
    assert manifest["answers"] == "replies" and manifest["config"]["max_new_tokens"] == 0
    assert load_predictor(result.model_ref).max_new_tokens == CHAT_NEW_TOKENS
    assert ckpt.read_manifest(trained.result.model_ref)["answers"] == "labels"
    assert load_predictor(trained.result.model_ref).max_new_tokens == LABEL_NEW_TOKENS


@pytest.mark.slow
def test_a_batch_of_prompts_of_different_lengths_answers_as_each_prompt_alone(chat_run, tiny_base):
    _, result = chat_run
    convs = tiny.chat_examples(12, seed=6, exchanges=(1, 5))
    predictor = load_predictor(result.model_ref)
    lengths = {len(encode_prompt(predictor.tokenizer, ex)) for ex in convs}
    assert len(lengths) >= 6  # left padding is exercised: most prompts differ in length
    batched = dataclasses.replace(predictor, batch_size=12).predict(convs)
    alone = dataclasses.replace(predictor, batch_size=1).predict(convs)
    assert batched == alone and all(batched)
    # long free generations from the base (every generated position depends on the padding being right)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, tok = AutoModelForCausalLM.from_pretrained(tiny_base).eval(), AutoTokenizer.from_pretrained(tiny_base)
    free_batched = generate(base, tok, convs, max_new_tokens=24, batch_size=12)
    free_alone = generate(base, tok, convs, max_new_tokens=24, batch_size=1)
    assert free_batched == free_alone and len(set(free_batched)) > 1


@pytest.mark.slow
def test_a_conversation_longer_than_the_tuned_rows_keeps_its_latest_turns_at_predict(chat_run):
    _, result = chat_run
    predictor = load_predictor(result.model_ref)
    positions = predictor.model.config.max_position_embeddings
    # prompts are windowed to the rows the model was tuned on, as long training conversations were
    assert predictor.max_prompt_len == CHAT_HP["max_seq_len"] < positions - CHAT_NEW_TOKENS
    # a long opening exchange (a wall of chat) pushes each prompt past the model's position limit
    wall = {"role": "user", "content": "ann: " + "the cat sat on the mat. " * 200}
    long = [make_example([ex.messages[0], wall, {"role": "assistant", "content": "that is an animal."},
                          *ex.messages[1:]]) for ex in tiny.chat_examples(10, seed=7, exchanges=(2, 2))]
    assert all(len(encode_prompt(predictor.tokenizer, ex)) > positions for ex in long)
    replies = predictor.predict(long)
    assert all(re.fullmatch(r"that is an? [a-z]+\.", r) for r in replies), replies
    # the window kept the system turn and the latest exchanges: the reply answers the latest user turn
    match = sum(r == ex.target for r, ex in zip(replies, long, strict=True)) / len(long)
    assert match >= 0.7, f"exact match {match:.0%} on conversations longer than the model's context"
