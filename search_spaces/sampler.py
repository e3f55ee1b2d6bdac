"""Budget-constrained candidate generation: seeded, distinct, checked analytically.

Rejection sampling over the space's parameters: draw every parameter uniformly (a tied
parameter once), drop combinations the constraints or the config rules exclude, count
FLOPs analytically (no model is built), keep those inside the budget, and drop repeats
by the config's canonical hash. A budget no candidate can meet is refused up front.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import dataclass

from nas.common.errors import UserError
from nas.search_spaces.complexity_model import complexity, format_flops
from nas.search_spaces.config import ArchConfig
from nas.search_spaces.space import SearchSpace

PROBE_DRAWS = 3000
STALL_DRAWS = 20_000


@dataclass(frozen=True)
class Candidate:
    config: ArchConfig
    values: dict
    flops: int
    params: int
    arch_hash: str


@dataclass(frozen=True)
class SampleResult:
    candidates: list[Candidate]
    draws: int
    invalid: int
    out_of_budget: int
    duplicates: int
    seconds: float

    @property
    def acceptance_rate(self) -> float:
        """Share of draws that gave a new in-budget candidate."""
        return len(self.candidates) / self.draws if self.draws else 0.0


def flops_range(space: SearchSpace) -> tuple[int, int, bool]:
    """Smallest and largest FLOPs in the space, and whether they are exact.

    FLOPs grow with every choice (see :meth:`SearchSpace.flops_monotone` for the one
    exception), so the all-smallest and all-largest points are the extremes when they are
    valid configs; otherwise the range is estimated from seeded random points (``exact``
    is then False).
    """
    if space._flops_range is not None:
        return space._flops_range
    lo_cfg, hi_cfg = space.try_decode(space.extreme(False)), space.try_decode(space.extreme(True))
    if lo_cfg is not None and hi_cfg is not None and space.flops_monotone():
        result = (complexity(lo_cfg).flops, complexity(hi_cfg).flops, True)
    else:
        rng = random.Random(0)
        seen = [complexity(c).flops for c in (lo_cfg, hi_cfg) if c is not None]
        for _ in range(PROBE_DRAWS):
            c = space.try_decode(space.draw(rng))
            if c is not None:
                seen.append(complexity(c).flops)
        if not seen:
            raise UserError(f"space {space.name}: none of {PROBE_DRAWS} random points is a valid network; "
                            f"its valid combinations are too rare to sample")
        result = (min(seen), max(seen), False)
    space._flops_range = result
    return result


def feasible_architectures(space: SearchSpace, high: float, low: float = 0.0, limit: int = 5000) -> set[str] | None:
    """The hashes of every architecture of the space within the budget, when the space has at most
    ``limit`` parameter combinations (``None`` otherwise): a search of a small space knows when it has
    trained them all."""
    if math.prod(len(p.values) for p in space.params.values()) > limit:
        return None
    found = set()
    for combo in itertools.product(*(p.values for p in space.params.values())):
        config = space.try_decode(dict(zip(space.params, combo)))
        if config is not None and low <= complexity(config).flops <= high:
            found.add(config.arch_hash())
    return found


def budget_error(space: SearchSpace) -> UserError:
    lo, hi, exact = flops_range(space)
    approx = "" if exact else "about "
    res = space.base.get("resolution", 224)
    return UserError(f"no candidate of space {space.name} fits the budget: its FLOPs range from "
                     f"{approx}{format_flops(lo)} to {approx}{format_flops(hi)} at {res}x{res}")


def check_budget(space: SearchSpace, low: float, high: float) -> None:
    """Refuse at once a budget outside the space's FLOPs range, when that range is exact."""
    lo, hi, exact = flops_range(space)
    if exact and (high < lo or low > hi):
        raise budget_error(space)


def sample(space: SearchSpace, high: float, low: float = 0.0, n: int = 10, seed: int = 0,
           max_draws: int | None = None) -> SampleResult:
    """Up to ``n`` distinct candidates with ``low <= FLOPs <= high``; deterministic for a seed.

    Stops with what it has found after ``max_draws`` draws (default ``max(20000, 500 * n)``),
    or after ``STALL_DRAWS`` draws in a row found nothing new (the budget's share of the
    space is exhausted).
    """
    if n < 1:
        raise UserError("the number of candidates must be at least 1")
    check_budget(space, low, high)
    rng = random.Random(seed)
    max_draws = max_draws or max(20000, 500 * n)
    found: dict[str, Candidate] = {}
    draws = invalid = out_of_budget = duplicates = 0
    start = time.perf_counter()
    last_new = 0
    while len(found) < n and draws < max_draws and draws - last_new < STALL_DRAWS:
        draws += 1
        values = space.draw(rng)
        config = space.try_decode(values)
        if config is None:
            invalid += 1
            continue
        cx = complexity(config)
        if not low <= cx.flops <= high:
            out_of_budget += 1
            continue
        h = config.arch_hash()
        if h in found:
            duplicates += 1
            continue
        found[h] = Candidate(config, values, cx.flops, cx.params, h)
        last_new = draws
    if not found:
        raise budget_error(space)
    return SampleResult(list(found.values()), draws, invalid, out_of_budget, duplicates,
                        time.perf_counter() - start)
