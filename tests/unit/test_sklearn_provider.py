"""The sklearn provider on real tiny data, and the provider registry that constructs it."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from tuneloop.evaluation import compute_metrics
from tuneloop.examples import classification_example, dataset_hash, make_example
from tuneloop.providers import get_provider
from tuneloop.providers.base import PreflightError, ProviderError, TuneRequest, job_key, run_job
from tuneloop.providers.sklearn import CARD_FILE, MODEL_FILE, SklearnProvider, read_card

KEYWORDS = {
    "billing": [
        "invoice",
        "charged twice",
        "payment failed",
        "refund my card",
        "billing statement",
        "overcharged",
        "receipt",
    ],
    "shipping": [
        "parcel",
        "tracking number",
        "delivery late",
        "package lost",
        "courier",
        "shipping address",
        "arrived damaged",
    ],
    "account": ["password reset", "login", "username", "two factor", "locked out", "email change", "profile"],
    "technical": [
        "app crashes",
        "error code",
        "bug",
        "page not loading",
        "sync fails",
        "update broke",
        "screen freezes",
    ],
    "cancellation": [
        "cancel subscription",
        "close my account",
        "stop renewal",
        "unsubscribe",
        "end my plan",
        "terminate",
        "opt out",
    ],
}
FILLER = [
    "hi",
    "hello",
    "please help",
    "urgent",
    "thanks",
    "my",
    "the",
    "again",
    "today",
    "since yesterday",
    "can you",
    "why is",
]
LABELS = sorted(KEYWORDS)


def support_messages(n: int, seed: int) -> list:
    """Short support messages: filler words + one intent phrase; 30% also mention another intent."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        words = [*rng.sample(FILLER, 3), rng.choice(KEYWORDS[label])]
        if rng.random() < 0.3:
            words.append(rng.choice(KEYWORDS[rng.choice([x for x in LABELS if x != label])]))
        rng.shuffle(words)
        rows.append(classification_example(" ".join(words), label))
    return rows


def request(train, out: Path, hp=None, validation=(), labels=tuple(LABELS)) -> TuneRequest:
    return TuneRequest(
        train=train,
        validation=list(validation),
        dataset_hash=dataset_hash(train),
        base_model="",
        hyperparameters=hp or {},
        labels=labels,
        output_dir=str(out),
    )


@pytest.fixture(scope="module")
def train_rows():
    return support_messages(300, seed=1)


@pytest.fixture(scope="module")
def trained(train_rows, tmp_path_factory):
    """One model trained through run_job, shared by the read-only tests."""
    out = tmp_path_factory.mktemp("sklearn-model")
    req = request(train_rows, out, validation=support_messages(50, seed=3))
    provider = get_provider("sklearn", output_dir=str(out))
    result = run_job(provider, req, record_path=out.parent / f"{out.name}-job.json", log=lambda _: None)
    return provider, req, result


def test_beats_majority_baseline_on_held_out_rows(trained, train_rows):
    provider, _, result = trained
    held_out = support_messages(200, seed=2)
    y_true = [ex.label for ex in held_out]
    model = compute_metrics(y_true, provider.predict(result.model_ref, held_out), LABELS)
    majority = Counter(ex.label for ex in train_rows).most_common(1)[0][0]
    baseline = compute_metrics(y_true, [majority] * len(y_true), LABELS)
    assert model["macro_f1"] > 0.7
    assert model["macro_f1"] > baseline["macro_f1"] + 0.5
    assert model["unparseable"] == 0


def test_predict_proba_is_calibrated_distribution_over_labels(trained):
    provider, _, result = trained
    rows = support_messages(5, seed=9)
    probs = provider.predict_proba(result.model_ref, rows)
    labels = provider.predict(result.model_ref, rows)
    for p, label in zip(probs, labels, strict=True):
        assert set(p) == set(LABELS)
        assert sum(p.values()) == pytest.approx(1.0)
        assert max(p, key=p.get) == label


def test_model_card_records_config_data_hash_and_job_key(tmp_path, train_rows):
    req = request(train_rows, tmp_path / "m", hp={"C": 0.5, "ngram_max": 2})
    provider = SklearnProvider()
    key = job_key(req.dataset_hash, "sklearn", req.base_model, SklearnProvider.parse_config(req.hyperparameters))
    provider.submit(req, key)
    card = json.loads((tmp_path / "m" / CARD_FILE).read_text())
    assert card["provider"] == "sklearn"
    assert card["config"]["C"] == 0.5 and card["config"]["ngram_max"] == 2
    assert card["config"]["calibration_cv"] == 3  # defaults are recorded too
    assert card["dataset_hash"] == dataset_hash(train_rows)
    assert card["job_key"] == key
    assert card["labels"] == LABELS
    assert card["train_counts"] == dict(Counter(ex.label for ex in train_rows))
    assert card["sklearn_version"]
    assert card["calibration"] == {"method": "sigmoid", "folds": 3, "note": None}


def test_corrected_examples_count_double_and_flip_a_borderline_message(tmp_path, train_rows):
    """'where is my zorblax order': 4 agents said billing, 3 said shipping. Live, billing wins;
    when the 3 shipping labels are human corrections (weight 2: 6 vs 4), shipping wins."""
    query = [classification_example("where is my zorblax order", "billing")]
    predictions = {}
    for source in ("live", "corrected"):
        borderline = [classification_example("where is my zorblax order", "billing") for _ in range(4)]
        borderline += [
            classification_example("where is my zorblax order", "shipping", source=source) for _ in range(3)
        ]
        assert {ex.weight for ex in borderline[4:]} == {2.0 if source == "corrected" else 1.0}
        out = tmp_path / source
        provider = SklearnProvider()
        provider.submit(request(train_rows + borderline, out), f"key-{source}")
        predictions[source] = provider.predict(str(out), query)[0]
        card = read_card(out)
        assert card["train_weighted_counts"]["shipping"] == card["train_counts"]["shipping"] + (
            3 if source == "corrected" else 0
        )
    assert predictions == {"live": "billing", "corrected": "shipping"}


def test_run_job_again_resumes_without_retraining(trained):
    provider, req, first = trained
    model_file = Path(first.model_ref) / MODEL_FILE
    before = model_file.stat().st_mtime_ns
    record = Path(first.model_ref).parent / f"{Path(first.model_ref).name}-job.json"
    # Same task retried: the job record names the job.
    again = run_job(provider, req, record_path=record, log=lambda _: None)
    # A new task (no record): provider.resume(key) adopts the finished model in output_dir.
    fresh = get_provider("sklearn", output_dir=first.model_ref)
    key = job_key(req.dataset_hash, "sklearn", req.base_model, SklearnProvider.parse_config(req.hyperparameters))
    handle = fresh.resume(key)
    assert handle is not None and handle.state == "succeeded"
    logs: list[str] = []
    third = run_job(fresh, req, record_path=record.with_name("other-task.json"), log=logs.append)
    assert any("adopting existing job" in line for line in logs)
    assert model_file.stat().st_mtime_ns == before
    assert again.model_ref == third.model_ref == first.model_ref
    assert third.dataset_hash == req.dataset_hash
    assert fresh.resume("tl-some-other-key") is None


def test_a_different_job_never_overwrites_a_trained_model(trained):
    provider, req, first = trained
    model_file = Path(first.model_ref) / MODEL_FILE
    before = model_file.stat().st_mtime_ns
    other = request(list(req.train), Path(first.model_ref), hp={"C": 2.0})
    with pytest.raises(ProviderError, match="refusing to overwrite"):
        provider.submit(other, job_key(other.dataset_hash, "sklearn", "", SklearnProvider.parse_config(other.hyperparameters)))
    assert model_file.stat().st_mtime_ns == before


def test_tiny_classes_fall_back_to_fewer_folds_and_say_so(tmp_path):
    rows = support_messages(40, seed=4)
    two = [classification_example(t, "refund") for t in ("money back please", "i want my money back")]
    provider = SklearnProvider()
    provider.submit(request(rows + two, tmp_path / "a", labels=(*LABELS, "refund")), "k2")
    cal = read_card(tmp_path / "a")["calibration"]
    assert cal["folds"] == 2 and "'refund' has 2 training rows" in cal["note"]

    one = [classification_example("money back please", "refund")]
    provider.submit(request(rows + one, tmp_path / "b", labels=(*LABELS, "refund")), "k1")
    cal = read_card(tmp_path / "b")["calibration"]
    assert cal["folds"] is None and "single training row" in cal["note"]
    assert provider.predict(str(tmp_path / "b"), one) == ["refund"]


def test_isotonic_on_small_data_falls_back_to_sigmoid(tmp_path):
    provider = SklearnProvider()
    provider.submit(
        request(support_messages(60, seed=5), tmp_path, hp={"calibration_method": "isotonic"}), "k"
    )
    cal = read_card(tmp_path)["calibration"]
    assert cal["method"] == "sigmoid" and "isotonic" in cal["note"]


def test_train_label_outside_the_label_set_is_refused(tmp_path):
    rows = [*support_messages(20, seed=7), classification_example("money back please", "refund")]
    with pytest.raises(PreflightError, match=r"\['refund'\] are not in labels"):
        SklearnProvider().preflight(request(rows, tmp_path))


def test_preflight_refuses_one_label(tmp_path):
    rows = [classification_example(f"invoice number {i}", "billing") for i in range(5)]
    with pytest.raises(PreflightError, match="at least 2"):
        SklearnProvider().preflight(request(rows, tmp_path))


def test_preflight_refuses_examples_without_target(tmp_path):
    unlabeled = make_example([{"role": "user", "content": "where is my parcel"}])
    with pytest.raises(PreflightError, match="no target") as err:
        SklearnProvider().preflight(request([*support_messages(10, seed=6), unlabeled], tmp_path))
    assert unlabeled.id in str(err.value)
    assert not (tmp_path / MODEL_FILE).exists()


def test_preflight_reports_counts_and_no_cost(tmp_path, train_rows):
    report = SklearnProvider().preflight(request(train_rows, tmp_path))
    assert report.examples == len(train_rows)
    assert report.training_tokens == sum(len(ex.prompt_text.split()) for ex in train_rows)
    assert report.estimated_cost_usd == 0.0


def test_unknown_hyperparameter_names_the_valid_ones(tmp_path, train_rows):
    with pytest.raises(PreflightError, match="unknown key") as err:
        SklearnProvider().preflight(request(train_rows, tmp_path, hp={"ngrams": 2}))
    assert "ngram_max" in str(err.value)
    assert isinstance(err.value.__cause__, ValueError)


@pytest.mark.parametrize(
    ("hp", "field"),
    [
        ({"C": 0}, "C"),
        ({"ngram_max": 0}, "ngram_max"),
        ({"calibration_cv": 1}, "calibration_cv"),
        ({"min_df": 1.5}, "min_df"),
        ({"calibration_method": "platt"}, "calibration_method"),
        ({"sublinear_tf": "yes"}, "sublinear_tf"),
    ],
)
def test_config_checks_name_the_field(hp, field):
    with pytest.raises(ValueError, match=field):
        SklearnProvider.parse_config(hp)


def test_config_accepts_integral_floats_from_json():
    assert SklearnProvider.parse_config({"ngram_max": 2.0}).ngram_max == 2


def test_base_model_other_than_tfidf_is_refused(tmp_path, train_rows):
    req = TuneRequest(
        train=train_rows, validation=[], dataset_hash="h", base_model="gpt-4o-mini", output_dir=str(tmp_path)
    )
    with pytest.raises(PreflightError, match="trains from scratch"):
        SklearnProvider().preflight(req)


def test_predict_on_a_missing_model_names_the_fix(tmp_path):
    with pytest.raises(ProviderError, match="output_dir of a finished sklearn job"):
        SklearnProvider().predict(str(tmp_path), support_messages(1, seed=1))
