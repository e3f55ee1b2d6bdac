"""Does ``nas space refine`` find refinements that are true, and leave alone parameters that do not matter?

Synthetic populations on real spaces: architectures are drawn by the project's own budget sampler
(decoded, hashed, counted analytically, distinct, inside a FLOP window), and only the error is
invented, from a known truth plus noise:

* ``stage3.depth`` matters through a **best range**: depth 1-2 costs ``RANGE_EFFECT`` error (true
  refinement: narrow it to values within {3, 4});
* ``group_width.base`` matters through a **monotone trend**: each step down its choices costs
  ``TREND_EFFECT`` (true refinement: a narrow or drop that removes its smallest value);
* depth must **not decrease** from stage to stage: a decrease costs ``MONOTONE_EFFECT`` (true refinement:
  depth non-decreasing);
* every other parameter except the first two stages' depths (which the monotone truth involves) has
  **no effect** (a narrow or drop accepted on one of them is a false narrowing);
* plus Gaussian noise of ``NOISE`` (1.5 points: the seed-to-seed spread of accuracies on ``shapes``).

Over ``--seeds`` populations at each size: how often each true refinement is accepted, and how often
any no-effect parameter is narrowed (per population, over all such parameters together).

    python bench/refine_recovery.py                 # the table of BENCHMARKS.md (50 seeds; about 2 min)
    python bench/refine_recovery.py --seeds 5 --sizes 100 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nas.dashboards.refine import Population, propose  # noqa: E402
from nas.search_spaces.registry import load_space  # noqa: E402
from nas.search_spaces.sampler import sample  # noqa: E402

RANGE_EFFECT = 0.04
TREND_EFFECT = 0.01
MONOTONE_EFFECT = 0.03
NOISE = 0.015
#: (space, FLOPs window). The whole space first: every parameter independent of every other, so a
#: no-effect parameter has no effect in the population either. Then a narrow window, as RegNet samples:
#: there FLOPs tie parameters together (a wide group needs a low cardinality to fit), so a parameter
#: without effect of its own takes one from its partners, and narrowing it is what the data say.
SPACES = {"resnext-cifar": (0.0, 1e12), "resnest-cifar": (0.0, 1e12), "resnext-cifar@11-100MFLOPs": (11e6, 100e6)}
TRUE = ("stage3.depth best range", "group_width.base trend", "depth non-decreasing")


def true_error(space, values: dict, rng: np.random.Generator) -> float:
    e = 0.5
    if values["stage3.depth"] <= 2:
        e += RANGE_EFFECT
    gw = list(space.params["group_width.base"].values)
    e += TREND_EFFECT * (len(gw) - 1 - gw.index(values["group_width.base"]))
    depths = [values[f"stage{i + 1}.depth"] for i in range(space.num_stages)]
    if any(a > b for a, b in zip(depths, depths[1:])):
        e += MONOTONE_EFFECT
    return e + rng.normal(0.0, NOISE)


def null_params(space) -> list[str]:
    return [p for p in space.params if p not in ("stage1.depth", "stage2.depth", "stage3.depth", "group_width.base")]


def judge(space, proposals) -> dict[str, bool]:
    accepted = [p.refinement for p in proposals if p.accepted]
    gw = list(space.params["group_width.base"].values)
    found = {
        TRUE[0]: any(r.kind in ("narrow", "drop") and r.target == "stage3.depth" and set(r.keep) <= {3, 4}
                     for r in accepted),
        TRUE[1]: any(r.kind in ("narrow", "drop") and r.target == "group_width.base" and gw[0] not in r.keep
                     for r in accepted),
        TRUE[2]: any(r.kind == "monotone" and r.target == "depth" for r in accepted),
        "false narrowing": any(r.kind in ("narrow", "drop") and r.target in null_params(space) for r in accepted),
        "false narrowing, FLOP-neutral": any(r.kind in ("narrow", "drop") and r.target in null_params(space)
                                             and "se_ratio" in r.target for r in accepted),
    }
    return found


def run(space_name: str, sizes: list[int], seeds: int) -> list[dict]:
    from importlib import resources

    import yaml

    base_name = space_name.split("@")[0]
    space = load_space(base_name)
    doc = yaml.safe_load((resources.files("nas.search_spaces.spaces") / f"{base_name}.yaml").read_text())
    low, high = SPACES[space_name]
    rows = []
    for n in sizes:
        hits = {k: 0 for k in (*TRUE, "false narrowing", "false narrowing, FLOP-neutral")}
        start = time.perf_counter()
        for seed in range(seeds):
            cands = sample(space, high=high, low=low, n=n, seed=1000 * n + seed).candidates
            rng = np.random.default_rng(seed)
            pop = Population(space, [c.values for c in cands], np.array([true_error(space, c.values, rng)
                                                                         for c in cands]),
                             np.array([c.flops for c in cands], dtype=float), f"synthetic-{seed}")
            for k, v in judge(space, propose(pop, doc, seed=seed)).items():
                hits[k] += v
        has_se = any("se_ratio" in p for p in space.params)
        rows.append({"space": space_name, "n": n, "seeds": seeds, "has_se": has_se,
                     **{k: v / seeds for k, v in hits.items()},
                     "seconds": time.perf_counter() - start})
    return rows


def table(rows: list[dict]) -> str:
    head = "| space | n | " + " | ".join(TRUE) + " | false narrowing (any no-effect parameter) | of them SE ratio " \
                                            "| seeds |"
    lines = [head, "|" + "---|" * (len(TRUE) + 5)]
    for r in rows:
        lines.append(f"| {r['space']} | {r['n']} | " + " | ".join(f"{r[k]:.0%}" for k in TRUE)
                     + f" | {r['false narrowing']:.0%} | "
                     + (f"{r['false narrowing, FLOP-neutral']:.0%}" if r["has_se"] else "no SE parameter")
                     + f" | {r['seeds']} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=50)
    p.add_argument("--sizes", default="100,200,500")
    p.add_argument("--spaces", default=",".join(SPACES))
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = [row for s in args.spaces.split(",") for row in run(s, [int(n) for n in args.sizes.split(",")],
                                                                args.seeds)]
    print(json.dumps(rows, indent=1) if args.json else table(rows))


if __name__ == "__main__":
    main()
