"""The evaluation report: one page rendered from the evaluator's blessing record, and nothing else.

:func:`render_evaluation` is a pure function of the record the evaluate step writes (the same
record the promote step reads), so the KFP ``HTML`` artifact of the evaluate task and the copy
next to ``summary.json`` under ``reports_uri`` are the same bytes. The page is a list of section
functions, each ``record -> markup or None`` (None: nothing to show for this record); a new kind of
evaluation is one more function in :data:`SECTIONS`.

Keys read from the record (all optional except ``blessed`` and ``reason``):

==========================  ===================================================================
``blessed``, ``reason``     the decision, shown first
``checks``                  ``[{metric, kind, candidate, bound, passed}]`` (:class:`~tuneloop.evaluation.Blessing`)
``candidate_metrics``       scalars (``accuracy``, ``macro_f1``, ``chrf``, ``rouge_l``, ...), and for a
``champion_metrics``        classification ``per_label`` and ``confusion_matrix`` (:func:`~tuneloop.evaluation.compute_metrics`)
``champion_version``        the champion compared with (None: first run)
``paired_test``             McNemar (:func:`~tuneloop.evaluation.mcnemar`): ``b`` only the champion right, ``c`` only the candidate
``unparseable_examples``    raw candidate answers that named no label
``dataset``                 :func:`dataset_facts`: counts, rows quarantined at extract and by format, top reasons
``spend``                   :func:`spend_facts`: preflight estimate, trained tokens, requests per model
``task``                    ``"classification"`` or ``"chat"``
``per_row``                 chat: ``[{id, candidate: {chrf, rouge_l}, champion: {chrf, rouge_l} | None}]``
``judge``                   chat: ``{judge, win, tie, loss, inconsistent, malformed, win_rate, lower_bound,
                            bar, rubric}`` (counts of rows; a row is inconsistent when the two orders disagree)
``samples``                 chat: up to 20 ``{id, prompt, reference, candidate, champion, verdicts, outcome}``;
                            ``prompt`` is a list of ``{role, content}`` turns (or a string), ``verdicts``
                            any JSON (e.g. ``{"candidate_first": "A", "champion_first": "B"}``)
==========================  ===================================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tuneloop.reports import charts
from tuneloop.reports.html import (
    Safe,
    decision_box,
    delta,
    esc,
    is_number,
    join,
    json_value,
    kv_table,
    num,
    page,
    passed,
    section,
    table,
    tag,
)

REPORT_FILE = "report.html"
# Scalar metrics shown first, in this order; any other number in the metrics follows.
FIRST_METRICS = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "weighted_f1", "chrf", "rouge_l",
                 "win_rate")
LOWER_IS_BETTER = frozenset({"unparseable"})
# Counts, not scores: shown without a delta colour.
COUNTS = frozenset({"n"})
MAX_LABEL_ROWS = 60
MAX_HEATMAP_LABELS = 40
MAX_MOVERS_CHART = 20
MAX_SAMPLES = 20
TOP_REASONS = 5
JUDGE_PARTS = ("win", "tie", "loss", "inconsistent", "malformed")
JUDGE_COLORS = {"win": charts.OK_COLOR, "tie": charts.CHAMPION_COLOR, "loss": charts.BAD_COLOR,
                "inconsistent": charts.WARN_COLOR, "malformed": "#6e7781"}
CHAT_SCORES = (("chrf", "chrF"), ("rouge_l", "ROUGE-L"))
SERIES_COLORS = {"candidate": charts.CANDIDATE_COLOR, "champion": charts.CHAMPION_COLOR}


# -- what the evaluate step adds to the record ------------------------------------------------------


def dataset_facts(uri: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset numbers a report shows, from its manifest and its extract quarantine file.

    Returns ``{uri, hash, counts, total, new_examples, quarantined_at_extract,
    superseded_by_corrections, extract_reasons: [[reason kind, rows]], formats: {fmt: {quarantined,
    top_reasons}}}``; the reasons are counted by kind (specifics such as row numbers blanked).
    """
    from tuneloop import storage
    from tuneloop.formats.reports import top_reasons

    blob = storage.read(storage.join(uri, "quarantine.jsonl"))
    reasons: list[list[str]] = []
    for line in (blob.data.decode("utf-8", "replace").splitlines() if blob is not None else []):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, Mapping) and entry.get("reason"):
            reasons.append([str(entry["reason"])])
    formats = {}
    for fmt, rep in (manifest.get("formats") or {}).items():
        if isinstance(rep, Mapping):
            formats[fmt] = {"quarantined": rep.get("quarantined"),
                            "top_reasons": [list(x) for x in rep.get("top_reasons") or []][:TOP_REASONS]}
    return {
        "uri": uri,
        "hash": manifest.get("dataset_hash"),
        "counts": dict(manifest.get("counts") or {}),
        "total": manifest.get("total"),
        "new_examples": manifest.get("new_examples"),
        "quarantined_at_extract": manifest.get("quarantined_at_extract"),
        "superseded_by_corrections": manifest.get("superseded_by_corrections"),
        "extract_reasons": [[r, n] for r, n in top_reasons(reasons, TOP_REASONS)],
        "formats": formats,
    }


def predict_facts(provider: Any) -> dict[str, Any] | None:
    """What a hosted provider's last ``predict`` sent (``last_predict``), or None for a local one."""
    stats = getattr(provider, "last_predict", None)
    if stats is None:
        return None
    return {k: getattr(stats, k) for k in ("requests", "answers", "failed") if hasattr(stats, k)} | {
        "errors": list(getattr(stats, "errors", []) or [])[:3]
    }


def spend_facts(card: Mapping[str, Any], *, hosted: bool, predict: Mapping[str, Any | None]) -> dict[str, Any]:
    """Cost and requests of one evaluation: the tune task's preflight estimate and the predict stats.

    Args:
        card: the tune task's ``tuneloop-result.json`` (it carries ``preflight`` and ``trained_tokens``).
        hosted: whether the candidate's provider is a hosted (paid) one.
        predict: ``{"candidate": predict_facts(...), "champion": ...}``.
    """
    pre = card.get("preflight") if isinstance(card.get("preflight"), Mapping) else None
    return {
        "hosted": hosted,
        "preflight": dict(pre) if pre else None,
        "trained_tokens": card.get("trained_tokens"),
        "job_id": card.get("job_id"),
        "predict": {k: dict(v) for k, v in predict.items() if v},
    }


# -- sections --------------------------------------------------------------------------------------


def _metrics(record: Mapping[str, Any], side: str) -> Mapping[str, Any]:
    value = record.get(f"{side}_metrics")
    return value if isinstance(value, Mapping) else {}


def _champ_name(record: Mapping[str, Any]) -> str:
    v = record.get("champion_version")
    return f"champion {v}" if v else "champion"


def _task(record: Mapping[str, Any]) -> str:
    if record.get("task"):
        return str(record["task"])
    return "chat" if any(k in record for k in ("judge", "samples", "per_row")) else "classification"


def header(record: Mapping[str, Any]) -> Safe:
    """The decision and its reason, then what was compared."""
    blessed = bool(record.get("blessed"))
    champ = record.get("champion_version")
    facts = [
        ("task", _task(record)),
        ("provider", record.get("provider", "-")),
        ("compared with", f"champion {champ}" if champ else "no champion (first run: value thresholds alone)"),
        ("eval rows", num(record.get("eval_rows"))),
        ("dataset", record.get("dataset_uri", "-")),
    ]
    return join([decision_box(blessed, "BLESSED" if blessed else "NOT BLESSED", record.get("reason", "")),
                 kv_table(facts)])


def _scalar_keys(cand: Mapping[str, Any], champ: Mapping[str, Any]) -> list[str]:
    keys = [k for k in {**cand, **champ} if is_number(cand.get(k)) or is_number(champ.get(k))]
    first = [k for k in FIRST_METRICS if k in keys]
    return first + sorted(k for k in keys if k not in first)


def metrics_section(record: Mapping[str, Any]) -> Safe | None:
    """Candidate vs champion, every scalar metric with its delta; the threshold checks; a bar chart."""
    cand, champ = _metrics(record, "candidate"), _metrics(record, "champion")
    keys = _scalar_keys(cand, champ)
    if not keys:
        return None
    name = _champ_name(record)
    rows = []
    for k in keys:
        a, b = cand.get(k), champ.get(k)
        d = a - b if is_number(a) and is_number(b) else None
        rows.append([k, num(a), num(b) if champ else "-",
                     Safe("") if k in COUNTS else delta(d, higher_is_better=k not in LOWER_IS_BETTER)])
    parts = [table(["metric", "candidate", name, "delta"], rows, numeric=(1, 2, 3))]
    checks = [c for c in record.get("checks") or [] if isinstance(c, Mapping)]
    if checks:
        parts.append(tag("h3", "Threshold checks"))
        kinds = {"min": "candidate >= minimum", "max_drop": f"candidate >= {name} - max drop",
                 "same_rows": "same eval rows",
                 "judge_lower_bound": "judge's lower bound >= 0.5 - max_drop.win_rate",
                 "none": "no threshold applies"}
        parts.append(table(
            ["metric", "rule", "candidate", "bound", "result"],
            [[c.get("metric"), kinds.get(c.get("kind"), c.get("kind")), num(c.get("candidate")),
              num(c.get("bound")), passed(c.get("passed"))] for c in checks],
            numeric=(2, 3),
        ))
    # one chart for the scores in [0, 1] (chrF's 0-100 scale has its own section)
    scores = [k for k in keys if k not in COUNTS and k not in LOWER_IS_BETTER
              and all(0 <= v <= 1 for v in (cand.get(k), champ.get(k)) if is_number(v))][:8]
    if scores:
        series = {"candidate": [cand.get(k) if is_number(cand.get(k)) else None for k in scores]}
        if champ:
            series[name] = [champ.get(k) if is_number(champ.get(k)) else None for k in scores]
        parts.append(charts.grouped_bars(
            scores, series, name="metrics", title=f"Candidate vs {name}" if champ else "Candidate (no champion)",
            ylabel="score",
            colors={"candidate": charts.CANDIDATE_COLOR, name: charts.CHAMPION_COLOR},
        ))
    return section("Metrics", *parts, id_="metrics")


def _confusion(metrics: Mapping[str, Any]) -> tuple[list[str], list[list[int]], list[int]] | None:
    cm = metrics.get("confusion_matrix")
    if not isinstance(cm, Mapping) or not cm.get("labels"):
        return None
    return [str(x) for x in cm["labels"]], [list(r) for r in cm.get("rows", [])], list(cm.get("unparseable") or [])


def _top_labels(labels: list[str], rows: list[list[int]], unparseable: list[int]) -> tuple[list[str], list[list[int]],
                                                                                            list[int], int]:
    """At most :data:`MAX_HEATMAP_LABELS` labels, the most frequent; the rest's predictions become one column."""
    if len(labels) <= MAX_HEATMAP_LABELS:
        return labels, rows, unparseable, 0
    support = [sum(r) + (unparseable[i] if i < len(unparseable) else 0) for i, r in enumerate(rows)]
    keep = sorted(sorted(range(len(labels)), key=lambda i: (-support[i], labels[i]))[:MAX_HEATMAP_LABELS])
    kept_rows = [[rows[i][j] for j in keep] + [sum(rows[i]) - sum(rows[i][j] for j in keep)] for i in keep]
    return [labels[i] for i in keep], kept_rows, [unparseable[i] for i in keep if i < len(unparseable)], len(labels)


def confusion_section(record: Mapping[str, Any]) -> Safe | None:
    """The confusion-matrix heat maps (candidate, and the champion on the same rows)."""
    figs, notes = [], []
    for side, title in (("candidate", "candidate"), ("champion", _champ_name(record))):
        got = _confusion(_metrics(record, side))
        if got is None:
            continue
        labels, rows, unparseable, total = _top_labels(*got)
        cols = list(labels) + (["(other labels)"] if total else [])
        if any(unparseable):
            cols.append("(unparseable)")
            rows = [[*r, u] for r, u in zip(rows, unparseable, strict=False)]
        if total and not notes:
            notes.append(tag("p", f"The {len(labels)} most frequent of {total} labels; predictions of the others "
                                  "are one column, (other labels).", class_="note"))
        figs.append(charts.heatmap(rows, labels, cols, name=f"confusion-{side}", title=f"Confusion matrix: {title}",
                                   caption="rows: true label; columns: predicted; colour: share of the row"))
    if not figs:
        return None
    return section("Confusion matrix", *notes, *figs, id_="confusion")


def per_label_section(record: Mapping[str, Any]) -> Safe | None:
    """Precision, recall and F1 per label for both models, the labels whose F1 moved most first."""
    cand = _metrics(record, "candidate").get("per_label")
    if not isinstance(cand, Mapping) or not cand:
        return None
    champ = _metrics(record, "champion").get("per_label")
    champ = champ if isinstance(champ, Mapping) else {}

    def f(d: Any, k: str) -> float | None:
        v = d.get(k) if isinstance(d, Mapping) else None
        return float(v) if is_number(v) else None

    def moved(lab: str) -> tuple:
        a, b = f(cand[lab], "f1"), f(champ.get(lab), "f1")
        if a is None or b is None:
            return (1, a if a is not None else 0.0, lab)
        return (0, -abs(a - b), lab)

    order = sorted(cand, key=moved) if champ else sorted(cand, key=lambda lab: (f(cand[lab], "f1") or 0.0, lab))
    name = _champ_name(record)
    rows = []
    for lab in order[:MAX_LABEL_ROWS]:
        c, h = cand[lab], champ.get(lab)
        row = [lab, num((c or {}).get("support"))]
        for k in ("precision", "recall", "f1"):
            a, b = f(c, k), f(h, k)
            row += [num(a), num(b) if champ else "-", delta(a - b if a is not None and b is not None else None)]
        rows.append(row)
    headers = ["label", "support"]
    for k in ("precision", "recall", "F1"):
        headers += [f"{k} cand.", f"{k} champ.", f"Δ {k}"]
    note = (f"Sorted by how far F1 moved between the candidate and {name} (largest change first)."
            if champ else "No champion to compare: sorted by the candidate's F1, weakest first.")
    parts: list[Any] = [tag("p", note, class_="note"),
                        table(headers, rows, numeric=tuple(range(1, len(headers))))]
    if len(order) > MAX_LABEL_ROWS:
        parts.append(tag("p", f"{len(order) - MAX_LABEL_ROWS} more labels not shown.", class_="note"))
    if champ:
        top = [lab for lab in order if f(cand[lab], "f1") is not None and f(champ.get(lab), "f1") is not None]
        top = top[:MAX_MOVERS_CHART]
        if top:
            parts.append(charts.diverging_bars(
                top, [f(cand[lab], "f1") - f(champ[lab], "f1") for lab in top], name="per-label-f1",
                title=f"F1 change per label (candidate - {name})", xlabel="Δ F1"))
    return section("Per-label precision / recall / F1", *parts, id_="per-label")


def paired_section(record: Mapping[str, Any]) -> Safe | None:
    """McNemar's paired test on the same eval rows."""
    p = record.get("paired_test") or record.get("paired")
    if not isinstance(p, Mapping):
        return None
    champ = _champ_name(record)
    rows = [
        [f"{champ} right, candidate wrong (b)", num(p.get("only_champion_right", p.get("b")))],
        [f"candidate right, {champ} wrong (c)", num(p.get("only_candidate_right", p.get("c")))],
        ["both right", num(p.get("both_right"))],
        ["both wrong", num(p.get("both_wrong"))],
        ["rows", num(p.get("n"))],
        ["statistic", num(p.get("statistic"))],
        ["p-value", num(p.get("p_value"), 4)],
        ["method", p.get("method", "-")],
    ]
    pv = p.get("p_value")
    verdict = (
        f"p = {pv:.3g}: the two models' error rates differ (at 5%)" if is_number(pv) and pv < 0.05
        else "no significant difference between the two models on these rows (at 5%)" if is_number(pv) else ""
    )
    return section("Paired test (McNemar)", table(None, rows, numeric=(1,), class_="kv"),
                   tag("p", verdict + " — informational, not a threshold.", class_="note"), id_="paired")


def unparseable_section(record: Mapping[str, Any]) -> Safe | None:
    """The candidate's raw answers that named no label (they count as wrong)."""
    items = [x for x in record.get("unparseable_examples") or [] if x is not None]
    if not items:
        return None
    return section(
        "Answers that named no label",
        tag("p", f"{len(items)} shown; each counts as a wrong prediction.", class_="note"),
        tag("ol", *(tag("li", tag("span", json_value(x, 600), class_="turn")) for x in items)),
        id_="unparseable",
    )


# -- chat ------------------------------------------------------------------------------------------


def _row_scores(rows: Sequence[Any], side: str, key: str) -> list[float]:
    out = []
    for r in rows:
        side_scores = r.get(side) if isinstance(r, Mapping) else None
        v = side_scores.get(key) if isinstance(side_scores, Mapping) else None
        if is_number(v):
            out.append(float(v))
    return out


def chat_reference_section(record: Mapping[str, Any]) -> Safe | None:
    """chrF and ROUGE-L against the reference reply: means, per-row distributions, rows better/worse."""
    rows = [r for r in record.get("per_row") or [] if isinstance(r, Mapping)]
    cand, champ = _metrics(record, "candidate"), _metrics(record, "champion")
    present = [(k, title) for k, title in CHAT_SCORES
               if is_number(cand.get(k)) or _row_scores(rows, "candidate", k)]
    if not present:
        return None
    name = _champ_name(record)
    summary, figs = [], []
    for k, title in present:
        a_rows, b_rows = _row_scores(rows, "candidate", k), _row_scores(rows, "champion", k)
        a = cand.get(k) if is_number(cand.get(k)) else (sum(a_rows) / len(a_rows) if a_rows else None)
        b = champ.get(k) if is_number(champ.get(k)) else (sum(b_rows) / len(b_rows) if b_rows else None)
        better = worse = same = None
        paired = [(r["candidate"][k], r["champion"][k]) for r in rows
                  if isinstance(r.get("candidate"), Mapping) and isinstance(r.get("champion"), Mapping)
                  and is_number(r["candidate"].get(k)) and is_number(r["champion"].get(k))]
        if paired:
            better = sum(x > y for x, y in paired)
            worse = sum(x < y for x, y in paired)
            same = len(paired) - better - worse
        summary.append([title, num(a), num(b), delta(a - b if is_number(a) and is_number(b) else None),
                        num(better), num(worse), num(same)])
        if a_rows:
            series = {"candidate": a_rows} | ({name: b_rows} if b_rows else {})
            figs.append(charts.histograms(series, name=f"per-row-{k}", title=f"{title} per row", xlabel=title,
                                          colors={"candidate": charts.CANDIDATE_COLOR, name: charts.CHAMPION_COLOR}))
    return section(
        "Reference metrics (chat)",
        table(["metric", "candidate mean", f"{name} mean", "delta", "rows better", "rows worse", "rows equal"],
              summary, numeric=(1, 2, 3, 4, 5, 6)),
        *figs,
        id_="chat-reference",
    )


_JUDGE_ALIASES = {"win": ("win", "wins"), "tie": ("tie", "ties"), "loss": ("loss", "losses"),
                  "inconsistent": ("inconsistent",), "malformed": ("malformed",)}


def chat_judge_section(record: Mapping[str, Any]) -> Safe | None:
    """The pairwise judge: win / tie / loss / inconsistent (and malformed) rows, win rate and its bound."""
    j = record.get("judge")
    if not isinstance(j, Mapping):
        return None
    counts: dict[str, int] = {}
    for part in JUDGE_PARTS:
        for key in _JUDGE_ALIASES[part]:
            if is_number(j.get(key)):
                counts[part] = int(j[key])
                break
    if not counts:
        return None
    name = _champ_name(record)
    facts = [
        ("judge", j.get("judge") or j.get("model") or "-"),
        ("win rate (ties split)", num(j.get("win_rate"))),
        ("one-sided 95% lower bound", num(j.get("lower_bound"))),
        ("bar (0.5 - max_drop.win_rate)", num(j.get("bar"))),
    ]
    if is_number(j.get("lower_bound")) and is_number(j.get("bar")):
        facts.append(("judge rule", passed(j["lower_bound"] + 1e-9 >= j["bar"])))
    parts: list[Any] = [
        charts.stacked_bar(counts, name="judge", title=f"Judge verdicts: candidate vs {name}", colors=JUDGE_COLORS,
                           caption="each row judged in both orders; a row counts only when both orders agree, "
                                   "otherwise it is inconsistent"),
        table(["verdict", "rows"], [[k, num(v)] for k, v in counts.items()], numeric=(1,)),
        kv_table(facts),
    ]
    if j.get("rubric"):
        parts.append(tag("details", tag("summary", "rubric"), tag("div", j["rubric"], class_="turn")))
    return section("Judge (chat)", *parts, id_="chat-judge")


def _turns(prompt: Any) -> Safe:
    if isinstance(prompt, Sequence) and not isinstance(prompt, str):
        turns = []
        for t in prompt:
            if isinstance(t, Mapping):
                turns.append(tag("div", tag("span", t.get("role", "?"), class_="role"),
                                 json_value(t.get("content", ""), 4000), class_="turn"))
            else:
                turns.append(tag("div", json_value(t, 4000), class_="turn"))
        return tag("div", *turns, class_="turns")
    return tag("div", json_value(prompt, 8000), class_="turns turn")


def chat_samples_section(record: Mapping[str, Any]) -> Safe | None:
    """Up to 20 side-by-side samples: the prompt, the reference, both replies and the judge's verdicts."""
    samples = [s for s in record.get("samples") or [] if isinstance(s, Mapping)][:MAX_SAMPLES]
    if not samples:
        return None
    name = _champ_name(record)
    cards = []
    for i, s in enumerate(samples):
        title = join([f"#{i + 1}", f" {s['id']}" if s.get("id") else "",
                      f" — {s['outcome']}" if s.get("outcome") else ""])
        replies = [tag("div", tag("h4", "reference"), json_value(s.get("reference"), 4000), class_="reply"),
                   tag("div", tag("h4", "candidate"), json_value(s.get("candidate"), 4000), class_="reply"),
                   tag("div", tag("h4", name), json_value(s.get("champion"), 4000), class_="reply")]
        body = [_turns(s.get("prompt")), tag("div", *replies, class_="replies")]
        if s.get("verdicts") is not None:
            body.append(tag("p", tag("b", "verdicts: "), json_value(s.get("verdicts"), 1000)))
        cards.append(tag("details", tag("summary", title), *body, class_="sample", open=i < 3))
    return section(f"Side-by-side samples ({len(samples)})", *cards, id_="chat-samples")


# -- data and spend ----------------------------------------------------------------------------------


def _reasons_table(pairs: Sequence[Any]) -> Safe:
    top = [p for p in pairs if isinstance(p, Sequence) and len(p) == 2]
    most = max([int(n) for _, n in top if is_number(n)] or [1])
    rows = [[r, num(n), tag("span", "", class_="bar", style=f"width:{int(120 * int(n) / most)}px")]
            for r, n in top]
    return table(["reason (kind)", "rows", ""], rows, numeric=(1,))


def dataset_section(record: Mapping[str, Any]) -> Safe | None:
    """Rows extracted and quarantined, the top quarantine reasons, per format too."""
    d = record.get("dataset")
    if not isinstance(d, Mapping):
        return None
    counts = d.get("counts") or {}
    facts = [
        ("valid new examples extracted", num(d.get("new_examples"))),
        ("rows quarantined at extract", num(d.get("quarantined_at_extract"))),
        ("superseded by human corrections", num(d.get("superseded_by_corrections"))),
        ("examples in the dataset", num(d.get("total"))),
        ("train / validation / eval", " / ".join(num(counts.get(s)) for s in ("train", "validation", "eval"))),
        ("dataset hash", d.get("hash") or "-"),
    ]
    parts: list[Any] = [kv_table(facts)]
    if d.get("extract_reasons"):
        parts += [tag("h3", "Top quarantine reasons at extract"), _reasons_table(d["extract_reasons"])]
    for fmt, rep in (d.get("formats") or {}).items():
        if isinstance(rep, Mapping) and rep.get("quarantined"):
            parts += [tag("h3", f"Rows the {fmt} validator quarantined: {num(rep['quarantined'])}"),
                      _reasons_table(rep.get("top_reasons") or [])]
    return section("Dataset", *parts, id_="dataset")


def spend_section(record: Mapping[str, Any]) -> Safe | None:
    """Training cost estimate and requests sent, for hosted providers."""
    s = record.get("spend")
    if not isinstance(s, Mapping) or not (s.get("hosted") or s.get("predict")):
        return None
    pre = s.get("preflight") or {}
    cost = pre.get("estimated_cost_usd")
    facts = [
        ("estimated training cost (preflight)",
         f"${cost:,.4f}" if is_number(cost) else "not recorded (an adopted job, or an unpriced model)"),
        ("training tokens (preflight estimate)", num(pre.get("training_tokens"))),
        ("trained tokens (reported by the provider)", num(s.get("trained_tokens"))),
        ("training examples", num(pre.get("examples"))),
        ("job", s.get("job_id") or "-"),
    ]
    parts: list[Any] = [kv_table(facts)]
    for note in pre.get("notes") or []:
        parts.append(tag("p", note, class_="note"))
    predict = s.get("predict") or {}
    if predict:
        rows = [[who, num(p.get("requests")), num(p.get("answers")), num(p.get("failed")),
                 json_value(p.get("errors") or "", 300)] for who, p in predict.items() if isinstance(p, Mapping)]
        parts += [tag("h3", "Evaluation requests"),
                  table(["model", "requests (retries included)", "answered", "failed", "first errors"], rows,
                        numeric=(1, 2, 3))]
    return section("Cost and requests", *parts, id_="spend")


MAX_DECISIONS = 200


def attempts_section(record: Mapping[str, Any]) -> Safe | None:
    """Every attempt of the run (``attempts``, added by promotion): config, training metrics, outcome."""
    attempts = [a for a in record.get("attempts") or [] if isinstance(a, Mapping)]
    if not attempts:
        return None
    rows = []
    for a in attempts:
        cand = a.get("candidate_metrics") if isinstance(a.get("candidate_metrics"), Mapping) else {}
        shown = {k: num(cand[k]) for k in FIRST_METRICS if k in cand}
        rows.append([num(a.get("attempt")), json_value(a.get("hyperparameters") or {}, 400),
                     json_value({k: num(v) for k, v in (a.get("training_metrics") or {}).items()}, 400),
                     json_value(shown, 400), passed(a.get("blessed")), a.get("reason") or "-",
                     num(a.get("retries")), a.get("decision") or "-"])
    return section("Attempts", table(
        ["#", "hyperparameters", "training metrics", "evaluation", "blessed", "reason", "job retries", "then"],
        rows, numeric=(0, 6)), id_="attempts")


def decisions_section(record: Mapping[str, Any]) -> Safe | None:
    """The run's decision log (``decisions``): stage, decision, reasoning, confidence, inputs' hash."""
    decisions = [d for d in record.get("decisions") or [] if isinstance(d, Mapping)]
    if not decisions:
        return None
    rows = [[d.get("stage"), d.get("decision"), d.get("reasoning"), num(d.get("confidence")),
             str(d.get("inputs_hash") or "-")[:19], json_value(d.get("details") or {}, 600)]
            for d in decisions[:MAX_DECISIONS]]
    parts: list[Any] = [table(["stage", "decision", "reasoning", "confidence", "inputs", "details"], rows,
                              numeric=(3,))]
    if len(decisions) > MAX_DECISIONS:
        parts.append(tag("p", f"... and {len(decisions) - MAX_DECISIONS:,} more in the run's decisions.jsonl",
                         class_="note"))
    return section("Decisions", *parts, id_="decisions")


Section = Callable[[Mapping[str, Any]], Safe | None]
# The page, top to bottom. A new kind of evaluation adds its section functions here.
SECTIONS: tuple[Section, ...] = (
    header,
    metrics_section,
    confusion_section,
    per_label_section,
    paired_section,
    chat_reference_section,
    chat_judge_section,
    chat_samples_section,
    unparseable_section,
    dataset_section,
    spend_section,
    attempts_section,
    decisions_section,
)


def render_evaluation(record: Mapping[str, Any]) -> str:
    """The evaluation report of one blessing record, as one self-contained HTML document."""
    from tuneloop.version import __version__

    if not isinstance(record, Mapping) or "blessed" not in record:
        raise ValueError("record must be an evaluation blessing record (a mapping with 'blessed' and 'reason')")
    model = record.get("model_name") or "model"
    champ = record.get("champion_version")
    subtitle = (f"{record.get('provider', '?')} candidate vs " + (f"champion {champ}" if champ else "no champion")
                + f" · {_task(record)} · dataset {str(record.get('dataset_hash') or '-')[:12]}")
    body = [s(record) for s in SECTIONS]
    return page(f"Evaluation report: {model}", subtitle, body,
                footer=f"tuneloop {__version__} · rendered from the evaluator's blessing record · "
                       "self-contained: no script, no network")


def write_evaluation_report(record: Mapping[str, Any], path: str) -> str:
    """Render :func:`render_evaluation` to ``path`` (a local file); returns the path."""
    from pathlib import Path

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_evaluation(record), encoding="utf-8")
    return str(p)


__all__ = ["REPORT_FILE", "SECTIONS", "dataset_facts", "predict_facts", "render_evaluation", "spend_facts",
           "write_evaluation_report", "esc"]
