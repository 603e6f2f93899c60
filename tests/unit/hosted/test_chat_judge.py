"""stages.evaluate with task=chat against the OpenAI stand-in: candidate, champion and judge all speak HTTP.

The "tuned models" are stand-in models that answer from a memory of game conversations in one style
(casual or robotic); the judge is a stand-in model with a deterministic preference (the more casual
reply), a position bias (always reply A), or no usable answer at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.chat_data import always_first, game_chats, prefer_casual, rambling
from tests.fakes.learner import last
from tuneloop import datasets, stages
from tuneloop.registry import FileRegistry

FAST_PREDICT = {"concurrency": 4, "retry": {"attempts": 2, "initial_s": 0.0, "max_s": 0.01}}
JUDGE = "judge-human-likeness"
MODEL = "impostor-agent"


@pytest.fixture(scope="module")
def chat_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("chat") / "dataset"
    datasets.build_dataset(game_chats(200, "casual", seed=3), out, previous=None, formats=["openai"], min_examples=8,
                           task="chat")
    return datasets.load_dataset(str(out))


def _pairs(style: str):
    return [(last("user", [m.to_dict() for m in e.messages]), e.target) for e in game_chats(200, style, seed=5)]


def _candidate(tmp_path: Path, model_ref: str) -> str:
    model_dir = tmp_path / "candidate"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / stages.RESULT_CARD).write_text(json.dumps({"model_ref": model_ref, "provider": "openai"}))
    return str(model_dir)


def _champion(tmp_path: Path, model_ref: str, ds, task: str = "chat") -> None:
    reg = FileRegistry(str(tmp_path / "registry"), MODEL)
    rec = reg.register(provider="openai", model_ref=model_ref, model_dir=None, metrics={}, data_hash=ds.hash,
                       example_ids=[], config={"task": task}, blessing=None)
    reg.set_champion(rec.version, expected=None, reason="test champion")


def _evaluate(tmp_path, ds, model_dir, *, judge=f"openai:{JUDGE}", thresholds=None, **kw):
    return stages.evaluate(
        provider="openai", model_dir=model_dir, dataset_uri=ds.uri, registry_uri=str(tmp_path / "registry"),
        model_name=MODEL, thresholds=thresholds or {"min_values": {}, "max_drop": {"win_rate": 0.05}},
        blessing_path=str(tmp_path / "blessing.json"), eval_options=FAST_PREDICT, task="chat", judge=judge,
        report_path=str(tmp_path / "report.html"), **kw,
    )


def test_a_better_candidate_is_blessed_and_a_worse_one_is_not(openai_fake, chat_dataset, tmp_path):
    casual = openai_fake.add_model("ft:gpt-4.1-mini:casual", _pairs("casual"))
    robotic = openai_fake.add_model("ft:gpt-4.1-mini:robotic", _pairs("robotic"))
    openai_fake.add_judge(JUDGE, prefer_casual)
    n = len(chat_dataset.splits["eval"])
    assert n >= 10

    _champion(tmp_path / "better", robotic, chat_dataset)
    better = _evaluate(tmp_path / "better", chat_dataset, _candidate(tmp_path / "better", casual))
    j = better["judge"]
    assert (j["win"], j["loss"], j["tie"], j["inconsistent"], j["malformed"]) == (n, 0, 0, 0, 0)
    assert j["win_rate"] == 1.0 and j["lower_bound"] > j["bar"] == pytest.approx(0.45)
    assert better["blessed"] is True and "judged by openai:judge-human-likeness" in better["reason"]
    # the judge saw every row twice, in both orders, each time with the conversation
    assert len(openai_fake.judged) == 2 * n and all("sam where were you" in s["conversation"] or "round" in
                                                    s["conversation"] for s in openai_fake.judged)

    _champion(tmp_path / "worse", casual, chat_dataset)
    worse = _evaluate(tmp_path / "worse", chat_dataset, _candidate(tmp_path / "worse", robotic))
    assert (worse["judge"]["loss"], worse["judge"]["win"]) == (n, 0) and worse["judge"]["lower_bound"] == 0.0
    assert worse["blessed"] is False and "0.000 < 0.5 - 0.050 = 0.450" in worse["reason"]
    # the reference metrics follow the data too: the casual model is closer to the casual references
    assert better["candidate_metrics"]["chrf"] > better["champion_metrics"]["chrf"]
    assert worse["candidate_metrics"]["rouge_l"] < worse["champion_metrics"]["rouge_l"]


def test_the_blessing_carries_what_the_report_reads(openai_fake, chat_dataset, tmp_path):
    casual = openai_fake.add_model("ft:casual", _pairs("casual"))
    robotic = openai_fake.add_model("ft:robotic", _pairs("robotic"))
    openai_fake.add_judge(JUDGE, prefer_casual)
    _champion(tmp_path, robotic, chat_dataset)
    _evaluate(tmp_path, chat_dataset, _candidate(tmp_path, casual), judge_rubric="Which reply sounds more human?")
    record = json.loads((tmp_path / "blessing.json").read_text())
    assert record["task"] == "chat" and record["champion_version"] == "v1"
    assert {"chrf", "rouge_l", "n", "win_rate"} <= set(record["candidate_metrics"])
    assert {"chrf", "rouge_l", "n"} <= set(record["champion_metrics"])
    rows = record["per_row"]
    assert len(rows) == record["eval_rows"] == len(chat_dataset.splits["eval"])
    assert set(rows[0]) == {"id", "candidate", "champion"} and set(rows[0]["candidate"]) == {"chrf", "rouge_l"}
    mean = sum(r["candidate"]["chrf"] for r in rows) / len(rows)
    assert record["candidate_metrics"]["chrf"] == pytest.approx(mean)
    assert record["judge"]["rubric"] == "Which reply sounds more human?"
    assert len(record["samples"]) == min(20, len(rows))
    s = record["samples"][0]
    assert set(s) == {"id", "prompt", "reference", "candidate", "champion", "verdicts", "outcome"}
    assert s["prompt"][0] == {"role": "system", "content": game_chats(1)[0].messages[0].content}
    assert s["verdicts"] == {"candidate_first": "A", "champion_first": "B"} and s["outcome"] == "win"
    assert record["spend"]["predict"]["judge"]["requests"] == 2 * len(rows)
    html = (tmp_path / "report.html").read_text()
    assert "Judge (chat)" in html and "Side-by-side samples" in html and "Reference metrics (chat)" in html


def test_a_position_biased_judge_yields_inconsistent_rows_not_wins(openai_fake, chat_dataset, tmp_path):
    casual = openai_fake.add_model("ft:casual", _pairs("casual"))
    robotic = openai_fake.add_model("ft:robotic", _pairs("robotic"))
    openai_fake.add_judge(JUDGE, always_first)
    _champion(tmp_path, robotic, chat_dataset)
    r = _evaluate(tmp_path, chat_dataset, _candidate(tmp_path, casual))
    n = len(chat_dataset.splits["eval"])
    assert r["judge"]["inconsistent"] == n and r["judge"]["win"] == 0 and r["judge"]["win_rate"] is None
    assert r["blessed"] is False and f"{n} inconsistent" in r["reason"]


def test_malformed_judge_answers_are_counted_never_guessed(openai_fake, chat_dataset, tmp_path):
    casual = openai_fake.add_model("ft:casual", _pairs("casual"))
    robotic = openai_fake.add_model("ft:robotic", _pairs("robotic"))
    calls = {"n": 0}

    def sometimes_rambling(conversation, a, b):
        calls["n"] += 1
        return rambling(conversation, a, b) if "kitchen" in conversation else prefer_casual(conversation, a, b)

    openai_fake.add_judge(JUDGE, sometimes_rambling)
    _champion(tmp_path, robotic, chat_dataset)
    r = _evaluate(tmp_path, chat_dataset, _candidate(tmp_path, casual))
    rows = chat_dataset.splits["eval"]
    kitchen = sum("kitchen" in m.content for e in rows for m in e.messages[:2])
    assert kitchen and r["judge"]["malformed"] == kitchen and r["judge"]["win"] == len(rows) - kitchen
    bad = [s for s in r["samples"] if s["outcome"] == "malformed"]
    assert bad and bad[0]["verdicts"]["candidate_first"] == {"malformed": rambling("", "", "")}


def test_no_judge_reference_metrics_decide_and_the_reason_says_so(openai_fake, chat_dataset, tmp_path):
    casual = openai_fake.add_model("ft:casual", _pairs("casual"))
    robotic = openai_fake.add_model("ft:robotic", _pairs("robotic"))
    _champion(tmp_path, robotic, chat_dataset)
    r = _evaluate(tmp_path, chat_dataset, _candidate(tmp_path, casual), judge="",
                  thresholds={"min_values": {"chrf": 0.2}, "max_drop": {"chrf": 0.05, "win_rate": 0.05}})
    assert r["judge"] is None and r["blessed"] is True
    assert "no judge configured: reference metrics alone decide" in r["reason"]
    assert openai_fake.judged == []


def test_first_run_asks_no_judge_and_says_so(openai_fake, chat_dataset, tmp_path):
    robotic = openai_fake.add_model("ft:robotic", _pairs("robotic"))
    openai_fake.add_judge(JUDGE, prefer_casual)
    r = _evaluate(tmp_path, chat_dataset, _candidate(tmp_path, robotic),
                  thresholds={"min_values": {"chrf": 0.5}, "max_drop": {"win_rate": 0.05}})
    assert r["first_run"] and r["judge"] is None and openai_fake.judged == []
    assert r["blessed"] is False and "no champion: judged on value thresholds alone" in r["reason"]
    assert f"chrf {r['candidate_metrics']['chrf']:.3f} < min 0.500" in r["reason"]
    assert all(s["champion"] is None and s["outcome"] is None for s in r["samples"])


def test_task_mismatches_are_refused(openai_fake, chat_dataset, dataset, tmp_path):
    casual = openai_fake.add_model("ft:casual", _pairs("casual"))
    with pytest.raises(ValueError, match=r"was built for task='chat'.*this run has task='classification'"):
        stages.evaluate(provider="openai", model_dir=_candidate(tmp_path, casual), dataset_uri=chat_dataset.uri,
                        registry_uri=str(tmp_path / "registry"), model_name=MODEL, thresholds={},
                        blessing_path=str(tmp_path / "b.json"))
    with pytest.raises(ValueError, match=r"was built for task='classification'.*labelled \(5 labels"):
        _evaluate(tmp_path, dataset, _candidate(tmp_path, casual))
    _champion(tmp_path, "ft:some-classifier", chat_dataset, task="classification")
    with pytest.raises(ValueError, match="champion v1 of this model was tuned for task='classification'"):
        _evaluate(tmp_path, chat_dataset, _candidate(tmp_path, casual))


def test_the_judge_is_held_to_the_request_cap_before_it_is_asked(openai_fake, chat_dataset, tmp_path):
    from tuneloop.providers.hosted import RequestCapReached

    casual = openai_fake.add_model("ft:casual", _pairs("casual"))
    robotic = openai_fake.add_model("ft:robotic", _pairs("robotic"))
    openai_fake.add_judge(JUDGE, prefer_casual)
    _champion(tmp_path, robotic, chat_dataset)
    n = len(chat_dataset.splits["eval"])
    with pytest.raises(RequestCapReached, match=f"{2 * n} examples to predict"):
        stages.evaluate(provider="openai", model_dir=_candidate(tmp_path, casual), dataset_uri=chat_dataset.uri,
                        registry_uri=str(tmp_path / "registry"), model_name=MODEL, thresholds={},
                        blessing_path=str(tmp_path / "b.json"), task="chat", judge=f"openai:{JUDGE}",
                        eval_options={**FAST_PREDICT, "max_requests": 2 * n - 1})
    assert openai_fake.judged == []  # refused before the first judge request


@pytest.mark.parametrize("judge_fake,judge", [
    ("vertex_fake", "gemini:gemini-2.5-flash"),
    ("anthropic_fake", "claude:claude-sonnet-test"),
])
def test_any_chat_provider_judges_through_its_own_api(openai_fake, chat_dataset, tmp_path, request, judge_fake,
                                                      judge):
    fake = request.getfixturevalue(judge_fake)
    fake.add_judge(judge.split(":", 1)[1], prefer_casual)
    casual = openai_fake.add_model("ft:casual", _pairs("casual"))
    robotic = openai_fake.add_model("ft:robotic", _pairs("robotic"))
    _champion(tmp_path, robotic, chat_dataset)
    r = _evaluate(tmp_path, chat_dataset, _candidate(tmp_path, casual), judge=judge)
    n = len(chat_dataset.splits["eval"])
    assert r["judge"]["win"] == n and r["blessed"] and len(fake.judged) == 2 * n
    assert openai_fake.judged == []  # the judge's own API answered, not the candidate's
