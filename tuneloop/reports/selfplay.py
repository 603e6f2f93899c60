"""The self-play gauntlet report: win rates against the bars, games against the early stop, the Elo ladder.

:func:`render_gauntlet` is a pure function of three records the promote step already holds: the
gauntlet's results (:func:`tuneloop.selfplay.gauntlet.run_gauntlet`), the run summary the promote
step writes (decision, training set, versions) and the registry's versions (the Elo ladder across
generations: each registered version carries the Elo of its own gauntlet, anchored at random = 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tuneloop.reports import charts
from tuneloop.reports.html import (
    Safe,
    decision_box,
    esc,
    is_number,
    join,
    kv_table,
    num,
    page,
    passed,
    section,
    table,
    tag,
)

OPPONENT_ORDER = ("random", "heuristic", "previous_best")


def _plain(v: Any) -> Mapping[str, Any]:
    if hasattr(v, "to_dict"):
        return v.to_dict()
    return v if isinstance(v, Mapping) else {}


def _pairings(results: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    p = results.get("pairings") or {}
    names = [n for n in OPPONENT_ORDER if n in p] + sorted(n for n in p if n not in OPPONENT_ORDER)
    return [(n, p[n]) for n in names if isinstance(p[n], Mapping)]


def _checks(summary: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    decision = summary.get("decision") or {}
    return {c["pairing"]: c for c in decision.get("checks") or [] if isinstance(c, Mapping) and "pairing" in c}


def _header(results: Mapping[str, Any], summary: Mapping[str, Any]) -> Safe:
    decision = summary.get("decision") or {}
    blessed = bool(decision.get("blessed"))
    promoted = summary.get("promoted_version")
    verdict = "BLESSED" if blessed else "NOT BLESSED"
    if blessed and promoted:
        verdict += f" — promoted {promoted}"
    elif blessed:
        verdict += " — not promoted"
    ts = summary.get("training_set") or {}
    facts = [
        ("board config", results.get("config_name") or summary.get("board_config") or "-"),
        ("compared with", f"champion {summary['champion_evaluated']}" if summary.get("champion_evaluated")
         else "no previous best (first generation)"),
        ("registered version", summary.get("registered_version") or "-"),
        ("champion after this run", summary.get("champion_after") or "-"),
        ("training set", f"{num(ts.get('num_games'))} games, {num(ts.get('num_positions'))} positions, data "
                         f"generation {num(ts.get('generation'))}" + (" (fallback: latest export only)"
                                                                     if ts.get("fallback") else "")),
    ]
    return join([decision_box(blessed, verdict, decision.get("reason", "")), kv_table(facts)])


def _win_rates(results: Mapping[str, Any], summary: Mapping[str, Any]) -> Safe | None:
    pairings = _pairings(results)
    if not pairings:
        return None
    checks = _checks(summary)
    rows, points = [], []
    for name, p in pairings:
        check = checks.get(name, {})
        bar = check.get("threshold", p.get("target"))
        ok = check.get("passed") if check else None
        rows.append([name, num(p.get("games")), f"{num(p.get('wins'))} / {num(p.get('draws'))} / {num(p.get('losses'))}",
                     num(p.get("win_rate")), f"[{num(p.get('ci_low'))}, {num(p.get('ci_high'))}]",
                     num(bar, 2), passed(ok)])
        if is_number(p.get("win_rate")):
            points.append({"name": name, "value": float(p["win_rate"]), "low": p.get("ci_low"),
                           "high": p.get("ci_high"), "threshold": bar if is_number(bar) else None, "passed": ok})
    parts: list[Any] = []
    if points:
        parts.append(charts.intervals(points, name="win-rates", title="Candidate's score per opponent",
                                      xlabel="score (win = 1, draw = 0.5); bars: Wilson 95% interval; "
                                             "black tick: promotion bar"))
    parts.append(table(["opponent", "games", "W / D / L", "score", "95% interval", "bar", "result"], rows,
                       numeric=(1, 3, 5)))
    return section("Win rates against the bars", *parts, id_="win-rates")


def _early_stop(results: Mapping[str, Any]) -> Safe | None:
    pairings = _pairings(results)
    cfg = results.get("config") or {}
    if not pairings or not is_number(cfg.get("games")):
        return None
    max_games, min_games = int(cfg["games"]), int(cfg.get("min_games") or 0)
    alpha, beta, d = cfg.get("sprt_alpha"), cfg.get("sprt_beta"), cfg.get("sprt_delta")
    bounds = (math.log(beta / (1 - alpha)), math.log((1 - beta) / alpha)) if is_number(alpha) and is_number(beta) else None
    rows, bars = [], []
    for name, p in pairings:
        games = int(p.get("games") or 0)
        bars.append({"name": name, "games": games, "max_games": max_games, "min_games": min(min_games, max_games),
                     "stopped_early": bool(p.get("stopped_early"))})
        target = p.get("target")
        hyp = (f"{target - d:.2f} vs {target + d:.2f}" if is_number(target) and is_number(d) else "-")
        rows.append([name, f"{games} / {max_games}", "yes" if p.get("stopped_early") else "no",
                     p.get("sprt", "-"), num(p.get("sprt_llr")),
                     f"[{bounds[0]:.2f}, {bounds[1]:.2f}]" if bounds else "-", hyp])
    note = (f"Every pairing plays at least {min_games} games; after that it stops once the sequential "
            "probability ratio test (SPRT) decides that the score is above or below the pairing's target: "
            "the log-likelihood ratio leaves the interval shown.")
    return section(
        "Games played vs the early-stop bound",
        charts.progress(bars, name="games", title="Games played per pairing"),
        table(["opponent", "games / most", "stopped early", "SPRT verdict", "LLR", "LLR stop bounds",
               "H0 vs H1 score"], rows, numeric=(1, 4)),
        tag("p", note, class_="note"),
        id_="early-stop",
    )


def _version_elo(record: Mapping[str, Any]) -> float | None:
    v = (record.get("metrics") or {}).get("elo_candidate")
    return float(v) if is_number(v) else None


def _elo(results: Mapping[str, Any], summary: Mapping[str, Any], versions: Sequence[Any]) -> Safe | None:
    elo = results.get("elo") or {}
    parts: list[Any] = []
    if elo:
        order = ["candidate", *[n for n in OPPONENT_ORDER if n in elo], *sorted(set(elo) - {"candidate", *OPPONENT_ORDER})]
        parts.append(table(["player", "Elo (random = 0)"], [[n, num(elo[n], 0)] for n in order if n in elo],
                           numeric=(1,)))
    records = [r for r in (_plain(v) for v in versions) if r]
    xs, cand, heur, markers, highlight = [], [], [], [], {}
    for r in records:
        gen = (r.get("config") or {}).get("generation")
        xs.append(f"{r.get('version')}" + (f" g{gen}" if gen is not None else ""))
        cand.append(_version_elo(r))
        h = (r.get("metrics") or {}).get("elo_heuristic")
        heur.append(float(h) if is_number(h) else None)
        if r.get("version") == summary.get("champion_after"):
            highlight[len(xs) - 1] = "champion"
    registered = summary.get("registered_version")
    if not registered and is_number(elo.get("candidate")):
        xs.append("this run")
        cand.append(float(elo["candidate"]))
        heur.append(float(elo["heuristic"]) if is_number(elo.get("heuristic")) else None)
        markers.append({"x": len(xs) - 1, "y": float(elo["candidate"]), "kind": "candidate", "text": "not promoted"})
    elif registered in [r.get("version") for r in records]:
        i = [r.get("version") for r in records].index(registered)
        if cand[i] is not None:
            markers.append({"x": i, "y": cand[i], "kind": "candidate", "text": "this run"})
    if any(v is not None for v in cand):
        parts.append(charts.lines(
            xs, {"candidate Elo": cand, "heuristic Elo": heur}, name="elo-ladder",
            title="Elo ladder across generations", ylabel="Elo (random = 0)", markers=markers, highlight=highlight,
            caption="each version's Elo from its own gauntlet (Bradley-Terry over its pairings, random = 0)"))
        parts.append(table(["version", "candidate Elo", "heuristic Elo"],
                           [[x, num(c, 0), num(h, 0)] for x, c, h in zip(xs, cand, heur, strict=True)], numeric=(1, 2)))
    if not parts:
        return None
    return section("Elo", *parts, id_="elo")


def render_gauntlet(results: Mapping[str, Any], summary: Mapping[str, Any], versions: Sequence[Any] = ()) -> str:
    """The gauntlet report as one self-contained HTML document.

    Args:
        results: the gauntlet's results (``pairings``, ``elo``, ``config``, ``config_name``).
        summary: the self-play promote step's summary (``decision``, ``training_set``,
            ``registered_version``, ``promoted_version``, ``champion_after``, ``champion_evaluated``).
        versions: the registry's versions of this model, oldest first (``VersionRecord`` or dicts).
    """
    from tuneloop.version import __version__

    if not isinstance(results, Mapping) or not isinstance(summary, Mapping):
        raise ValueError("results and summary must be the gauntlet results and the promote step's summary (mappings)")
    board = results.get("config_name") or summary.get("board_config") or "?"
    model = summary.get("model_name") or ""
    body = [_header(results, summary), _win_rates(results, summary), _early_stop(results),
            _elo(results, summary, versions)]
    return page(f"Self-play gauntlet: {model or board}", esc(f"{board} · run {summary.get('run') or '-'}"), body,
                footer=f"tuneloop {__version__} · self-contained: no script, no network")
