"""Every hosted provider tunes and answers a chat task against its stand-in: multi-turn prompts with the
system prompt, reply text returned as it is (not parsed to a label), scored by chrF/ROUGE-L."""

from __future__ import annotations

import json

import pytest

from tests.fakes.chat_data import PERSONA, game_chats
from tests.fakes.fixtures import stand_in_hyperparameters
from tests.unit.hosted.conftest import FAST
from tuneloop import datasets, stages

THRESHOLDS = {"min_values": {"chrf": 0.3}, "max_drop": {"chrf": 0.05}}


@pytest.fixture(scope="module")
def chats(tmp_path_factory):
    out = tmp_path_factory.mktemp("chats") / "dataset"
    datasets.build_dataset(game_chats(120, "casual", seed=11), out, previous=None,
                           formats=["openai", "gemini", "bedrock"], min_examples=8, task="chat")
    return datasets.load_dataset(str(out))


@pytest.fixture(scope="module")
def ai_first(tmp_path_factory):
    """Conversations the AI seat opens, with two players' lines in a row: not alternating as they are."""
    out = tmp_path_factory.mktemp("ai-first") / "dataset"
    datasets.build_dataset(game_chats(120, "casual", seed=12, ai_first=True), out, previous=None, formats=["openai"],
                           min_examples=8, task="chat")
    return datasets.load_dataset(str(out))


def chat_loop(ds, tmp_path, provider: str, method: str = "bedrock"):
    base_model, hp = stand_in_hyperparameters(provider, method)
    work = tmp_path / "run"
    stages.tune(provider=provider, dataset_uri=ds.uri, base_model=base_model, hyperparameters={**FAST, **hp},
                model_dir=str(work / "model"), job_record_path=str(work / "job.json"), task="chat")
    return stages.evaluate(provider=provider, model_dir=str(work / "model"), dataset_uri=ds.uri,
                           registry_uri=str(tmp_path / "registry"), model_name="agent", thresholds=THRESHOLDS,
                           blessing_path=str(work / "blessing.json"), task="chat",
                           eval_options={"retry": {"attempts": 2, "initial_s": 0.0, "max_s": 0.01}})


def _check(record, ds):
    rows = ds.splits["eval"]
    assert record["task"] == "chat" and record["eval_rows"] == len(rows)
    # the stand-in "tuned models" answer with the reply of the closest training prompt: real reply text
    assert record["candidate_metrics"]["chrf"] > 0.3 and record["blessed"], record["reason"]
    assert record["spend"]["predict"]["candidate"]["failed"] == 0  # every prompt was accepted
    replies = [s["candidate"] for s in record["samples"]]
    assert all(r and not r.startswith("label") for r in replies)
    assert any(" " in r for r in replies)  # sentences, not labels


def test_openai_chat(openai_fake, chats, tmp_path):
    record = chat_loop(chats, tmp_path, "openai")
    _check(record, chats)
    [job] = openai_fake.jobs.values()
    rows = [json.loads(x) for x in openai_fake.file_data[job.body["training_file"]].decode().splitlines()]
    assert rows[0]["messages"][0] == {"role": "system", "content": PERSONA}
    assert sum(m["role"] == "assistant" for m in rows[0]["messages"]) >= 2 or len(rows[0]["messages"]) >= 3


def test_gemini_chat(vertex_fake, chats, tmp_path):
    _check(chat_loop(chats, tmp_path, "gemini"), chats)


def test_claude_bedrock_chat(bedrock_fake, chats, tmp_path):
    _check(chat_loop(chats, tmp_path, "claude", "bedrock"), chats)


def test_claude_few_shot_chat(anthropic_fake, chats, tmp_path):
    _check(chat_loop(chats, tmp_path, "claude", "few-shot"), chats)


def test_claude_few_shot_sends_alternating_turns_when_the_log_does_not(anthropic_fake, ai_first, tmp_path):
    """The Messages API stand-in refuses turns that do not alternate (400): none is refused."""
    _check(chat_loop(ai_first, tmp_path, "claude", "few-shot"), ai_first)
    assert not [e for e in anthropic_fake.http.log if e[3] >= 400]


def test_alternating_turns_merge_runs_and_open_with_the_user():
    from tuneloop.providers.hosted import OPENING_TURN, alternating

    turns = [{"role": "system", "content": "persona"}, {"role": "assistant", "content": "hey all"},
             {"role": "user", "content": "Kai: hi"}, {"role": "user", "content": "Maya: sus"},
             {"role": "assistant", "content": "lol no"}]
    assert alternating(turns) == [{"role": "user", "content": OPENING_TURN},
                                  {"role": "assistant", "content": "hey all"},
                                  {"role": "user", "content": "Kai: hi\n\nMaya: sus"},
                                  {"role": "assistant", "content": "lol no"}]
    already = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert alternating(already) == already
