"""``nas space``: list the built-in search spaces, show one, sample candidates under a budget."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from nas.common.budget import parse_budget
from nas.common.text_table import render_table
from nas.common.units import format_flops
from nas.search_spaces.registry import load_space, space_names

if TYPE_CHECKING:
    from nas.search_spaces.space import SearchSpace


def add_parser(sub: argparse._SubParsersAction) -> None:
    space = sub.add_parser("space", help="inspect search spaces and sample candidates under a FLOP budget",
                           description="Inspect declarative search spaces (built-in names or your own YAML file) "
                                       "and sample candidates under a FLOP budget.")
    ssub = space.add_subparsers(dest="space_command", metavar="COMMAND", required=True)

    p = ssub.add_parser("list", help="list the built-in spaces with their size and FLOPs range",
                        description="List the built-in spaces with their size and FLOPs range (multiply-adds).")
    p.set_defaults(func=cmd_list)

    p = ssub.add_parser("show", help="every choice, the number of architectures, the FLOPs range",
                        description="Show a space: every parameter and its choices, the number of distinct "
                                    "architectures, and the smallest and largest FLOPs at its resolution.")
    p.add_argument("space", metavar="NAME|FILE", help="built-in space name or path to a space .yaml")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_show)

    p = ssub.add_parser("sample", help="sample distinct candidates within a FLOP budget",
                        description="Sample N distinct candidates whose FLOPs (multiply-adds, counted analytically) "
                                    "lie within the budget. Seeded and deterministic.")
    p.add_argument("space", metavar="NAME|FILE", help="built-in space name or path to a space .yaml")
    p.add_argument("--budget", required=True, metavar="B",
                   help="upper bound (4GFLOPs, 600M, 4e9) or window (3.6-4GFLOPs)")
    p.add_argument("-n", type=int, default=10, metavar="N", help="number of candidates (default 10)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object with the candidates' full configs and parameters")
    p.set_defaults(func=cmd_sample)


def _range_text(space: SearchSpace) -> tuple[str, str]:
    from nas.search_spaces.sampler import flops_range

    lo, hi, exact = flops_range(space)
    mark = "" if exact else "~"
    return mark + format_flops(lo), mark + format_flops(hi)


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for name in space_names():
        space = load_space(name)
        lo, hi = _range_text(space)
        rows.append((name, space.base.get("resolution", 224), space.num_stages, len(space.params),
                     f"{space.count():,}", lo, hi))
    print(render_table(("space", "res", "stages", "params", "architectures", "min FLOPs", "max FLOPs"), rows))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from nas.search_spaces.sampler import flops_range

    space = load_space(args.space)
    lo, hi, exact = flops_range(space)
    if args.json:
        print(json.dumps({
            "name": space.name, "description": space.description, "resolution": space.base.get("resolution", 224),
            "stages": space.num_stages, "architectures": space.count(), "min_flops": lo, "max_flops": hi,
            "flops_range_exact": exact,
            "params": {n: (list(p.values) if p.choices is not None else
                           {"low": p.low, "high": p.high, "step": p.step, "log": p.log})
                       for n, p in space.params.items()},
            "fixed": {f"stage{i + 1}.{f}": v for (i, f), v in sorted(space.fixed.items())},
            "constraints": [{k: f} for k, f in space.constraints]}, indent=2))
        return 0
    print(f"space {space.name}" + (f" — {space.description}" if space.description else ""))
    print(f"base: {json.dumps(space.base)}; strides {list(space.strides)}")
    rows = [(name, "int" if p.choices is None else "categorical", p.describe()) for name, p in space.params.items()]
    print(render_table(("parameter", "kind", "choices"), rows))
    fixed = sorted({(f, v) for (_, f), v in space.fixed.items()}, key=str)
    if fixed:
        print("fixed: " + ", ".join(f"{f}={v}" for f, v in fixed))
    for kind, f in space.constraints:
        print(f"constraint: {kind} {f}")
    mark = "" if exact else "~"
    print(f"architectures: {space.count():,}")
    print(f"FLOPs at {space.base.get('resolution', 224)}x{space.base.get('resolution', 224)}: "
          f"{mark}{format_flops(lo)} (smallest) to {mark}{format_flops(hi)} (largest)"
          + ("" if exact else " (estimated from random points)"))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from nas.common.errors import UserError
    from nas.search_spaces.sampler import sample

    space = load_space(args.space)
    budget = parse_budget(args.budget)
    if args.n < 1:
        raise UserError(f"-n must be at least 1, got {args.n}")
    result = sample(space, high=budget.high, low=budget.low, n=args.n, seed=args.seed)
    cands = result.candidates
    if args.json:
        print(json.dumps({
            "space": space.name, "budget": {"low": budget.low, "high": budget.high}, "seed": args.seed,
            "requested": args.n, "draws": result.draws, "acceptance_rate": result.acceptance_rate,
            "candidates": [{"hash": c.arch_hash, "flops": c.flops, "params": c.params, "values": c.values,
                            "config": c.config.to_dict()} for c in cands]}, indent=2))
    else:
        rows = [(i + 1, c.arch_hash, format_flops(c.flops), f"{c.params / 1e6:.2f}M", c.config.describe())
                for i, c in enumerate(cands)]
        print(render_table(("#", "hash", "FLOPs", "params", "architecture"), rows))
        print(f"{len(cands)} candidates in {budget} from space {space.name}; {result.draws:,} draws, "
              f"acceptance {result.acceptance_rate:.1%}, {result.seconds:.2f} s")
    if len(cands) < args.n:
        print(f"note: found only {len(cands)} distinct candidates within the budget in {result.draws:,} draws",
              file=sys.stderr)
    return 0
