"""Predictions -> labels -> metrics -> a blessing: the evaluator's engine, as pure functions.

Every provider's answers go through the same harness:

1. :func:`parse_label` turns a raw answer into one of the task's labels (or None: unparseable);
2. :func:`compute_metrics` scores parsed predictions against the truth (sklearn.metrics), counting
   unparseable answers as wrong;
3. :func:`mcnemar` compares candidate and champion on the same rows (paired test);
4. :func:`decide` is the one decision function: candidate metrics, champion metrics (on the same eval
   rows) and :class:`Thresholds` in, a :class:`Blessing` with a human-readable reason out.

The decision fails closed, like TFX's evaluator: no thresholds configured means nothing is blessed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Scalar metric keys that compute_metrics returns and that thresholds may name.
METRIC_KEYS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1")
# Optional key an evaluator may add to a metrics mapping: the hash of the eval rows it scored.
EVAL_HASH_KEY = "eval_hash"
# Change thresholds: candidate >= champion - drop. The support-intent loop's rule.
DEFAULT_MAX_DROP: Mapping[str, float] = {"macro_f1": 0.05}
# Rows with b + c below this use the exact binomial McNemar test, else chi-square with correction.
MCNEMAR_EXACT_BELOW = 25
# Float slack for ">=": 0.78 must pass "0.83 - 0.05" although 0.83 - 0.05 == 0.7800000000000001.
_EPS = 1e-9

# -- parsing answers ---------------------------------------------------------------------------

_QUOTES = "\"'`*“”‘’«» \t"
_TRAILING = ".!?,;:" + _QUOTES
_PREFIX = re.compile(
    r"^\s*(?:the\s+)?(?:label|intent|category|class|answer|prediction)\s*(?:is\s*)?[:=\-]?\s*(.+)$",
    re.IGNORECASE,
)


def _norm(text: str) -> str:
    """Casefold, strip quotes/trailing punctuation, treat ``_``/``-``/whitespace runs as one space."""
    s = text.strip().strip(_QUOTES)
    s = s.rstrip(_TRAILING).lstrip(_QUOTES)
    s = re.sub(r"[\s_\-]+", " ", s.casefold())
    return s.strip()


def _label_index(labels: Sequence[str]) -> dict[str, str]:
    index: dict[str, str] = {}
    for label in labels:
        if not isinstance(label, str) or not _norm(label):
            raise ValueError(f"labels: {label!r} is not a non-empty string; pass the task's label names")
        key = _norm(label)
        if key in index and index[key] != label:
            raise ValueError(
                f"labels: {index[key]!r} and {label!r} are the same label after normalising case, "
                "quotes and separators; rename one so answers can be told apart"
            )
        index[key] = label
    return index


def parse_label(answer: str | None, labels: Sequence[str]) -> str | None:
    """Map a model's raw answer to one of ``labels``; None when it names none or several.

    The same harness serves every provider (a classifier's label, an LLM's sentence). Tried in order:
    the whole answer; a ``label: X`` / ``Intent: X`` / ``category = X`` line; the first non-empty line;
    exactly one label mentioned as a whole word anywhere in the text (a label inside a longer label,
    ``refund`` inside ``refund_status``, does not count twice). Comparison ignores case, surrounding
    quotes, trailing punctuation and ``_`` vs ``-`` vs space.

    Args:
        answer: the raw answer text (None or non-text is unparseable).
        labels: the task's label names.

    Returns:
        The matching label as spelled in ``labels``, or None (unparseable or ambiguous).

    Raises:
        ValueError: two labels are the same after normalisation, or a label is empty.
    """
    index = _label_index(labels)
    if not isinstance(answer, str) or not answer.strip():
        return None
    whole = _norm(answer)
    if whole in index:
        return index[whole]
    lines = [ln for ln in answer.splitlines() if ln.strip()]
    for line in lines:
        m = _PREFIX.match(line)
        if m and _norm(m.group(1)) in index:
            return index[_norm(m.group(1))]
    if lines and _norm(lines[0]) in index:
        return index[_norm(lines[0])]
    return _single_mention(whole, index)


def _single_mention(text: str, index: Mapping[str, str]) -> str | None:
    spans: list[tuple[int, int, str]] = []
    for key, label in index.items():
        pattern = r"(?<![0-9a-z])" + re.escape(key) + r"(?![0-9a-z])"
        spans.extend((m.start(), m.end(), label) for m in re.finditer(pattern, text))
    kept = {
        label
        for (s, e, label) in spans
        if not any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) for (s2, e2, _) in spans)
    }
    return kept.pop() if len(kept) == 1 else None


# -- metrics -----------------------------------------------------------------------------------


def compute_metrics(
    y_true: Sequence[str], y_pred: Sequence[str | None], labels: Sequence[str]
) -> dict[str, Any]:
    """Classification metrics over parsed predictions; unparseable predictions count as wrong.

    Args:
        y_true: the true label of each eval row (each must be in ``labels``).
        y_pred: the parsed prediction of each row; None (or any value not in ``labels``) is
            unparseable: counted in ``unparseable`` and scored as a miss for the true class.
        labels: the label set, in the order used for ``per_label`` and the confusion matrix.

    Returns:
        ``accuracy, macro_precision, macro_recall, macro_f1, weighted_f1`` (floats), ``per_label``
        ``{label: {precision, recall, f1, support}}``, ``confusion_matrix`` ``{"labels", "rows",
        "unparseable"}`` (rows = true label, columns = predicted label, plus unparseable per true
        label), ``n`` and ``unparseable``.

    Raises:
        ValueError: empty input, length mismatch, duplicate labels or a true label not in ``labels``.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(labels)
    if len(set(labels)) != len(labels) or not labels:
        raise ValueError(f"labels={labels!r} must be a non-empty list of distinct names")
    if len(y_true) != len(y_pred):
        raise ValueError(
            f"y_true has {len(y_true)} rows but y_pred has {len(y_pred)}; score the same eval rows"
        )
    if not y_true:
        raise ValueError("y_true is empty; the eval split has no rows to score")
    known = set(labels)
    bad = sorted({t for t in y_true if t not in known}, key=str)
    if bad:
        raise ValueError(f"y_true has label(s) {bad[:5]} not in labels {labels}; add them to the label set")
    # A sentinel that cannot collide with a label: unparseable rows count against the true class.
    sentinel = "\x00unparseable"
    pred = [p if p in known else sentinel for p in y_pred]
    true = list(y_true)
    unparseable = sum(p == sentinel for p in pred)
    n = len(true)

    p, r, f, s = precision_recall_fscore_support(true, pred, labels=labels, zero_division=0)
    macro = precision_recall_fscore_support(true, pred, labels=labels, average="macro", zero_division=0)
    weighted = precision_recall_fscore_support(true, pred, labels=labels, average="weighted", zero_division=0)
    cm = confusion_matrix(true, pred, labels=[*labels, sentinel])
    return {
        "accuracy": sum(t == q for t, q in zip(true, pred, strict=True)) / n,
        "macro_precision": float(macro[0]),
        "macro_recall": float(macro[1]),
        "macro_f1": float(macro[2]),
        "weighted_f1": float(weighted[2]),
        "per_label": {
            lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, lab in enumerate(labels)
        },
        "confusion_matrix": {
            "labels": labels,
            "rows": [[int(v) for v in row[: len(labels)]] for row in cm[: len(labels)]],
            "unparseable": [int(row[len(labels)]) for row in cm[: len(labels)]],
        },
        "n": n,
        "unparseable": unparseable,
    }


def mcnemar(
    y_true: Sequence[str], *, champion: Sequence[str | None], candidate: Sequence[str | None]
) -> dict[str, Any]:
    """McNemar's paired test of the champion and the candidate on the same rows.

    ``b`` counts rows only the champion got right, ``c`` rows only the candidate got right (also
    returned as ``only_champion_right`` / ``only_candidate_right``). With ``b + c < 25`` the exact
    two-sided binomial test is used, else chi-square with continuity correction, 1 degree of freedom.
    Keyword-only, so the two sides cannot be swapped by position.

    Args:
        y_true: the true labels.
        champion: the champion's parsed predictions (None = wrong), row for row.
        candidate: the candidate's parsed predictions, row for row.

    Returns:
        ``{n, b, c, only_champion_right, only_candidate_right, both_right, both_wrong, statistic,
        p_value, method}``.

    Raises:
        ValueError: the three sequences differ in length.
    """
    from scipy import stats

    pred_a, pred_b = champion, candidate
    if not len(y_true) == len(pred_a) == len(pred_b):
        raise ValueError(
            f"y_true ({len(y_true)}), champion ({len(pred_a)}) and candidate ({len(pred_b)}) predictions must "
            "have the same length: a paired test needs both models' answers on the same rows"
        )
    b = c = both_right = both_wrong = 0
    for t, a, bb in zip(y_true, pred_a, pred_b, strict=True):
        ra, rb = a == t, bb == t
        b += ra and not rb
        c += rb and not ra
        both_right += ra and rb
        both_wrong += not ra and not rb
    if b + c == 0:
        statistic, p_value, method = 0.0, 1.0, "no discordant rows"
    elif b + c < MCNEMAR_EXACT_BELOW:
        statistic = float(min(b, c))
        p_value = float(stats.binomtest(b, b + c, 0.5).pvalue)
        method = "exact binomial"
    else:
        statistic = (abs(b - c) - 1) ** 2 / (b + c)
        p_value = float(stats.chi2.sf(statistic, 1))
        method = "chi-square with continuity correction"
    return {
        "n": len(y_true),
        "b": b,
        "c": c,
        "only_champion_right": b,
        "only_candidate_right": c,
        "both_right": both_right,
        "both_wrong": both_wrong,
        "statistic": float(statistic),
        "p_value": min(1.0, p_value),
        "method": method,
    }


# -- thresholds and the decision -----------------------------------------------------------------


def _check_metric_map(field_name: str, values: Any) -> dict[str, float]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ValueError(f"{field_name}={values!r} must be a mapping like {{'macro_f1': 0.7}}")
    out: dict[str, float] = {}
    for k, v in values.items():
        if k not in METRIC_KEYS:
            raise ValueError(f"{field_name}: {k!r} is not a metric; use one of {list(METRIC_KEYS)}")
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"{field_name}[{k!r}]={v!r} must be a number in [0, 1]")
        out[k] = float(v)
    return out


@dataclass(frozen=True)
class Thresholds:
    """When a candidate may be blessed.

    Attributes:
        min_values: value thresholds, ``{metric: minimum}``: the candidate's metric must be >= minimum.
        max_drop: change thresholds, ``{metric: drop}``: the candidate's metric must be >= the
            champion's metric on the same eval rows minus ``drop``. Ignored on the first run.

    Both empty means no thresholds: :func:`decide` then blesses nothing (fails closed).
    """

    min_values: Mapping[str, float] = field(default_factory=dict)
    max_drop: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MAX_DROP))

    def __post_init__(self):
        object.__setattr__(self, "min_values", _check_metric_map("min_values", self.min_values))
        object.__setattr__(self, "max_drop", _check_metric_map("max_drop", self.max_drop))

    @property
    def empty(self) -> bool:
        """True when no threshold of either kind is configured."""
        return not self.min_values and not self.max_drop

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"min_values": dict(self.min_values), "max_drop": dict(self.max_drop)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Thresholds:
        """Build from ``{"min_values": {...}, "max_drop": {...}}``; a missing key takes its default."""
        if not isinstance(d, Mapping):
            raise ValueError(f"thresholds={d!r} must be an object with min_values and/or max_drop")
        unknown = sorted(set(d) - {"min_values", "max_drop"})
        if unknown:
            raise ValueError(f"thresholds: unknown key(s) {unknown}; use 'min_values' and/or 'max_drop'")
        kwargs = {k: d[k] for k in ("min_values", "max_drop") if k in d}
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> Thresholds:
        """Parse a JSON object such as ``{"min_values": {"macro_f1": 0.7}, "max_drop": {"macro_f1": 0.05}}``."""
        try:
            d = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"thresholds {text!r} is not valid JSON; write e.g. "
                '{"min_values": {"macro_f1": 0.7}, "max_drop": {"macro_f1": 0.05}}'
            ) from exc
        return cls.from_dict(d)


@dataclass(frozen=True)
class Blessing:
    """The evaluator's verdict. ``reason`` is always written and names the numbers compared.

    ``checks`` holds one ``{metric, kind, candidate, bound, passed}`` per threshold applied; ``kind`` is
    ``"min"``, ``"max_drop"`` or ``"same_rows"``.
    """

    blessed: bool
    reason: str
    checks: tuple[Mapping[str, Any], ...] = ()
    candidate_metrics: Mapping[str, Any] = field(default_factory=dict)
    champion_metrics: Mapping[str, Any] | None = None
    champion_version: str | None = None
    first_run: bool = False
    paired: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "blessed": self.blessed,
            "reason": self.reason,
            "checks": [dict(c) for c in self.checks],
            "candidate_metrics": dict(self.candidate_metrics),
            "champion_metrics": None if self.champion_metrics is None else dict(self.champion_metrics),
            "champion_version": self.champion_version,
            "first_run": self.first_run,
            "paired": None if self.paired is None else dict(self.paired),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Blessing:
        return cls(
            blessed=bool(d["blessed"]),
            reason=str(d["reason"]),
            checks=tuple(dict(c) for c in d.get("checks", ())),
            candidate_metrics=dict(d.get("candidate_metrics") or {}),
            champion_metrics=d.get("champion_metrics"),
            champion_version=d.get("champion_version"),
            first_run=bool(d.get("first_run", False)),
            paired=d.get("paired"),
        )


def _num(metrics: Mapping[str, Any], key: str) -> float | None:
    v = metrics.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or math.isnan(float(v)):
        return None
    return float(v)


def decide(
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    thresholds: Thresholds | None,
    *,
    champion_version: str | None = None,
    paired: Mapping[str, Any] | None = None,
) -> Blessing:
    """Bless or not: the one decision function of the loop.

    Rules: no thresholds configured -> not blessed (fail closed). No champion (first run) -> judged
    on the value thresholds alone (with change thresholds only, the first candidate becomes the
    baseline). Otherwise every value threshold and every change threshold must pass, the change
    thresholds against the champion's metrics on the same eval rows (``n`` and, when both carry it,
    ``eval_hash`` must agree). A metric missing from either side fails its check.

    Args:
        candidate: the candidate's metrics on the eval rows (as from :func:`compute_metrics`).
        champion: the current champion's metrics on the same rows, or None when there is none.
        thresholds: the thresholds; None counts as none configured.
        champion_version: the champion's registry version, named in the reason.
        paired: a :func:`mcnemar` result, recorded and quoted in the reason (it does not decide);
            ``mcnemar(y_true, champion=..., candidate=...)``: ``c`` counts the rows only the candidate
            got right.

    Returns:
        A :class:`Blessing`; ``reason`` always says what was compared and with which numbers.
    """
    first_run = champion is None
    champ_name = f"champion {champion_version}" if champion_version else "champion"
    base = {
        "candidate_metrics": dict(candidate),
        "champion_metrics": None if champion is None else dict(champion),
        "champion_version": champion_version,
        "first_run": first_run,
        "paired": None if paired is None else dict(paired),
    }
    if thresholds is None or thresholds.empty:
        return Blessing(
            blessed=False,
            reason="not blessed: no thresholds configured (min_values and max_drop are empty), so nothing "
            "is blessed; set e.g. min_values={'macro_f1': 0.7} and/or max_drop={'macro_f1': 0.05}",
            **base,
        )

    checks: list[dict[str, Any]] = []
    notes: list[str] = []
    for metric, minimum in thresholds.min_values.items():
        value = _num(candidate, metric)
        passed = value is not None and value + _EPS >= minimum
        checks.append(
            {"metric": metric, "kind": "min", "candidate": value, "bound": minimum, "passed": passed}
        )
        if value is None:
            notes.append(f"candidate has no {metric}")
        else:
            notes.append(f"{metric} {value:.3f} {'>=' if passed else '<'} min {minimum:.3f}")

    if first_run:
        prefix = "no champion: judged on value thresholds alone"
        if not thresholds.min_values:
            prefix += " (none configured, so this first candidate becomes the baseline)"
    else:
        prefix = (
            f"compared with {champ_name}"
            if thresholds.max_drop
            else f"{champ_name} not compared (no max_drop thresholds configured)"
        )
        if thresholds.max_drop:
            notes.extend(_same_rows(candidate, champion, champ_name, checks))
        for metric, drop in thresholds.max_drop.items():
            value, champ = _num(candidate, metric), _num(champion, metric)
            bound = None if champ is None else champ - drop
            passed = value is not None and bound is not None and value + _EPS >= bound
            checks.append(
                {"metric": metric, "kind": "max_drop", "candidate": value, "bound": bound, "passed": passed}
            )
            if value is None:
                notes.append(f"candidate has no {metric}")
            elif champ is None:
                notes.append(f"{champ_name} has no {metric} on these eval rows; re-evaluate the champion")
            else:
                op = ">=" if passed else "<"
                notes.append(f"{metric} {value:.3f} {op} {champ_name} {champ:.3f} - {drop:.3f} = {bound:.3f}")

    blessed = all(c["passed"] for c in checks)
    parts = [prefix, *notes]
    if paired is not None and "p_value" in paired:
        parts.append(
            f"McNemar p={float(paired['p_value']):.3g} (b={paired.get('b')}, c={paired.get('c')}; "
            "informational, not a threshold)"
        )
    verdict = "blessed" if blessed else "not blessed"
    return Blessing(blessed=blessed, reason=f"{verdict}: " + "; ".join(parts), checks=tuple(checks), **base)


def _same_rows(
    candidate: Mapping[str, Any], champion: Mapping[str, Any], champ_name: str, checks: list[dict[str, Any]]
) -> list[str]:
    """Fail a ``same_rows`` check when both sides say how they were scored and the rows differ."""
    notes = []
    for key in ("n", EVAL_HASH_KEY):
        a, b = candidate.get(key), champion.get(key)
        if a is None or b is None:
            continue
        passed = a == b
        checks.append({"metric": key, "kind": "same_rows", "candidate": a, "bound": b, "passed": passed})
        if not passed:
            notes.append(
                f"candidate scored {key}={a} but {champ_name} scored {key}={b}: not the same eval rows; "
                "re-evaluate both on one eval split"
            )
    return notes
