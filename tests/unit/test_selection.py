"""The select-model step's engine: candidates from the registry + a test catalog, refusals, rules, ranker.

Datasets are real published datasets (tuneloop.datasets.build_dataset) of generated rows; the ranker
is a model of the OpenAI stand-in (tests/fakes/openai_server.py) asked through the openai provider.
The test catalog (tests/testdata/selection/catalog.yaml) has a retired model that is the cheapest, a
model priced over any small budget, one with a tiny token limit and one that needs 1000 rows.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.conftest import TESTDATA
from tests.fakes import fixtures as stand_ins
from tests.fakes.chat_data import game_chats
from tuneloop import datasets, decisions
from tuneloop import examples as ex
from tuneloop.selection import (
    RULES_PATH,
    NoAdmissibleCandidate,
    SelectionError,
    load_rules,
    parse_ranking,
    parse_rules,
    run_selection,
    select_model,
)

openai_fake = stand_ins.openai_fake

CATALOG = str(TESTDATA / "selection" / "catalog.yaml")
TODAY = "2026-12-01"
RANKER = "gpt-ranker-test"
# Credentials where the tasks run: OpenAI only (the Anthropic, Google and AWS ones are absent).
OPENAI_ONLY = {"OPENAI_API_KEY": "sk-test"}
WITH_ANTHROPIC = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant-test"}


def _classification(tmp_path, n: int, name: str = "ds"):
    rows = [ex.classification_example(f"where is my parcel number {i}, it is late", ("billing", "shipping")[i % 2])
            for i in range(n)]
    out = tmp_path / name
    datasets.build_dataset(rows, out, previous=None, task="classification")
    return str(out)


def _chat(tmp_path, n: int, name: str = "chat"):
    out = tmp_path / name
    datasets.build_dataset(game_chats(n, seed=3), out, previous=None, task="chat")
    return str(out)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """About 226 train rows (< 500: the default rules' small-data preference applies)."""
    return _classification(tmp_path_factory.mktemp("small"), 300)


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """About 600 train rows (>= 500)."""
    return _classification(tmp_path_factory.mktemp("large"), 800)


def _rules(tmp_path, text: str) -> str:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def _by_id(selection):
    return {c.id: c for c in selection.candidates}


def _select(uri, **kw):
    kw.setdefault("catalog", CATALOG)
    kw.setdefault("today", TODAY)
    kw.setdefault("environ", OPENAI_ONLY)
    return select_model(dataset_uri=uri, **kw)


# No preferences: only the default rules' credential policy (so the cost tie-break and the ranker decide).
NO_RULES = """
rules:
  - name: hosted-needs-credential
    reason: no credential, no call
    when: {hosted: true, credential_missing: true}
    effect: refuse
"""


# -- refusals that no ranking can undo ---------------------------------------------------------------


def test_the_retired_and_the_over_budget_model_are_refused_whatever_the_ranker_says(small, tmp_path, openai_fake):
    ranking = {"ranking": ["openai:gpt-retired-test", "openai:gpt-pricey-test", "openai:gpt-cheap-test",
                           "sklearn:tfidf-linearsvc"],
               "reasoning": "the retired model is the cheapest and the pricey one the strongest", "confidence": 0.8}
    openai_fake.add_responder(RANKER, lambda messages: json.dumps(ranking))
    rules = _rules(tmp_path, NO_RULES)
    alone = _select(small, budget_usd=1, rules=rules)
    ranked = _select(small, budget_usd=1, rules=rules, ranker=f"openai:{RANKER}", environ=None)

    # Without a ranker the cost tie-break picks the free sklearn; the ranker moves the cheap OpenAI model up,
    # but never to the two it ranked above it: one is retired, the other over budget.
    assert (alone.provider, alone.base_model) == ("sklearn", "tfidf-linearsvc")
    assert (ranked.provider, ranked.base_model) == ("openai", "gpt-cheap-test")
    c = _by_id(ranked)
    assert c["openai:gpt-retired-test"].refusals == ["retired: end of life 2026-06-30 is before today (2026-12-01)"]
    [over] = c["openai:gpt-pricey-test"].refusals
    assert "over budget_usd=$1.00" in over and c["openai:gpt-pricey-test"].estimated_cost_usd > 1
    assert c["openai:gpt-cheap-test"].estimated_cost_usd < 1
    refused = ranked.ranker["refused_by_rules"]
    assert [r.split(":")[1] for r in refused] == ["gpt-retired-test", "gpt-pricey-test"]
    assert ranked.decision.confidence == 0.8 and "retired model is the cheapest" in ranked.decision.reasoning
    # the ranker saw only the admissible candidates, in one bounded request
    [asked] = openai_fake.asked
    shown = asked["messages"][-1]["content"]
    assert "gpt-cheap-test" in shown and "gpt-retired-test" not in shown and "gpt-pricey-test" not in shown


def test_the_same_retired_model_is_admissible_on_a_day_before_its_end_of_life(small, tmp_path):
    rules = _rules(tmp_path, NO_RULES)
    before = _by_id(_select(small, budget_usd=1, rules=rules, today="2026-06-30"))["openai:gpt-retired-test"]
    after = _by_id(_select(small, budget_usd=1, rules=rules, today="2026-07-01"))["openai:gpt-retired-test"]
    assert before.admissible and not after.admissible


def test_limits_refuse_by_rows_and_example_tokens(small):
    c = _by_id(_select(small, budget_usd=5))
    [few] = c["gemini:gemini-big-data-test"].refusals[:1]
    assert few.startswith("too few rows:") and "< min_examples 1000" in few
    [long] = c["openai:gpt-short-test"].refusals
    assert long.startswith("examples too long:") and "> max_tokens_per_example 8" in long
    assert c["oss-lora:*"].refusals[0].startswith("oss-lora tunes a base model you provide")


def test_budget_zero_admits_only_candidates_without_a_training_bill(small):
    sel = _select(small, budget_usd=0, environ=WITH_ANTHROPIC)
    admitted = sorted(c.id for c in sel.candidates if c.admissible)
    assert admitted == ["claude-few-shot:claude-few-shot-test", "sklearn:tfidf-linearsvc"]


# -- rules: preferences and policy -------------------------------------------------------------------

PREFER_OPENAI = """
  - name: prefer-fine-tuning
    reason: a fine-tuned model is what we ship when the data allows it
    when: {providers: [openai]}
    effect: prefer
    score: 5
"""


def test_a_small_dataset_prefers_few_shot_and_a_large_one_does_not(small, large, tmp_path):
    rules = _rules(tmp_path, RULES_PATH.read_text() + PREFER_OPENAI)
    chat_small = _chat(tmp_path, 200, "chat-small")
    chat_large = _chat(tmp_path, 800, "chat-large")
    few = _select(chat_small, budget_usd=10, rules=rules, environ=WITH_ANTHROPIC)
    many = _select(chat_large, budget_usd=10, rules=rules, environ=WITH_ANTHROPIC)
    assert few.facts.rows < 500 <= many.facts.rows
    assert few.provider == "claude-few-shot"
    assert many.provider == "openai" and many.base_model == "gpt-cheap-test"
    assert _by_id(few)["claude-few-shot:claude-few-shot-test"].score == 10
    assert _by_id(many)["claude-few-shot:claude-few-shot-test"].score == 0


def test_a_small_classification_set_prefers_sklearn_over_a_preferred_fine_tune(small, large, tmp_path):
    rules = _rules(tmp_path, RULES_PATH.read_text() + PREFER_OPENAI)
    assert _select(small, budget_usd=10, rules=rules).provider == "sklearn"  # 11 vs 5
    assert _select(large, budget_usd=10, rules=rules).provider == "openai"  # 1 vs 5


def test_a_chat_task_refuses_providers_that_only_classify(small, tmp_path):
    chat = _chat(tmp_path, 200)
    on_chat = _by_id(_select(chat, budget_usd=10))["sklearn:tfidf-linearsvc"]
    on_labels = _by_id(_select(small, budget_usd=10))["sklearn:tfidf-linearsvc"]
    assert on_chat.refusals == ["task 'chat' is not supported: sklearn declares ['classification']"]
    assert on_labels.admissible


def test_a_hosted_provider_without_its_credential_is_refused_by_the_default_rules(small):
    without = _by_id(_select(small, budget_usd=10, environ=OPENAI_ONLY))["claude-few-shot:claude-few-shot-test"]
    with_key = _by_id(_select(small, budget_usd=10, environ=WITH_ANTHROPIC))["claude-few-shot:claude-few-shot-test"]
    assert without.refusals == [
        "refused by rule hosted-needs-credential: a hosted provider cannot be reached without its credential "
        "where the tasks run"]
    assert with_key.admissible
    # a Secret Manager name in task_env is a credential source too
    via_secret = _select(small, budget_usd=10, environ=OPENAI_ONLY,
                         task_env={"ANTHROPIC_API_KEY_SECRET": "projects/p/secrets/anthropic/versions/1"})
    assert _by_id(via_secret)["claude-few-shot:claude-few-shot-test"].admissible


def test_a_hyperparameters_rule_sets_starting_values_parsed_by_the_providers_config(small, tmp_path):
    rules = _rules(tmp_path, NO_RULES + """
  - name: tiny-sets-more-epochs
    reason: small sets need more passes
    when: {rows_below: 500, providers: [openai]}
    effect: hyperparameters
    hyperparameters: {n_epochs: 6}
  - name: only-openai
    reason: this test compares OpenAI costs
    when: {providers: [sklearn, claude]}
    effect: refuse
""")
    auto = _by_id(_select(small, budget_usd=10, rules=_rules(tmp_path / "..", NO_RULES)))["openai:gpt-cheap-test"]
    sel = _select(small, budget_usd=10, rules=rules)
    chosen = _by_id(sel)["openai:gpt-cheap-test"]
    assert (sel.provider, sel.base_model) == ("openai", "gpt-cheap-test")
    assert sel.hyperparameters == {"n_epochs": 6, "budget_usd": 10.0, "catalog": CATALOG}
    assert auto.epochs == 3 and chosen.epochs == 6
    assert chosen.estimated_cost_usd == pytest.approx(2 * auto.estimated_cost_usd)


def test_no_admissible_candidate_lists_every_refusal(tmp_path):
    chat = _chat(tmp_path, 200)
    with pytest.raises(NoAdmissibleCandidate) as info:
        _select(chat, budget_usd=0, environ={})
    msg = str(info.value)
    assert msg.count("\n  - ") == 10  # every candidate of the test catalog, each with its reasons
    for part in ("sklearn:tfidf-linearsvc: task 'chat' is not supported", "openai:gpt-retired-test: retired",
                 "refused by rule hosted-needs-credential", "oss-lora:*: oss-lora tunes a base model you provide"):
        assert part in msg
    assert "Fix: raise budget_usd" in msg


# -- the ranker's answer -----------------------------------------------------------------------------


def test_a_malformed_ranker_answer_is_counted_and_ignored(small, tmp_path, openai_fake):
    openai_fake.add_responder(RANKER, lambda messages: "I'd go with the cheap OpenAI model, honestly.")
    rules = _rules(tmp_path, NO_RULES)
    plain = _select(small, budget_usd=1, rules=rules)
    sel = _select(small, budget_usd=1, rules=rules, ranker=f"openai:{RANKER}", environ=None)
    assert sel.ranker["malformed"] == 1 and "ignored" in sel.ranker["note"]
    assert (sel.provider, sel.base_model) == (plain.provider, plain.base_model) == ("sklearn", "tfidf-linearsvc")
    assert sel.decision.confidence is None and "malformed and ignored" in sel.decision.reasoning
    assert sel.ranker["requests"]["requests"] == 1


@pytest.mark.parametrize("answer", [
    "", "[]", '{"ranking": []}', '{"ranking": "openai:x"}', '{"ranking": ["openai:x"], "confidence": 1.5}',
    '{"ranking": ["openai:x"], "why": "extra key"}', 'Sure! {"ranking": ["openai:x"]}', '{"ranking": [3]}',
    '{"ranking": ["openai:x"], "confidence": true}', '{"ranking": ["no-colon"]}',
])
def test_ranking_answers_that_are_not_the_json_object_are_malformed(answer):
    assert parse_ranking(answer) is None


def test_a_ranking_in_a_json_fence_parses():
    text = '```json\n{"ranking": ["openai:a", "sklearn:b"], "reasoning": "cheap first", "confidence": 0.4}\n```'
    assert parse_ranking(text) == (["openai:a", "sklearn:b"], "cheap first", 0.4)


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("rules:\n  - {name: a, reason: r, effect: prefer, when: {rows_belo: 5}}\n",
     "unknown key 'rows_belo' (did you mean 'rows_below'?)"),
    ("rules:\n  - {name: a, reason: r, effect: prefer, when: {providers: [opanai]}}\n",
     "rules[0].when.providers: provider='opanai' is not a known provider (did you mean 'openai'?)"),
    ("rules:\n  - {name: a, reason: r, effect: avoid}\n", "effect='avoid' must be one of ['prefer', 'refuse', 'hyperparameters']"),
    ("rules:\n  - {name: a, reason: r, effect: hyperparameters, when: {providers: [openai]}, "
     "hyperparameters: {n_epoch: 3}}\n", "rules[0].hyperparameters (provider openai): hyperparameters: unknown key 'n_epoch'"),
    ("rules:\n  - {name: a, reason: r, effect: hyperparameters, hyperparameters: {n_epochs: 3}}\n",
     "when.providers is empty"),
    ("rules:\n  - {name: a, reason: r, effect: refuse}\n  - {name: a, reason: s, effect: refuse}\n",
     "rules[1].name='a' is used twice"),
    ("rules:\n  - {name: a, reason: '', effect: refuse}\n", "reason is empty"),
    ("rules:\n  - {name: a, reason: r, effect: refuse, score: 3}\n", "score=3.0 applies to effect 'prefer' only"),
    ("rules:\n  - {name: a, reason: r, effect: prefer, when: {kinds: [finetune]}}\n", "'finetune' is not a catalog kind"),
    ("rules:\n  - {name: a, reason: r, effect: prefer, when: {rows_below: 2.5}}\n", "rows_below=2.5 must be an integer"),
    ("rules:\n  - {name: a, reason: r, effect: refuse, when: [rows_below]}\n", "when=['rows_below'] must be a mapping"),
    ("rule:\n  - {name: a}\n", "unknown top-level key 'rule' (did you mean 'rules'?)"),
    ("rules: {name: a}\n", "rules must be a list"),
    ("rules: [\n", "is not valid YAML"),
])
def test_rules_file_errors_name_the_field_and_the_fix(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SelectionError) as info:
        load_rules(path)
    assert expected in str(info.value)


def test_a_missing_rules_file_is_named(tmp_path):
    with pytest.raises(SelectionError, match="rules=.*nope.yaml.* cannot be read"):
        load_rules(tmp_path / "nope.yaml")


def test_the_packaged_rules_parse_and_family_names_expand():
    assert [r.name for r in load_rules().rules][:1] == ["hosted-needs-credential"]
    [rule] = parse_rules({"rules": [{"name": "c", "reason": "r", "effect": "prefer", "when": {"providers": ["claude"]}}]}).rules
    assert rule.when.providers == ("claude-bedrock", "claude-few-shot")


@pytest.mark.parametrize("kw, expected", [
    ({"budget_usd": -1}, "budget_usd=-1 must be a number of USD >= 0"),
    ({"budget_usd": float("nan")}, "budget_usd=nan"),
    ({"budget_usd": True}, "budget_usd=True"),
    ({"today": "01/12/2026"}, "today='01/12/2026' is not a YYYY-MM-DD date"),
    ({"ranker": "openai"}, "ranker='openai' must be 'PROVIDER:MODEL'"),
    ({"ranker": "sklearn:x"}, "provider 'sklearn' does not declare chat"),
    ({"ranker": "opnai:x"}, "did you mean 'openai'?"),
    ({"task": "chat"}, "task='chat' but dataset"),
    ({"task": "summarise"}, "task='summarise' must be one of"),
    ({"base_models": {"os-lora": "/m"}}, "base_models: provider='os-lora' is not a known provider"),
    ({"ranker": "openai:x", "eval_options": {"max_request": 3}}, "unknown key 'max_request' (did you mean 'max_requests'?)"),
    ({"task_env": {"OPENAI_API_KEY": "sk-live-123"}}, "task_env: 'OPENAI_API_KEY' is not allowed"),
])
def test_bad_input_names_the_parameter(small, kw, expected):
    with pytest.raises(SelectionError) as info:
        _select(small, **kw)
    assert expected in str(info.value)


def test_a_folder_without_a_manifest_is_refused(tmp_path):
    with pytest.raises(SelectionError, match="has no manifest.json; pass a published dataset folder"):
        _select(str(tmp_path))


def test_a_ranker_without_its_credential_is_refused_before_any_request(small):
    with pytest.raises(SelectionError, match="ranker='openai:gpt-ranker-test'.*OPENAI_API_KEY"):
        _select(small, ranker=f"openai:{RANKER}", environ={})


# -- outputs ---------------------------------------------------------------------------------------


def test_run_selection_writes_the_report_and_one_decision_record(small, tmp_path):
    out = run_selection(report_path=str(tmp_path / "selection.json"), decisions_path=str(tmp_path / "d.jsonl"),
                        dataset_uri=small, budget_usd=1, catalog=CATALOG, today=TODAY, environ=OPENAI_ONLY)
    report = json.loads((tmp_path / "selection.json").read_text())
    [record] = decisions.read(tmp_path / "d.jsonl")
    assert out["provider"] == report["chosen"]["provider"] == record.details["provider"] == "sklearn"
    assert record.stage == "select-model" and record.decision == "sklearn:tfidf-linearsvc"
    assert len(record.details["candidates"]) == len(report["candidates"]) == 10
    assert report["admissible"] + report["refused"] == 10
    why = {c["provider"] + ":" + c["base_model"]: c["why"] for c in report["candidates"]}
    assert why["sklearn:tfidf-linearsvc"].startswith("chosen:")
    assert why["openai:gpt-retired-test"].startswith("refused: retired")
    assert record.inputs_hash.startswith("sha256:")
    again = run_selection(report_path=str(tmp_path / "s2.json"), decisions_path=str(tmp_path / "d2.jsonl"),
                          dataset_uri=small, budget_usd=2, catalog=CATALOG, today=TODAY, environ=OPENAI_ONLY)
    assert again["provider"] == "sklearn"
    assert decisions.read(tmp_path / "d2.jsonl")[0].inputs_hash != record.inputs_hash  # the budget is an input


def test_the_token_estimate_counts_every_turn_of_every_train_row(tmp_path):
    from tuneloop.formats.tokens import TOKENS_PER_MESSAGE, TOKENS_REPLY_PRIMING, get_counter
    from tuneloop.selection import _estimate_tokens

    rows = [ex.classification_example(f"card {i} declined " + "again " * (i % 7), ("billing", "cards")[i % 2],
                                      system="be brief" if i % 3 else None) for i in range(500)]
    datasets.build_dataset(rows, tmp_path / "ds", previous=None, task="classification")
    train = datasets.load_dataset(str(tmp_path / "ds"), splits=["train"]).splits["train"]
    counter = get_counter()
    per_row = [sum(counter.count(m.content) for m in e.messages) + (TOKENS_PER_MESSAGE + 1) * len(e.messages)
               + TOKENS_REPLY_PRIMING for e in train]
    facts = _estimate_tokens(str(tmp_path / "ds"), batch_rows=64)  # several batches, rows of 2 and 3 turns
    assert (facts.train_tokens, facts.max_example_tokens) == (sum(per_row), max(per_row))
    assert facts.exact is False


@pytest.mark.parametrize("manifest, expected", [
    ("{not json", "manifest.json is not valid JSON"),
    ('{"counts": {}}', "its manifest has no counts.train"),
    ('{"counts": {"train": -3}}', "counts.train=-3 must be a whole number >= 0"),
    ('{"counts": {"train": 40}, "formats": {"openai": {"tokens": {"train": "many"}}}}',
     "formats.openai.tokens.train='many' must be a whole number"),
])
def test_a_damaged_manifest_is_refused_naming_the_field(tmp_path, manifest, expected):
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(SelectionError) as info:
        _select(str(tmp_path))
    assert expected in str(info.value)
