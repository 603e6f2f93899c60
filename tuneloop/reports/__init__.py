"""HTML reports people look at: evaluations, self-play gauntlets and a registry's history.

Every report is one self-contained HTML file (inline CSS and SVG charts drawn with matplotlib, no
script, no network fetch, every user string escaped), rendered by a pure function of a record the
pipeline already writes, so the KFP ``HTML`` artifact and the copy under ``reports_uri`` agree.

* :func:`render_evaluation` — from the evaluator's blessing record (classification and chat).
* :func:`render_gauntlet` — from the self-play gauntlet's results, decision and the registry's versions.
* :func:`render_history` — the champion's metrics across a registry's versions, promotions and rollbacks.
* :func:`publish` — the copy next to ``summary.json`` under ``<reports_uri>/<run>/``.

Nothing here imports kfp; matplotlib comes with the ``reports`` extra.
"""

from __future__ import annotations

from tuneloop.reports.evaluation import REPORT_FILE, render_evaluation, write_evaluation_report


def publish(html: str, reports_uri: str, run_name: str) -> str | None:
    """Write ``html`` to ``<reports_uri>/<run_name>/report.html`` (local or ``gs://``); None when unset."""
    if not reports_uri:
        return None
    from tuneloop import storage

    dest = storage.join(reports_uri, run_name or "run", REPORT_FILE)
    storage.write(dest, html.encode("utf-8"), if_generation="*")
    return dest


def render_gauntlet(*args, **kwargs) -> str:
    """See :func:`tuneloop.reports.selfplay.render_gauntlet`."""
    from tuneloop.reports.selfplay import render_gauntlet as render

    return render(*args, **kwargs)


def render_history(*args, **kwargs) -> str:
    """See :func:`tuneloop.reports.history.render_history`."""
    from tuneloop.reports.history import render_history as render

    return render(*args, **kwargs)


__all__ = ["REPORT_FILE", "publish", "render_evaluation", "render_gauntlet", "render_history",
           "write_evaluation_report"]
