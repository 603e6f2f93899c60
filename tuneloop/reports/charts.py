"""Charts drawn with matplotlib and inlined as SVG: no script, no external file, no font download.

Every chart is a :class:`matplotlib.figure.Figure` (no pyplot state, so rendering is thread-safe)
saved as SVG with text kept as text (``svg.fonttype: none``: the browser draws it with a local
font), without the date metadata and with a fixed id salt, so the same data always gives the same
bytes. The SVG is cleaned for inlining (no XML prolog, DOCTYPE, metadata or namespace URLs) and its
ids are prefixed with the chart's name, so several charts can share one page.

User text reaches a chart only through :func:`label`: cut to a readable length and with ``$``
escaped, so matplotlib never parses a label as mathtext. matplotlib escapes the text it writes.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tuneloop.reports.html import Safe, esc, tag

CANDIDATE_COLOR = "#0969da"
CHAMPION_COLOR = "#8c959f"
OK_COLOR = "#1a7f37"
BAD_COLOR = "#cf222e"
WARN_COLOR = "#bf8700"
LABEL_CHARS = 32
MAX_WIDTH = 12.0  # inches: the widest chart (a page is ~1180 px)
MAX_TICKS = 30

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "tuneloop-report",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 72,
}


def label(text: Any, limit: int = LABEL_CHARS) -> str:
    """User text made safe for a matplotlib label: shortened, ``$`` escaped (no mathtext)."""
    s = " ".join(str(text).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("$", r"\$")


@contextlib.contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    with matplotlib.rc_context(_RC):
        yield


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


_ID = re.compile(r'\bid="([^"]+)"')


def to_svg(fig, name: str) -> str:
    """The figure as an inline ``<svg>`` element with ids prefixed by ``name``."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg)
    svg = svg.replace("xlink:href=", "href=")
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", name)
    ids = set(_ID.findall(svg))
    for old in sorted(ids, key=len, reverse=True):
        new = f"{prefix}-{old}"
        svg = svg.replace(f'id="{old}"', f'id="{new}"').replace(f"url(#{old})", f"url(#{new})")
        svg = svg.replace(f'href="#{old}"', f'href="#{new}"')
    return svg.replace("<svg", f'<svg role="img" class="chart-svg" data-chart="{esc(name)}"', 1).strip()


def figure(fig, name: str, caption: Any = "") -> Safe:
    """``<figure class="chart">`` holding the figure's SVG and a caption."""
    body = Safe(to_svg(fig, name))
    return tag("figure", body, tag("figcaption", caption) if caption else "", class_="chart", data_chart=name)


# -- the chart kinds the reports use -------------------------------------------------------------


def heatmap(matrix: Sequence[Sequence[float]], rows: Sequence[str], cols: Sequence[str], *, name: str,
            title: str, xlabel: str = "predicted", ylabel: str = "true", caption: Any = "") -> Safe:
    """A confusion-matrix heat map: counts in the cells (when there is room), rows normalised for colour."""
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    with _style():
        n_rows, n_cols = m.shape if m.ndim == 2 else (0, 0)
        size = min(8.0, max(3.0, 0.3 * max(n_rows, n_cols) + 1.8))
        fig = _figure(size + 0.6, size)
        ax = fig.subplots()
        sums = m.sum(axis=1, keepdims=True)
        shade = np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)
        # vector cells (pcolormesh), not a raster image: crisp at any zoom, nothing embedded
        # ten shades: the colour bar stays vector too (matplotlib rasterises a bar of 50+ colours)
        import matplotlib

        cmap = matplotlib.colormaps["Blues"].resampled(10)
        im = ax.pcolormesh(shade, cmap=cmap, vmin=0, vmax=1, edgecolors="white", linewidth=0.5)
        ax.invert_yaxis()
        ax.set_xticks([j + 0.5 for j in range(n_cols)], labels=[label(c, 18) for c in cols], rotation=60,
                      ha="right", rotation_mode="anchor")
        ax.set_yticks([i + 0.5 for i in range(n_rows)], labels=[label(r, 24) for r in rows])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(label(title, 60))
        if max(n_rows, n_cols) <= 20:
            for i in range(n_rows):
                for j in range(n_cols):
                    v = int(m[i, j]) if float(m[i, j]).is_integer() else m[i, j]
                    if v:
                        ax.text(j + 0.5, i + 0.5, str(v), ha="center", va="center", fontsize=8,
                                color="white" if shade[i, j] > 0.55 else "#1f2328")
        fig.colorbar(im, ax=ax, shrink=0.7, label="share of the true label's rows")
        return figure(fig, name, caption)


def diverging_bars(labels: Sequence[str], values: Sequence[float], *, name: str, title: str, xlabel: str,
                   caption: Any = "") -> Safe:
    """Horizontal bars around zero: gains green, losses red (the first label on top)."""
    with _style():
        fig = _figure(6.4, max(1.6, 0.28 * len(labels) + 1.0))
        ax = fig.subplots()
        ys = list(range(len(labels)))[::-1]
        colors = [OK_COLOR if v > 0 else BAD_COLOR if v < 0 else CHAMPION_COLOR for v in values]
        ax.barh(ys, values, color=colors)
        ax.set_yticks(ys, labels=[label(t) for t in labels])
        ax.axvline(0, color="#1f2328", linewidth=0.8)
        ax.set_xlabel(xlabel)
        ax.set_title(label(title, 60))
        return figure(fig, name, caption)


def grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float | None]], *, name: str,
                 title: str, ylabel: str = "", colors: Mapping[str, str] | None = None,
                 caption: Any = "") -> Safe:
    """Vertical bars, one group per entry of ``groups``, one bar per series (None = no bar)."""
    with _style():
        fig = _figure(max(3.6, 0.9 * len(groups) * max(1, len(series)) * 0.6 + 1.8), 2.8)
        ax = fig.subplots()
        width = 0.8 / max(1, len(series))
        for k, (sname, vals) in enumerate(series.items()):
            xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
            ys = [0.0 if v is None else float(v) for v in vals]
            color = (colors or {}).get(sname)
            bars = ax.bar(xs, ys, width=width * 0.95, label=label(sname), color=color)
            for b, v in zip(bars, vals, strict=True):
                if v is not None:
                    ax.annotate(f"{v:.3g}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                                va="bottom", fontsize=7, xytext=(0, 1), textcoords="offset points")
        crowded = len(groups) > 3
        ax.set_xticks(range(len(groups)), labels=[label(g, 18) for g in groups], rotation=25 if crowded else 0,
                      ha="right" if crowded else "center", rotation_mode="anchor")
        ax.set_ylabel(ylabel)
        ax.set_title(label(title, 60))
        if len(series) > 1:
            ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return figure(fig, name, caption)


def intervals(rows: Sequence[Mapping[str, Any]], *, name: str, title: str, xlabel: str,
              caption: Any = "") -> Safe:
    """Points with error bars against a threshold tick per row.

    Each row: ``{"name", "value", "low", "high", "threshold", "passed"}`` (low/high/threshold may be None).
    """
    with _style():
        fig = _figure(6.4, max(1.6, 0.55 * len(rows) + 1.0))
        ax = fig.subplots()
        ys = list(range(len(rows)))[::-1]
        for y, r in zip(ys, rows, strict=True):
            color = OK_COLOR if r.get("passed") else BAD_COLOR if r.get("passed") is False else CANDIDATE_COLOR
            v, lo, hi = r["value"], r.get("low"), r.get("high")
            if lo is not None and hi is not None:
                ax.errorbar([v], [y], xerr=[[max(0.0, v - lo)], [max(0.0, hi - v)]], fmt="o", color=color,
                            capsize=4, markersize=6)
            else:
                ax.plot([v], [y], "o", color=color, markersize=6)
            if r.get("threshold") is not None:
                ax.plot([r["threshold"]] * 2, [y - 0.3, y + 0.3], color="#1f2328", linewidth=2)
                ax.annotate(f"bar {r['threshold']:.2f}", (r["threshold"], y + 0.32), ha="center",
                            fontsize=7, color="#59636e")
        ax.set_yticks(ys, labels=[label(r["name"]) for r in rows])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlim(0, 1)
        ax.set_xlabel(xlabel)
        ax.set_title(label(title, 60))
        return figure(fig, name, caption)


def stacked_bar(counts: Mapping[str, int], *, name: str, title: str, colors: Mapping[str, str],
                caption: Any = "") -> Safe:
    """One horizontal bar split into the counts' parts, each labelled with its count."""
    with _style():
        fig = _figure(7.2, 1.6)
        ax = fig.subplots()
        left = 0
        total = sum(counts.values()) or 1
        for part, n in counts.items():
            ax.barh([0], [n], left=left, color=colors.get(part), label=f"{label(part)} ({n})")
            if n and n / total > 0.06:
                ax.text(left + n / 2, 0, str(n), ha="center", va="center", color="white", fontsize=8)
            left += n
        ax.set_yticks([])
        ax.set_xlim(0, max(1, left))
        ax.set_xlabel("rows")
        ax.set_title(label(title, 60))
        ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
        return figure(fig, name, caption)


def histograms(series: Mapping[str, Sequence[float]], *, name: str, title: str, xlabel: str,
               colors: Mapping[str, str] | None = None, caption: Any = "") -> Safe:
    """Overlaid histograms of per-row scores (one per series)."""
    import numpy as np

    with _style():
        fig = _figure(4.2, 2.6)
        ax = fig.subplots()
        values = [v for vals in series.values() for v in vals]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 16)
        for sname, vals in series.items():
            ax.hist(list(vals), bins=bins, alpha=0.55, label=label(sname), color=(colors or {}).get(sname))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("rows")
        ax.set_title(label(title, 60))
        if len(series) > 1:
            ax.legend(fontsize=8, frameon=False)
        return figure(fig, name, caption)


def lines(xs: Sequence[Any], series: Mapping[str, Sequence[float | None]], *, name: str, title: str,
          ylabel: str, markers: Sequence[Mapping[str, Any]] = (), caption: Any = "",
          highlight: Mapping[int, str] | None = None) -> Safe:
    """Lines over categorical x positions (versions, generations), with event markers.

    ``markers``: ``{"x": index, "y": value, "kind": "promote"|"rollback"|"candidate", "text"}``.
    ``highlight``: x index -> a note drawn under the axis (e.g. "champion").
    """
    with _style():
        fig = _figure(min(MAX_WIDTH, max(4.8, 0.55 * len(xs) + 2.4)), 2.9)
        ax = fig.subplots()
        positions = list(range(len(xs)))
        for sname, vals in series.items():
            pts = [(x, v) for x, v in zip(positions, vals, strict=True) if v is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", markersize=4, label=label(sname))
        style = {
            "promote": ("^", OK_COLOR, "promoted"),
            "rollback": ("v", BAD_COLOR, "rolled back to"),
            "candidate": ("*", WARN_COLOR, "this run's candidate"),
        }
        seen: set[str] = set()
        for m in markers:
            marker, color, legend = style.get(m.get("kind", ""), ("o", "#1f2328", m.get("kind", "")))
            ax.plot([m["x"]], [m["y"]], marker, color=color, markersize=10, linestyle="none",
                    label=None if m.get("kind") in seen else legend)
            seen.add(m.get("kind", ""))
            if m.get("text"):
                ax.annotate(label(m["text"], 24), (m["x"], m["y"]), xytext=(0, 8), textcoords="offset points",
                            ha="center", fontsize=7, color=color)
        step = max(1, -(-len(xs) // MAX_TICKS))  # thin the tick labels of a long history
        shown = sorted({*positions[::step], *(highlight or {})})
        ax.set_xticks(shown, labels=[label(xs[i], 14) for i in shown], rotation=30 if step > 1 else 0)
        for x, note in (highlight or {}).items():
            ax.get_xticklabels()[shown.index(x)].set_fontweight("bold")
            ax.annotate(label(note, 14), (x, 0), xycoords=("data", "axes fraction"), xytext=(0, -24),
                        textcoords="offset points", ha="center", fontsize=7, color=OK_COLOR)
        ax.set_ylabel(label(ylabel, 40))
        ax.set_title(label(title, 60))
        ax.legend(fontsize=7, frameon=False, loc="best", markerscale=0.6)
        return figure(fig, name, caption)


def progress(rows: Sequence[Mapping[str, Any]], *, name: str, title: str, caption: Any = "") -> Safe:
    """Games played per pairing against the most games and the early-stop minimum.

    Each row: ``{"name", "games", "max_games", "min_games", "stopped_early"}``.
    """
    with _style():
        fig = _figure(6.4, max(1.6, 0.5 * len(rows) + 1.0))
        ax = fig.subplots()
        ys = list(range(len(rows)))[::-1]
        for y, r in zip(ys, rows, strict=True):
            ax.barh([y], [r["max_games"]], color="#eaeef2", height=0.6)
            ax.barh([y], [r["games"]], color=OK_COLOR if r.get("stopped_early") else CANDIDATE_COLOR,
                    height=0.6)
            ax.plot([r["min_games"]] * 2, [y - 0.38, y + 0.38], color=BAD_COLOR, linewidth=2)
            ax.text(r["games"], y, f" {r['games']}/{r['max_games']}", va="center", fontsize=8)
        ax.set_yticks(ys, labels=[label(r["name"]) for r in rows])
        ax.set_xlabel("games (red tick: games played before early stopping may end a pairing)")
        ax.set_title(label(title, 60))
        return figure(fig, name, caption)
