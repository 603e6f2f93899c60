"""A registry's history page: the champion's metrics across versions, promotions and rollbacks marked.

:func:`history_record` reads what any registry exposes (``versions()``, ``show()``: the file
registry's ``show`` carries the alias history; Vertex AI Model Registry keeps no rollback history, so
there the page shows versions and the current champion only, and says so). :func:`render_history` is
a pure function of that record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tuneloop.reports import charts
from tuneloop.reports.html import Safe, esc, is_number, kv_table, num, page, section, table, tag

# The metric a champion is followed by, the first one its versions have.
PRIMARY_METRICS = ("macro_f1", "accuracy", "chrf", "rouge_l", "win_rate", "win_rate_vs_heuristic", "elo_candidate",
                   "win_rate_vs_random")
MAX_METRIC_CHARTS = 4
# Counts and bookkeeping, not metrics to draw.
NOT_DRAWN = frozenset({"n", "unparseable", "exemplars"})


def history_record(registry: Any) -> dict[str, Any]:
    """``{model_name, registry, champion, versions: [VersionRecord dicts], history: [alias events] | None}``."""
    shown = registry.show()
    versions = [v.to_dict() for v in registry.versions()]
    return {
        "model_name": shown.get("model_name") or getattr(registry, "model_name", ""),
        "registry": str(shown.get("root") or shown.get("registry") or ""),
        "champion": shown.get("champion"),
        "versions": versions,
        "history": list(shown["history"]) if isinstance(shown.get("history"), list) else None,
    }


def _scalars(version: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in (version.get("metrics") or {}).items() if is_number(v) and k not in NOT_DRAWN}


def _metric_keys(versions: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: list[str] = []
    for v in versions:
        keys += [k for k in _scalars(v) if k not in keys]
    first = [k for k in PRIMARY_METRICS if k in keys]
    return first + sorted(k for k in keys if k not in first)


def _events_table(history: Sequence[Mapping[str, Any]]) -> Safe:
    rows = [[str(i + 1), e.get("at", "-"), e.get("kind", "-"), e.get("version", "-"), e.get("previous") or "-",
             e.get("reason", "")] for i, e in enumerate(history)]
    return table(["#", "at", "move", "champion", "before", "reason"], rows, numeric=(0,))


def render_history(record: Mapping[str, Any]) -> str:
    """The history page of :func:`history_record`'s record, as one self-contained HTML document."""
    from tuneloop.version import __version__

    versions = [v for v in record.get("versions") or [] if isinstance(v, Mapping)]
    history = record.get("history")
    events = [e for e in history or [] if isinstance(e, Mapping)]
    name = record.get("model_name") or "model"
    champion = record.get("champion")
    names = [str(v.get("version")) for v in versions]
    by_name = {str(v.get("version")): v for v in versions}
    keys = _metric_keys(versions)
    promoted = {e.get("version") for e in events if e.get("kind") != "rollback"}
    facts = [
        ("registry", record.get("registry") or "-"),
        ("champion now", champion or "none"),
        ("versions", num(len(versions))),
        ("promotions", num(sum(e.get("kind") != "rollback" for e in events)) if history is not None else "-"),
        ("rollbacks", num(sum(e.get("kind") == "rollback" for e in events)) if history is not None else "-"),
    ]
    body: list[Any] = [kv_table(facts)]
    if history is None:
        body.append(tag("p", "This registry keeps no alias history (Vertex AI Model Registry records only the "
                              "current alias): promotions and rollbacks cannot be marked.", class_="note"))
    if not versions:
        body.append(tag("p", f"{name} has no registered versions yet.", class_="note"))

    primary = keys[0] if keys else None
    if primary and events:
        xs, ys, markers = [], [], []
        for i, e in enumerate(events):
            v = by_name.get(str(e.get("version")))
            value = _scalars(v).get(primary) if v else None
            xs.append(f"{i + 1}:{e.get('version')}")
            ys.append(value)
            if value is not None:
                kind = "rollback" if e.get("kind") == "rollback" else "promote"
                text = f"from {e.get('previous')}" if kind == "rollback" and e.get("previous") else ""
                markers.append({"x": i, "y": value, "kind": kind, "text": text})
        body.append(section(
            "The champion over time",
            charts.lines(xs, {f"champion {primary}": ys}, name="champion-timeline",
                         title=f"Champion's {primary} after each alias move", ylabel=primary, markers=markers,
                         caption="x: alias moves in order (number:version); ▲ promotion, ▼ rollback"),
            _events_table(events),
            id_="timeline",
        ))
    elif history is not None and not events:
        body.append(tag("p", "No champion has been promoted yet.", class_="note"))

    if keys:
        figs = []
        highlight = {names.index(champion): "champion"} if champion in names else {}
        for k in keys[:MAX_METRIC_CHARTS]:
            vals = [_scalars(v).get(k) for v in versions]
            marks = []
            for i, v in enumerate(vals):
                if v is None:
                    continue
                if names[i] in promoted:
                    marks.append({"x": i, "y": v, "kind": "promote"})
            for e in events:
                if e.get("kind") == "rollback" and str(e.get("version")) in names:
                    i = names.index(str(e.get("version")))
                    if vals[i] is not None:
                        marks.append({"x": i, "y": vals[i], "kind": "rollback", "text": f"from {e.get('previous')}"})
            figs.append(charts.lines(names, {k: vals}, name=f"versions-{k}", title=f"{k} by version", ylabel=k,
                                     markers=marks, highlight=highlight))
        rows = []
        for v in versions:
            sc = _scalars(v)
            rows.append([v.get("version"), (v.get("created_at") or "-")[:19], v.get("provider", "-"),
                         str(v.get("data_hash") or "-")[:12], *[num(sc.get(k)) for k in keys[:6]],
                         "yes" if v.get("version") in promoted else ("-" if history is None else "no"),
                         "champion" if v.get("version") == champion else ""])
        headers = ["version", "registered", "provider", "data", *keys[:6], "promoted", ""]
        body.append(section("Metrics by version", *figs, table(headers, rows, numeric=tuple(range(4, 4 + len(keys[:6])))),
                            id_="versions"))
    return page(f"Registry history: {name}", esc(f"{len(versions)} version{'' if len(versions) == 1 else 's'} · champion {champion or 'none'}"), body,
                footer=f"tuneloop {__version__} · self-contained: no script, no network")
