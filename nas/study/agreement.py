"""Rank agreement between two accuracies of the same candidates, and the fidelity links between studies.

``nas fidelity`` (``nas.search.fidelity``) retrains a sample of a study's candidates at a higher fidelity
as a *linked study*; this module holds what reading such a pair needs, so the dashboards can draw it
without the search layer: the link attribute, the rank statistics (Kendall's tau-b, Spearman's rho,
top-k overlap, regret) and :func:`compare`, the parent's accuracies against the linked study's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: Study user attribute of a linked study: ``{"study": parent name, "trials": {arch_hash: parent number}}``.
LINK_ATTR = "fidelity_of"
#: Below this many candidates in both studies no rank statistic is reported.
MIN_CANDIDATES = 3
#: tau at or above which a proxy "ranks like the reference" (the target of BENCHMARKS.md's fidelity table).
GOOD_TAU = 0.6


@dataclass(frozen=True)
class RankAgreement:
    """How well ``proxy`` accuracies rank candidates against ``reference`` accuracies."""

    n: int
    kendall_tau: float
    kendall_p: float
    spearman_rho: float
    top_k: int
    top_overlap: float  # share of the reference's top k that are in the proxy's top k
    regret: float  # reference accuracy of the reference's best minus that of the proxy's best pick
    proxy_best: int  # index (into the inputs) of the proxy's best pick
    reference_best: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def verdict(self) -> str:
        """One line that tells the user what to do."""
        what = f"tau {self.kendall_tau:.2f} over {self.n}"
        grade = agreement_grade(self.kendall_tau, self.kendall_p)
        if grade == LIKE:
            return f"ranks like the reference: {what}, top-{self.top_k} overlap {self.top_overlap:.0%}"
        if grade == ROUGHLY:
            return (f"ranks only roughly like the reference ({what}, p {self.kendall_p:.2g}): trust large gaps "
                    f"only, or raise --epochs or --train-images")
        return f"ranking is noise at this fidelity ({what}, p {self.kendall_p:.2g}): raise --epochs or --train-images"


LIKE, ROUGHLY, NOISE = "ranks like the reference", "ranks only roughly like the reference", "ranking is noise"


def agreement_grade(tau: float, p: float) -> str:
    """How a proxy ranks against a reference, in the words of ``nas fidelity``'s verdict: like it (tau at
    least :data:`GOOD_TAU`), only roughly (positive and significant at 5 %), or noise."""
    if tau >= GOOD_TAU:
        return LIKE
    if tau > 0 and p < 0.05:
        return ROUGHLY
    return NOISE


def rank_agreement(proxy: Sequence[float], reference: Sequence[float], top_fraction: float = 0.25) -> RankAgreement:
    """Rank statistics of two accuracy lists over the same candidates (higher is better)."""
    from scipy import stats

    if len(proxy) != len(reference):
        raise ValueError("proxy and reference must score the same candidates")
    n = len(proxy)
    if n < MIN_CANDIDATES:
        raise ValueError(f"rank agreement needs at least {MIN_CANDIDATES} candidates, got {n}")
    tau = stats.kendalltau(proxy, reference)
    rho = stats.spearmanr(proxy, reference)
    k = max(1, round(n * top_fraction))
    order_p = sorted(range(n), key=lambda i: (-proxy[i], i))
    order_r = sorted(range(n), key=lambda i: (-reference[i], i))
    overlap = len(set(order_p[:k]) & set(order_r[:k])) / k
    best_p, best_r = order_p[0], order_r[0]
    return RankAgreement(n=n, kendall_tau=_finite(tau.statistic), kendall_p=_finite(tau.pvalue, 1.0),
                         spearman_rho=_finite(rho.statistic), top_k=k, top_overlap=overlap,
                         regret=float(reference[best_r] - reference[best_p]), proxy_best=best_p,
                         reference_best=best_r)


def _finite(x: float, default: float = 0.0) -> float:
    """A constant list has no ranking: scipy answers NaN, which means no agreement."""
    return default if x is None or math.isnan(x) else float(x)


def trained_candidates(records: Sequence[Any]) -> list[Any]:
    """The candidates whose accuracy is a full-schedule result (:attr:`TrialRecord.scored`)."""
    return [r for r in records if r.scored and r.get("arch_hash")]


@dataclass
class FidelityReport:
    study: str
    linked: str
    rows: list[dict[str, Any]]  # one per candidate trained in both: number, arch, proxy, reference
    agreement: RankAgreement | None
    pending: int  # sample candidates not (yet) trained in the linked study

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "linked": self.linked, "rows": self.rows, "pending": self.pending,
                "agreement": self.agreement.to_dict() if self.agreement else None,
                "verdict": self.verdict()}

    def verdict(self) -> str:
        if self.agreement is None:
            return f"not enough candidates trained at both fidelities yet ({len(self.rows)}; at least {MIN_CANDIDATES})"
        return self.agreement.verdict()


def compare(storage: Any, parent: str, linked: str) -> FidelityReport:
    """The parent's accuracies against the linked study's, per architecture trained in both."""
    import optuna

    from nas.study.records import read_trials

    proxy = {r.get("arch_hash"): r for r in trained_candidates(read_trials(optuna.load_study(
        study_name=parent, storage=storage)))}
    linked_study = optuna.load_study(study_name=linked, storage=storage)
    reference = {r.get("arch_hash"): r for r in trained_candidates(read_trials(linked_study))}
    queued = (linked_study.user_attrs.get(LINK_ATTR) or {}).get("trials") or {}
    rows = [{"number": proxy[h].number, "arch": proxy[h].get("arch"), "proxy": proxy[h].accuracy,
             "reference": reference[h].accuracy, "reference_trial": reference[h].number}
            for h in proxy if h in reference]
    rows.sort(key=lambda row: -row["reference"])
    agreement = (rank_agreement([r["proxy"] for r in rows], [r["reference"] for r in rows])
                 if len(rows) >= MIN_CANDIDATES else None)
    pending = max(0, len(queued) - len(rows)) if queued else 0
    return FidelityReport(study=parent, linked=linked, rows=rows, agreement=agreement, pending=pending)
