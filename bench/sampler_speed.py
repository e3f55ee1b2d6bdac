"""Budget-constrained sampling speed: feasible candidates per second on one core.

    python bench/sampler_speed.py [-n 2000] [--seeds 3]

For every built-in space, samples N distinct candidates under a budget (resnest at
4 GFLOPs, the target; the others at the same budget or inside their range) and reports
feasible candidates/s, draws/s and the acceptance rate; best of the seeds' runs.
"""

from __future__ import annotations

import argparse

from nas.search_spaces.complexity_model import format_flops
from nas.search_spaces.registry import load_space, space_names
from nas.search_spaces.sampler import flops_range, sample

BUDGETS = {"resnest": (0.0, 4e9), "resnest-window": (3.6e9, 4e9)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for name in ["resnest", "resnest-window"] + [s for s in space_names() if s != "resnest"]:
        space = load_space(name.removesuffix("-window"))
        lo, hi, _ = flops_range(space)
        low, high = BUDGETS.get(name, (0.0, min(4e9, lo + 0.25 * (hi - lo))))
        best = None
        for seed in range(args.seeds):
            r = sample(space, high=high, low=low, n=args.n, seed=seed)
            if best is None or r.seconds < best.seconds:
                best = r
        assert best is not None
        budget = f"{format_flops(low)}-{format_flops(high)}" if low else f"<= {format_flops(high)}"
        rows.append((name, budget, len(best.candidates), best.draws, best.acceptance_rate,
                     len(best.candidates) / best.seconds, best.draws / best.seconds))
    print(f"| space | budget | candidates | draws | acceptance | feasible/s | draws/s |  (n={args.n}, best of "
          f"{args.seeds} seeds)")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, budget, n, draws, acc, fps, dps in rows:
        print(f"| {name} | {budget} | {n} | {draws:,} | {acc:.1%} | {fps:,.0f} | {dps:,.0f} |")


if __name__ == "__main__":
    main()
