"""The search run: from checked options to a finished study (see :func:`run_search`)."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from nas.common.errors import UserError
from nas.common.units import format_flops, plural
from nas.search.options import (
    Fidelity,
    Plan,
    Resources,
    SearchOptions,
    default_lr,
    fidelity_for,
    make_sampler,
    prepare,
    resources_for,
    settings_for,
)
from nas.search_spaces.sampler import flops_range
from nas.study.records import OBJECTIVES, StudySettings, TrialRecord, read_trials
from nas.study.storage import NoStorage, Retrying, open_storage


def print_plan(plan: Plan, settings: StudySettings, res: Resources, cluster_text: str, out: TextIO) -> None:
    from nas.search.measured_fidelity import advice, describe, lookup

    s, sp = settings, plan.space
    # how well this fidelity was measured to rank candidates of this space (bench/proxy_fidelity.py)
    measured = lookup(s.space, s.epochs, s.train_images, s.val_images, s.batch_size, float(s.schedule["lr"]))
    lo, hi, exact = flops_range(sp)
    approx = "" if exact else "~"
    imgs = lambda n, have: f"{n if n is not None else have:,}"  # noqa: E731
    what = "resumed" if plan.study_exists else "new"
    lines = [
        f"space     {sp.name}: {sp.count():,} architectures over {len(sp.params)} parameters, "
        f"{approx}{format_flops(lo)} - {approx}{format_flops(hi)} at {s.space_resolution}x{s.space_resolution}",
        f"budget    {s.budget_text()} at {s.space_resolution}x{s.space_resolution} (FLOPs = multiply-adds)",
        f"data      {plan.dataset_name}: {s.classes} classes at {s.train_resolution}x{s.train_resolution} "
        f"(candidates train at this resolution); {imgs(s.train_images, plan.n_train)} train / "
        f"{imgs(s.val_images, plan.n_val)} val images, {plural(s.epochs, 'epoch')}, batch {s.batch_size}, "
        f"lr {s.schedule['lr']:g}",
        f"signal    {describe(measured)}",
        f"trials    {plural(plan.opts.trials or 0, 'trained candidate')} in total, "
        f"{min(res.concurrency, plan.opts.trials or res.concurrency)} at a time on "
        f"{res.device} ({res.cpus_per_trial:g} CPU" + (f", {res.gpus_per_trial:g} GPU" if res.gpus_per_trial else "")
        + f" each); {'a population: ' if plan.opts.population else ''}{plan.opts.sampler} sampler, "
        f"seed {plan.opts.seed}; objectives "
        + ", ".join(f"{o} ({'max' if OBJECTIVES[o][0] else 'min'})" for o in s.objectives),
        f"ray       {cluster_text}",
        f"study     {plan.study_name} ({what}) in {plan.storage.display()}",
        "stopping  " + (f"MO-ASHA: rungs at epochs {', '.join(map(str, s.rungs))}; the top "
                        f"1/{s.early_stopping['eta']} of each rung by {', '.join(s.objectives)} continues"
                        + _gate_text(s.early_stopping)
                        if s.early_stopping else "off: every candidate trains its whole schedule"),
    ]
    if s.latency:
        from nas.study.records import latency_text

        res = f"{s.space_resolution}x{s.space_resolution}"
        lines.append(f"latency   the deployed network ({res}, {sp.base.get('classes', 1000)} classes) on "
                     f"{latency_text(s.latency)}, timed before it trains"
                     + ("; one over the budget is recorded infeasible, never trained" if s.latency.get("max_ms")
                        else ""))
    print("\n".join(lines), file=out, flush=True)
    for note in dict.fromkeys([*plan.notes, advice(measured)]):
        if note:
            print(f"note: {note}", file=sys.stderr, flush=True)


def _gate_text(es: dict[str, Any]) -> str:
    from nas.stopping.rule import GATE_MIN_TAU

    n = es.get("gate_curves", 0)
    return (f", once the rung ranks like the final epoch (Kendall tau >= {GATE_MIN_TAU:g} over {n} completed "
            f"curves)" if n else "")


def make_rule(settings: StudySettings, records: list[Any]) -> Any:
    """The study's MO-ASHA rule, its rung gate fed with every curve trained to the end; None when
    early stopping is off."""
    if not settings.early_stopping:
        return None
    from nas.stopping.rule import MOASHA

    es = settings.early_stopping
    rule = MOASHA(settings.objectives, [OBJECTIVES[o][0] for o in settings.objectives], settings.epochs,
                  grace=es["grace"], eta=es["eta"], gate_curves=es.get("gate_curves", 0))
    if rule.gate is not None:
        for r in records:
            if r.outcome == "complete":
                rule.gate.add_curve(r.number, {p["epoch"]: p.get("accuracy") for p in r.curve if p.get("epoch")})
    return rule


def rung_gate(settings: StudySettings, records: list[Any]) -> Any:
    """Which rungs of a study may stop trials, as a resumed search would see them (``nas status``)."""
    rule = make_rule(settings, records)
    return None if rule is None else rule.gate


def make_scheduler(settings: StudySettings, records: list[Any]) -> Any:
    """The MO-ASHA Tune scheduler for a study, its rungs rebuilt from every trained trial's curve
    (a resumed search then stops exactly as an uninterrupted one would: orphaned and interrupted
    trials are left out, their retries record the same architectures again)."""
    rule = make_rule(settings, records)
    if rule is None:
        return None
    from nas.stopping.tune_scheduler import ConfigKey, MOASHAScheduler

    objectives = settings.objectives
    preload = []
    for r in records:
        if not r.trained or r.outcome == "duplicate":
            continue
        for point in r.curve:
            vector = {o: point.get("accuracy") if o == "accuracy" else r.objective(o) for o in objectives}
            if point.get("epoch") is not None and all(vector[o] is not None for o in objectives):
                preload.append((r.number, int(point["epoch"]), {o: vector[o] for o in objectives}))
    return MOASHAScheduler(rule, key=ConfigKey("nas", "trial_number"), preload=preload)


def _check_study(plan: Plan, device: str) -> tuple[Fidelity, StudySettings]:
    """The fidelity and settings for ``device``; refuses an existing study made with others. Checked
    once per device: the local check before a cluster starts stands when the cluster's device agrees."""
    import optuna

    from nas.study.lifecycle import check_existing

    if plan.checked is not None and plan.checked[0] == device:
        return plan.checked[1], plan.checked[2]
    fid = fidelity_for(plan.opts, gpu=device == "cuda")
    lr = plan.opts.lr or default_lr(fid.batch_size)
    settings = settings_for(plan, fid, lr, device)
    plan.checked = (device, fid, settings)
    try:
        # A second driver started at the same moment may find the file before its schema: wait for it.
        reader = optuna.storages.get_storage(open_storage(plan.storage, create=False, wait_s=10.0))
    except NoStorage:  # no file yet, or a database server with no study tables yet: a new study
        return fid, settings
    plan.study_exists = check_existing(Retrying(reader), plan.study_name, settings)
    if plan.study_exists and plan.storage.kind == "journal":
        _one_driver_on_journal(reader, reader.get_study_id_from_name(plan.study_name), plan)
    return fid, settings


def _one_driver_on_journal(storage: Any, study_id: int, plan: Plan, me: Any = None) -> None:
    """A journal file has no transactions, so the check that keeps two drivers from starting the
    same architecture cannot be one step with the write there: refuse a second driver. Checked before
    anything is printed (any live driver), and again once this one is registered (the later of two
    that started together gives way)."""
    from nas.study.liveness import drivers

    mine = (me.record.started, me.id) if me is not None else None
    first = [d for d in drivers(storage, study_id).values()
             if d.alive() and (mine is None or (d.id != me.id and (d.started, d.id) < mine))]
    if first:
        if me is not None:
            me.end()
        raise UserError(f"study {plan.study_name!r} in {plan.storage.display()} is being searched by another driver "
                        f"(pid {first[0].pid}, {first[0].machine.split('@')[0]}); a journal file cannot keep two "
                        f"drivers from training the same architecture: use PostgreSQL for several drivers (or an "
                        f"SQLite file, for drivers on one machine)")


def run_search(opts: SearchOptions, out: TextIO | None = None,
               queue: list[tuple[dict[str, Any], str, dict[str, Any]]] | None = None,
               study_attrs: dict[str, Any] | None = None) -> int:
    """Run (or resume) a search: check everything, start or join Ray, open the study, train, report.

    ``queue``: architectures to train before the sampler proposes any, as ``(params, arch_hash,
    attrs)``; one the study already holds is not queued again (``nas fidelity`` retrains a study's
    candidates this way). ``study_attrs``: user attributes written on the study."""
    from nas.cluster.execution import connect, disconnect

    out = out or sys.stdout
    _quiet_optuna()
    plan = prepare(opts)
    if not (opts.address or os.environ.get("RAY_ADDRESS")):
        # A local cluster has this machine's devices: refuse a mismatched study before starting one.
        _check_study(plan, _local_device(opts))
    cluster = connect(opts.address)
    try:
        res = resources_for(opts, cluster.cpus, cluster.gpus, cluster.resources)
        fid, settings = _check_study(plan, res.device)
        plan.opts.trials = fid.trials
        print_plan(plan, settings, res, cluster.describe(), out)
        run = open_run(plan, settings, fid, res, out, queue, study_attrs)
        code = train(run, res, out)
        print_summary(run, out)
        return code
    finally:
        disconnect(cluster)


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _local_device(opts: SearchOptions) -> str:
    import torch

    return opts.device or ("cuda" if torch.cuda.is_available() and opts.gpus_per_trial != 0 else "cpu")


@dataclass
class Run:
    """An open search: the study, this driver's liveness record, the searcher and the display."""

    plan: Plan
    settings: StudySettings
    fid: Fidelity
    study: Any
    storage: Any  # the study's DeferredStorage
    driver: Any
    searcher: Any
    progress: Any


def open_run(plan: Plan, settings: StudySettings, fid: Fidelity, res: Resources, out: TextIO,
             queue: list[tuple[dict[str, Any], str, dict[str, Any]]] | None,
             study_attrs: dict[str, Any] | None) -> Run:
    """Create or resume the study, register this driver, queue what was asked, recover orphans."""
    import optuna

    from nas.search.progress import Progress
    from nas.search.searcher import StudySearcher
    from nas.search.weights import WeightsKeeper, artifacts_dir
    from nas.study.lifecycle import open_search_study
    from nas.study.liveness import Driver
    from nas.study.requeue import enqueue_architectures
    from nas.study.writer import DeferredStorage
    from nas.workers.contract import TrialSpec

    opts = plan.opts
    # Not the check's reader: a reader holds no pooled connection and never writes (nas.study.storage).
    storage = DeferredStorage(optuna.storages.get_storage(open_storage(plan.storage)))
    study, _ = open_search_study(storage, plan.study_name, settings, plan.space_text)
    # A resumed study must not see the same random proposals again: the sampler's seed moves on
    # with the trials already in the study (still reproducible from the same state).
    study.sampler = make_sampler(opts.sampler, opts.seed + 1_000_003 * len(study.trials), fid.trials)
    for key, value in (study_attrs or {}).items():
        study.set_user_attr(key, value)
    if queue:
        enqueue_architectures(study, queue)
    driver = Driver(storage, study._study_id)
    driver.beat(force=True)
    if plan.storage.kind == "journal":
        _one_driver_on_journal(storage, study._study_id, plan, me=driver)
    spec = TrialSpec(config={}, dataset=plan.dataset_name, schedule=settings.schedule, device=res.device,
                     train_limit=fid.train_images, val_limit=fid.val_images,
                     latency=settings.latency is not None or "latency" in plan.objectives,
                     threads=max(1, int(res.cpus_per_trial)), time_limit_s=opts.trial_timeout).to_dict()
    # What is in the study, not the proposals still held in this process's memory.
    progress = Progress(lambda: [TrialRecord.from_frozen(t) for t in storage.backend.get_all_trials(
        study._study_id, deepcopy=False)], fid.trials, res.concurrency, plan.objectives,
        settings.space_resolution, out=out)
    weights = WeightsKeeper(artifacts_dir(plan.storage, opts.artifacts), f"nas-weights-{driver.id}")
    searcher = StudySearcher(study, storage, plan.space, settings, fid.trials, driver.id, spec,
                             on_event=progress.event, weights=weights)
    searcher.recover()  # what a driver that died left running is failed and queued to train again
    if searcher.remaining <= 0:
        others = fid.trials - searcher.trained - searcher.remaining  # running under other drivers
        busy = f" and {others} training under other drivers" if others > 0 else ""
        print(f"study {plan.study_name} already has {searcher.trained} trained candidates{busy} "
              f"(--trials {fid.trials}); raise --trials to train more", file=out)
    return Run(plan, settings, fid, study, storage, driver, searcher, progress)


def train(run: Run, res: Resources, out: TextIO) -> int:
    """Train until the study has its trials (or the user stops it); returns the exit status."""
    from nas.cluster.execution import Interrupt, run_tune

    searcher, driver, progress = run.searcher, run.driver, run.progress

    def stopping(name: str) -> None:
        print(f"\n{name}: stopping; running trials are recorded as interrupted and queued (again to "
              f"stop at once)", file=sys.stderr, flush=True)

    def step() -> None:
        if driver.beat():
            # Another driver of this study may have died meanwhile: what it left running is failed
            # and queued now, not at the next start (its held duplicates here would wait for ever).
            searcher.recover()
        progress.tick()

    with Interrupt(on_first=stopping) as interrupt:
        try:
            if searcher.remaining > 0 or searcher.running:
                scheduler = make_scheduler(run.settings, read_trials(run.study))
                if scheduler is not None and scheduler.rule.gate is not None:
                    print(f"rungs     {scheduler.rule.gate.describe()}", file=out, flush=True)
                run_tune(searcher, res.as_tune(), res.concurrency, interrupt, on_step=step, scheduler=scheduler)
        finally:
            if interrupt.event.is_set() or searcher.running or searcher.held:
                searcher.interrupt_running()
            progress.close()
            driver.end()
    return interrupt.exit_code or 0


def print_summary(run: Run, out: TextIO) -> None:
    """The closing lines: counts, the front (accuracy with its standard error) and what to run next."""
    from nas.common.text_table import render_table
    from nas.search.progress import front_header, front_rows
    from nas.study.records import front

    plan, settings = run.plan, run.settings
    records = read_trials(run.study)
    members = front(records, settings.objectives)
    print(f"\nstudy {plan.study_name}: {run.progress.counts_text()}", file=out)
    if members:
        print(f"Pareto front ({len(members)} of {sum(r.trained for r in records)} trained):", file=out)
        print(render_table(front_header(settings.objectives, settings.space_resolution),
                           front_rows(members, settings.objectives)), file=out)
    storage_arg = "" if plan.opts.storage is None else f" --storage {plan.storage.text}"
    study_arg = f" --study {plan.study_name}"
    print(f"next: nas dashboard{study_arg}{storage_arg}   nas export{study_arg}{storage_arg} --best -o best.yaml",
          file=out, flush=True)
    note = chance_note(records, settings.classes)
    if note:
        print(f"note: {note}", file=sys.stderr, flush=True)


def chance_note(records: Sequence[TrialRecord], classes: int) -> str | None:
    """What to say when trained candidates ended no better than guessing: their ranking is noise."""
    from nas.study.records import near_chance

    scored = [r for r in records if r.scored]
    low = [r for r in scored if near_chance(r, classes)]
    if not low:
        return None
    shown = ", ".join(str(r.number) for r in low[:8]) + (", ..." if len(low) > 8 else "")
    return (f"{len(low)} of {plural(len(scored), 'trained candidate')} ended within noise of chance ("
            f"{1 / classes:.2f} for {classes} classes; {'trial' if len(low) == 1 else 'trials'} {shown}): this "
            f"fidelity did not train them, so their place in the ranking is noise (a learning rate too high for "
            f"them, or too few steps: try a lower --lr or more --train-images)")
