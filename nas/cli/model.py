"""``nas model``: list the presets, show a config, summarise a network's cost per stage."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from nas.common.text_table import render_table
from nas.common.units import format_flops

if TYPE_CHECKING:
    from nas.search_spaces.config import ArchConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="inspect candidate networks (presets or config files)",
                           description="Inspect candidate networks: the shipped presets or your own config files.")
    msub = model.add_subparsers(dest="model_command", metavar="COMMAND", required=True)

    p = msub.add_parser("list", help="list the reference presets with their params and FLOPs",
                        description="List the reference presets with their params and FLOPs (multiply-adds).")
    p.add_argument("--json", action="store_true", help="print one JSON object per preset")
    p.set_defaults(func=cmd_list)

    p = msub.add_parser("show", help="print a preset or config file as YAML (a starting point for your own)",
                        description="Print a config as YAML; redirect it to a file to make your own variant.")
    p.add_argument("config", metavar="NAME|FILE", help="preset name or path to a .yaml/.json config")
    p.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    p.set_defaults(func=cmd_show)

    p = msub.add_parser("summary", help="per-stage table of widths, attention, params and FLOPs",
                        description="Per-stage table (depth, widths, cardinality x group width, radix, SE, SK, "
                                    "params, FLOPs) and totals, computed analytically without building the model. "
                                    "FLOPs are multiply-adds.")
    p.add_argument("config", metavar="NAME|FILE", help="preset name or path to a .yaml/.json config")
    p.add_argument("--resolution", type=int, metavar="R", help="input height/width (default: the config's)")
    p.add_argument("--classes", type=int, metavar="N", help="number of classes (default: the config's)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (params, flops, activations as integers, and the stages)")
    p.set_defaults(func=cmd_summary)


def _load(args: argparse.Namespace) -> ArchConfig:
    from nas.search_spaces.registry import resolve_config

    config = resolve_config(args.config)
    if getattr(args, "resolution", None) is not None or getattr(args, "classes", None) is not None:
        config = config.with_input(args.resolution, args.classes)
    return config


def cmd_list(args: argparse.Namespace) -> int:
    from nas.search_spaces import complexity, preset_names, resolve_config

    rows = []
    for name in preset_names():
        config = resolve_config(name)
        cx = complexity(config)
        if args.json:
            print(json.dumps({"name": name, "resolution": config.resolution, **cx.to_dict()}))
        rows.append((name, config.resolution, f"{cx.params:,}", f"{cx.flops:,}", format_flops(cx.flops)))
    if not args.json:
        print(render_table(("preset", "res", "params", "FLOPs (MACs)", ""), rows))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    config = _load(args)
    print(config.to_json() if args.json else config.to_yaml(), end="\n" if args.json else "")
    return 0


def _attention(stage) -> tuple[str, str, str]:
    return (str(stage.radix) if stage.radix else "-",
            f"1/{stage.se_ratio}" if stage.se_ratio else "-",
            "yes" if stage.sk else "-")


def cmd_summary(args: argparse.Namespace) -> int:
    from nas.search_spaces import complexity, complexity_by_part

    config = _load(args)
    total = complexity(config)
    by_part = complexity_by_part(config)
    parts = {name: cx for name, cx, _ in by_part}
    size = [side for name, _, side in by_part if name.startswith("layer")]
    stages = []
    for i, stage in enumerate(config.stages):
        cx = parts[f"layer{i + 1}"]
        radix, se, sk = _attention(stage)
        stages.append(dict(
            stage=i + 1, depth=stage.depth, width=stage.width, cardinality=stage.cardinality,
            group_width=stage.group_width, bottleneck_width=stage.bottleneck_width, stride=stage.stride,
            output_size=size[i], radix=stage.radix, se_ratio=stage.se_ratio, sk=stage.sk,
            params=cx.params, flops=cx.flops, activations=cx.activations))
    if args.json:
        out = {"name": config.name, "resolution": config.resolution, "classes": config.classes,
               **total.to_dict(), "stem": parts["stem"].to_dict(), "head": parts["head"].to_dict(),
               "stages": stages}
        print(json.dumps(out, indent=2))
        return 0
    rows = [("stem", "", config.stem.width, config.stem.type, "", "", "", "", f"{parts['stem'].params:,}",
             format_flops(parts["stem"].flops))]
    for s, stage in zip(stages, config.stages):
        radix, se, sk = _attention(stage)
        rows.append((f"layer{s['stage']}", s["depth"], s["width"], f"{s['cardinality']}x{s['group_width']}",
                     f"{s['output_size']}x{s['output_size']}", radix, se, sk, f"{s['params']:,}",
                     format_flops(s["flops"])))
    rows.append(("head", "", config.classes, "fc", "", "", "", "", f"{parts['head'].params:,}",
                 format_flops(parts["head"].flops)))
    title = config.name or args.config
    print(f"{title}  ({config.resolution}x{config.resolution} input, {config.classes} classes)")
    print(render_table(("part", "depth", "width", "groups x w", "out", "radix", "SE", "SK", "params", "FLOPs"),
                       rows))
    print(f"total: {total.params:,} params, {total.flops:,} FLOPs (multiply-adds, "
          f"{format_flops(total.flops)}), {total.activations:,} activations")
    return 0
