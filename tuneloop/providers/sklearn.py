"""The classic intent classifier: TF-IDF (1-3 grams) + LinearSVC, balanced, calibrated; local, seconds.

Input text is :attr:`Example.prompt_text` (the last user turn), the target :attr:`Example.target`, the
sample weight :attr:`Example.weight` (human-corrected examples carry 2.0, so they count double).

The job runs in-process: ``submit`` trains synchronously into the output directory and writes two
files there: ``model.joblib`` (the fitted pipeline) and, last, ``model.json`` (the model card:
provider, config, dataset hash, labels, train counts, job key, sklearn version, calibration used).
The card is the commit marker: ``resume(key)`` adopts a directory whose card carries the same key, so
a re-run with the same data and config never trains twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuneloop.config import setting
from tuneloop.examples import Example
from tuneloop.providers.base import (
    JobHandle,
    PreflightError,
    PreflightReport,
    Provider,
    ProviderError,
    TuneRequest,
    TuneResult,
)

PROVIDER_NAME = "sklearn"
BASE_MODEL = "tfidf-linearsvc"  # sklearn trains from scratch; this is the only base model it accepts
MODEL_FILE = "model.joblib"
CARD_FILE = "model.json"
CALIBRATION_METHODS = ("sigmoid", "isotonic")
# Isotonic calibration overfits on small folds; below this many rows per class it falls back to sigmoid.
ISOTONIC_MIN_PER_CLASS = 50


@dataclass(frozen=True)
class SklearnConfig:
    """Hyperparameters of the TF-IDF + LinearSVC classifier.

    With a class smaller than ``calibration_cv``, fewer folds are used; with a single-example class,
    calibration is fit on the training rows. The model card records which one ran.
    """

    ngram_max: int = setting(3, help="longest word n-gram of the TF-IDF features (1..5); n-grams are 1..ngram_max")
    C: float = setting(1.0, help="LinearSVC inverse regularisation strength (> 0)")
    calibration_cv: int = setting(3, help="folds of the cross-validated probability calibration (2..20)")
    calibration_method: str = setting(
        "sigmoid", help="'sigmoid' (Platt) or 'isotonic' (falls back to sigmoid on small data)"
    )
    min_df: int = setting(1, help="ignore n-grams seen in fewer than this many training texts (>= 1)")
    sublinear_tf: bool = setting(True, help="use 1 + log(tf) instead of raw term counts")
    seed: int = setting(0, help="random seed of the LinearSVC solver and the calibration folds")
    max_iter: int = setting(5000, help="LinearSVC iteration cap (>= 100)")

    def __post_init__(self):
        def _int(name: str, lo: int, hi: int | None = None) -> None:
            v = getattr(self, name)
            if isinstance(v, float) and v.is_integer():
                v = int(v)
                object.__setattr__(self, name, v)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
                rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
                raise ValueError(f"{name}={getattr(self, name)!r} must be an integer {rng}")

        _int("ngram_max", 1, 5)
        _int("calibration_cv", 2, 20)
        _int("min_df", 1)
        _int("seed", 0)
        _int("max_iter", 100)
        if isinstance(self.C, bool) or not isinstance(self.C, int | float) or not self.C > 0:
            raise ValueError(f"C={self.C!r} must be a positive number, e.g. 1.0")
        object.__setattr__(self, "C", float(self.C))
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ValueError(
                f"calibration_method={self.calibration_method!r} is not one of {list(CALIBRATION_METHODS)}"
            )
        if not isinstance(self.sublinear_tf, bool):
            raise ValueError(f"sublinear_tf={self.sublinear_tf!r} must be true or false")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_card(model_dir: str | Path) -> dict[str, Any] | None:
    """The model card of a trained model directory, or None when there is no finished model."""
    card = Path(model_dir) / CARD_FILE
    if not card.is_file() or not (Path(model_dir) / MODEL_FILE).is_file():
        return None
    return json.loads(card.read_text(encoding="utf-8"))


def _calibration_plan(counts: Counter, cfg: SklearnConfig) -> tuple[int | None, str, str | None]:
    """``(folds or None for 'fit on training rows', method, note)`` for the smallest class's size."""
    smallest_label, smallest = min(counts.items(), key=lambda kv: (kv[1], kv[0]))
    method, notes = cfg.calibration_method, []
    if method == "isotonic" and smallest < ISOTONIC_MIN_PER_CLASS:
        method = "sigmoid"
        notes.append(
            f"isotonic calibration needs >= {ISOTONIC_MIN_PER_CLASS} rows per class; class "
            f"{smallest_label!r} has {smallest}, so sigmoid was used"
        )
    if smallest >= cfg.calibration_cv:
        folds: int | None = cfg.calibration_cv
    elif smallest >= 2:
        folds = smallest
        notes.append(
            f"class {smallest_label!r} has {smallest} training rows, fewer than calibration_cv="
            f"{cfg.calibration_cv}; calibrated with {folds}-fold cross-validation instead"
        )
    else:
        folds, method = None, "sigmoid"
        notes.append(
            f"class {smallest_label!r} has a single training row, too few for cross-validated "
            "calibration; sigmoid calibration was fit on the training rows (probabilities are optimistic)"
        )
    return folds, method, "; ".join(notes) or None


def _build_and_fit(texts: list[str], y: list[str], w: list[float], cfg: SklearnConfig):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    folds, method, note = _calibration_plan(Counter(y), cfg)
    vectorizer = TfidfVectorizer(
        ngram_range=(1, cfg.ngram_max), min_df=cfg.min_df, sublinear_tf=cfg.sublinear_tf, lowercase=True
    )
    svc = LinearSVC(C=cfg.C, class_weight="balanced", random_state=cfg.seed, max_iter=cfg.max_iter)
    if folds is None:
        features = vectorizer.fit_transform(texts)
        svc.fit(features, y, sample_weight=w)
        calibrated = CalibratedClassifierCV(FrozenEstimator(svc), method=method)
        with warnings.catch_warnings():
            # The frozen SVC was already fit with the weights, and its folds do no fitting.
            warnings.filterwarnings("ignore", message=".*FrozenEstimator does not appear to accept")
            warnings.filterwarnings("ignore", message=".*least populated class")
            calibrated.fit(features, y, sample_weight=w)
        model = Pipeline([("tfidf", vectorizer), ("clf", calibrated)])
    else:
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=cfg.seed)
        calibrated = CalibratedClassifierCV(svc, method=method, cv=cv)
        model = Pipeline([("tfidf", vectorizer), ("clf", calibrated)])
        model.fit(texts, y, clf__sample_weight=w)
    calibration = {"method": method, "folds": folds, "note": note}
    return model, calibration


class SklearnProvider(Provider):
    """TF-IDF + LinearSVC intent classifier, trained in-process.

    Args:
        output_dir: where ``resume(key)`` looks for a finished model (the same directory a
            TuneRequest's ``output_dir`` names); optional when the request names it.
    """

    name = PROVIDER_NAME
    serving = "sklearn"
    config_class = SklearnConfig

    def __init__(self, output_dir: str | None = None):
        self.output_dir = output_dir or None
        self._models: dict[str, tuple[float, Any]] = {}

    # -- checks ------------------------------------------------------------------------------
    def _check(self, request: TuneRequest) -> tuple[SklearnConfig, list[str], list[str], list[float]]:
        cfg = self.config(request)
        if request.base_model not in ("", BASE_MODEL):
            raise PreflightError(
                f"base_model={request.base_model!r}: the sklearn provider trains from scratch; "
                f"set base_model to {BASE_MODEL!r} (or leave it empty)"
            )
        if not request.train:
            raise PreflightError("train split is empty: the sklearn provider needs labelled examples")
        texts, y, w = [], [], []
        missing = [ex.id for ex in request.train if ex.target is None]
        if missing:
            raise PreflightError(
                f"{len(missing)} train example(s) have no target (no label and no assistant turn), e.g. "
                f"id {missing[0]}; label them or drop them before tuning"
            )
        empty = [ex.id for ex in request.train if not ex.prompt_text.strip()]
        if empty:
            raise PreflightError(
                f"{len(empty)} train example(s) have no user turn to classify, e.g. id {empty[0]}; "
                "a classification example needs the user's text"
            )
        for ex in request.train:
            texts.append(ex.prompt_text)
            y.append(ex.target)
            w.append(float(ex.weight))
        distinct = sorted(set(y))
        if len(distinct) < 2:
            raise PreflightError(
                f"train split has {len(distinct)} distinct label(s) {distinct}: a classifier needs at "
                "least 2; add examples of the other labels"
            )
        if request.labels:
            unknown = sorted(set(y) - set(request.labels))
            if unknown:
                raise PreflightError(
                    f"train targets {unknown[:5]} are not in labels {list(request.labels)}; "
                    "fix the labels or add them to the label set"
                )
        return cfg, texts, y, w

    def _dir(self, request: TuneRequest | None = None, handle: JobHandle | None = None) -> Path:
        d = (handle.detail.get("output_dir") if handle else None) or (request.output_dir if request else "")
        d = d or self.output_dir
        if not d:
            raise ProviderError(
                "sklearn provider: no output directory; set TuneRequest.output_dir or "
                "get_provider('sklearn', output_dir=...)"
            )
        return Path(d)

    # -- Provider interface -----------------------------------------------------------------------
    def preflight(self, request: TuneRequest) -> PreflightReport:
        """Check config and data (targets present, >= 2 labels); costs nothing, trains nothing."""
        cfg, texts, y, _ = self._check(request)
        counts = Counter(y)
        _, _, note = _calibration_plan(counts, cfg)
        notes = [f"{len(counts)} labels; smallest class {min(counts.values())} rows"]
        if note:
            notes.append(note)
        return PreflightReport(
            provider=self.name,
            base_model=request.base_model or BASE_MODEL,
            examples=len(texts),
            training_tokens=sum(len(t.split()) for t in texts),
            estimated_cost_usd=0.0,
            notes=tuple(notes),
        )

    def submit(self, request: TuneRequest, key: str) -> JobHandle:
        """Train now (synchronously) into the output directory; the returned job has succeeded."""
        import sklearn

        cfg, texts, y, w = self._check(request)
        out = self._dir(request)
        out.mkdir(parents=True, exist_ok=True)
        existing = read_card(out)
        if existing is not None and existing.get("job_key") != key:
            raise ProviderError(
                f"{out} already holds a model trained for job {existing.get('job_key')} (dataset "
                f"{existing.get('dataset_hash')}); refusing to overwrite it with job {key}: use an empty "
                "output_dir"
            )
        if existing is not None:
            return self._handle(key, out, existing)
        model, calibration = _build_and_fit(texts, y, w, cfg)
        import joblib

        model_path = out / MODEL_FILE
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{MODEL_FILE}.", suffix=".tmp")
        os.close(fd)
        try:
            joblib.dump(model, tmp)
            os.replace(tmp, model_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        train_acc = sum(p == t for p, t in zip(model.predict(texts), y, strict=True)) / len(y)
        metrics = {"train_accuracy": float(train_acc)}
        metrics.update(self._validation_metrics(model, request))
        counts = Counter(y)
        card = {
            "provider": self.name,
            "base_model": BASE_MODEL,
            "job_key": key,
            "dataset_hash": request.dataset_hash,
            "config": cfg.to_dict(),
            "labels": sorted(counts),
            "labels_without_examples": sorted(set(request.labels) - set(counts)),
            "train_counts": dict(sorted(counts.items())),
            "train_weighted_counts": {
                lab: float(sum(wi for yi, wi in zip(y, w, strict=True) if yi == lab))
                for lab in sorted(counts)
            },
            "train_examples": len(y),
            "corrected_examples": sum(1 for ex in request.train if ex.source == "corrected"),
            "calibration": calibration,
            "metrics": metrics,
            "model_file": MODEL_FILE,
            "model_sha256": _file_sha256(model_path),
            "sklearn_version": sklearn.__version__,
        }
        _atomic_write_bytes(out / CARD_FILE, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
        return self._handle(key, out, card)

    def _validation_metrics(self, model, request: TuneRequest) -> dict[str, float]:
        rows = [ex for ex in request.validation if ex.target is not None and ex.prompt_text.strip()]
        if not rows:
            return {}
        from tuneloop.evaluation import compute_metrics

        y_true = [ex.target for ex in rows]
        labels = sorted(set(y_true) | set(model.classes_))
        pred = list(model.predict([ex.prompt_text for ex in rows]))
        m = compute_metrics(y_true, pred, labels)
        return {"validation_accuracy": m["accuracy"], "validation_macro_f1": m["macro_f1"]}

    def _handle(self, key: str, out: Path, card: Mapping[str, Any]) -> JobHandle:
        return JobHandle(
            provider=self.name,
            key=key,
            job_id=f"sklearn-{key}",
            state="succeeded",
            detail={"output_dir": str(out), "model_sha256": card.get("model_sha256")},
        )

    def resume(self, key: str) -> JobHandle | None:
        """The finished model in ``output_dir`` trained with ``key``, or None."""
        if not self.output_dir:
            return None
        out = Path(self.output_dir)
        card = read_card(out)
        if card is None or card.get("job_key") != key:
            return None
        return self._handle(key, out, card)

    def wait(self, handle: JobHandle, request: TuneRequest, *, deadline_s: float) -> TuneResult:  # noqa: ARG002
        """Training already ran in ``submit``: read the model card and return the result."""
        out = self._dir(request, handle)
        card = read_card(out)
        if card is None:
            raise ProviderError(
                f"job {handle.job_id}: no finished model in {out} ({CARD_FILE} or {MODEL_FILE} missing); "
                "delete this task's job record to train again"
            )
        if card.get("job_key") != handle.key:
            raise ProviderError(
                f"job {handle.job_id}: {out / CARD_FILE} belongs to job {card.get('job_key')}, not {handle.key}"
            )
        return TuneResult(
            provider=self.name,
            job_id=handle.job_id,
            model_ref=str(out),
            base_model=card.get("base_model", BASE_MODEL),
            dataset_hash=card["dataset_hash"],
            trained_tokens=None,
            metrics=dict(card.get("metrics", {})),
            detail={"card": card},
        )

    def cancel(self, handle: JobHandle) -> None:
        """Nothing to cancel: training runs synchronously inside ``submit``."""

    def _load(self, model_ref: str):
        path = Path(model_ref) / MODEL_FILE
        if not path.is_file():
            raise ProviderError(
                f"model_ref={model_ref!r} has no {MODEL_FILE}; pass the output_dir of a finished sklearn job"
            )
        mtime = path.stat().st_mtime
        cached = self._models.get(str(path))
        if cached is None or cached[0] != mtime:
            import joblib

            cached = (mtime, joblib.load(path))
            self._models[str(path)] = cached
        return cached[1]

    def predict(self, model_ref: str, examples: Sequence[Example]) -> list[str]:
        """The predicted label of each example's ``prompt_text``."""
        if not examples:
            return []
        model = self._load(model_ref)
        return [str(p) for p in model.predict([ex.prompt_text for ex in examples])]

    def predict_proba(self, model_ref: str, examples: Sequence[Example]) -> list[dict[str, float]]:
        """Calibrated class probabilities, ``{label: p}`` per example."""
        if not examples:
            return []
        model = self._load(model_ref)
        probs = model.predict_proba([ex.prompt_text for ex in examples])
        classes = [str(c) for c in model.classes_]
        return [{c: float(p) for c, p in zip(classes, row, strict=True)} for row in probs]
