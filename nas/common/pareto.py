"""Pareto fronts, non-dominated sorting, crowding distance and hypervolume, on plain objective vectors.

Every function takes points already turned into *minimisation* vectors (:func:`to_minimisation`
negates the objectives to maximise), so one convention holds everywhere. Nothing here knows
about Optuna, Ray or trials: the search driver, the early-stopping rule, the dashboards and the
benchmarks all rank vectors through this one module.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence

Vector = tuple[float, ...]

__all__ = [
    "crowding_distance",
    "dominates",
    "hypervolume",
    "iter_fronts",
    "non_dominated_sort",
    "pareto_front",
    "to_minimisation",
]


def to_minimisation(points: Sequence[Sequence[float]], maximise: Sequence[bool]) -> list[Vector]:
    """Negate the objectives to maximise, so that smaller is better in every coordinate."""
    return [tuple(-float(v) if up else float(v) for v, up in zip(p, maximise)) for p in points]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is no worse than ``b`` everywhere and better somewhere (minimisation)."""
    better = False
    for x, y in zip(a, b):
        if x > y:
            return False
        if x < y:
            better = True
    return better


def pareto_front(points: Sequence[Vector]) -> list[int]:
    """Indices of the non-dominated points, in input order. Equal points are all kept (neither
    dominates the other). O(n log n + n * front size): sorted lexicographically, a point can only
    be dominated by one that comes before it."""
    order = sorted(range(len(points)), key=lambda i: points[i])
    front: list[int] = []
    for i in order:
        p = points[i]
        if not any(dominates(points[j], p) for j in front):
            front.append(i)
    return sorted(front)


def non_dominated_sort(points: Sequence[Vector]) -> list[list[int]]:
    """The fronts of ``points`` (lists of indices, best front first; each in input order)."""
    return list(iter_fronts(points))


def iter_fronts(points: Sequence[Vector]) -> Iterator[list[int]]:
    """The fronts one at a time, so a caller that needs only the first few stops early. One or two
    objectives use an O(n log n) sweep (one objective as two equal ones: same dominance); more peel
    one front at a time."""
    if not points:
        return
    if len(points[0]) <= 2:
        yield from _sort_2d([tuple(p) * 2 for p in points] if len(points[0]) == 1 else points)
        return
    remaining = list(range(len(points)))
    while remaining:
        first = pareto_front([points[i] for i in remaining])
        yield [remaining[k] for k in first]
        taken = set(first)
        remaining = [remaining[k] for k in range(len(remaining)) if k not in taken]


def _sort_2d(points: Sequence[Vector]) -> list[list[int]]:
    # Sweep in (f1, f2) order. Within a front f2 strictly falls as f1 rises, so each front is
    # summarised by its last point; the last points' f2 rise from front to front, and a point joins
    # the first front whose last point does not dominate it (binary search on that f2).
    order = sorted(range(len(points)), key=lambda i: points[i])
    fronts: list[list[int]] = []
    last: list[Vector] = []  # last point of each front
    keys: list[float] = []  # its f2, non-decreasing over fronts
    for i in order:
        p = points[i]
        k = bisect.bisect_left(keys, p[1])  # first front whose last f2 >= p's f2
        # Fronts before k end on a point with smaller f2 and f1 <= p's: they dominate p. Front k's
        # last point has f2 >= p's: it dominates p only when it equals p in f2 and is smaller in f1.
        while k < len(fronts) and dominates(last[k], p):
            k += 1
        if k == len(fronts):
            fronts.append([i])
            last.append(p)
            keys.append(p[1])
        else:
            fronts[k].append(i)
            last[k] = p
            keys[k] = p[1]
    return [sorted(f) for f in fronts]


def crowding_distance(points: Sequence[Vector]) -> list[float]:
    """NSGA-II's crowding distance of each point within its set: the sum over objectives of the
    normalised gap between its neighbours; the extremes of every objective get infinity."""
    n = len(points)
    if n <= 2:
        return [math.inf] * n
    dist = [0.0] * n
    for m in range(len(points[0])):
        order = sorted(range(n), key=lambda i: points[i][m])
        lo, hi = points[order[0]][m], points[order[-1]][m]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi == lo:
            continue
        for k in range(1, n - 1):
            dist[order[k]] += (points[order[k + 1]][m] - points[order[k - 1]][m]) / (hi - lo)
    return dist


def hypervolume(points: Sequence[Vector], reference: Sequence[float]) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (minimisation; points not
    strictly better than the reference in every coordinate add nothing). Exact: a sweep in two
    dimensions, slicing along the last objective above that."""
    ref = tuple(float(r) for r in reference)
    pts = [tuple(p) for p in points if all(x < r for x, r in zip(p, ref))]
    if not pts:
        return 0.0
    pts = [pts[i] for i in pareto_front(pts)]
    return _hv(pts, ref)


def _hv(pts: list[Vector], ref: Vector) -> float:
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in pts)
    if len(ref) == 2:
        area, best_f2 = 0.0, ref[1]
        for f1, f2 in sorted(pts):
            if f2 < best_f2:
                area += (ref[0] - f1) * (best_f2 - f2)
                best_f2 = f2
        return area
    # Slice along the last objective: between consecutive levels the dominated region's cross
    # section is the hypervolume (one dimension fewer) of the points at or below the level.
    pts = sorted(pts, key=lambda p: p[-1])
    total = 0.0
    for k, p in enumerate(pts):
        upper = pts[k + 1][-1] if k + 1 < len(pts) else ref[-1]
        if upper > p[-1]:
            below = [q[:-1] for q in pts[: k + 1]]
            below = [below[i] for i in pareto_front(below)]
            total += _hv(below, ref[:-1]) * (upper - p[-1])
    return total
