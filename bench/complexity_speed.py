"""Analytic complexity vs build-and-measure, side by side in one run, on one core.

    python bench/complexity_speed.py [--configs 5000] [--measured 12] [--seed 0]

Draws random ResNet-50-sized candidates (224x224, four bottleneck stages, ~16 blocks,
random cardinality / radix / SE / SK / stem / shortcut), then times
  1. the analytic count from a validated config, with the per-block memo cleared before each
     pass (blocks shared between the configs of one pass still hit) and warm,
  2. validating the plain dict into a config and counting (what a sampler does),
  3. build-and-measure: build the nn.Module on the CPU and count with FlopCounterMode,
  4. the same on the meta device (no weights, no arithmetic: the cheapest honest measurement),
checks that every analytic count equals the measured one, and prints configs/s and ratios.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

import torch

from nas.search_spaces import ArchConfig, build_model, complexity, measure
from nas.search_spaces.network import _block_cost
from nas.search_spaces.random_configs import random_resnet50_sized


def rate(fn, items, repeats: int = 5, before=None) -> float:
    """Best-of-``repeats`` items per second (the least-disturbed run on a shared machine)."""
    best = float("inf")
    for _ in range(repeats):
        if before is not None:
            before()
        t = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - t)
    return len(items) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", type=int, default=5000, help="configs for the analytic timing")
    ap.add_argument("--measured", type=int, default=12, help="configs for build-and-measure")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    configs = [random_resnet50_sized(rng) for _ in range(args.configs)]
    dicts = [c.model_dump() for c in configs]
    flops = statistics.median(complexity(c).flops for c in configs) / 1e9
    params = statistics.median(complexity(c).params for c in configs) / 1e6

    cold = rate(complexity, configs, before=_block_cost.cache_clear)
    analytic = rate(complexity, configs)
    validated = rate(lambda d: complexity(ArchConfig.model_validate(d)), dicts, before=_block_cost.cache_clear)
    sample = configs[: args.measured]
    for c in sample:
        assert complexity(c) == measure(build_model(c, "meta"), c.resolution), c
    cpu = rate(lambda c: measure(build_model(c), c.resolution), sample, repeats=1)
    meta = rate(lambda c: measure(build_model(c, "meta"), c.resolution), sample, repeats=1)

    print(f"# complexity benchmark — {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"1 thread; {args.configs} random ResNet-50-sized configs (median {flops:.2f} GFLOPs, {params:.1f} M "
          f"params), seed {args.seed}\n")
    print("| method | configs/s | analytic speed-up |")
    print("|---|---:|---:|")
    print(f"| analytic count, block cache cleared before each pass | {cold:,.0f} | 1× |")
    print(f"| analytic count, block cache warm | {analytic:,.0f} | {analytic / cold:.2f}× faster |")
    print(f"| validate dict + analytic count (cache cleared) | {validated:,.0f} | {cold / validated:.2f}× slower |")
    print(f"| build on CPU + FlopCounterMode | {cpu:,.2f} | {cold / cpu:,.0f}× |")
    print(f"| build on meta + FlopCounterMode | {meta:,.2f} | {cold / meta:,.0f}× |")
    print(f"\nall {len(sample)} measured configs: analytic == measured (params, FLOPs, activations)")


if __name__ == "__main__":
    main()
