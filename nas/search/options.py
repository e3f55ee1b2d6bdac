"""The search driver: from the user's options to a finished study.

Order matters for the promise "a mistake is one line, within seconds, and writes nothing":
:func:`prepare` checks everything that needs no cluster (space, budget, objectives, sampler,
storage URL, dataset, an existing study's settings) without writing; :func:`run_search` then
starts or joins Ray, checks the cluster's resources, and only then creates or opens the study.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.common.budget import Budget, parse_budget
from nas.common.errors import UserError
from nas.common.units import format_flops
from nas.search_spaces.registry import load_space
from nas.search_spaces.sampler import check_budget, flops_range
from nas.search_spaces.space import SearchSpace
from nas.study.records import OBJECTIVES, StudySettings
from nas.study.storage import StorageURL, parse_storage

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
    sampler: str | None = None  # tpe; random for a population
    population: bool = False
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
    latency_runtime: str | None = None  # NAME[:DEVICE]: torch (default), torch-compile, onnxruntime
    max_latency: str | None = None  # a latency budget at batch 1: 8ms, 0.5s


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


def default_lr(batch_size: int) -> float:
    """The peak learning rate when none is given: the linear scaling rule, 0.1 per 256 images."""
    return 0.1 * batch_size / 256


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
    #: set by the run's study check: the (device, fidelity, settings) it checked, so a second check for
    #: the same device (a local cluster's) is not made again
    checked: tuple[str, Any, Any] | None = None
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
    if opts.population:
        if opts.sampler not in (None, "random"):
            raise UserError(f"--population samples uniformly at random; drop --sampler {opts.sampler} (an adaptive "
                            f"sampler's models describe its preferences, not the space)")
        if opts.grace is not None or opts.rung_evidence is not None:
            raise UserError("--population trains every candidate to the end (a stopped model truncates the error "
                            "distribution); drop --grace and --rung-evidence")
        opts.sampler, opts.early_stopping = "random", False
    opts.sampler = opts.sampler or "tpe"
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
    check_latency_options(opts, objectives)
    if opts.eta < 2:
        raise UserError(f"--eta must be at least 2 (the top 1/eta of each rung continues), got {opts.eta}")
    _positive("grace", opts.grace)
    if opts.rung_evidence is not None and opts.rung_evidence < 0:
        raise UserError(f"--rung-evidence must be 0 (no gate) or more completed curves, got {opts.rung_evidence}")
    storage = parse_storage(opts.storage)

    from nas.workers.datasets import dataset_info

    dataset = _absolute_dataset(opts.dataset)
    info = dataset_info(dataset, resolution=opts.resolution)  # counted: no image is made in the driver
    n_train, n_val = info.train, info.val
    for name, value, have in (("train-images", opts.train_images, n_train), ("val-images", opts.val_images, n_val)):
        if value is not None and value > have:
            raise UserError(f"--{name} {value} but dataset {info.name} has {have} {name.split('-')[0]} images")
    plan = Plan(opts=opts, space=space, space_text=_space_text(opts.space, space), budget=budget,
                objectives=objectives, storage=storage, study_name=opts.study or default_study_name(space, budget),
                dataset_name=dataset, classes=info.num_classes, n_train=n_train, n_val=n_val)
    lo, hi, exact = flops_range(space)
    if exact and budget.high >= hi and budget.low <= lo:
        plan.notes.append(f"the budget {budget} holds every network of space {space.name} (at most "
                          f"{format_flops(hi)}): it rules nothing out")
    opts.dataset = dataset
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
    from nas.stopping.rule import GATE_MIN_CURVES

    return GATE_MIN_CURVES if opts.rung_evidence is None else opts.rung_evidence


#: The throughput batch timed after batch 1, by the device latency is measured on.
LATENCY_BATCH = {"cpu": 8, "cuda": 64}


def check_latency_options(opts: SearchOptions, objectives: tuple[str, ...]) -> None:
    """The latency options, read and checked without a cluster: a runtime must be known and installed
    here, a budget a positive time. A latency budget is a constraint, so any objective list can have
    one (latency is then measured and recorded even when it is no objective); a runtime with nothing
    to measure (no latency objective and no budget) is refused."""
    from nas.workers.contract import parse_latency_ms, parse_runtime

    if opts.max_latency is not None:
        parse_latency_ms(opts.max_latency)
    if opts.latency_runtime is None:
        return
    runtime, device = parse_runtime(opts.latency_runtime, opts.device or "cpu")  # an unknown name first
    if "latency" not in objectives and opts.max_latency is None:
        raise UserError(f"--latency-runtime {opts.latency_runtime}: nothing measures latency; add latency to "
                        f"--objectives (accuracy,latency) or give a --max-latency budget")
    if runtime == "onnxruntime" or device == "cpu":  # CUDA is checked against the cluster's devices
        from nas.workers.deployment_latency import check_runtime

        check_runtime(runtime, "cpu")


def latency_plan(opts: SearchOptions, objectives: tuple[str, ...], device: str) -> dict[str, Any] | None:
    """How this search measures deployment latency (``LatencyPlan.to_dict``), for candidates trained on
    ``device``; None when nothing needs latency. The runtime's device defaults to the training device;
    one on a GPU needs candidates that train on one (the worker that would train a candidate measures it).
    Threads: the whole CPUs of ``--cpus-per-trial`` (default 1)."""
    from nas.workers.contract import LatencyPlan, parse_latency_ms, parse_runtime

    if "latency" not in objectives and opts.max_latency is None:
        return None
    runtime, where = parse_runtime(opts.latency_runtime or "torch", device)
    if where == "cuda" and device != "cuda":
        raise UserError(f"--latency-runtime {runtime}:cuda times the deployed network on the GPU of the worker "
                        f"that trains it, but candidates train on {device} here (the cluster has no GPU, or "
                        f"--device cpu); use {runtime}:cpu")
    max_ms = parse_latency_ms(opts.max_latency) if opts.max_latency is not None else None
    return LatencyPlan(runtime=runtime, device=where, threads=max(1, int(opts.cpus_per_trial or 1)),
                       batch_sizes=(1, LATENCY_BATCH[where]), max_ms=max_ms).to_dict()


def settings_for(plan: Plan, fid: Fidelity, lr: float, device: str = "cpu") -> StudySettings:
    from nas.study.lifecycle import fingerprint, new_settings
    from nas.workers.contract import Schedule

    schedule = Schedule(epochs=fid.epochs, batch_size=fid.batch_size, lr=lr,
                        warmup_epochs=min(1.0, fid.epochs / 10), seed=plan.opts.train_seed).to_dict()
    return new_settings(
        space=plan.space.name, space_fingerprint=fingerprint(plan.space_text),
        space_resolution=int(plan.space.base.get("resolution", 224)), budget_low=plan.budget.low,
        budget_high=plan.budget.high, dataset=plan.dataset_name, train_resolution=plan.opts.resolution,
        classes=plan.classes, train_images=fid.train_images, val_images=fid.val_images, epochs=fid.epochs,
        batch_size=fid.batch_size, schedule=schedule, objectives=plan.objectives,
        early_stopping=early_stopping_for(plan.opts, fid.epochs, plan.notes), population=plan.opts.population,
        space_file=str(Path(plan.opts.space).resolve()) if Path(plan.opts.space).is_file() else None,
        latency=latency_plan(plan.opts, plan.objectives, device))


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
