"""The search driver: from the user's options to a finished study.

Order matters for the promise "a mistake is one line, within seconds, and writes nothing":
:func:`prepare` checks everything that needs no cluster (space, budget, objectives, sampler,
storage URL, dataset, an existing study's settings) without writing; :func:`run_search` then
starts or joins Ray, checks the cluster's resources, and only then creates or opens the study.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from nas.budget import Budget, parse_budget
from nas.records import OBJECTIVES, StudySettings, TrialRecord, read_trials
from nas.search_spaces.errors import UserError
from nas.search_spaces.registry import load_space
from nas.search_spaces.sampler import check_budget, flops_range
from nas.search_spaces.space import SearchSpace
from nas.search_spaces.units import format_flops
from nas.storage import NoStorage, Retrying, StorageURL, open_storage, parse_storage

SAMPLERS = ("tpe", "nsga2", "random", "gp")


@dataclass
class SearchOptions:
    """``nas search``'s options; ``None`` means "the default for this machine" (see :func:`defaults`)."""

    space: str
    budget: str
    trials: int | None = None
    study: str | None = None
    storage: str | None = None
    dataset: str = "shapes"
    resolution: int = 32
    epochs: int | None = None
    train_images: int | None = None
    val_images: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    sampler: str = "tpe"
    objectives: str = "accuracy,flops"
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    address: str | None = None
    seed: int = 0
    train_seed: int = 0
    device: str | None = None
    early_stopping: bool = True
    grace: int | None = None
    eta: int = 3
    rung_evidence: int | None = None
    artifacts: str | None = None
    trial_timeout: float | None = None
    trial_resources: str | None = None


@dataclass(frozen=True)
class Fidelity:
    trials: int
    epochs: int
    train_images: int | None
    val_images: int | None
    batch_size: int


#: What a bare ``nas search`` trains: on a 2-core CPU about ten minutes for ten candidates;
#: on a GPU the whole of ``shapes`` for ten epochs.
CPU_DEFAULTS = Fidelity(trials=10, epochs=3, train_images=2000, val_images=1000, batch_size=64)
GPU_DEFAULTS = Fidelity(trials=32, epochs=10, train_images=None, val_images=None, batch_size=256)


@dataclass
class Plan:
    """Everything checked before any cluster or study is touched."""

    opts: SearchOptions
    space: SearchSpace
    space_text: str
    budget: Budget
    objectives: tuple[str, ...]
    storage: StorageURL
    study_name: str
    dataset_name: str
    classes: int
    n_train: int
    n_val: int
    study_exists: bool = False
    settings: StudySettings | None = None
    notes: list[str] = field(default_factory=list)


def _positive(name: str, value: float | None, minimum: float = 1) -> None:
    if value is not None and not value >= minimum:
        raise UserError(f"--{name} must be at least {minimum:g}, got {value:g}")


def parse_resources(text: str | None) -> dict[str, float]:
    """``--trial-resources fast=1,ssd=0.5``: custom Ray resources every trial needs."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, amount = part.partition("=")
        try:
            value = float(amount) if sep else 1.0
        except ValueError:
            value = -1.0
        if not name.strip() or value <= 0 or name.strip().upper() in ("CPU", "GPU"):
            raise UserError(f"--trial-resources: cannot read {part.strip()!r}; expected NAME=AMOUNT pairs such as "
                            f"fast=1 (CPUs and GPUs have their own options)")
        out[name.strip()] = value
    return out


def parse_objectives(text: str) -> tuple[str, ...]:
    names = tuple(o.strip().lower() for o in text.split(",") if o.strip())
    unknown = [o for o in names if o not in OBJECTIVES]
    if unknown or not names:
        raise UserError(f"unknown objective {unknown[0] if unknown else text!r}; choose from "
                        f"{', '.join(OBJECTIVES)} (comma-separated, accuracy first: accuracy,flops)")
    if len(set(names)) != len(names):
        raise UserError(f"--objectives {text!r} names an objective twice")
    if names[0] != "accuracy":
        raise UserError(f"--objectives must start with accuracy (the one measured by training), got {text!r}")
    return names


def default_study_name(space: SearchSpace, budget: Budget) -> str:
    compact = format_flops(budget.high).replace(" ", "")
    if budget.is_window:
        compact = format_flops(budget.low).replace(" ", "").replace("FLOPs", "") + "-" + compact
    return f"{space.name}-{compact}"


def _space_text(name_or_path: str, space: SearchSpace) -> str:
    path = Path(name_or_path)
    if path.exists():
        return path.read_text()
    from importlib import resources

    return (resources.files("nas.search_spaces.spaces") / f"{space.name}.yaml").read_text()


def _absolute_dataset(spec: str) -> str:
    name, sep, path = spec.partition(":")
    if sep and path:
        return f"{name}:{Path(path).expanduser().resolve()}"
    return spec


def prepare(opts: SearchOptions) -> Plan:
    """Check every option that needs no cluster; read (never write) an existing study."""
    if opts.study is not None and not opts.study.strip():
        raise UserError("--study is empty; give the study a name, or leave --study out for the default "
                        "(SPACE-BUDGET)")
    space = load_space(opts.space)
    budget = parse_budget(opts.budget)
    check_budget(space, budget.low, budget.high)
    objectives = parse_objectives(opts.objectives)
    if opts.sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {opts.sampler!r}; choose from {', '.join(SAMPLERS)}")
    for name in ("trials", "epochs", "train_images", "val_images", "max_concurrent"):
        _positive(name.replace("_", "-"), getattr(opts, name))
    _positive("batch-size", opts.batch_size, 2)
    _positive("train-images", opts.train_images, 2)
    _positive("resolution", opts.resolution, 8)
    _positive("cpus-per-trial", opts.cpus_per_trial, 0.01)
    if opts.gpus_per_trial is not None and opts.gpus_per_trial < 0:
        raise UserError(f"--gpus-per-trial must be >= 0, got {opts.gpus_per_trial:g}")
    if opts.lr is not None and not (opts.lr > 0 and math.isfinite(opts.lr)):
        raise UserError(f"--lr must be a positive number, got {opts.lr}")
    if opts.device == "cpu" and opts.gpus_per_trial:
        raise UserError("--gpus-per-trial with --device cpu: drop one of them")
    if opts.trial_timeout is not None and not opts.trial_timeout > 0:
        raise UserError(f"--trial-timeout must be a positive number of seconds, got {opts.trial_timeout:g}")
    parse_resources(opts.trial_resources)
    if opts.eta < 2:
        raise UserError(f"--eta must be at least 2 (the top 1/eta of each rung continues), got {opts.eta}")
    _positive("grace", opts.grace)
    if opts.rung_evidence is not None and opts.rung_evidence < 0:
        raise UserError(f"--rung-evidence must be 0 (no gate) or more completed curves, got {opts.rung_evidence}")
    storage = parse_storage(opts.storage)

    from nas.workers.datasets import load_dataset

    dataset = _absolute_dataset(opts.dataset)
    data = load_dataset(dataset, resolution=opts.resolution, seed=0)
    n_train, n_val = int(data.train_x.shape[0]), int(data.val_x.shape[0])
    for name, value, have in (("train-images", opts.train_images, n_train), ("val-images", opts.val_images, n_val)):
        if value is not None and value > have:
            raise UserError(f"--{name} {value} but dataset {data.name} has {have} {name.split('-')[0]} images")
    plan = Plan(opts=opts, space=space, space_text=_space_text(opts.space, space), budget=budget,
                objectives=objectives, storage=storage, study_name=opts.study or default_study_name(space, budget),
                dataset_name=dataset, classes=data.num_classes, n_train=n_train, n_val=n_val)
    lo, hi, exact = flops_range(space)
    if exact and budget.high >= hi and budget.low <= lo:
        plan.notes.append(f"the budget {budget} holds every network of space {space.name} (at most "
                          f"{format_flops(hi)}): it rules nothing out")
    opts.dataset = dataset
    del data
    return plan


def default_grace(epochs: int) -> int:
    """The first rung when ``--grace`` is not given: a quarter of the schedule, at least epoch 1."""
    return max(1, epochs // 4)


def early_stopping_for(opts: SearchOptions, epochs: int, notes: list[str]) -> dict[str, int] | None:
    """The early-stopping settings, or ``None`` when off or when no rung fits the schedule."""
    if not opts.early_stopping:
        return None
    # the first rung where the ranking has begun to settle: a quarter of the schedule (on the recorded
    # curves of BENCHMARKS.md, accuracy after epoch 1 of 9 ranks noise; after epoch 2-3 it has begun)
    grace = opts.grace or default_grace(epochs)
    if grace > epochs:
        raise UserError(f"--grace {grace} is above the {epochs}-epoch schedule; the first rung must come before "
                        f"the last epoch")
    if grace == epochs:
        notes.append(f"early stopping has no effect with {epochs} epoch(s) and grace {grace} (no rung before the "
                     f"last epoch); every candidate trains fully")
        return None
    return {"grace": grace, "eta": opts.eta, "gate_curves": gate_curves(opts)}


def gate_curves(opts: SearchOptions) -> int:
    from nas.stopping import GATE_MIN_CURVES

    return GATE_MIN_CURVES if opts.rung_evidence is None else opts.rung_evidence


def settings_for(plan: Plan, fid: Fidelity, lr: float) -> StudySettings:
    from nas.study import fingerprint, new_settings
    from nas.workers.engine import Schedule

    schedule = Schedule(epochs=fid.epochs, batch_size=fid.batch_size, lr=lr,
                        warmup_epochs=min(1.0, fid.epochs / 10), seed=plan.opts.train_seed).to_dict()
    return new_settings(
        space=plan.space.name, space_fingerprint=fingerprint(plan.space_text),
        space_resolution=int(plan.space.base.get("resolution", 224)), budget_low=plan.budget.low,
        budget_high=plan.budget.high, dataset=plan.dataset_name, train_resolution=plan.opts.resolution,
        classes=plan.classes, train_images=fid.train_images, val_images=fid.val_images, epochs=fid.epochs,
        batch_size=fid.batch_size, schedule=schedule, objectives=plan.objectives,
        early_stopping=early_stopping_for(plan.opts, fid.epochs, plan.notes))


def fidelity_for(opts: SearchOptions, gpu: bool) -> Fidelity:
    base = GPU_DEFAULTS if gpu else CPU_DEFAULTS
    return Fidelity(trials=opts.trials or base.trials, epochs=opts.epochs or base.epochs,
                    train_images=opts.train_images if opts.train_images is not None else base.train_images,
                    val_images=opts.val_images if opts.val_images is not None else base.val_images,
                    batch_size=opts.batch_size or base.batch_size)


@dataclass(frozen=True)
class Resources:
    device: str
    cpus_per_trial: float
    gpus_per_trial: float
    concurrency: int
    custom: tuple[tuple[str, float], ...] = ()

    def as_tune(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}
        if self.custom:
            out["custom_resources"] = dict(self.custom)
        return out


def resources_for(opts: SearchOptions, cpus: float, gpus: float, cluster: dict[str, float] | None = None) -> Resources:
    """Device and per-trial resources from the options and what the cluster has."""
    if opts.device == "cuda" and not gpus:
        raise UserError("--device cuda but the Ray cluster has no GPU; use --device cpu")
    if opts.gpus_per_trial and not gpus:
        raise UserError(f"--gpus-per-trial {opts.gpus_per_trial:g} but the Ray cluster has no GPU")
    device = opts.device or ("cuda" if gpus and opts.gpus_per_trial != 0 else "cpu")
    gpt = opts.gpus_per_trial if opts.gpus_per_trial is not None else (1.0 if device == "cuda" else 0.0)
    if device == "cuda" and gpt <= 0:
        raise UserError("--device cuda needs --gpus-per-trial above 0")
    if gpt > gpus and gpt > 0:
        raise UserError(f"--gpus-per-trial {gpt:g} but the Ray cluster has {gpus:g} GPUs")
    cpt = opts.cpus_per_trial or (1.0 if device == "cpu" else max(1.0, min(8.0, cpus // max(gpus, 1))))
    if cpt > cpus:
        raise UserError(f"--cpus-per-trial {cpt:g} but the Ray cluster has {cpus:g} CPUs")
    fit = int(cpus // cpt)
    if gpt > 0:
        fit = min(fit, int(gpus // gpt))
    custom = parse_resources(opts.trial_resources)
    for name, amount in custom.items():
        have = (cluster or {}).get(name, 0.0)
        if have < amount:
            raise UserError(f"--trial-resources {name}={amount:g} but the Ray cluster has {have:g} {name}")
        fit = min(fit, int(have // amount))
    concurrency = opts.max_concurrent or max(1, fit)
    return Resources(device=device, cpus_per_trial=cpt, gpus_per_trial=gpt, concurrency=concurrency,
                     custom=tuple(custom.items()))


def make_sampler(name: str, seed: int, trials: int) -> Any:
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 4)))
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    # Optuna's multi-objective default (TPE with constant liar, so running trials count as
    # pending and parallel workers spread out), plus multivariate TPE: the design parameters
    # interact (depth x width x group width all set the FLOPs).
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def print_plan(plan: Plan, settings: StudySettings, res: Resources, cluster_text: str, out: TextIO) -> None:
    s, sp = settings, plan.space
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
        f"{imgs(s.val_images, plan.n_val)} val images, {_n(s.epochs, 'epoch')}, batch {s.batch_size}, "
        f"lr {s.schedule['lr']:g}",
        f"trials    {_n(plan.opts.trials or 0, 'trained candidate')} in total, "
        f"{min(res.concurrency, plan.opts.trials or res.concurrency)} at a time on "
        f"{res.device} ({res.cpus_per_trial:g} CPU" + (f", {res.gpus_per_trial:g} GPU" if res.gpus_per_trial else "")
        + f" each); {plan.opts.sampler} sampler, seed {plan.opts.seed}; objectives "
        + ", ".join(f"{o} ({'max' if OBJECTIVES[o][0] else 'min'})" for o in s.objectives),
        f"ray       {cluster_text}",
        f"study     {plan.study_name} ({what}) in {plan.storage.display()}",
        "stopping  " + (f"MO-ASHA: rungs at epochs {', '.join(map(str, rungs(s)))}; the top "
                        f"1/{s.early_stopping['eta']} of each rung by {', '.join(s.objectives)} continues"
                        + _gate_text(s.early_stopping)
                        if s.early_stopping else "off: every candidate trains its whole schedule"),
    ]
    print("\n".join(lines), file=out, flush=True)
    for note in dict.fromkeys(plan.notes):
        print(f"note: {note}", file=sys.stderr, flush=True)


def _gate_text(es: dict[str, Any]) -> str:
    from nas.stopping import GATE_MIN_TAU

    n = es.get("gate_curves", 0)
    return (f", once the rung ranks like the final epoch (Kendall tau >= {GATE_MIN_TAU:g} over {n} completed "
            f"curves)" if n else "")


def _n(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def rungs(settings: StudySettings) -> list[int]:
    from nas.stopping import rung_epochs

    es = settings.early_stopping or {}
    return rung_epochs(es["grace"], es["eta"], settings.epochs) if es else []


def make_rule(settings: StudySettings, records: list[Any]) -> Any:
    """The study's MO-ASHA rule, its rung gate fed with every curve trained to the end; None when
    early stopping is off."""
    if not settings.early_stopping:
        return None
    from nas.stopping import MOASHA

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
    from nas.stopping_tune import ConfigKey, MOASHAScheduler

    objectives = settings.objectives
    preload = []
    for r in records:
        if not r.trained or r.outcome == "duplicate":
            continue
        for point in r.curve:
            vector = {"accuracy": point.get("accuracy"), "flops": r.get("flops"), "params": r.get("n_params"),
                      "latency": r.get("latency_ms")}
            if point.get("epoch") is not None and all(vector[o] is not None for o in objectives):
                preload.append((r.number, int(point["epoch"]), {o: vector[o] for o in objectives}))
    return MOASHAScheduler(rule, key=ConfigKey("nas", "trial_number"), preload=preload)


def _check_study(plan: Plan, device: str) -> tuple[Fidelity, StudySettings]:
    """The fidelity and settings for ``device``; refuses an existing study made with others."""
    import optuna

    from nas.study import check_existing

    fid = fidelity_for(plan.opts, gpu=device == "cuda")
    lr = plan.opts.lr or 0.1 * fid.batch_size / 256  # the linear scaling rule: 0.1 per 256 images
    settings = settings_for(plan, fid, lr)
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
    from nas.study import drivers

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
    """Run (or resume) a search. ``queue``: architectures to train before the sampler proposes any,
    as ``(params, arch_hash, attrs)``; one the study already holds is not queued again (``nas fidelity``
    retrains a study's candidates this way). ``study_attrs``: user attributes written on the study."""
    out = out or sys.stdout
    import optuna

    from nas.deferred_storage import DeferredStorage
    from nas.execution import Interrupt, connect, disconnect, run_tune
    from nas.progress import Progress, front_header, front_rows
    from nas.records import front
    from nas.searcher import StudySearcher
    from nas.study import Driver, enqueue_architectures, open_search_study
    from nas.text_table import render_table
    from nas.weights import WeightsKeeper, artifacts_dir
    from nas.workers.contract import TrialSpec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    plan = prepare(opts)
    # The defaults depend on the device, known for sure once the cluster is. A local cluster has
    # this machine's devices: check an existing study's settings before starting anything.
    if not (opts.address or os.environ.get("RAY_ADDRESS")):
        import torch

        guess = opts.device or ("cuda" if torch.cuda.is_available() and opts.gpus_per_trial != 0 else "cpu")
        _check_study(plan, guess)
    cluster = connect(opts.address)
    try:
        res = resources_for(opts, cluster.cpus, cluster.gpus, cluster.resources)
        fid, settings = _check_study(plan, res.device)
        plan.opts.trials = fid.trials
        print_plan(plan, settings, res, cluster.describe(), out)

        storage = DeferredStorage(optuna.storages.get_storage(open_storage(plan.storage)))
        study, _ = open_search_study(storage, plan.study_name, settings, plan.space_text,
                                     make_sampler(opts.sampler, opts.seed, fid.trials))
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
                         latency="latency" in plan.objectives, threads=max(1, int(res.cpus_per_trial)),
                         time_limit_s=opts.trial_timeout).to_dict()
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
                    scheduler = make_scheduler(settings, read_trials(study))
                    if scheduler is not None and scheduler.rule.gate is not None:
                        print(f"rungs     {scheduler.rule.gate.describe()}", file=out, flush=True)
                    run_tune(searcher, res.as_tune(), res.concurrency, interrupt, on_step=step, scheduler=scheduler)
            finally:
                if interrupt.event.is_set() or searcher.running or searcher.held:
                    searcher.interrupt_running()
                progress.close()
                driver.end()
        records = read_trials(study)
        members = front(records, settings.objectives)
        print(f"\nstudy {plan.study_name}: {progress.counts_text()}", file=out)
        if members:
            print(f"Pareto front ({len(members)} of {sum(r.trained for r in records)} trained):", file=out)
            print(render_table(front_header(settings.objectives, settings.space_resolution),
                               front_rows(members, settings.objectives)), file=out)
        storage_arg = "" if opts.storage is None else f" --storage {plan.storage.text}"
        study_arg = f" --study {plan.study_name}"
        print(f"next: nas dashboard{study_arg}{storage_arg}   nas export{study_arg}{storage_arg} --best -o best.yaml",
              file=out, flush=True)
        return interrupt.exit_code or 0
    finally:
        disconnect(cluster)
