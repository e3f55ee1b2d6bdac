"""Design-space refinement from a population study: proposals, their evidence, and the rule that
accepts them (``nas space refine``); and the comparison of two populations (``nas space compare``).

A **population** is a study sampled without bias (``nas search --population``: uniform random inside a
FLOP window, one fixed fidelity, no early stopping), so its error distribution describes the space and
not a sampler's preferences. From it:

* **Proposals** (:mod:`nas.search_spaces.refinements`): narrow each parameter to its bootstrap best range
  (pycls's bootstrap: a quarter of the models per draw, the best of each, 2,500 draws, the 95 % band);
  drop a listed value that at most half its fair share of the bests have; share a per-stage field across
  stages; make a per-stage integer field non-decreasing. Narrow and drop proposals are *chosen* on one
  random half of the population and *judged* on the other half (sample splitting: judged on the models
  that picked them, a range of a parameter without effect would look better than it is).
* **Evidence** for each, on the population itself: the models the refined space admits against the
  rest: the complexity-normalised error EDFs (NDS weights over the FLOPs both cover), their KS statistic
  and its p-value (asymptotic Kolmogorov distribution on the weights' effective sizes), the change in
  mean error (refined minus the whole population) and in best error (the lowest error), each with a
  95 % bootstrap interval, and the size of the space before and after (log10 architectures).
* **The rule** (:data:`RULE`). A refinement that favours values (narrow, drop) must show the admitted
  models *better*: their mean error below the rest's, one-sided, at 0.05 divided by the number of such
  proposals (Bonferroni; the p-value from the bootstrap distribution of the difference, normal
  approximation), so a parameter without effect is narrowed at most 5 % of the time over the whole
  table. (The KS test is reported, not used: it tests any difference in shape, and with NDS weights its
  effective sample is small, so it misses shifts the mean sees.) A value-neutral
  simplification (share, monotone) must show them *not worse*: at least :data:`MIN_ADMITTED` models,
  and the upper end of the interval of the mean-error difference at most :data:`NOT_WORSE_MARGIN` of
  the population's error spread (a small effect, in Cohen's terms). Each proposal is judged on the
  whole population; the accepted ones are applied together.

The comparison of two populations (a parent and its refined child, each sampled on its own) uses the
same figures with one verdict line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nas.common.errors import UserError
from nas.dashboards.analysis import best_range, bootstrap_best, edf, ks_statistic, nds_weights, shared_range
from nas.search_spaces.refinements import Refinement, log10_size, structural_candidates
from nas.search_spaces.space import SearchSpace

__all__ = ["Evidence", "Population", "Proposal", "RULE", "compare_populations", "propose"]

ALPHA = 0.05
MIN_MODELS = 20  # the bootstrap's quarter draws need at least 5 models each
MIN_ADMITTED = 20  # a simplification must admit this many models to be judged
NOT_WORSE_MARGIN = 0.2  # of the population's error standard deviation
INTERVAL_DRAWS = 1000
RULE = (f"narrow/drop: admitted models' mean error below the rest's, one-sided p < {ALPHA:g}/m (m = narrow/drop "
        f"proposals, Bonferroni); share/monotone: >= {MIN_ADMITTED} admitted, and the "
        f"difference's 95% interval at most {NOT_WORSE_MARGIN:g} x the error spread above 0 (not worse)")


@dataclass
class Population:
    """Models of one space: parameter values, errors (1 - accuracy) and FLOPs, one per architecture."""

    space: SearchSpace
    values: list[dict[str, Any]]
    errors: np.ndarray
    flops: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        self.errors = np.asarray(self.errors, dtype=float)
        self.flops = np.asarray(self.flops, dtype=float)

    def __len__(self) -> int:
        return len(self.values)

    def mask(self, admits: Callable[[dict[str, Any]], bool]) -> np.ndarray:
        return np.array([admits(v) for v in self.values], dtype=bool)


def weighted_mean(x: np.ndarray, w: np.ndarray) -> float:
    return float(np.sum(x * w) / np.sum(w)) if len(x) and np.sum(w) > 0 else float("nan")


def _weights(flops: np.ndarray, span: tuple[float, float] | None) -> np.ndarray:
    """NDS weights over ``span``; uniform when there is no common range (or one FLOPs value)."""
    if span is None or not len(flops):
        return np.full(len(flops), 1.0 / max(1, len(flops)))
    w = nds_weights(flops, *span)
    return w if w.sum() > 0 else np.full(len(flops), 1.0 / len(flops))


def ks_pvalue(d: float, w1: np.ndarray, w2: np.ndarray) -> float:
    """Two-sample KS p-value, asymptotic (Kolmogorov's distribution with Stephens's correction) on the
    effective sizes of the weights ``(sum w)^2 / sum w^2``."""
    from scipy.special import kolmogorov

    n1, n2 = (float(np.sum(w) ** 2 / np.sum(w**2)) if np.sum(w**2) > 0 else 0.0 for w in (w1, w2))
    if n1 < 1 or n2 < 1 or math.isnan(d):
        return float("nan")
    en = math.sqrt(n1 * n2 / (n1 + n2))
    return float(min(1.0, kolmogorov((en + 0.12 + 0.11 / en) * d)))


@dataclass
class Evidence:
    """Admitted models (``a``) against a comparison group (``b``): the rest, or another population."""

    n_a: int
    n_b: int
    ks: float
    p: float
    mean_a: float
    mean_b: float
    mean_diff: tuple[float, float, float]  # a - b: estimate, 2.5 %, 97.5 %
    best_a: float
    best_b: float
    best_diff: tuple[float, float, float]  # best(a) - best(b), with its interval
    spread: float  # the error standard deviation of a and b together
    p_better: float  # one-sided: the chance of a mean-error difference this far below 0 if there were none


    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n_a, "n_other": self.n_b, "ks": self.ks, "p": self.p, "mean_error": self.mean_a,
                "mean_error_other": self.mean_b, "mean_change": list(self.mean_diff), "best_error": self.best_a,
                "best_error_other": self.best_b, "best_change": list(self.best_diff),
                "p_better": self.p_better}


def evidence(err_a: np.ndarray, fl_a: np.ndarray, err_b: np.ndarray, fl_b: np.ndarray, *, seed: int = 0,
             draws: int = INTERVAL_DRAWS) -> Evidence:
    """The figures of one comparison: normalised KS and p, mean and best error with bootstrap intervals."""
    span = shared_range([fl_a, fl_b])
    w_a, w_b = _weights(fl_a, span), _weights(fl_b, span)
    d = ks_statistic(err_a, err_b, w_a, w_b)
    rng = np.random.default_rng(seed)
    # resample the models of each group uniformly, all draws at once, and recompute each group's weighted mean
    ia = rng.integers(0, len(err_a), (draws, len(err_a)))
    ib = rng.integers(0, len(err_b), (draws, len(err_b)))

    def wmeans(err: np.ndarray, w: np.ndarray, idx: np.ndarray) -> np.ndarray:
        ws = w[idx]
        total = ws.sum(axis=1)
        return np.where(total > 0, (err[idx] * ws).sum(axis=1) / np.where(total > 0, total, 1.0), err[idx].mean(axis=1))

    diffs = wmeans(err_a, w_a, ia) - wmeans(err_b, w_b, ib)
    bests = err_a[ia].min(axis=1) - err_b[ib].min(axis=1)
    mean_a, mean_b = weighted_mean(err_a, w_a), weighted_mean(err_b, w_b)
    sd = float(np.std(diffs))
    from scipy.special import ndtr

    p_better = float(ndtr((mean_a - mean_b) / sd)) if sd > 0 else float(mean_a >= mean_b)
    both = np.concatenate([err_a, err_b])

    def band(x: np.ndarray, estimate: float) -> tuple[float, float, float]:
        lo, hi = np.percentile(x, [2.5, 97.5])
        return float(estimate), float(lo), float(hi)

    return Evidence(n_a=len(err_a), n_b=len(err_b), ks=d, p=ks_pvalue(d, w_a, w_b), mean_a=mean_a, mean_b=mean_b,
                    mean_diff=band(diffs, mean_a - mean_b), best_a=float(err_a.min()), best_b=float(err_b.min()),
                    best_diff=band(bests, float(err_a.min() - err_b.min())), spread=float(np.std(both)),
                    p_better=p_better)


@dataclass
class Proposal:
    refinement: Refinement
    description: str
    evidence: Evidence | None  # None: too few models on one side to judge
    log10_before: float
    log10_after: float
    accepted: bool = False
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"refinement": self.refinement.to_dict(), "description": self.description,
                "accepted": self.accepted, "reason": self.reason, "log10_before": self.log10_before,
                "log10_after": self.log10_after, "evidence": self.evidence.to_dict() if self.evidence else None}


def _value_candidates(pop: Population, seed: int) -> list[Refinement]:
    """Narrow each parameter to its bootstrap best range; drop values the bests avoid."""
    best = bootstrap_best(-pop.errors, seed=seed)
    out: list[Refinement] = []
    for name, p in pop.space.params.items():
        values = list(p.values) if len(p.values) <= 10_000 else None
        if values is None or len(values) < 2:
            continue
        index = {repr(v): i for i, v in enumerate(values)}
        codes = np.array([index[repr(v[name])] for v in pop.values])
        r = best_range(codes, best, len(values))
        if (r.low, r.high) != (0, len(values) - 1):
            out.append(Refinement("narrow", name, tuple(values[r.low:r.high + 1])))
        fair = 1.0 / len(values)
        for i in range(len(values)):  # a choice list's value, not a point of an integer range
            if p.choices is not None and len(values) >= 3 and r.low <= i <= r.high and r.share[i] < fair / 2:
                out.append(Refinement("drop", name, tuple(values[:i] + values[i + 1:])))
    return out


def _child_size(space: SearchSpace, doc: dict[str, Any], r: Refinement) -> float:
    from nas.search_spaces.refinements import apply
    from nas.search_spaces.space import parse_space

    try:
        return log10_size(parse_space(apply(doc, space, [r]), source="refined"))
    except UserError:
        return float("nan")


def propose(pop: Population, doc: dict[str, Any], *, seed: int = 0) -> list[Proposal]:
    """Every proposal with its evidence and the rule's decision, largest reduction first."""
    if len(pop) < MIN_MODELS:
        raise UserError(f"population {pop.name} has {len(pop)} trained models; refining needs at least "
                        f"{MIN_MODELS} (the bootstrap draws a quarter of them, at least 5 each): train more with "
                        f"the same command and a higher --trials")
    before = log10_size(pop.space)
    # Sample splitting: the value proposals are chosen on one random half (the bootstrap's bests) and judged
    # on the other, so a range is not tested on the very models that picked it. Value-neutral proposals
    # (share, monotone) are fixed in advance and judged on every model.
    order = np.random.default_rng(seed).permutation(len(pop))
    chooser, judge = np.zeros(len(pop), bool), np.zeros(len(pop), bool)
    chooser[order[: len(pop) // 2]] = True
    judge[order[len(pop) // 2:]] = True
    half = Population(pop.space, [pop.values[i] for i in np.flatnonzero(chooser)], pop.errors[chooser],
                      pop.flops[chooser], pop.name)
    values = _value_candidates(half, seed)
    m = max(1, len(values))
    proposals = []
    for k, r in enumerate(values + structural_candidates(pop.space)):
        on = judge if r.kind in ("narrow", "drop") else np.ones(len(pop), bool)
        admitted = pop.mask(lambda v, r=r: r.admits(pop.space, v)) & on
        rest = ~admitted & on
        n = int(admitted.sum())
        prop = Proposal(r, r.describe(pop.space), None, before, _child_size(pop.space, doc, r))
        if n < 5 or int(rest.sum()) < 5:
            prop.reason = f"{n} of {int(on.sum())} models judged admitted: too few on one side to judge"
        else:
            ev = evidence(pop.errors[admitted], pop.flops[admitted], pop.errors[rest], pop.flops[rest],
                          seed=seed + k)
            prop.evidence = ev
            prop.accepted, prop.reason = _decide(r, ev, m)
        if math.isnan(prop.log10_after) or prop.log10_after >= before:
            prop.accepted, prop.reason = False, prop.reason + "; the space would not get smaller"
        proposals.append(prop)
    proposals.sort(key=lambda q: (not q.accepted, -(q.log10_before - (q.log10_after if not math.isnan(
        q.log10_after) else q.log10_before))))
    return proposals


def _decide(r: Refinement, ev: Evidence, m: int) -> tuple[bool, str]:
    est, lo, hi = ev.mean_diff
    if r.kind in ("narrow", "drop"):
        level = ALPHA / m
        if ev.p_better < level:
            return True, f"admitted models better (p {ev.p_better:.2g} < {level:.2g})"
        return False, f"not shown better (p {ev.p_better:.2g} >= {level:.2g})"
    if ev.n_a < MIN_ADMITTED:
        return False, f"only {ev.n_a} models admitted (at least {MIN_ADMITTED})"
    margin = NOT_WORSE_MARGIN * ev.spread
    if hi <= margin:
        return True, f"not worse (interval ends {hi:+.3f} <= {margin:.3f})"
    return False, f"may be worse (interval ends {hi:+.3f} > {margin:.3f})"


@dataclass
class Comparison:
    """Two populations of two spaces (a parent and its refinement) side by side."""

    a: str
    b: str
    evidence: Evidence
    log10_a: float
    log10_b: float
    edfs: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)

    def verdict(self) -> str:
        ev = self.evidence
        smaller = self.log10_a - self.log10_b
        size = f"10^{smaller:.1f} times smaller" if smaller > 0 else f"10^{-smaller:.1f} times larger"
        margin = NOT_WORSE_MARGIN * ev.spread
        figures = f"KS {ev.ks:.2f}, p {ev.p:.2g}, mean error {ev.mean_diff[0]:+.3f} [{ev.mean_diff[1]:+.3f}, " \
                  f"{ev.mean_diff[2]:+.3f}], {size}"
        if ev.mean_diff[2] <= margin:
            better = ev.mean_diff[2] < 0
            return f"{self.b} is {'better than' if better else 'at least as good as'} {self.a}: {figures}"
        if ev.mean_diff[1] > 0:
            return f"{self.b} is worse than {self.a}: {figures}"
        return f"undecided: the populations are too small to tell {self.b} from {self.a} ({figures})"

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "log10_a": self.log10_a, "log10_b": self.log10_b,
                "evidence": self.evidence.to_dict(), "verdict": self.verdict(), "edfs": self.edfs}


def compare_populations(a: Population, b: Population, *, seed: int = 0) -> Comparison:
    """``b`` (the refined space's population) against ``a`` (the parent's)."""
    for pop in (a, b):
        if len(pop) < 5:
            raise UserError(f"population {pop.name} has {len(pop)} trained models; comparing needs at least 5")
    ev = evidence(b.errors, b.flops, a.errors, a.flops, seed=seed)
    span = shared_range([a.flops, b.flops])
    edfs = {}
    for pop in (a, b):
        x, y = edf(pop.errors, _weights(pop.flops, span))
        edfs[pop.name] = (x.tolist(), y.tolist())
    return Comparison(a.name, b.name, ev, log10_size(a.space), log10_size(b.space), edfs)


def population_from_records(space: SearchSpace, records: Sequence[Any], name: str) -> Population:
    """The scored models of a study, one per architecture (a duplicate copies a result, it is not a model)."""
    seen: set[str] = set()
    values, errors, flops = [], [], []
    for r in records:
        if not r.scored or r.get("arch_hash") in seen:
            continue
        if any(p not in r.params for p in space.params):
            continue  # not a point of this space (a queued architecture of another)
        seen.add(r.get("arch_hash"))
        values.append({p: r.params[p] for p in space.params})
        errors.append(1.0 - float(r.accuracy))
        flops.append(float(r.get("flops") or 0.0))
    return Population(space, values, np.array(errors), np.array(flops), name)
