"""``nas studies``, ``nas status``, ``nas pareto``: read what searches recorded (never write)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nas.common.errors import UserError
from nas.common.units import format_count, plural


def _storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="URL", help="study storage (default sqlite:///nas.db, or $NAS_STORAGE)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("studies", help="list the studies in a storage",
                       description="List the studies in a storage with their space, budget and progress.")
    _storage_arg(p)
    p.set_defaults(func=cmd_studies)

    p = sub.add_parser("status", help="a study's counts by outcome, best per objective, settings and drivers",
                       description="A study's counts by outcome, its best trial per objective, its budget, "
                                   "space and fidelity, and the drivers working on it.")
    p.add_argument("--study", metavar="NAME", help="study name (may be left out when the storage holds one)")
    _storage_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("pareto", help="a study's Pareto front",
                       description="The Pareto front of a study: feasible, completely trained trials that no "
                                   "other trial beats on every objective (one per architecture).")
    p.add_argument("--study", metavar="NAME", help="study name (may be left out when the storage holds one)")
    _storage_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object with configs")
    p.set_defaults(func=cmd_pareto)


def load(args: argparse.Namespace) -> tuple[Any, Any]:
    """The study named by ``--study`` (or the storage's only one) and its storage, opened to read."""
    import optuna

    from nas.study.lifecycle import resolve_study_name
    from nas.study.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(args.storage, create=False)
    name = resolve_study_name(storage, getattr(args, "study", None))
    return optuna.load_study(study_name=name, storage=storage), storage


def cmd_studies(args: argparse.Namespace) -> int:
    import optuna

    from nas.common.text_table import render_table
    from nas.study.records import StudySettings, TrialRecord, counts
    from nas.study.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(args.storage, create=False)
    rows = []
    for s in sorted(storage.get_all_studies(), key=lambda s: s.study_name):
        settings = StudySettings.from_attrs(s.user_attrs)
        records = [TrialRecord.from_frozen(t) for t in storage.get_all_trials(s._study_id, deepcopy=False)]
        c = counts(records)
        accs = [r.accuracy for r in records if r.state == "COMPLETE" and r.accuracy is not None]
        rows.append((s.study_name, settings.space if settings else "-", settings.budget_text() if settings else "-",
                     sum(r.trained for r in records), c["complete"], c["running"],
                     f"{max(accs):.3f}" if accs else "-", settings.created if settings else "-"))
    if not rows:
        print("no studies in this storage")
        return 0
    print(render_table(("study", "space", "budget", "trained", "complete", "running", "best accuracy", "created"),
                       rows))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from nas.common.units import format_flops
    from nas.search.progress import fmt_acc, fmt_duration
    from nas.search.run import rung_gate
    from nas.study.liveness import drivers
    from nas.study.records import OBJECTIVES, counts, front, read_settings, read_trials
    from nas.study.storage import clock

    study, storage = load(args)
    settings = read_settings(study)
    records = read_trials(study)
    c = counts(records)
    objectives = list(settings.objectives) if settings else list(study.metric_names or [])
    best: dict[str, Any] = {}
    for o in objectives:
        done = [r for r in records if r.state == "COMPLETE" and r.feasible and r.objective(o) is not None]
        if done:
            pick = (max if OBJECTIVES[o][0] else min)(done, key=lambda r: r.objective(o))
            best[o] = {"trial": pick.number, "value": pick.objective(o)}
    members = front(records, objectives) if objectives else []
    gate = rung_gate(settings, records) if settings else None
    now = clock(storage)  # the clock heartbeats are written by
    live = {k: d for k, d in drivers(storage, study._study_id).items() if d.alive(now)}
    if args.json:
        print(json.dumps({"study": study.study_name, "settings": settings.to_attrs() if settings else None,
                          "counts": c, "trained": sum(r.trained for r in records), "best": best,
                          "front": [r.number for r in members], "latency": latency_summary(settings, records),
                          "rungs": [gate.evidence(r).to_dict() for r in gate.rungs] if gate else None,
                          "drivers": {k: d.to_dict() for k, d in live.items()}}, indent=2))
        return 0
    print(f"study     {study.study_name}")
    if settings:
        res = settings.space_resolution
        fid = settings.fidelity
        print(f"space     {settings.space} (#{settings.space_fingerprint}); budget {settings.budget_text()} "
              f"at {res}x{res}")
        print(f"data      {settings.dataset} at {settings.train_resolution}x{settings.train_resolution}, "
              f"{format_count(fid['train_images'])} train / {format_count(fid['val_images'])} val images, "
              f"{plural(fid['epochs'], 'epoch')}, batch {fid['batch_size']}")
        print(f"sample    {settings.sample_text()}")
    print(f"trials    {sum(r.trained for r in records)} trained: complete {c['complete']}, pruned {c['pruned']}, "
          f"failed {c['failed']}; running {c['running']}; infeasible {c['infeasible']}, invalid {c['invalid']}, "
          f"duplicate {c['duplicate']}; orphaned {c['orphaned']}, interrupted {c['interrupted']}")
    lat = latency_summary(settings, records)
    if lat is not None:
        print(f"latency   {lat['text']}")
    for o, b in best.items():
        v = b["value"]
        text = fmt_acc(v) if o == "accuracy" else format_flops(v) if o == "flops" else (
            f"{v / 1e6:.2f}M" if o == "params" else f"{v:.2f} ms")
        print(f"best      {o} {text} (trial {b['trial']})")
    print(f"front     {len(members)} trial(s): {', '.join(str(r.number) for r in members) or '-'}")
    if gate is not None:
        print(f"rungs     {gate.describe()}")
    for k, d in live.items():
        print(f"driver    {k} alive: pid {d.pid} on {d.machine.split('@')[0]}, heartbeat "
              f"{fmt_duration(now - d.heartbeat)} ago")
    return 0


def cmd_pareto(args: argparse.Namespace) -> int:
    from nas.common.text_table import render_table
    from nas.search.progress import front_header, front_rows
    from nas.study.records import front, noise_neighbours, read_settings, read_trials

    study, _ = load(args)
    settings = read_settings(study)
    if settings is None:
        raise UserError(f"study {study.study_name!r} was not made by 'nas search'")
    members = front(read_trials(study), settings.objectives)
    if args.json:
        noise = noise_neighbours(members)
        print(json.dumps({"study": study.study_name, "objectives": list(settings.objectives), "front": [
            {"trial": r.number, "values": dict(zip(settings.objectives, r.values or ())),
             "accuracy_se": r.accuracy_se, "val_images": r.get("val_images"),
             "within_noise_of": noise[r.number], "arch": r.get("arch"),
             "arch_hash": r.get("arch_hash"), "n_params": r.get("n_params"), "flops": r.get("flops"),
             "train_flops": r.get("train_flops"), "latency_ms": r.get("latency_ms"), "latency": r.get("latency"),
             "params": r.params, "config": r.get("config")}
            for r in members], "latency": latency_summary(settings, read_trials(study))}, indent=2))
        return 0
    if not members:
        print(f"study {study.study_name}: no completely trained feasible trial yet")
        return 0
    print(render_table(front_header(settings.objectives, settings.space_resolution),
                       front_rows(members, settings.objectives)))
    lat = latency_summary(settings, members)
    if lat is not None:
        print(f"latency: {lat['text']}")
    return 0


def latency_summary(settings: Any, records: list[Any]) -> dict[str, Any] | None:
    """How the study measures latency (its plan) and where its trials were timed (runtime version, device,
    resolution, from the trials' records), with one line of text; None when it measures none."""
    from nas.study.records import latency_text

    if settings is None or not settings.latency:
        return None
    measured = [r.get("latency") for r in records if r.get("latency")]
    where = sorted({f"{m['device_name']} ({m['runtime']} {m['runtime_version']})" for m in measured})
    sizes = sorted({m["resolution"] for m in measured})
    text = latency_text(settings.latency) + ", the deployed network"
    if measured:
        text += f" at {'/'.join(f'{x}x{x}' for x in sizes)}; measured on {'; '.join(where)}"
    return {**settings.latency, "measured_on": where, "resolutions": sizes, "text": text}
