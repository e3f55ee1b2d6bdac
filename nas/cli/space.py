"""``nas space``: list the built-in search spaces, show one, sample candidates under a budget."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from nas.common.budget import Budget, parse_budget
from nas.common.text_table import render_table
from nas.common.units import format_count, format_flops, plural
from nas.search_spaces.registry import load_space, space_names

if TYPE_CHECKING:
    from nas.search_spaces.space import SearchSpace


#: How a refinement chosen with --apply against the rule begins its decision (the lineage keeps it).
APPLIED = "applied by --apply"


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


    p = ssub.add_parser(
        "refine", help="propose simpler spaces from a population study and write the accepted one",
        description="From a population study (nas search --population), propose refinements of its space: narrow a "
                    "parameter to its bootstrap best range, drop a value the best models avoid, share a per-stage "
                    "field across stages, make depth or width non-decreasing. Each comes with its evidence on the "
                    "population (complexity-normalised error EDFs, KS and p, mean and best error with bootstrap "
                    "intervals, the space's size before and after); the accepted ones are written as a space file "
                    "with a lineage block.",
        epilog="Example:\n  nas search --population --space resnext-cifar --budget 20-60MFLOPs --trials 200 "
               "--study pop-A\n  nas space refine --study pop-A -o refined.yaml\n"
               "  nas search --population --space refined.yaml --budget 20-60MFLOPs --trials 200 --study pop-B\n"
               "  nas space compare --study pop-A --study pop-B",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", metavar="NAME", help="the population study (may be left out when the storage holds one)")
    p.add_argument("--storage", metavar="URL", help="study storage (default sqlite:///nas.db, or $NAS_STORAGE)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the refined space file to write")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="bootstrap seed (default 0)")
    p.add_argument("--apply", action="append", default=[], metavar="REFINEMENT",
                   help="apply this proposal (as the table names it, e.g. 'share depth across stages') even if the "
                        "rule rejects it; the lineage records that you chose it and the rule's reason")
    p.add_argument("--json", action="store_true", help="print every proposal as JSON")
    p.set_defaults(func=cmd_refine)

    p = ssub.add_parser(
        "compare", help="compare two populations (a space and its refinement) by their error distributions",
        description="Compare two population studies: complexity-normalised error EDFs, the KS statistic and its "
                    "p-value, mean and best error with bootstrap intervals, the spaces' sizes, and a verdict on "
                    "whether the second space is at least as good as the first.")
    p.add_argument("--study", action="append", metavar="NAME", required=True,
                   help="a population study; give it twice: the parent first, then the refined space's")
    p.add_argument("--storage", metavar="URL", help="study storage (default sqlite:///nas.db, or $NAS_STORAGE)")
    p.add_argument("--html", metavar="FILE", help="also write the two EDFs as an HTML figure")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=cmd_compare)


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
    if space.lineage:
        for line in lineage_lines(space):
            print(line)
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


# ---- design-space refinement --------------------------------------------------------------------


def lineage_lines(space: SearchSpace) -> list[str]:
    """The lineage of a refined space, oldest first; a warning on stderr when the parent has changed."""
    lin = space.lineage or {}
    chain = [*lin.get("ancestors", []), lin]
    lines = []
    for step in chain:
        parent, study, size = step.get("parent", {}), step.get("study", {}), step.get("size", {})
        lines.append(f"lineage:  {parent.get('space')} #{parent.get('fingerprint')} -> 10^{size.get('before', 0):.2f} "
                     f"to 10^{size.get('after', 0):.2f} architectures, from population {study.get('name')} "
                     f"({study.get('models')} models, {study.get('fidelity', '')})")
        for change in step.get("accepted", []):
            chosen = str(change.get("decision", "")).startswith(APPLIED)
            forced = f" ({APPLIED}; the rule rejected it)" if chosen else ""
            lines.append(f"          + {change.get('change')}: n {change.get('n')}, KS {change.get('ks', 0):.2f}, "
                         f"p(better) {change.get('p_better', float('nan')):.2g}, mean error "
                         f"{change.get('mean_change', [0])[0]:+.3f}{forced}")
    lines.append(f"          = {space.name} ({space.count():,} architectures)")
    warning = parent_warning(space)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return lines


def parent_warning(space: SearchSpace) -> str | None:
    """A line when the lineage's parent space can be found here and no longer matches its fingerprint."""
    from pathlib import Path

    from nas.common.files import fingerprint

    parent = (space.lineage or {}).get("parent", {})
    text = None
    if parent.get("file"):  # the user's file the population was sampled from
        if Path(parent["file"]).is_file():
            text = Path(parent["file"]).read_text()
    elif parent.get("space") in space_names():
        from importlib import resources

        text = (resources.files("nas.search_spaces.spaces") / f"{parent['space']}.yaml").read_text()
    if text is None or fingerprint(text) == parent.get("fingerprint"):
        return None
    return (f"{space.name}'s parent space {parent.get('space')} has changed since the refinement (fingerprint "
            f"{fingerprint(text)}, the lineage recorded {parent.get('fingerprint')}); its statistics describe the "
            f"old parent")


def _population(storage: Any, name: str) -> Any:
    """A population study's space (from the text it was searched with) and its scored models."""
    import optuna

    from nas.common.errors import UserError
    from nas.dashboards.refine import population_from_records
    from nas.search_spaces.space import parse_space_text
    from nas.study.records import SPACE_SOURCE_ATTR, read_settings, read_trials

    study = optuna.load_study(study_name=name, storage=storage)
    settings = read_settings(study)
    if settings is None:
        raise UserError(f"study {name!r} was not made by 'nas search'")
    if not settings.population:
        raise UserError(f"study {name!r} is not a population: {settings.bias()[-1]}; make one with nas search "
                        f"--population --space {settings.space} --budget LOW-HIGH --trials 200 --study NEW")
    text = storage.get_study_system_attrs(study._study_id).get(SPACE_SOURCE_ATTR)
    if not text:
        raise UserError(f"study {name!r} does not hold its space file's text; it was made by an older nas")
    space = parse_space_text(text, f"study {name}'s space")
    return study, settings, text, population_from_records(space, read_trials(study), name)


def cmd_refine(args: argparse.Namespace) -> int:
    import datetime

    import yaml

    from nas.common.errors import UserError
    from nas.common.files import atomic_write_text, check_writable
    from nas.dashboards.refine import RULE, propose
    from nas.search_spaces import refinements as R
    from nas.search_spaces.space import parse_space
    from nas.study.lifecycle import resolve_study_name
    from nas.study.storage import open_storage, parse_storage

    if args.seed < 0:
        raise UserError(f"--seed must be 0 or more, got {args.seed}")
    out = check_writable(args.output, "-o")
    url = parse_storage(args.storage)
    storage = open_storage(url, create=False)
    name = resolve_study_name(storage, args.study)
    study, settings, text, pop = _population(storage, name)
    doc = yaml.safe_load(text)
    proposals = propose(pop, doc, seed=args.seed)
    named = {q.description: q for q in proposals}
    for wanted in args.apply:
        if wanted not in named:
            raise UserError(f"--apply {wanted!r}: no such proposal; the proposals are: {', '.join(named)}")
        q = named[wanted]
        if not q.accepted:
            q.accepted, q.reason = True, f"{APPLIED} (the rule: {q.reason})"
    accepted = [q for q in proposals if q.accepted]
    child_doc = None
    while accepted:  # the accepted ones together; a share that no longer has a common value goes first
        try:
            child_doc = R.apply(doc, pop.space, [q.refinement for q in accepted])
            parse_space(child_doc, source=str(out))
            break
        except UserError as exc:
            dropped = next((q for q in reversed(accepted) if q.refinement.kind in ("share", "monotone")), accepted[-1])
            dropped.accepted, dropped.reason = False, f"conflicts with the others ({exc})"
            accepted.remove(dropped)
            child_doc = None
    if args.json:
        print(json.dumps({"study": name, "models": len(pop), "rule": RULE,
                          "proposals": [q.to_dict() for q in proposals]}, indent=2))
    else:
        _print_proposals(proposals, len(pop), name)
    if child_doc is None:
        print("no refinement accepted: nothing written", file=sys.stderr)
        return 0
    parent_lineage = dict(pop.space.lineage or {})
    ancestors = [*parent_lineage.pop("ancestors", []), parent_lineage] if parent_lineage else []
    child = parse_space(child_doc, source=str(out))
    lineage = {
        "parent": {"space": pop.space.name, "fingerprint": settings.space_fingerprint,
                   **({"file": settings.space_file} if settings.space_file else {})},
        "study": {"name": name, "storage": url.display(), "models": len(pop), "budget": settings.budget_text(),
                  "fidelity": f"{plural(settings.epochs, 'epoch')} x {format_count(settings.train_images)} images"},
        "size": {"before": R.log10_size(pop.space), "after": R.log10_size(child)},
        "rule": RULE,
        "accepted": [{"change": q.description, **q.refinement.to_dict(), "decision": q.reason,
                      **({"n": q.evidence.n_a, "ks": q.evidence.ks, "p": q.evidence.p, "p_better": q.evidence.p_better,
                          "mean_change": list(q.evidence.mean_diff), "best_change": list(q.evidence.best_diff)}
                         if q.evidence else {})} for q in accepted],
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    base_name = pop.space.name.rsplit("-r", 1)[0] if parent_lineage else pop.space.name
    final = R.with_lineage(child_doc, f"{base_name}-r{len(ancestors) + 1}", _rounded(lineage), ancestors)
    atomic_write_text(out, yaml.safe_dump(final, sort_keys=False, default_flow_style=None, width=110))
    forced = sum(q.reason.startswith(APPLIED) for q in accepted)
    how = f"{len(accepted) - forced} accepted by the rule" + (f", {forced} {APPLIED}" if forced else "")
    print(f"wrote {out}: {len(accepted)} of {len(proposals)} refinements ({how}); 10^{lineage['size']['before']:.2f} "
          f"-> 10^{lineage['size']['after']:.2f} architectures ({child.count():,})")
    print(f"next: nas search --population --space {out} {same_fidelity_flags(settings)} --trials {len(pop)} "
          f"--study {name}-r   then   nas space compare --study {name} --study {name}-r")
    return 0


def same_fidelity_flags(settings: Any) -> str:
    """The ``nas search`` options that sample a population as ``settings`` did (budget, data, fidelity)."""
    budget = Budget(high=settings.budget_high, low=settings.budget_low).flag()
    flags = [f"--budget {budget}", f"--dataset {settings.dataset}", f"--resolution {settings.train_resolution}",
             f"--epochs {settings.epochs}", f"--batch-size {settings.batch_size}", f"--lr {settings.schedule['lr']:g}"]
    flags += [f"--train-images {settings.train_images}"] if settings.train_images else []
    flags += [f"--val-images {settings.val_images}"] if settings.val_images else []
    return " ".join(flags)


#: What two populations must share for their errors to compare spaces rather than training.
SAME_TRAINING = ("dataset", "train_resolution", "train_images", "val_images", "epochs", "batch_size")


def _rounded(value: Any) -> Any:
    """Floats to 4 significant digits, for a lineage a person reads."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _band(x: tuple[float, float, float]) -> str:
    """An estimate with its 95 % interval: ``-0.052 [-0.067, -0.038]``."""
    return f"{x[0]:+.3f} [{x[1]:+.3f}, {x[2]:+.3f}]"


def _print_proposals(proposals: list[Any], n: int, name: str) -> None:
    from nas.dashboards.refine import RULE

    rows = []
    for q in proposals:
        ev = q.evidence
        rows.append((q.description, "-" if ev is None else ev.n_a, "-" if ev is None else f"{ev.ks:.2f}",
                     "-" if ev is None else f"{ev.p:.2g}", "-" if ev is None else f"{ev.p_better:.2g}",
                     "-" if ev is None else _band(ev.mean_diff), "-" if ev is None else _band(ev.best_diff),
                     f"{q.log10_before:.2f} -> {q.log10_after:.2f}",
                     ("ACCEPT " if q.accepted else "reject ") + q.reason))
    print(f"population {name}: {n} models; mean and best error are the admitted models' minus the rest's")
    print(render_table(("refinement", "n", "KS", "p(KS)", "p(better)", "mean error", "best error",
                        "log10 size", "decision"), rows))
    print(f"rule: {RULE}")


def cmd_compare(args: argparse.Namespace) -> int:
    from nas.common.errors import UserError
    from nas.common.files import check_writable
    from nas.dashboards.refine import compare_populations
    from nas.study.lifecycle import resolve_study_name
    from nas.study.storage import open_storage

    if len(args.study) != 2:
        raise UserError(f"nas space compare takes two --study options (the parent, then the refined space's); "
                        f"got {len(args.study)}")
    if args.study[0] == args.study[1]:
        raise UserError(f"nas space compare: --study {args.study[0]} given twice; compare two populations")
    html = check_writable(args.html, "--html") if args.html else None
    storage = open_storage(args.storage, create=False)
    (_, sa, _, a), (_, sb, _, b) = (_population(storage, resolve_study_name(storage, n)) for n in args.study)
    differ = [f"{k.replace('_', ' ')} {getattr(sa, k)} vs {getattr(sb, k)}" for k in SAME_TRAINING
              if getattr(sa, k) != getattr(sb, k)]
    if sa.schedule.get("lr") != sb.schedule.get("lr"):
        differ.append(f"lr {sa.schedule.get('lr')} vs {sb.schedule.get('lr')}")
    if differ:
        raise UserError(f"{a.name} and {b.name} were trained differently ({', '.join(differ)}): their errors would "
                        f"compare fidelities, not spaces; sample {b.name} again with {same_fidelity_flags(sa)}")
    result = compare_populations(a, b)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        ev = result.evidence

        rows = [(a.name, a.space.name, len(a), f"{ev.mean_b:.3f}", f"{ev.best_b:.3f}", f"{result.log10_a:.2f}"),
                (b.name, b.space.name, len(b), f"{ev.mean_a:.3f}", f"{ev.best_a:.3f}", f"{result.log10_b:.2f}")]
        print(render_table(("population", "space", "models", "mean error", "best error", "log10 size"), rows))
        print(f"{b.name} - {a.name}: mean error {_band(ev.mean_diff)}, best error {_band(ev.best_diff)}, "
              f"KS {ev.ks:.2f} (p {ev.p:.2g}), normalised EDFs")
        print(f"verdict: {result.verdict()}")
    if html is not None:
        from nas.common.files import atomic_write_text
        from nas.dashboards.figures import edf_comparison_figure

        atomic_write_text(html, edf_comparison_figure(result).to_html(include_plotlyjs=True, full_html=True))
        print(f"wrote {html}")
    return 0
