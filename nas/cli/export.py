"""``nas export``: an architecture from a study as a config file that rebuilds the exact network."""

from __future__ import annotations

import argparse
import sys

from nas.common.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a trial's architecture as a config (with its provenance), weights, ONNX",
        description="Write a study's architecture as a config file (the network at the space's resolution and "
                    "classes, with a provenance block: study, trial, space, budget, dataset, fidelity, metrics, "
                    "complexity at both resolutions). 'nas model summary FILE', nas.build_model(FILE) and "
                    "'nas train FILE' read it. Where the network fits timm's ResNet, the equivalent call is "
                    "printed.")
    p.add_argument("--study", metavar="NAME", help="study name (may be left out when the storage holds one)")
    p.add_argument("--storage", metavar="URL", help="study storage (default sqlite:///nas.db, or $NAS_STORAGE)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--best", action="store_true", help="the best trial of the Pareto front (see --by)")
    which.add_argument("--trial", type=int, metavar="N", help="trial number N (a complete trial)")
    p.add_argument("--by", metavar="WHAT", help="with --best: accuracy (default), knee (the front's knee), or "
                                                "another objective of the study (flops, params, latency)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="config file to write (.yaml)")
    p.add_argument("--weights", metavar="FILE",
                   help="also write the trained weights (a state_dict for the search's training head)")
    p.add_argument("--onnx", metavar="FILE", help="also write an ONNX graph of the network (with the trained "
                                                  "weights when --weights is given)")
    p.add_argument("--artifacts", metavar="DIR", help="where the search kept weights (default: beside the storage)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from nas.cli.studies import load
    from nas.common.files import check_writable
    from nas.common.units import plural
    from nas.export import (
        exported_config,
        pick_trial,
        provenance,
        weights_bytes,
        within_noise_of,
        write_export,
    )
    from nas.search.fidelity import reference_accuracies
    from nas.search.weights import artifacts_dir
    from nas.search_spaces.complexity_model import complexity, format_flops
    from nas.search_spaces.timm_equivalent import timm_equivalent
    from nas.study.records import NOISE_Z, read_settings, read_trials
    from nas.study.storage import parse_storage

    if args.by is not None and not args.best:
        raise UserError("--by goes with --best")
    out = check_writable(args.output, "--output")
    weights_out = check_writable(args.weights, "--weights") if args.weights else None
    onnx_out = check_writable(args.onnx, "--onnx") if args.onnx else None
    study, study_storage = load(args)
    settings = read_settings(study)
    if settings is None:
        raise UserError(f"study {study.study_name!r} was not made by 'nas search'")
    records = read_trials(study)
    record = pick_trial(records, settings, args.trial, args.by)
    requested = next((r for r in records if r.number == args.trial), None)
    storage = parse_storage(args.storage)
    prov = provenance(study.study_name, storage.display(), record, settings, requested)
    checked = reference_accuracies(study_storage, study.study_name, record.get("arch_hash"))
    if checked:  # nas fidelity retrained it: what a higher fidelity (or another seed) measured
        prov["reference_accuracy"] = checked
    config = exported_config(record, prov)
    weights = weights_bytes(record, artifacts_dir(storage, args.artifacts)) if weights_out else None
    write_export(config, out, weights, weights_out, onnx_out, settings.classes)

    cx = complexity(config)
    print(f"trial {record.number} of {study.study_name}: {config.describe()}")
    print(f"  {cx.params / 1e6:.2f}M params, {format_flops(cx.flops)} at {config.resolution}x{config.resolution} "
          f"(as recorded); accuracy {record.accuracy:.4f} on {settings.dataset}")
    lat = prov.get("latency")
    if lat and lat.get("median_ms") is not None:
        print(f"  latency {lat['median_ms']:.2f} ms at batch 1 (IQR ±{50 * (lat.get('spread') or 0):.0f} %) as "
              f"deployed ({lat['resolution']}x{lat['resolution']}) on {lat['runtime']} {lat['runtime_version']}, "
              f"{lat['device']} ({lat['device_name']}), {plural(lat['threads'], 'thread')}")
    wrote = [str(out)] + [str(p) for p in (weights_out, onnx_out) if p is not None]
    print(f"  wrote {', '.join(wrote)}")
    if args.best:
        close = within_noise_of(record, records, settings.objectives)
        if close:
            print(f"note: the choice is within noise of {', '.join(close)} on the front (accuracy differences "
                  f"under {NOISE_Z} standard errors): the study cannot tell them apart by accuracy",
                  file=sys.stderr)
    equivalent = timm_equivalent(config)
    if isinstance(equivalent, str):
        print(f"timm: no equivalent timm ResNet ({equivalent})", file=sys.stderr)
    else:
        print("timm equivalent:\n" + equivalent.call())
    return 0
