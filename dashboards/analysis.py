"""The statistics behind the dashboards, on plain arrays: no Optuna, no Plotly.

* :func:`bootstrap_best` / :func:`best_range` — pycls's empirical bootstrap for the range of good
  values of a design parameter (Radosavovic et al. 2020): draw a quarter of the models with
  replacement, keep the best of each draw, repeat 2,500 times, and read where the bests' values
  fall (2.5th, 50th and 97.5th percentile). A parameter whose bests crowd one end of its
  choices is one that matters.
* :func:`edf`, :func:`nds_weights`, :func:`ks_statistic` — design-space comparison by error
  distributions (Radosavovic et al. 2019, "On Network Design Spaces for Visual Recognition"):
  the empirical distribution function F(e) = share of models with error < e, its
  complexity-normalised form (FLOPs binned over a range both spaces cover, each model weighted
  by 1 / (bins x models in its bin), so a space that samples more large models gains nothing
  from it), and the Kolmogorov-Smirnov statistic max |F1 - F2| between two of them.
* :func:`hypervolume_history` — the hypervolume of the front after each trial, the front kept
  incrementally so a 10,000-trial study costs milliseconds (``nas.common.pareto`` computes each volume).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nas.common.pareto import Vector, dominates, hypervolume

__all__ = [
    "BestRange", "best_range", "bootstrap_best", "edf", "hypervolume_history", "ks_statistic", "nds_weights",
    "shared_range",
]

BOOTSTRAP_DRAWS = 2500  # pycls's default
BOOTSTRAP_SHARE = 0.25  # a quarter of the models per draw
BOOTSTRAP_ALPHA = 5.0  # percent outside the band: a 95% interval


@dataclass(frozen=True)
class BestRange:
    """Where the bootstrap's best models fall among a parameter's ordered choices (indices into them)."""

    low: int
    median: int
    high: int
    share: np.ndarray  # share of the draws whose best model has each choice


def bootstrap_best(scores: Sequence[float] | np.ndarray, *, draws: int = BOOTSTRAP_DRAWS,
                   share: float = BOOTSTRAP_SHARE, seed: int = 0) -> np.ndarray:
    """Indices of the best model (highest score) of each of ``draws`` resamples of ``share`` of them.

    Independent of any parameter, so it is drawn once per study and read for every parameter."""
    s = np.asarray(scores, dtype=float)
    n = len(s)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    k = max(1, int(n * share))
    rng = np.random.default_rng(seed)
    out = np.empty(draws, dtype=np.int64)
    chunk = max(1, 2_000_000 // k)  # bound the index matrix to a few MB whatever the study's size
    for start in range(0, draws, chunk):
        rows = min(chunk, draws - start)
        idx = rng.integers(0, n, size=(rows, k))
        out[start:start + rows] = idx[np.arange(rows), np.argmax(s[idx], axis=1)]
    return out


def best_range(codes: Sequence[int] | np.ndarray, best: np.ndarray, n_choices: int,
               alpha: float = BOOTSTRAP_ALPHA) -> BestRange:
    """The band of a parameter's good values from the bootstrap's bests.

    ``codes[i]`` is model i's choice as an index into the parameter's choices in their natural
    order (so the band is a contiguous run of choices); ``best`` is :func:`bootstrap_best`'s
    output. Percentiles use the inverted CDF, so the ends are choices that occur, not midpoints."""
    c = np.asarray(codes, dtype=np.int64)[best]
    if len(c) == 0:
        return BestRange(0, 0, n_choices - 1, np.zeros(n_choices))
    lo, med, hi = np.percentile(c, [alpha / 2, 50.0, 100.0 - alpha / 2], method="inverted_cdf")
    share = np.bincount(c, minlength=n_choices) / len(c)
    return BestRange(int(lo), int(med), int(hi), share)


def edf(errors: Sequence[float] | np.ndarray,
        weights: Sequence[float] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Step points of the error EDF: ``x`` sorted errors, ``y[i]`` the (weighted) share of models
    with error <= x[i] (the limit of F(e) = share with error < e just above x[i]). Weights are
    normalised to sum to 1."""
    e = np.asarray(errors, dtype=float)
    w = np.ones_like(e) if weights is None else np.asarray(weights, dtype=float)
    if len(e) == 0 or w.sum() <= 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(e, kind="stable")
    return e[order], np.cumsum(w[order]) / w.sum()


def shared_range(flops: Sequence[np.ndarray]) -> tuple[float, float] | None:
    """The FLOPs range every set covers (max of the minima to min of the maxima), or None."""
    non_empty = [np.asarray(f, dtype=float) for f in flops if len(f)]
    if not non_empty:
        return None
    lo, hi = max(float(f.min()) for f in non_empty), min(float(f.max()) for f in non_empty)
    return (lo, hi) if lo <= hi else None


def nds_weights(flops: np.ndarray, lo: float, hi: float, bins: int = 10) -> np.ndarray:
    """Complexity-normalising weights of NDS: bin ``flops`` into ``bins`` log-spaced bins over
    ``[lo, hi]`` and give a model in a bin holding m models the weight 1 / (occupied bins x m),
    so every occupied bin weighs the same and the weights sum to 1. Models outside the range
    get weight 0. (Bins are log-spaced because FLOPs in a space span orders of magnitude;
    dividing by occupied rather than all bins keeps the sum 1 when a bin is empty.)"""
    f = np.asarray(flops, dtype=float)
    w = np.zeros(len(f))
    inside = (f >= lo) & (f <= hi) & (f > 0)
    if not inside.any():
        return w
    if hi <= lo:
        w[inside] = 1.0 / inside.sum()
        return w
    edges = np.geomspace(lo, hi, bins + 1)
    b = np.clip(np.searchsorted(edges, f[inside], side="right") - 1, 0, bins - 1)
    per_bin = np.bincount(b, minlength=bins)
    w[inside] = 1.0 / (np.count_nonzero(per_bin) * per_bin[b])
    return w


def ks_statistic(x1: Sequence[float] | np.ndarray, x2: Sequence[float] | np.ndarray,
                 w1: Sequence[float] | np.ndarray | None = None,
                 w2: Sequence[float] | np.ndarray | None = None) -> float:
    """Two-sample Kolmogorov-Smirnov statistic D = max_e |F1(e) - F2(e)| of (weighted) EDFs."""
    a, fa = edf(x1, w1)
    b, fb = edf(x2, w2)
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    grid = np.union1d(a, b)

    def at(x: np.ndarray, f: np.ndarray) -> np.ndarray:
        k = np.searchsorted(x, grid, side="right")  # models with error <= grid value
        return np.where(k > 0, f[np.maximum(k - 1, 0)], 0.0)

    return float(np.max(np.abs(at(a, fa) - at(b, fb))))


def hypervolume_history(points: Sequence[Vector | None], reference: Sequence[float]) -> list[float]:
    """Hypervolume (minimisation, ``reference`` bounding it) of the front of the first k points,
    for every k; ``None`` marks a trial that adds nothing (pruned, infeasible, failed...)."""
    ref = tuple(float(r) for r in reference)
    front: list[Vector] = []
    hv = 0.0
    out: list[float] = []
    for p in points:
        if p is not None and all(x < r for x, r in zip(p, ref)) \
                and not any(dominates(q, p) or tuple(q) == tuple(p) for q in front):
            front = [q for q in front if not dominates(p, q)] + [tuple(p)]
            hv = hypervolume(front, ref)
        out.append(hv)
    return out
