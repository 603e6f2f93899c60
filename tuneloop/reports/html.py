"""The page: one self-contained HTML file, every user string escaped, no script, no fetch.

Markup is built from :class:`Safe` fragments. Anything that is not a :class:`Safe` (a label, a
reply, a reason, a model id) goes through :func:`esc` on its way in, so a reply carrying
``<script>alert(1)</script>`` is shown as text. The page also carries a Content-Security-Policy
that allows no script and no fetch at all (``default-src 'none'``): a report opened on a laptop or
inside the Vertex AI console loads nothing from anywhere, even if a fragment were built wrongly.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# No script, no network, no image: inline styles (and the inline SVG they draw) only.
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

CSS = """
:root { --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --ink: #1f2328; --muted: #59636e;
        --line: #d1d9e0; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 1180px; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 14px; margin: 16px 0 6px; }
.sub { color: var(--muted); margin: 0 0 12px; }
.decision { border: 2px solid var(--bad); border-radius: 8px; padding: 12px 16px; background: #ffebe9; }
.decision.ok { border-color: var(--ok); background: #dafbe1; }
.decision .verdict { font-size: 20px; font-weight: 700; color: var(--bad); }
.decision.ok .verdict { color: var(--ok); }
.decision .reason { margin-top: 6px; white-space: pre-wrap; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 6px 0 12px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top;
         max-width: 520px; }
td { overflow-wrap: anywhere; }
th { background: var(--bg); font-weight: 600; }
td.num { text-align: right; white-space: nowrap; }
.up { color: var(--ok); } .down { color: var(--bad); } .flat { color: var(--muted); }
.pass { color: var(--ok); font-weight: 600; } .fail { color: var(--bad); font-weight: 600; }
.note { color: var(--muted); font-size: 13px; }
.kv td:first-child { color: var(--muted); white-space: nowrap; }
figure.chart { margin: 8px 0 16px; display: inline-block; vertical-align: top; }
figure.chart svg { max-width: 100%; height: auto; }
figure.chart figcaption { color: var(--muted); font-size: 12px; }
.bar { display: inline-block; height: 10px; background: #8c959f; vertical-align: middle; }
.sample { border: 1px solid var(--line); border-radius: 6px; margin: 8px 0; padding: 6px 10px; }
.sample summary { cursor: pointer; font-weight: 600; }
.turns { margin: 4px 0; }
.turn { margin: 2px 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.turn .role { color: var(--muted); font-weight: 600; margin-right: 6px; }
.replies { display: grid; grid-template-columns: repeat(3, 1fr); gap: 8px; }
.reply { background: var(--bg); border-radius: 4px; padding: 6px 8px; white-space: pre-wrap;
         overflow-wrap: anywhere; }
.reply h4 { margin: 0 0 4px; font-size: 12px; color: var(--muted); }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
"""


class Safe(str):
    """A fragment of markup built by this package: inserted as is. Everything else is escaped."""

    __slots__ = ()


def esc(value: Any) -> Safe:
    """``value`` as text: a :class:`Safe` fragment is kept, anything else is escaped (quotes too)."""
    if isinstance(value, Safe):
        return value
    if value is None:
        return Safe("")
    return Safe(html.escape(str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Safe:
    """Concatenate fragments (non-:class:`Safe` parts are escaped)."""
    return Safe(sep.join(esc(p) for p in parts))


def tag(name: str, *children: Any, **attrs: Any) -> Safe:
    """``<name attrs>children</name>``; attribute values and non-Safe children are escaped.

    A trailing underscore in an attribute name is dropped (``class_`` -> ``class``); ``_`` becomes
    ``-`` (``data_chart`` -> ``data-chart``); a value of None or False leaves the attribute out.
    """
    rendered = []
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        name_ = key.rstrip("_").replace("_", "-")
        rendered.append(f" {name_}" if value is True else f' {name_}="{esc(value)}"')
    return Safe(f"<{name}{''.join(rendered)}>{join(children)}</{name}>")


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def num(value: Any, digits: int = 3) -> str:
    """A number for a table cell: ints as they are, floats with ``digits`` decimals; else ``-``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if is_number(value):
        return f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def delta(value: Any, digits: int = 3, *, higher_is_better: bool = True) -> Safe:
    """A signed difference, coloured (better green, worse red)."""
    if not is_number(value):
        return Safe('<span class="flat">-</span>')
    better = value > 0 if higher_is_better else value < 0
    cls = "flat" if abs(value) < 10 ** -(digits + 1) else ("up" if better else "down")
    return Safe(f'<span class="{cls}">{value:+.{digits}f}</span>')


def passed(value: Any) -> Safe:
    """A pass/fail cell."""
    if value is None:
        return Safe('<span class="flat">-</span>')
    return Safe('<span class="pass">pass</span>' if value else '<span class="fail">fail</span>')


def table(headers: Sequence[Any] | None, rows: Iterable[Sequence[Any]], *, numeric: Sequence[int] = (),
          class_: str | None = None) -> Safe:
    """A table (no header row when ``headers`` is None); ``numeric`` columns are right-aligned.

    Non-Safe cells are escaped.
    """
    head = tag("thead", tag("tr", *(tag("th", h) for h in headers))) if headers is not None else ""
    body = []
    for row in rows:
        cells = [tag("td", c, class_="num" if i in numeric else None) for i, c in enumerate(row)]
        body.append(tag("tr", *cells))
    return tag("table", head, tag("tbody", *body), class_=class_)


def kv_table(pairs: Iterable[tuple[Any, Any]]) -> Safe:
    """A two-column key/value table."""
    return table(None, pairs, class_="kv")


def section(title: str, *body: Any, id_: str | None = None) -> Safe:
    """``<section><h2>title</h2>body</section>``."""
    return tag("section", tag("h2", title), *body, id=id_)


def decision_box(blessed: bool, verdict: str, reason: Any) -> Safe:
    """The banner at the top: the verdict and its reason."""
    return tag(
        "div",
        tag("div", verdict, class_="verdict"),
        tag("div", reason, class_="reason"),
        class_="decision ok" if blessed else "decision",
        id="decision",
    )


def json_value(value: Any, limit: int = 2000) -> Safe:
    """Any JSON value as escaped text (mappings as ``key: value`` lines), cut at ``limit`` chars."""
    if isinstance(value, Mapping):
        text = "; ".join(f"{k}: {v}" for k, v in value.items())
    elif isinstance(value, list | tuple):
        text = ", ".join(str(v) for v in value)
    else:
        text = "" if value is None else str(value)
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text) - limit:,} more characters)"
    return esc(text)


def page(title: str, subtitle: Any, body: Iterable[Any], *, footer: Any = "") -> str:
    """The whole document: one file, inline styles and SVG only."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n"
        f"{tag('h1', title)}{tag('p', subtitle, class_='sub')}\n"
        + "\n".join(str(esc(b)) for b in body if b)
        + f"\n{tag('footer', footer)}\n</body></html>\n"
    )
