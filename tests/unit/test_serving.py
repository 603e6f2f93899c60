"""tuneloop.serving: a running service object follows promotions and rollbacks (sklearn, openai stand-in)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.fakes.data import support_messages
from tests.fakes.fixtures import openai_fake  # noqa: F401 - the OpenAI stand-in
from tuneloop.cli import app
from tuneloop.examples import classification_example, dataset_hash
from tuneloop.providers import get_provider
from tuneloop.providers.base import TuneRequest, run_job
from tuneloop.registry import FileRegistry
from tuneloop.serving import Champion, NoChampion, champion_info

CANCEL = "please cancel subscription today"


def _train(tmp_path, name: str, examples) -> str:
    out = tmp_path / name
    request = TuneRequest(train=examples, validation=[], dataset_hash=dataset_hash(examples), base_model="",
                          output_dir=str(out))
    provider = get_provider("sklearn", output_dir=str(out))
    return run_job(provider, request, record_path=tmp_path / f"{name}.json", log=lambda _: None).model_ref


def _register(reg, provider, model_ref, model_dir, f1):
    return reg.register(provider=provider, model_ref=model_ref, model_dir=model_dir, metrics={"macro_f1": f1},
                        data_hash="ab" * 32, example_ids=["x"], config={}, blessing={"blessed": True})


@pytest.fixture(scope="module")
def sklearn_registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serving")
    rows = support_messages(200, seed=3)
    # v1 never saw cancellations; v2 did.
    v1 = _train(tmp, "v1", [e for e in rows if e.label != "cancellation"])
    v2 = _train(tmp, "v2", rows)
    reg = FileRegistry(str(tmp / "registry"), "support-intent")
    _register(reg, "sklearn", v1, v1, 0.70)
    _register(reg, "sklearn", v2, v2, 0.81)
    return reg


def test_sklearn_champion_predicts_with_probabilities_and_follows_promotion_and_rollback(sklearn_registry):
    reg = sklearn_registry
    with pytest.raises(NoChampion, match="no champion"):
        Champion(reg.root, reg.model_name)
    reg.set_champion("v1", expected=None, reason="first")
    svc = Champion(reg.root, reg.model_name, check_interval_s=0, top_k=3)
    [p] = svc.predict([CANCEL])
    assert p.version == "v1" and p.label != "cancellation"
    assert len(p.top) == 3 and p.confidence == p.top[0][1] and p.label == p.top[0][0]
    assert [x[1] for x in p.top] == sorted((x[1] for x in p.top), reverse=True)
    label, conf, top = p.as_tuple()
    assert (label, conf, top) == (p.label, p.confidence, list(p.top))

    reg.set_champion("v2", expected="v1", reason="better")  # promoted while the service runs
    [p2, p3] = svc.predict([CANCEL, "my parcel tracking number is wrong"])
    assert (p2.version, p2.label) == ("v2", "cancellation") and p3.label == "shipping"
    assert p2.confidence > 0.5 and sum(pr for _, pr in p2.top) <= 1.0 + 1e-9
    assert svc.loads == 2

    reg.rollback(reason="bad answers in prod")
    [p4] = svc.predict([CANCEL])
    assert p4.version == "v1" and p4.label != "cancellation" and svc.loads == 3
    with pytest.raises(ValueError, match="is a sklearn classifier; it has no chat"):
        svc.chat([{"role": "user", "content": "hi"}])
    with pytest.raises(ValueError, match=r"texts\[1\]=''"):
        svc.predict(["ok", ""])


def test_the_alias_is_read_at_most_once_per_interval_and_the_model_only_when_it_moved(sklearn_registry):
    reg = sklearn_registry
    svc = Champion(reg.root, reg.model_name, check_interval_s=3600)
    before = svc.version
    for _ in range(5):
        svc.predict(["invoice charged twice"])
    assert (svc.checks, svc.loads) == (1, 1)
    other = "v2" if before == "v1" else "v1"
    reg.set_champion(other, expected=before, reason="move") if other == "v2" else reg.rollback(reason="back")
    svc.predict(["invoice charged twice"])
    assert svc.version == before  # not yet: the interval has not passed
    assert svc.refresh(force=True) and svc.version == other and svc.loads == 2
    assert not svc.refresh(force=True) and svc.checks == 3 and svc.loads == 2  # unchanged: not reloaded


def test_registry_champion_prints_what_an_application_needs(sklearn_registry):
    reg = sklearn_registry
    runner = CliRunner()
    out = runner.invoke(app, ["registry", "champion", "--registry", reg.root, "--model", reg.model_name, "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    current = reg.champion()
    assert info["version"] == current.version and info["provider"] == "sklearn" and info["kind"] == "classifier"
    assert info["artifact_uri"] == current.model_uri and info["metrics"]["macro_f1"] == current.metrics["macro_f1"]
    text = runner.invoke(app, ["registry", "champion", "--registry", reg.root, "--model", reg.model_name])
    assert text.exit_code == 0 and f"version   {current.version}" in text.output
    none = runner.invoke(app, ["registry", "champion", "--registry", reg.root, "--model", "nothing-here"])
    assert none.exit_code == 1 and "no champion" in none.output
    assert champion_info(reg.root, reg.model_name).version == current.version


def test_openai_champion_chats_and_follows_promotion_and_rollback(openai_fake, tmp_path):  # noqa: F811
    other = [("how do I reset my password", "Use the reset link."), ("cancel my plan", "Done, it is cancelled.")]
    a = openai_fake.add_model("ft:gpt-4.1-mini:org:support:aaaa", [("where is my parcel", "It ships Monday."), *other])
    b = openai_fake.add_model("ft:gpt-4.1-mini:org:support:bbbb", [("where is my parcel", "It arrives tomorrow!"),
                                                                  *other])
    reg = FileRegistry(str(tmp_path / "registry"), "support-bot")
    _register(reg, "openai", a, None, 0.5)
    _register(reg, "openai", b, None, 0.6)
    reg.set_champion("v1", expected=None, reason="first")
    svc = Champion(reg.root, reg.model_name, check_interval_s=0,
                   provider_options={"openai": {"base_url": openai_fake.url}})
    conversation = [{"role": "system", "content": "You are a support agent."},
                    {"role": "user", "content": "hello, where is my parcel?"}]
    assert svc.kind == "chat" and svc.chat(conversation) == "It ships Monday."
    reg.set_champion("v2", expected="v1", reason="better")
    assert svc.chat(conversation) == "It arrives tomorrow!"
    [p] = svc.predict(["where is my parcel"])
    assert (p.label, p.confidence, p.top, p.version) == ("It arrives tomorrow!", None, (), "v2")
    reg.rollback(reason="tone")
    assert svc.chat(conversation) == "It ships Monday." and svc.version == "v1"
    info = champion_info(reg.root, reg.model_name)
    assert info.model_ref == a and info.model_uri is None and info.kind == "chat"
    with pytest.raises(ValueError, match="non-empty list"):
        svc.chat([])


def test_a_registry_that_cannot_be_read_keeps_the_loaded_champion(sklearn_registry, tmp_path):
    import shutil

    reg = sklearn_registry
    copy = tmp_path / "registry"
    shutil.copytree(reg.root, copy)
    svc = Champion(str(copy), reg.model_name, check_interval_s=0)
    version = svc.version
    (copy / reg.model_name / "aliases.json").write_text("{not json")  # a torn write, a broken bucket
    [p] = svc.predict([classification_example("refund my card", "billing").prompt_text])
    assert p.version == version
