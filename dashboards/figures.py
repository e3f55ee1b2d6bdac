"""Plotly figures from trial records: the same figures in the static report and on the live page.

:func:`build_dashboard` turns the studies' records into every figure and table (a
:class:`Dashboard`); the report writes them into one HTML file, the live page puts them in
``dcc.Graph``s. Each figure is a function of the records alone, so both pages agree.

What is drawn, and why:

* accuracy against FLOPs, params and (where measured) latency: every trial a point, its
  outcome in its marker (filled: complete; open: pruned, at the accuracy it had when
  stopped), coloured by a design parameter (or by study when several are overlaid), the 2-D
  Pareto front of the panel as a step line, the FLOP budget as vertical lines. Trials never
  trained (infeasible, failed, orphaned, interrupted, still running) sit in a strip under the
  panel at their FLOPs, since they have no accuracy to place them by. A duplicate repeats its
  original's point exactly, so it is counted in the summary but not drawn twice.
* each design parameter's effect on accuracy (a box per choice) with pycls's bootstrap band
  of good values;
* the error EDF of each study and its complexity-normalised form (NDS), with the KS statistic
  of each pair;
* hypervolume after each trial and against compute spent;
* every learning curve, pruned and failed ones included, with the early-stopping rungs;
* for each fidelity check of a study (``nas fidelity``: a linked study that retrained a sample of
  its candidates at a higher fidelity, or with another seed), the study's accuracy against the
  reference's per architecture, with the check's verdict (:func:`fidelity_panels`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nas.common.errors import UserError
from nas.common.pareto import pareto_front, to_minimisation
from nas.common.units import format_flops, format_params
from nas.dashboards.analysis import (
    BestRange,
    best_range,
    bootstrap_best,
    edf,
    hypervolume_history,
    ks_statistic,
    nds_weights,
    shared_range,
)
from nas.dashboards.studies import StudyData, link_of
from nas.study.records import (
    COMPLETE,
    FAILED,
    INFEASIBLE,
    INTERRUPTED,
    ORPHANED,
    PRUNED,
    RUNNING,
    TrialRecord,
    counts,
    front,
    noise_neighbours,
)

__all__ = ["DEPTH", "FIDELITY_HEADING", "FIGURES", "Dashboard", "FidelityPanel", "build_dashboard", "color_choices",
           "fidelity_panels", "fidelity_sections"]

#: The figures, in page order: key -> heading.
FIGURES: dict[str, str] = {
    "flops": "Accuracy vs FLOPs",
    "params": "Accuracy vs parameters",
    "latency": "Accuracy vs latency",
    "effects": "Effect of each design parameter",
    "edf": "Design spaces compared: error EDFs",
    "hypervolume": "Hypervolume over the search",
    "curves": "Learning curves",
}

#: The derived colour-by choice: total blocks over all stages (the default).
DEPTH = "depth"

SYMBOLS = {COMPLETE: "circle", PRUNED: "circle-open", INFEASIBLE: "x", FAILED: "triangle-down",
           ORPHANED: "hourglass", INTERRUPTED: "hourglass", RUNNING: "circle-dot"}
STRIP = (INFEASIBLE, FAILED, ORPHANED, INTERRUPTED, RUNNING)  # never (fully) trained: no accuracy to plot
STRIP_COLORS = {INFEASIBLE: "#7f7f7f", FAILED: "#d62728", ORPHANED: "#9467bd", INTERRUPTED: "#9467bd",
                RUNNING: "#2ca02c"}
CURVE_COLORS = {COMPLETE: "rgba(31,119,180,0.35)", PRUNED: "rgba(255,127,14,0.55)", FAILED: "rgba(214,39,40,0.7)"}
STUDY_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
COLORSCALE = "Viridis"

#: x-axis metrics of the accuracy panels: key -> (axis title, log axis?)
METRICS = {"flops": ("FLOPs (multiply-adds)", True), "params": ("parameters", True),
           "latency": ("latency (ms per image, batch 1)", False)}


@dataclass
class Dashboard:
    """Every figure and table of a dashboard, built from one read of the studies."""

    figures: dict[str, go.Figure]
    summary: list[dict[str, Any]]  # one row per study
    fronts: dict[str, list[dict[str, Any]]]  # study name -> Pareto-front table rows
    ks: list[dict[str, Any]]  # one row per pair of studies
    notes: dict[str, str] = field(default_factory=dict)  # figure key -> a sentence on how to read it
    n_trials: int = 0
    # study name -> its fidelity checks' panels
    fidelity: dict[str, list[FidelityPanel]] = field(default_factory=dict)
    fidelity_hints: dict[str, str] = field(default_factory=dict)  # study name -> one line, where it has no check


# ---- helpers ---------------------------------------------------------------------------------------------


def _study_label(studies: Sequence[StudyData], s: StudyData) -> str:
    return s.name if len(studies) > 1 else ""


def _scored(r: TrialRecord) -> bool:
    return r.scored


def _fmt_params(n: float | None) -> str:
    return format_params(n, missing="?")


def _fmt_flops(f: float | None) -> str:
    return "?" if f is None else format_flops(f)


def _per_stage(stages: list[dict[str, Any]], key: str) -> str:
    vals = [s.get(key) for s in stages]
    return str(vals[0]) if len(set(map(str, vals))) == 1 else "-".join(map(str, vals))


def architecture_lines(r: TrialRecord) -> list[str]:
    """What a hover says about the architecture: depths, cardinality x group width, radix, SE."""
    cfg = r.get("config") or {}
    stages = cfg.get("stages") or []
    if not stages:
        return [html.escape(str(r.get("arch") or "no valid network"))]
    parts = [f"depths {_per_stage(stages, 'depth')}",
             f"{_per_stage(stages, 'cardinality')}×{_per_stage(stages, 'group_width')}d"]
    radix = [s.get("radix") or 0 for s in stages]
    if any(radix):
        parts.append(f"radix {_per_stage(stages, 'radix')}")
    se = [s.get("se_ratio") for s in stages]
    parts.append("SE " + ("-".join(str(x or "·") for x in se) if any(se) else "none"))
    if any(s.get("sk") for s in stages):
        parts.append("SK")
    return [" · ".join(parts), f"widths {_per_stage(stages, 'width')}"]


def hover_text(r: TrialRecord, study: str = "") -> str:
    acc = r.accuracy
    head = f"<b>trial {r.number}</b>" + (f" of {html.escape(study)}" if study else "") + f" · {r.outcome}"
    if r.outcome == PRUNED and r.get("epochs"):
        head += f" at epoch {r.get('epochs')}"
    lines = [head, *architecture_lines(r)]
    se = r.accuracy_se
    metrics = [(f"accuracy {acc:.2%}" + ("" if se is None else f" ±{se:.1%}")) if acc is not None else "no accuracy",
               _fmt_flops(r.objective("flops")), f"{_fmt_params(r.objective('params'))} params"]
    lat = r.objective("latency")
    if lat is not None:
        metrics.append(f"{lat:.2f} ms")
    lines.append(" · ".join(metrics))
    if r.get("reason"):
        lines.append(html.escape(str(r.get("reason")))[:120])
    return "<br>".join(lines)


def _choice_key(v: Any) -> tuple[int, Any]:
    # The natural order of a parameter's choices: None (off) first, then numbers, then the rest.
    if v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (2, int(v))
    if isinstance(v, (int, float)):
        return (1, v)
    return (3, str(v))


def _label(v: Any) -> str:
    return "none" if v is None else str(v)


def depth_of(r: TrialRecord) -> int | None:
    stages = (r.get("config") or {}).get("stages") or []
    return sum(int(s.get("depth", 0)) for s in stages) if stages else None


def color_choices(studies: Sequence[StudyData]) -> list[str]:
    """What ``--color-by`` accepts: ``depth`` and every design parameter of the studies."""
    names: dict[str, None] = {DEPTH: None}
    for s in studies:
        for r in s.records:
            names.update(dict.fromkeys(r.params))
    return list(names)


def _color_getter(by: str) -> Callable[[TrialRecord], Any]:
    if by == DEPTH:
        return depth_of
    return lambda r: r.params.get(by)


@dataclass
class _Coloring:
    """A design parameter as marker colours: numbers as they are, other choices by their order."""

    by: str
    get: Callable[[TrialRecord], Any]
    ticks: tuple[list[int], list[str]] | None  # categorical: tick values and labels of the colour bar

    def values(self, rs: Sequence[TrialRecord]) -> list[float | None]:
        raw = [self.get(r) for r in rs]
        if self.ticks is None:
            return [float(v) if isinstance(v, (int, float)) else None for v in raw]
        index = dict(zip(self.ticks[1], self.ticks[0]))
        return [index.get(_label(v)) for v in raw]


def _coloring(studies: Sequence[StudyData], by: str) -> _Coloring:
    get = _color_getter(by)
    seen = {get(r) for s in studies for r in s.records if r.params}
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen if v is not None) \
        and None not in seen
    if numeric:
        return _Coloring(by, get, None)
    ordered = sorted(seen, key=_choice_key)
    return _Coloring(by, get, (list(range(len(ordered))), [_label(v) for v in ordered]))


# ---- accuracy vs complexity ------------------------------------------------------------------------------


def _budget_lines(fig: go.Figure, studies: Sequence[StudyData], log: bool) -> None:
    seen: set[tuple[float, str]] = set()
    for s in studies:
        if s.budget is None:
            continue
        low, high = s.budget
        for value, word in ((high, "budget"), (low, "budget floor")):
            if value <= 0 or (value, word) in seen:
                continue
            seen.add((value, word))
            _budget_line(fig, value, f"{word} {format_flops(value)}", log, "right" if word == "budget" else "left")


def _budget_line(fig: go.Figure, value: float, text: str, log: bool, xanchor: str = "right") -> None:
    """A dashed vertical line across the panels at ``value``, labelled at the top."""
    fig.add_vline(x=value, line={"color": "#444", "dash": "dash", "width": 1.5}, row="all", col=1)
    # Annotations on a log axis take log10 of the value (shapes take the value itself).
    fig.add_annotation(x=math.log10(value) if log else value, y=1.0, xref="x", yref="paper", text=text,
                       showarrow=False, font={"size": 11}, xanchor=xanchor, yanchor="bottom")


def _latency_lines(fig: go.Figure, studies: Sequence[StudyData], title: str) -> str:
    """The deployment latency's runtime in the axis title and each latency budget as a line."""
    from nas.study.records import latency_text

    plans = {latency_text(s.settings.latency) for s in studies if s.settings is not None and s.settings.latency}
    for s in studies:
        budget = (s.settings.latency or {}).get("max_ms") if s.settings is not None else None
        if budget:
            _budget_line(fig, budget, f"latency budget {budget:g} ms", log=False)
    if not plans:
        return title
    return f"deployment latency, ms at batch 1 ({'; '.join(sorted(plans))})"


class _Hovers:
    """Hover texts, made once per trial and shared by the three accuracy panels."""

    def __init__(self, studies: Sequence[StudyData]) -> None:
        self.studies = studies
        self._text: dict[tuple[str, int], str] = {}

    def __call__(self, s: StudyData, rs: Sequence[TrialRecord]) -> np.ndarray:
        label = _study_label(self.studies, s)
        out = []
        for r in rs:
            key = (s.name, r.number)
            text = self._text.get(key)
            if text is None:
                text = self._text[key] = hover_text(r, label)
            out.append(text)
        return np.array(out)  # a numpy string array: plotly validates it in one step, not per element


def accuracy_vs(studies: Sequence[StudyData], metric: str, color_by: str | None,
                hovers: _Hovers | None = None) -> go.Figure:
    """Accuracy against ``metric`` (flops, params or latency): every trial a point (see module doc)."""
    title, log = METRICS[metric]
    hovers = hovers or _Hovers(studies)
    several = len(studies) > 1
    coloring = _coloring(studies, color_by or DEPTH) if (color_by or not several) else None
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.86, 0.14], vertical_spacing=0.02)
    for k, s in enumerate(studies):
        label = _study_label(studies, s)
        prefix = f"{label}: " if label else ""
        base_color = STUDY_COLORS[k % len(STUDY_COLORS)]
        for outcome in (COMPLETE, PRUNED):
            rs = [r for r in s.records if r.outcome == outcome and r.accuracy is not None
                  and r.objective(metric) is not None]
            if not rs:
                continue
            if coloring is not None:
                color: Any = coloring.values(rs)
                marker = {"color": np.array(color, dtype=float), "coloraxis": "coloraxis"}
            else:
                marker = {"color": base_color}
            marker.update(symbol=SYMBOLS[outcome], size=7 if outcome == COMPLETE else 6,
                          opacity=0.85 if outcome == COMPLETE else 0.6,
                          line={"width": 1.2 if outcome == PRUNED else 0.3,
                                **({"color": "white"} if outcome == COMPLETE else {})})
            fig.add_trace(go.Scatter(
                x=np.array([r.objective(metric) for r in rs], dtype=float),
                y=np.array([r.accuracy for r in rs], dtype=float),
                mode="markers", name=f"{prefix}{outcome} ({len(rs):,})", marker=marker,
                hovertext=hovers(s, rs), hovertemplate="%{hovertext}<extra></extra>",
                legendgroup=f"{s.name}-{outcome}"), row=1, col=1)
        # The panel's own 2-D front (accuracy up, metric down) among fully trained feasible trials.
        done = [r for r in s.records if _scored(r) and r.objective(metric) is not None]
        if done:
            pts = to_minimisation([(r.accuracy, r.objective(metric)) for r in done], [True, False])  # type: ignore[misc]
            members = sorted((done[i] for i in pareto_front(pts)), key=lambda r: r.objective(metric))  # type: ignore[arg-type,return-value]
            fig.add_trace(go.Scatter(
                x=[r.objective(metric) for r in members], y=[r.accuracy for r in members],
                mode="lines+markers", line={"shape": "hv", "color": "#111" if not several else base_color, "width": 2},
                marker={"size": 9, "symbol": "diamond", "color": "rgba(0,0,0,0)",
                        "line": {"width": 1.5, "color": "#111" if not several else base_color}},
                name=f"{prefix}Pareto front ({len(members)})",
                hovertext=hovers(s, members), hovertemplate="%{hovertext}<extra></extra>"),
                row=1, col=1)
        # Trials with no accuracy to place them by, in a strip under the panel.
        for outcome in STRIP:
            rs = [r for r in s.records if r.outcome == outcome and r.objective(metric) is not None]
            if not rs:
                continue
            fig.add_trace(go.Scatter(
                x=np.array([r.objective(metric) for r in rs], dtype=float), y=[outcome] * len(rs), mode="markers",
                name=f"{prefix}{outcome} ({len(rs):,})",
                marker={"symbol": SYMBOLS[outcome], "size": 7, "opacity": 0.75,
                        "color": STRIP_COLORS[outcome] if not several else base_color,
                        "line": {"width": 1, "color": STRIP_COLORS[outcome]}},
                hovertext=hovers(s, rs), hovertemplate="%{hovertext}<extra></extra>"),
                row=2, col=1)
    if metric == "flops":
        _budget_lines(fig, studies, log)
    if metric == "latency":
        title = _latency_lines(fig, studies, title)
    if coloring is not None:
        bar: dict[str, Any] = {"title": {"text": coloring.by}, "len": 0.75, "y": 0.6}
        if coloring.ticks is not None:
            bar.update(tickvals=coloring.ticks[0], ticktext=coloring.ticks[1])
        fig.update_layout(coloraxis={"colorscale": COLORSCALE, "colorbar": bar})
    fig.update_xaxes(type="log" if log else "linear", exponentformat="SI", row=1, col=1)
    fig.update_xaxes(type="log" if log else "linear", exponentformat="SI", title_text=title, row=2, col=1)
    fig.update_yaxes(title_text="validation accuracy", tickformat=".0%", row=1, col=1)
    present = [o for o in STRIP if any(r.outcome == o for s in studies for r in s.records)]
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=present or [INFEASIBLE], row=2, col=1)
    fig.update_layout(height=620, margin={"t": 40, "r": 20, "b": 50, "l": 70}, hovermode="closest",
                      legend={"orientation": "h", "y": -0.16, "x": 0}, template="plotly_white")
    return fig


# ---- design parameters -----------------------------------------------------------------------------------


@dataclass
class _Effect:
    """One design parameter of one study: its choices in order, each trial's choice, the band."""

    study: StudyData
    param: str
    labels: list[str]
    codes: np.ndarray
    accuracy: np.ndarray
    band: BestRange | None

    def title(self, several: bool) -> str:
        text = f"{self.study.name} · {self.param}" if several else self.param
        if self.band is None:
            return text
        lo, hi = self.labels[self.band.low], self.labels[self.band.high]
        return f"{text}: best {lo if lo == hi else f'{lo}–{hi}'}"


def _effects(s: StudyData, min_models: int) -> list[_Effect]:
    done = [r for r in s.records if _scored(r)]
    params: dict[str, None] = {}
    for r in done:
        params.update(dict.fromkeys(r.params))
    best = bootstrap_best([r.accuracy for r in done]) if len(done) >= min_models else None  # type: ignore[misc]
    acc = np.array([r.accuracy for r in done], dtype=float)
    out = []
    for p in params:
        labels = [_label(c) for c in sorted({r.params.get(p) for r in done}, key=_choice_key)]
        if len(labels) < 2:
            continue  # a parameter the trials never varied says nothing
        index = {lab: i for i, lab in enumerate(labels)}
        codes = np.array([index[_label(r.params.get(p))] for r in done], dtype=np.int64)
        band = best_range(codes, best, len(labels)) if best is not None else None
        out.append(_Effect(s, p, labels, codes, acc, band))
    return out


def parameter_effects(studies: Sequence[StudyData], cols: int = 4, min_models: int = 8) -> go.Figure:
    """Per study and design parameter: accuracy by choice (boxes), the bootstrap's band of good
    choices (shaded) and its most common best choice (star)."""
    several = len(studies) > 1
    blocks = [_effects(s, min_models) for s in studies]
    rows_of = [max(1, math.ceil(len(b) / cols)) for b in blocks]
    n_rows = sum(rows_of)
    titles: list[str] = []
    for s, b, nr in zip(studies, blocks, rows_of):
        if not b:
            titles.append(f"{s.name}: fewer than {min_models} complete trials, or no parameter varied")
        titles.extend(e.title(several) for e in b)
        titles.extend([""] * (nr * cols - max(len(b), 1)))
    fig = make_subplots(rows=n_rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.06,
                        vertical_spacing=min(0.12, 0.5 / n_rows))
    row0 = 0
    bands: list[dict[str, Any]] = []
    for b, nr in zip(blocks, rows_of):
        for j, e in enumerate(b):
            row, col = row0 + j // cols + 1, j % cols + 1
            fig.add_trace(go.Box(x=np.array(e.labels)[e.codes], y=e.accuracy, name=e.param, showlegend=False,
                                 boxpoints=False, marker={"color": "#1f77b4"}, line={"width": 1},
                                 hovertemplate=f"{html.escape(e.param)} = %{{x}}<extra></extra>"), row=row, col=col)
            if e.band is not None:
                # A shape dict with explicit axis names: add_vrect(row=, col=) re-scans every subplot
                # for each call, seconds on a 12-panel figure.
                k = (row - 1) * cols + col
                bands.append({"type": "rect", "xref": f"x{k if k > 1 else ''}", "yref": f"y{k if k > 1 else ''} domain",
                              "x0": e.band.low - 0.5, "x1": e.band.high + 0.5, "y0": 0, "y1": 1,
                              "fillcolor": "rgba(44,160,44,0.18)", "line": {"width": 0}, "layer": "below"})
                shares = "<br>".join(f"{lab}: {sh:.0%} of the bootstrap bests"
                                     for lab, sh in zip(e.labels, e.band.share))
                fig.add_trace(go.Scatter(
                    x=[e.labels[e.band.median]], y=[float(e.accuracy.max())], mode="markers", showlegend=False,
                    marker={"symbol": "star", "size": 11, "color": "#2ca02c", "line": {"width": 0.5, "color": "#111"}},
                    hovertext=[f"{html.escape(e.param)}: where the best of a quarter of the trials falls<br>{shares}"],
                    hovertemplate="%{hovertext}<extra></extra>"), row=row, col=col)
            fig.update_xaxes(type="category", categoryorder="array", categoryarray=e.labels, row=row, col=col)
            fig.update_yaxes(tickformat=".0%", row=row, col=col)
        row0 += nr
    fig.update_annotations(font={"size": 11})
    fig.update_layout(shapes=bands, height=max(260, 230 * n_rows), margin={"t": 40, "r": 20, "b": 30, "l": 60},
                      template="plotly_white")
    return fig


# ---- design-space comparison -----------------------------------------------------------------------------


def _errors_and_flops(s: StudyData) -> tuple[np.ndarray, np.ndarray]:
    done = [r for r in s.records if _scored(r) and r.objective("flops") is not None]
    return (np.array([1.0 - r.accuracy for r in done], dtype=float),  # type: ignore[operator]
            np.array([r.objective("flops") for r in done], dtype=float))


def error_edfs(studies: Sequence[StudyData], bins: int = 10) -> tuple[go.Figure, list[dict[str, Any]]]:
    """The error EDF of each study (left) and its NDS complexity-normalised form (right), and
    the KS statistic of every pair on both."""
    data = {s.name: _errors_and_flops(s) for s in studies}
    rng = shared_range([f for _, f in data.values()])
    weights = {name: (nds_weights(f, *rng, bins=bins) if rng else np.zeros(len(f))) for name, (_, f) in data.items()}
    span = f"{format_flops(rng[0])} – {format_flops(rng[1])}" if rng else "no shared FLOPs range"
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08, subplot_titles=(
        "error EDF: share of models with error < e", f"complexity-normalised ({bins} FLOPs bins over {span})"))
    for k, s in enumerate(studies):
        err, _ = data[s.name]
        color = STUDY_COLORS[k % len(STUDY_COLORS)]
        for col, w in ((1, None), (2, weights[s.name])):
            x, y = edf(err, w)
            if w is not None and len(x):  # drop the models outside the shared range (weight 0)
                keep = np.asarray(w)[np.argsort(err, kind="stable")] > 0
                x, y = x[keep], y[keep]
            fig.add_trace(go.Scatter(
                x=np.concatenate([[x[0]], x]) if len(x) else x, y=np.concatenate([[0.0], y]) if len(y) else y,
                mode="lines", line={"shape": "hv", "color": color, "width": 2}, name=f"{s.name} (n={len(err):,})",
                legendgroup=s.name, showlegend=col == 1,
                hovertemplate="error < %{x:.2%}: %{y:.1%} of models<extra>" + html.escape(s.name) + "</extra>"),
                row=1, col=col)
    ks: list[dict[str, Any]] = []
    for a, b in combinations(studies, 2):
        (ea, _), (eb, _) = data[a.name], data[b.name]
        ks.append({"study A": a.name, "study B": b.name, "models A": len(ea), "models B": len(eb),
                   "KS": ks_statistic(ea, eb),
                   "KS normalised": ks_statistic(ea, eb, weights[a.name], weights[b.name]) if rng else float("nan")})
    if ks:
        text = "; ".join(f"KS {r['study A']} vs {r['study B']}: {r['KS']:.3f} (normalised {r['KS normalised']:.3f})"
                         for r in ks[:3])
        fig.add_annotation(text=html.escape(text), xref="paper", yref="paper", x=0, y=-0.22, showarrow=False,
                           xanchor="left", font={"size": 11})
    fig.update_xaxes(title_text="error (1 − validation accuracy)", tickformat=".0%")
    fig.update_yaxes(title_text="cumulative share of models", tickformat=".0%", range=[0, 1.02], col=1)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02], col=2)
    fig.update_layout(height=460, margin={"t": 80, "r": 20, "b": 90, "l": 70}, template="plotly_white",
                      legend={"orientation": "h", "y": 1.2, "x": 0})
    return fig, ks


# ---- progress --------------------------------------------------------------------------------------------


def _references(studies: Sequence[StudyData]) -> dict[str, float]:
    """A scale per minimised objective, shared by all studies so their hypervolumes compare:
    the largest FLOP budget (every feasible trial is under it), 1.1 x the largest value seen
    otherwise."""
    out: dict[str, float] = {}
    used = {o for s in studies for o in s.objectives}
    for name in ("flops", "params", "latency"):
        if name not in used:
            continue
        seen = [v for s in studies for r in s.records if _scored(r) for v in [r.objective(name)] if v is not None]
        budgets = [s.budget[1] for s in studies if s.budget is not None and s.budget[1] > 0]
        if name == "flops" and budgets:
            out[name] = max(budgets + [max(seen, default=0.0) * 1.0001])
        elif seen:
            out[name] = 1.1 * max(seen)
    return out


def _hv_points(s: StudyData, refs: dict[str, float]) -> tuple[list[TrialRecord], list[tuple[float, ...] | None]]:
    """Trials in number order and each one's normalised minimisation vector (None: adds nothing)."""
    rs = sorted((r for r in s.records if r.outcome != RUNNING), key=lambda r: r.number)
    pts: list[tuple[float, ...] | None] = []
    for r in rs:
        vals = [r.objective(o) for o in s.objectives]
        unscaled = any(o != "accuracy" and o not in refs for o in s.objectives)
        if not _scored(r) or unscaled or any(v is None for v in vals):
            pts.append(None)
            continue
        pts.append(tuple(-v if o == "accuracy" else v / refs[o]  # type: ignore[operator]
                         for o, v in zip(s.objectives, vals)))
    return rs, pts


def hypervolume_progress(studies: Sequence[StudyData]) -> go.Figure:
    """Hypervolume of each study's front after each trial, and against the compute it had spent."""
    refs = _references(studies)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=("after each trial (in trial order)", "against compute spent"))
    compute_unit = "training hours (sum of wall_time_s)"
    for k, s in enumerate(studies):
        rs, pts = _hv_points(s, refs)
        if not rs:
            continue
        ref = tuple(0.0 if o == "accuracy" else 1.0 for o in s.objectives)
        hv = hypervolume_history(pts, ref)
        walls = [float(r.get("wall_time_s") or 0.0) for r in rs]
        if any(walls):
            compute = np.cumsum(walls) / 3600.0
        else:  # no timings recorded: count epochs trained instead
            compute = np.cumsum([float(r.get("epochs") or len(r.curve)) for r in rs])
            compute_unit = "epochs trained"
        color = STUDY_COLORS[k % len(STUDY_COLORS)]
        numbers, hv_arr = np.array([r.number for r in rs]), np.array(hv)
        fig.add_trace(go.Scatter(x=numbers, y=hv_arr, mode="lines", line={"shape": "hv", "color": color, "width": 2},
                                 name=s.name, legendgroup=s.name,
                                 hovertemplate="after trial %{x}: %{y:.4f}<extra>" + html.escape(s.name) + "</extra>"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=compute, y=hv_arr, mode="lines", line={"shape": "hv", "color": color, "width": 2},
                                 name=s.name, legendgroup=s.name, showlegend=False,
                                 hovertemplate="%{x:.2f}: %{y:.4f}<extra>" + html.escape(s.name) + "</extra>"),
                      row=1, col=2)
    scale = ", ".join(f"{o} / {format_flops(v) if o == 'flops' else f'{v:.3g}'}" for o, v in refs.items())
    fig.update_xaxes(title_text="trial number", row=1, col=1)
    fig.update_xaxes(title_text=compute_unit, row=1, col=2)
    fig.update_yaxes(title_text="hypervolume (normalised)", row=1, col=1)
    fig.add_annotation(text=html.escape(f"accuracy × (1 − scaled cost) per objective; reference 0 accuracy, "
                                        f"scales: {scale}"),
                       xref="paper", yref="paper", x=0, y=-0.22, showarrow=False, xanchor="left", font={"size": 11})
    fig.update_layout(height=440, margin={"t": 80, "r": 20, "b": 90, "l": 70}, template="plotly_white",
                      legend={"orientation": "h", "y": 1.2, "x": 0})
    return fig


def _rungs(s: StudyData) -> list[int]:
    return s.settings.rungs if s.settings is not None else []


def learning_curves(studies: Sequence[StudyData], cols: int = 2) -> go.Figure:
    """Every trial's validation accuracy per epoch, one panel per study; pruned trials in orange
    end at the rung that stopped them (dotted lines), failed ones in red."""
    n = len(studies)
    ncols = min(cols, n)
    nrows = math.ceil(n / ncols)
    fig = make_subplots(rows=nrows, cols=ncols, shared_yaxes=True, horizontal_spacing=0.05,
                        vertical_spacing=0.12 if nrows > 1 else 0.1,
                        subplot_titles=[s.name for s in studies] if n > 1 else None)
    for k, s in enumerate(studies):
        row, col = k // ncols + 1, k % ncols + 1
        groups = {COMPLETE: [COMPLETE], PRUNED: [PRUNED], FAILED: [FAILED, ORPHANED, INTERRUPTED, RUNNING]}
        for key, outcomes in groups.items():
            rs = [r for r in s.records if r.outcome in outcomes and r.curve]
            if not rs:
                continue
            # One line per trial inside a single trace, separated by NaN gaps; numpy arrays, because
            # plotly validates a Python list element by element (seconds for 10,000 curves).
            n_pts = sum(len(r.curve) + 1 for r in rs)
            xs = np.full(n_pts, np.nan)
            ys = np.full(n_pts, np.nan)
            trial = np.full(n_pts, np.nan)  # the trial number of each point, for the hover
            i = 0
            for r in rs:
                for p in r.curve:
                    if p.get("accuracy") is not None and p.get("epoch") is not None:
                        xs[i], ys[i], trial[i] = p["epoch"], p["accuracy"], r.number
                    i += 1
                i += 1  # the gap
            label = {COMPLETE: "complete", PRUNED: "pruned", FAILED: "failed / stopped / running"}[key]
            # Pruned and failed curves get markers too: one stopped after its first epoch is a single
            # point, which a line alone would not show.
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines" if key == COMPLETE else "lines+markers",
                                     connectgaps=False, line={"color": CURVE_COLORS[key], "width": 1},
                                     marker={"size": 3, "color": CURVE_COLORS[key]},
                                     name=f"{label} ({len(rs):,})" if n == 1 else f"{s.name}: {label} ({len(rs):,})",
                                     customdata=trial, hovertemplate=f"trial %{{customdata}} ({label})<br>"
                                                                     "epoch %{x}: %{y:.2%}<extra></extra>"),
                          row=row, col=col)
        for rung in _rungs(s):
            fig.add_vline(x=rung, line={"color": "#ff7f0e", "dash": "dot", "width": 1}, row=row, col=col,
                          annotation={"text": f"rung {rung}", "font": {"size": 10}}, annotation_position="bottom right")
        fig.update_xaxes(title_text="epoch", row=row, col=col)
    fig.update_yaxes(title_text="validation accuracy", tickformat=".0%", col=1)
    fig.update_layout(height=420 * nrows + 40, margin={"t": 40, "r": 20, "b": 110, "l": 70},
                      template="plotly_white", legend={"orientation": "h", "y": -0.12, "yanchor": "top", "x": 0},
                      hovermode="closest")
    return fig


# ---- proxy fidelity --------------------------------------------------------------------------------------

#: The report's heading of the fidelity checks' plots.
FIDELITY_HEADING = "Proxy vs reference accuracy (fidelity checks)"
FIDELITY_NOTE = ("Each point is an architecture this study trained (x: its accuracy here, at the study's proxy "
                 "fidelity) that 'nas fidelity' trained again in a linked study (y: its accuracy at the reference "
                 "fidelity, or with another seed). Points along a rising line: the proxy ranks candidates as the "
                 "reference does; a shapeless cloud: its ranking, and so the search's front, is noise. Diamonds: "
                 "on the study's Pareto front; bars: ±1 standard error from the validation size; dashed: y = x.")


@dataclass(frozen=True)
class Fidelity:
    """How a study trained its candidates, as a fidelity check compares it."""

    epochs: int | None
    train_images: int | None  # None: the whole training split
    seed: int
    lr: float | None

    @classmethod
    def of(cls, s: StudyData) -> Fidelity:
        """From the study's settings; a check without them, from what its link recorded."""
        from nas.study.agreement import LINK_ATTR

        st = s.settings
        link = s.attrs.get(LINK_ATTR)
        ref = (link.get("reference") if isinstance(link, dict) else None) or {}
        if st is not None:
            return cls(epochs=st.epochs, train_images=st.train_images, seed=int(st.schedule.get("seed", 0)),
                       lr=st.schedule.get("lr"))
        return cls(epochs=ref.get("epochs"), train_images=ref.get("train_images"),
                   seed=int(ref.get("train_seed") or 0), lr=ref.get("lr"))

    def schedule_text(self) -> str:
        """``3 epochs × 16,000 images`` (the whole split: ``all images``)."""
        e = "?" if self.epochs is None else f"{self.epochs} epoch{'' if self.epochs == 1 else 's'}"
        n = "all images" if self.train_images is None else f"{self.train_images:,} images"
        return f"{e} × {n}"

    def text(self, other: Fidelity | None = None) -> str:
        """``3 epochs × 16,000 images, seed 0`` (and the peak lr where it differs from ``other``'s)."""
        lr = f", lr {self.lr:g}" if other is not None and self.lr is not None and self.lr != other.lr else ""
        return f"{self.schedule_text()}, seed {self.seed}{lr}"


@dataclass
class FidelityPanel:
    """One fidelity check of a study: its accuracies against the linked study's, per architecture."""

    study: str
    linked: str
    reseed: bool  # the same fidelity with another seed: the seed-noise check
    title: str  # what is compared, e.g. "seed 0 vs seed 1 (1 epoch × 2,000 images): the seed noise"
    names: tuple[str, str]  # the two accuracies' names: ("proxy", "reference"), or ("seed 0", "seed 1")
    x_label: str
    y_label: str
    report: Any  # nas.study.agreement.FidelityReport, exactly as 'nas fidelity' prints it
    figure: go.Figure

    @property
    def verdict(self) -> str:
        return self.report.verdict()

    def statistics(self) -> str:
        """The rank statistics in one line (empty until enough candidates are trained in both)."""
        a, out = self.report.agreement, ""
        first, second = self.names
        if a is not None:
            out = (f"Kendall tau {a.kendall_tau:.2f} (p {a.kendall_p:.2g}), Spearman rho {a.spearman_rho:.2f}, "
                   f"top-{a.top_k} overlap {a.top_overlap:.0%}, regret {a.regret:.2%} (the {second} accuracy "
                   f"lost by taking the {first}'s best)")
        if self.report.pending:
            out += ("; " if out else "") + f"{self.report.pending} of the sample not trained in {self.linked} yet"
        return out


def _fidelity_pairs(parent: StudyData, linked: StudyData) -> list[tuple[TrialRecord, TrialRecord]]:
    """(proxy, reference) records of each architecture trained in both, as ``fidelity.compare`` pairs
    them (by ``arch_hash``, among :func:`nas.study.agreement.trained_candidates`), best reference first."""
    from nas.study.agreement import trained_candidates

    proxy = {r.get("arch_hash"): r for r in trained_candidates(parent.records)}
    reference = {r.get("arch_hash"): r for r in trained_candidates(linked.records)}
    pairs = [(proxy[h], reference[h]) for h in proxy if h in reference]
    pairs.sort(key=lambda pr: -pr[1].accuracy)  # type: ignore[operator]
    return pairs


def _fidelity_report(parent: StudyData, linked: StudyData, pairs: Sequence[tuple[TrialRecord, TrialRecord]]) -> Any:
    """The :class:`nas.study.agreement.FidelityReport` that ``fidelity.compare`` makes of the same
    trials (from the records already read: ``compare`` would read the parent study again)."""
    from nas.study.agreement import LINK_ATTR, MIN_CANDIDATES, FidelityReport, rank_agreement

    rows = [{"number": p.number, "arch": p.get("arch"), "proxy": p.accuracy, "reference": r.accuracy,
             "reference_trial": r.number} for p, r in pairs]
    agreement = (rank_agreement([row["proxy"] for row in rows], [row["reference"] for row in rows])
                 if len(rows) >= MIN_CANDIDATES else None)
    queued = (linked.attrs.get(LINK_ATTR) or {}).get("trials") or {}
    pending = max(0, len(queued) - len(rows)) if queued else 0
    return FidelityReport(study=parent.name, linked=linked.name, rows=rows, agreement=agreement, pending=pending)


def _ranks(values: Sequence[float]) -> list[int]:
    """1 for the highest value (ties by order), as ``rank_agreement`` picks a best."""
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    out = [0] * len(values)
    for rank, i in enumerate(order, 1):
        out[i] = rank
    return out


def _span(values: Sequence[float], errors: Sequence[float | None]) -> tuple[float, float]:
    """An axis range holding every value and its error bar, with a margin."""
    lo = min(v - (e or 0.0) for v, e in zip(values, errors))
    hi = max(v + (e or 0.0) for v, e in zip(values, errors))
    pad = max(hi - lo, 0.01) * 0.06
    return lo - pad, hi + pad


def _fmt_acc(acc: float | None, se: float | None) -> str:
    return "?" if acc is None else f"{acc:.2%}" + ("" if se is None else f" ±{se:.1%}")


def fidelity_panel(parent: StudyData, linked: StudyData, members: set[int] | None = None) -> FidelityPanel:
    """The study's accuracy (x) against a fidelity check's (y), one point per architecture trained in
    both, titled with the two fidelities and the check's verdict. ``members``: the numbers of the
    study's Pareto-front trials (drawn as diamonds)."""
    if members is None:
        members = {r.number for r in front(parent.records, parent.objectives)}
    mine, theirs = Fidelity.of(parent), Fidelity.of(linked)
    reseed = (mine.epochs, mine.train_images) == (theirs.epochs, theirs.train_images) and mine.seed != theirs.seed
    if reseed:
        title = f"seed {mine.seed} vs seed {theirs.seed} ({mine.schedule_text()}): the seed noise"
        x_label, y_label = f"accuracy with seed {mine.seed} (this study)", f"accuracy with seed {theirs.seed}"
        names = (f"seed {mine.seed}", f"seed {theirs.seed}")
    else:
        title = f"proxy ({mine.text(theirs)}) vs reference ({theirs.text(mine)})"
        x_label = f"proxy accuracy (this study: {mine.schedule_text()})"
        y_label = f"reference accuracy ({theirs.schedule_text()})"
        names = ("proxy", "reference")
    pairs = _fidelity_pairs(parent, linked)
    report = _fidelity_report(parent, linked, pairs)
    x = [float(p.accuracy) for p, _ in pairs]  # type: ignore[arg-type]
    y = [float(r.accuracy) for _, r in pairs]  # type: ignore[arg-type]
    rank_x, rank_y = _ranks(x), _ranks(y)
    hovers = []
    for k, (p, r) in enumerate(pairs):
        lines = [f"<b>trial {p.number}</b> · retrained as trial {r.number} of {html.escape(linked.name)}",
                 *architecture_lines(p),
                 f"{names[0]} {_fmt_acc(p.accuracy, p.accuracy_se)} · {names[1]} {_fmt_acc(r.accuracy, r.accuracy_se)}",
                 f"rank {rank_x[k]} of {len(pairs)} by the {names[0]}, {rank_y[k]} by the {names[1]}"]
        if p.number in members:
            lines.append("on the study's Pareto front")
        hovers.append("<br>".join(lines))
    fig = go.Figure()
    if pairs:
        se_x = [p.accuracy_se for p, _ in pairs]
        se_y = [r.accuracy_se for _, r in pairs]
        # Each axis spans its points (and their error bars), so the y = x guide, clipped to that box,
        # shows only where it passes the points: through them for a reseed, often not at all for a
        # reference that trains longer (every accuracy higher: the ranking, not the shift, is the question).
        span_x, span_y = _span(x, se_x), _span(y, se_y)
        lo, hi = min(span_x[0], span_y[0]), max(span_x[1], span_y[1])
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                                 line={"color": "#999", "dash": "dash", "width": 1}, hoverinfo="skip"))
        bars = {"type": "data", "thickness": 1, "width": 0, "color": "rgba(31,119,180,0.45)"}
        on_front = sum(p.number in members for p, _ in pairs)
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="markers", name=f"architectures ({len(pairs)}; {on_front} on the front)",
            marker={"size": 9, "color": STUDY_COLORS[0], "line": {"width": 0.5, "color": "white"},
                    "symbol": ["diamond" if p.number in members else "circle" for p, _ in pairs]},
            error_x={**bars, "array": [s or 0.0 for s in se_x], "visible": any(s is not None for s in se_x)},
            error_y={**bars, "array": [s or 0.0 for s in se_y], "visible": any(s is not None for s in se_y)},
            customdata=[[p.number, r.number] for p, r in pairs],
            hovertext=hovers, hovertemplate="%{hovertext}<extra></extra>"))
        fig.update_xaxes(range=list(span_x))
        fig.update_yaxes(range=list(span_y))
    else:
        fig.add_annotation(text=html.escape(f"no architecture trained in both studies yet ({report.pending} of the "
                                            f"sample still to train in {linked.name})"),
                           showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_layout(
        title={"text": f"{html.escape(title)}<br><sup>verdict: {html.escape(report.verdict())}</sup>",
               "x": 0, "xanchor": "left", "font": {"size": 15}},
        height=520, margin={"t": 90, "r": 20, "b": 60, "l": 70}, template="plotly_white",
        legend={"orientation": "h", "y": -0.14, "x": 0}, hovermode="closest")
    fig.update_xaxes(title_text=x_label, tickformat=".1%")
    fig.update_yaxes(title_text=y_label, tickformat=".1%")
    return FidelityPanel(study=parent.name, linked=linked.name, reseed=reseed, title=title, names=names,
                         x_label=x_label, y_label=y_label, report=report, figure=fig)


def fidelity_sections(dash: Dashboard) -> list[tuple[str, FidelityPanel | str]]:
    """The fidelity checks' section in page order, for the report and the live page alike: per
    study, each check as ``(prefix, panel)`` (the prefix names the study when there are several),
    then for a study without one, ``("", hint)``."""
    order = [n for n in dash.fronts if n in dash.fidelity or n in dash.fidelity_hints]
    out: list[tuple[str, FidelityPanel | str]] = []
    for name in order:
        out += [(f"{name}: " if len(order) > 1 else "", panel) for panel in dash.fidelity.get(name, [])]
        if name in dash.fidelity_hints:
            out.append(("", dash.fidelity_hints[name]))
    return out


def fidelity_hint(s: StudyData) -> str:
    """One line for a study with no fidelity check: how to make one (or where a check's plot is)."""
    import shlex

    parent = link_of(s.attrs)
    if parent is not None:
        return (f"{s.name} is itself a fidelity check of {parent}: its plot is in {parent}'s report "
                f"(nas dashboard --study {shlex.quote(parent)}).")
    return (f"No fidelity check of {s.name} yet: 'nas fidelity --study {shlex.quote(s.name)}' retrains a sample of "
            f"its candidates at a higher fidelity (add --reseed 1 for the seed noise) and this report then shows "
            f"whether its ranking holds.")


def fidelity_panels(studies: Sequence[StudyData]) -> tuple[dict[str, list[FidelityPanel]], dict[str, str]]:
    """Each study's fidelity checks (:attr:`StudyData.links`) as panels, references before reseeds,
    and a one-line hint for each study without one."""
    panels: dict[str, list[FidelityPanel]] = {}
    hints: dict[str, str] = {}
    for s in studies:
        if not s.links:
            hints[s.name] = fidelity_hint(s)
            continue
        members = {r.number for r in front(s.records, s.objectives)}
        made = [fidelity_panel(s, linked, members) for linked in s.links]
        panels[s.name] = sorted(made, key=lambda p: (p.reseed, p.linked))
    return panels, hints


# ---- tables ----------------------------------------------------------------------------------------------


def front_rows(s: StudyData) -> list[dict[str, Any]]:
    """The study's Pareto front (``nas.study.records.front``: feasible complete trials, over its objectives)."""
    rows = []
    latency = any(r.objective("latency") is not None for r in s.records)
    members = front(s.records, s.objectives)
    noise = noise_neighbours(members)
    for r in members:
        se = r.accuracy_se
        row = {"trial": r.number, "architecture": r.get("arch") or "",
               "accuracy": f"{r.accuracy:.2%}" + ("" if se is None else f" ±{se:.1%}"),
               "FLOPs": _fmt_flops(r.objective("flops")), "params": _fmt_params(r.objective("params"))}
        if latency:
            lat = r.objective("latency")
            row["latency"] = f"{lat:.2f} ms" if lat is not None else ""
        row["within noise of"] = ", ".join(map(str, noise[r.number]))
        row["hash"] = r.get("arch_hash") or ""
        rows.append(row)
    return rows


def summary_rows(studies: Sequence[StudyData]) -> list[dict[str, Any]]:
    rows = []
    for s in studies:
        c = counts(s.records)
        st = s.settings
        best = max((r.accuracy for r in s.records if _scored(r)), default=None)  # type: ignore[type-var]
        rows.append({
            "study": s.name + (" (synthetic)" if s.synthetic and "synthetic" not in s.name else ""),
            "space": st.space if st else "?", "budget": st.budget_text() if st else "?",
            "dataset": st.dataset if st else "?", "epochs": st.epochs if st else "?",
            "objectives": ", ".join(s.objectives), "trials": len(s.records),
            "outcomes": ", ".join(f"{v:,} {k}" for k, v in c.items() if v),
            "best accuracy": f"{best:.2%}" if best is not None else "–",
        })
    return rows


# ---- everything ------------------------------------------------------------------------------------------


NOTES = {
    "flops": "Filled: trained to the end; open: pruned early (at the accuracy it had when stopped). The step line "
             "is the Pareto front; dashed lines the FLOP budget. Trials without an accuracy (infeasible, failed, "
             "running) are in the strip underneath. Hover a point for its architecture.",
    "params": "The same trials against their parameter count; the step line is the front in this projection.",
    "latency": "Against measured latency (batch 1), for trials where it was measured.",
    "effects": "Accuracy of complete trials by each choice. Green band: where the best model of a random quarter "
               "of the trials falls, 95% of 2,500 draws (pycls's bootstrap); star: its most common place.",
    "edf": "F(e) = share of models with error below e; further left and higher is a better design space. Right: "
           "each model weighted so every FLOPs bin counts the same (NDS), so spaces that sample different "
           "complexities compare fairly. KS = largest vertical gap between two curves.",
    "hypervolume": "Volume dominated by the front (accuracy × saved cost, normalised). A flat line: the search "
                   "stopped finding better trade-offs.",
    "curves": "Validation accuracy per epoch of every trial. Pruned trials end at an early-stopping rung (dotted).",
}


def build_dashboard(studies: Sequence[StudyData], color_by: str | None = None, *,
                    keep_empty_latency: bool = False) -> Dashboard:
    """Every figure and table for ``studies``; ``color_by`` must be one of :func:`color_choices`."""
    if color_by is not None:
        choices = color_choices(studies)
        if color_by not in choices:
            raise UserError(f"--color-by {color_by!r} is not a design parameter of the studies; "
                            f"choose one of: {', '.join(choices)}")
    hovers = _Hovers(studies)
    figures: dict[str, go.Figure] = {"flops": accuracy_vs(studies, "flops", color_by, hovers),
                                     "params": accuracy_vs(studies, "params", color_by, hovers)}
    has_latency = any(r.objective("latency") is not None for s in studies for r in s.records)
    if has_latency:
        figures["latency"] = accuracy_vs(studies, "latency", color_by, hovers)
    elif keep_empty_latency:
        fig = go.Figure()
        fig.add_annotation(text="no latency measured yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
        fig.update_layout(height=200, template="plotly_white", xaxis_visible=False, yaxis_visible=False)
        figures["latency"] = fig
    figures["effects"] = parameter_effects(studies)
    figures["edf"], ks = error_edfs(studies)
    figures["hypervolume"] = hypervolume_progress(studies)
    figures["curves"] = learning_curves(studies)
    fidelity, hints = fidelity_panels(studies)
    notes = dict(NOTES)
    for key in ("effects", "edf"):
        if key in notes:
            notes[key] += bias_note(studies)
    return Dashboard(figures=figures, summary=summary_rows(studies), fronts={s.name: front_rows(s) for s in studies},
                     ks=ks, notes=notes, n_trials=sum(len(s.records) for s in studies), fidelity=fidelity,
                     fidelity_hints=hints)

def bias_note(studies: Sequence[StudyData]) -> str:
    """The studies whose EDFs and best ranges describe a search's preferences rather than the space."""
    out = []
    for s in studies:
        if s.settings is not None and s.settings.bias():
            out.append(f" BIASED: {s.name}: " + "; ".join(s.settings.bias()) + ".")
        elif s.settings is not None:
            out.append(f" {s.name} is a population (uniform random, one fidelity, no early stopping): unbiased.")
    return "".join(out)


def edf_comparison_figure(comparison: Any) -> go.Figure:
    """``nas space compare``: the complexity-normalised error EDFs of two populations, with the verdict."""
    fig = go.Figure()
    for name, (x, y) in comparison.edfs.items():
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line_shape="hv", name=name,
                                 hovertemplate="error %{x:.3f}<br>share %{y:.2f}<extra>" + html.escape(name)
                                 + "</extra>"))
    fig.update_layout(title=html.escape(comparison.verdict()), xaxis_title="error (1 - accuracy)",
                      yaxis_title="cumulative share of models (complexity-normalised)", template="plotly_white")
    return fig
