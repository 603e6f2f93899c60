"""tuneloop.serving with oss-lora champions: class probabilities from a sequence-classification LoRA,
generated replies from a causal LM, and a running service following promotion and rollback."""

from __future__ import annotations

import dataclasses

import pytest

from tuneloop.providers.base import run_job
from tuneloop.providers.oss_lora import OssLoraProvider, tiny
from tuneloop.registry import FileRegistry
from tuneloop.serving import Champion

CLS_HP = {"task": "sequence-classification", "rank": 4, "alpha": 8, "learning_rate": 3e-3, "batch_size": 16,
          "max_steps": 6, "max_seq_len": 64, "eval_interval": 0, "checkpoint_interval": 0, "log_interval": 50}


def _train(tmp_path, name, base, data, make_request, labels_map=None, **hp):
    train = data.train[:96]
    if labels_map:
        train = [dataclasses.replace(e, label=labels_map[e.label]) for e in train]
    request = make_request(base, dataclasses.replace(data, train=train, validation=[]), tmp_path / name, **hp)
    if labels_map:
        request = dataclasses.replace(request, labels=sorted(set(labels_map.values())))
    provider = OssLoraProvider(output_dir=request.output_dir, log=lambda _: None)
    return run_job(provider, request, record_path=tmp_path / f"{name}.json", log=lambda _: None).model_ref


def _register(reg, model_dir):
    return reg.register(provider="oss-lora", model_ref=model_dir, model_dir=model_dir, metrics={"accuracy": 0.5},
                        data_hash="cd" * 32, example_ids=["x"], config={}, blessing={"blessed": True})


def test_a_classification_champion_gives_probabilities_and_follows_promotion_and_rollback(
        tiny_base, topic_data, make_request, tmp_path):
    v1 = _train(tmp_path, "v1", tiny_base, topic_data, make_request, **CLS_HP)
    # v2 answers in another label set (the taxonomy was renamed), so which version answered is plain.
    renamed = {t: t.upper() for t in tiny.TOPICS}
    v2 = _train(tmp_path, "v2", tiny_base, topic_data, make_request, labels_map=renamed, **CLS_HP)
    reg = FileRegistry(str(tmp_path / "registry"), "topics")
    _register(reg, v1)
    _register(reg, v2)
    reg.set_champion("v1", expected=None, reason="first")
    svc = Champion(reg.root, reg.model_name, check_interval_s=0, top_k=2)
    texts = [e.prompt_text for e in topic_data.eval[:5]]
    first = svc.predict(texts)
    assert svc.kind == "classifier" and all(p.version == "v1" and p.label in tiny.TOPICS for p in first)
    for p in first:
        assert len(p.top) == 2 and p.top[0] == (p.label, p.confidence) and p.top[0][1] >= p.top[1][1]
        assert 0.25 <= p.confidence <= 1.0  # the best of four classes has at least a quarter
    reg.set_champion("v2", expected="v1", reason="renamed taxonomy")
    second = svc.predict(texts)
    assert all(p.version == "v2" and p.label in renamed.values() for p in second)
    reg.rollback(reason="the app still speaks the old taxonomy")
    assert all(p.label in tiny.TOPICS for p in svc.predict(texts)) and svc.version == "v1"
    assert svc.loads == 3


def test_a_causal_lm_champion_chats_with_the_reply_the_evaluator_saw(tiny_base, topic_data, make_request, tmp_path):
    lm = _train(tmp_path, "lm", tiny_base, topic_data, make_request, rank=4, alpha=8, max_steps=4, batch_size=8,
                max_seq_len=128, eval_interval=0, checkpoint_interval=0, max_new_tokens=4, merge=False)
    reg = FileRegistry(str(tmp_path / "registry"), "topics-chat")
    _register(reg, lm)
    reg.set_champion("v1", expected=None, reason="first")
    svc = Champion(reg.root, reg.model_name)
    example = topic_data.eval[0]
    turns = [{"role": m.role, "content": m.content} for m in example.messages[:-1]]
    reply = svc.chat(turns)
    assert svc.kind == "chat" and isinstance(reply, str)
    assert reply == OssLoraProvider(log=lambda _: None).predict(reg.champion().model_uri, [example])[0]
    [p] = svc.predict([example.prompt_text])
    assert p.confidence is None and p.top == ()
    with pytest.raises(ValueError, match="no class probabilities"):
        OssLoraProvider(log=lambda _: None).predict_proba(lm, [example])
