"""The static report: one self-contained HTML file that renders with no network.

plotly.js is embedded once, in the page's head, and every figure is a ``<div>`` that calls
it (``include_plotlyjs=False``): a page of seven figures stays about 5 MB instead of seven
copies. (``include_plotlyjs="cdn"`` would need the internet, and renders blank offline.)
The file is written to a temporary name beside the target and renamed, so a failed write
leaves nothing behind and a reader never sees half a report.
"""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nas.common.errors import UserError
from nas.common.files import check_writable
from nas.dashboards.figures import (
    FIDELITY_HEADING,
    FIDELITY_NOTE,
    FIGURES,
    Dashboard,
    FidelityPanel,
    fidelity_sections,
)

__all__ = ["check_output", "render_report", "write_report"]

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "png", "scale": 2}}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 1400px;
       padding: 0 16px; color: #222; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 19px; margin: 32px 0 4px; border-top: 1px solid #ddd;
padding-top: 16px; } h3 { font-size: 15px; margin: 18px 0 6px; }
p.meta, p.note { color: #555; font-size: 13px; margin: 4px 0 8px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 4px 10px; text-align: left; white-space: nowrap; }
th { background: #f6f6f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.synthetic { background: #fff4d6; border: 1px solid #e8c66a; padding: 6px 10px; font-size: 13px; }
p.verdict { font-size: 14px; margin: 6px 0 2px; }
details { font-size: 13px; margin: 0 0 12px; } summary { cursor: pointer; color: #555; }
"""


def table_html(rows: Sequence[dict[str, Any]], table_id: str | None = None) -> str:
    if not rows:
        return "<p class='note'>none yet</p>"
    keys = list(rows[0])
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"<td class='num'>{v:.3f}</td>"
        if isinstance(v, int):
            return f"<td class='num'>{v:,}</td>"
        return f"<td>{html.escape(str(v))}</td>"

    body = "".join("<tr>" + "".join(cell(r.get(k, "")) for k in keys) + "</tr>" for r in rows)
    ident = f" id='{html.escape(table_id)}'" if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(dash: Dashboard, source: str) -> str:
    """The whole page as a string (``source``: where the studies were read, for the header)."""
    from plotly.offline import get_plotlyjs

    names = [r["study"] for r in dash.summary]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>nas report: {html.escape(', '.join(names))}</title>",
        f"<style>{CSS}</style>",
        f"<script type='text/javascript'>{get_plotlyjs()}</script>",
        "</head><body>",
        f"<h1>nas report: {html.escape(', '.join(names))}</h1>",
        f"<p class='meta'>Read from {html.escape(source)} at "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; {dash.n_trials:,} trials. "
        f"FLOPs are multiply-adds.</p>",
    ]
    if any("synthetic" in n for n in names):
        parts.append("<p class='synthetic'>Synthetic data: made by bench/synthetic_study.py to exercise the "
                     "dashboards, not measured.</p>")
    parts.append(table_html(dash.summary, "summary"))
    for key, fig in dash.figures.items():
        parts.append(f"<h2 id='h-{key}'>{html.escape(FIGURES[key])}</h2>")
        if key in dash.notes:
            parts.append(f"<p class='note'>{html.escape(dash.notes[key])}</p>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{key}",
                                 config=PLOTLY_CONFIG, default_width="100%"))
        if key == "edf":
            ks_rows = [{**r, "KS": r["KS"], "KS normalised": r["KS normalised"]} for r in dash.ks]
            parts.append("<h3>Kolmogorov-Smirnov statistic between each pair</h3>")
            parts.append(table_html(ks_rows, "ks") if ks_rows else
                         "<p class='note'>One study: give several --study to compare design spaces.</p>")
    parts.extend(fidelity_html(dash))
    parts.append("<h2 id='h-front'>Pareto front</h2>")
    parts.append("<p class='note'>Feasible, fully trained trials that no other trial beats on every objective "
                 "(the study's own objectives), best accuracy first.</p>")
    for name, rows in dash.fronts.items():
        if len(dash.fronts) > 1:
            parts.append(f"<h3>{html.escape(name)}</h3>")
        parts.append(table_html(rows, f"front-{name}"))
    parts.append("</body></html>")
    return "\n".join(parts)


def _panel_html(panel: FidelityPanel, div_id: str, prefix: str = "") -> list[str]:
    """One fidelity check: what it compares, its verdict and statistics, the plot, and its rows."""
    stats = panel.statistics()
    out = [f"<h3>{html.escape(prefix + panel.title)}</h3>",
           f"<p class='verdict'><b>verdict:</b> {html.escape(panel.verdict)}</p>",
           f"<p class='note'>{html.escape(stats + '. ' if stats else '')}Retrained in study "
           f"{html.escape(panel.linked)}.</p>",
           panel.figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOTLY_CONFIG,
                                default_width="100%")]
    if panel.report.rows:
        first, second = panel.names
        rows = [{"trial": r["number"], "architecture": r["arch"] or "", first: f"{r['proxy']:.2%}",
                 second: f"{r['reference']:.2%}", "retrained as trial": r["reference_trial"]}
                for r in panel.report.rows]
        out.append(f"<details><summary>the {len(rows)} architectures trained in both, best {second} accuracy "
                   f"first</summary>{table_html(rows, div_id.replace('fig-', 'table-'))}</details>")
    return out


def fidelity_html(dash: Dashboard) -> list[str]:
    """The fidelity checks' section: per study, each check's plot and verdict, or one line on how
    to make one."""
    sections = fidelity_sections(dash)
    if not sections:
        return []
    parts = [f"<h2 id='h-fidelity'>{html.escape(FIDELITY_HEADING)}</h2>"]
    if dash.fidelity:
        parts.append(f"<p class='note'>{html.escape(FIDELITY_NOTE)}</p>")
    k = 0
    for prefix, item in sections:
        if isinstance(item, str):
            parts.append(f"<p class='note fidelity-hint'>{html.escape(item)}</p>")
        else:
            parts.extend(_panel_html(item, f"fig-fidelity-{k}", prefix))
            k += 1
    return parts


def check_output(path: str | os.PathLike[str]) -> Path:
    """Refuse an output path that cannot be written, before any work is done."""
    return check_writable(path, "cannot write report")


def write_report(path: str | os.PathLike[str], text: str) -> Path:
    """Write atomically: a temporary file beside the target, then a rename."""
    p = check_output(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent if str(p.parent) else ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write report {p}: {exc.strerror or exc}") from None
    return p
