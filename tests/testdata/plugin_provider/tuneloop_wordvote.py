"""word-vote: a multinomial naive-Bayes intent classifier, as a third-party tuneloop provider.

It lives outside tuneloop and is found through the ``tuneloop.providers`` entry point; nothing in
tuneloop names it. It trains in-process into the task's model directory (``wordvote.json``).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from tuneloop.config import check_number, setting
from tuneloop.providers.base import (
    JobHandle,
    PreflightError,
    PreflightReport,
    Provider,
    ProviderError,
    TuneRequest,
    TuneResult,
)

MODEL_FILE = "wordvote.json"
_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class WordVoteConfig:
    """Hyperparameters of the word-vote classifier."""

    alpha: float = setting(1.0, help="additive smoothing of the word counts (> 0)")
    min_count: int = setting(1, help="words seen fewer times than this in training are ignored (>= 1)")

    def __post_init__(self) -> None:
        check_number("alpha", self.alpha, 1e-9)
        check_number("min_count", self.min_count, 1, integer=True)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class WordVoteProvider(Provider):
    """Naive Bayes over the words of the user's message."""

    name = "word-vote"
    config_class = WordVoteConfig

    def __init__(self, output_dir: str | None = None):
        self.output_dir = output_dir

    def preflight(self, request: TuneRequest) -> PreflightReport:
        self.config(request)
        labelled = [e for e in request.train if e.target is not None]
        if len({e.target for e in labelled}) < 2:
            raise PreflightError("word-vote needs at least 2 labels in the train split")
        return PreflightReport(self.name, "naive-bayes", len(labelled), 0, 0.0)

    def submit(self, request: TuneRequest, key: str) -> JobHandle:
        cfg = self.config(request)
        counts: dict[str, Counter] = {}
        for e in request.train:
            if e.target is not None:
                counts.setdefault(e.target, Counter()).update(words(e.prompt_text))
        total = Counter()
        for c in counts.values():
            total.update(c)
        vocab = sorted(w for w, n in total.items() if n >= cfg.min_count)
        priors = Counter(e.target for e in request.train if e.target is not None)
        model = {
            "key": key,
            "config": asdict(cfg),
            "vocab": vocab,
            "priors": dict(priors),
            "counts": {label: {w: c[w] for w in vocab if c[w]} for label, c in counts.items()},
        }
        out = Path(request.output_dir or self.output_dir or "")
        out.mkdir(parents=True, exist_ok=True)
        (out / MODEL_FILE).write_text(json.dumps(model, sort_keys=True))
        return JobHandle(self.name, key, f"word-vote-{key}", "succeeded", {"output_dir": str(out)})

    def resume(self, key: str) -> JobHandle | None:
        path = Path(self.output_dir or "") / MODEL_FILE
        if self.output_dir and path.is_file() and json.loads(path.read_text()).get("key") == key:
            return JobHandle(self.name, key, f"word-vote-{key}", "succeeded", {"output_dir": self.output_dir})
        return None

    def wait(self, handle: JobHandle, request: TuneRequest, *, deadline_s: float) -> TuneResult:  # noqa: ARG002
        out = handle.detail["output_dir"]
        model = json.loads((Path(out) / MODEL_FILE).read_text())
        return TuneResult(self.name, handle.job_id, out, "naive-bayes", request.dataset_hash,
                          metrics={"vocabulary": float(len(model["vocab"])),
                                   "min_count": float(model["config"]["min_count"])})

    def cancel(self, handle: JobHandle) -> None:
        """Training is synchronous: nothing to cancel."""

    def predict(self, model_ref: str, examples) -> list[str]:
        path = Path(model_ref) / MODEL_FILE
        if not path.is_file():
            raise ProviderError(f"model_ref={model_ref!r} has no {MODEL_FILE}")
        model = json.loads(path.read_text())
        alpha, vocab = model["config"]["alpha"], set(model["vocab"])
        n = sum(model["priors"].values())
        scores = {}
        for label, counts in model["counts"].items():
            size = sum(counts.values()) + alpha * len(vocab)
            scores[label] = (math.log(model["priors"][label] / n), counts, size)
        answers = []
        for e in examples:
            ws = [w for w in words(e.prompt_text) if w in vocab]
            best = max(scores, key=lambda lab: scores[lab][0] + sum(
                math.log((scores[lab][1].get(w, 0) + alpha) / scores[lab][2]) for w in ws))
            answers.append(best)
        return answers
