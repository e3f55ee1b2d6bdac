"""Synthetic nas studies, made through Optuna's own API: for the dashboards' tests, benchmarks and screenshots.

    python bench/synthetic_study.py --storage sqlite:///synthetic.db -n 300 [--space resnest] [--budget 4GFLOPs]
    python bench/synthetic_study.py --storage sqlite:///synthetic.db --write-live [--interval 0.5] [--count 40]

A study follows the schema of ``nas.study.records`` exactly (study user attributes from
``StudySettings``, metric names, one value per objective, the trial user attributes and
constraints), so everything that reads a real ``nas search`` study reads it the same way.
The architectures are real points of a real space (decoded, hashed and counted by
``nas.search_spaces``); only the training is invented: accuracy rises with FLOPs (concave in
log FLOPs) plus design effects (radix, SE, group width, a deep third stage) plus noise, with
plausible learning curves, and a share of pruned, infeasible, invalid, failed, duplicate,
orphaned and interrupted trials.

Every study made here says it is synthetic: its name contains "synthetic" and it carries the
study user attribute ``synthetic: true``, so nobody mistakes it for a measurement.

``--write-live`` is a search-like writer: it adds trials one at a time with ask-and-tell, the
way ``nas search`` does (the trial is RUNNING while it "trains", then gets its attributes,
constraints and values), sleeping between steps, until ``--count`` trials or SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from nas import __version__
from nas.search_spaces.complexity_model import complexity
from nas.search_spaces.config import ArchConfig
from nas.search_spaces.optuna_bridge import distributions as space_distributions
from nas.search_spaces.registry import load_space
from nas.search_spaces.sampler import flops_range
from nas.search_spaces.space import SearchSpace
from nas.study.records import (
    COMPLETE,
    CONSTRAINT_HIGH,
    CONSTRAINT_LOW,
    DUPLICATE,
    FAILED,
    INFEASIBLE,
    INTERRUPTED,
    INVALID,
    OBJECTIVES,
    ORPHANED,
    PRUNED,
    SPACE_SOURCE_ATTR,
    StudySettings,
)

SYNTHETIC_ATTR = "synthetic"

# Share of each outcome among the proposals (the rest complete or get pruned by the early-stopping rule).
RATES = {FAILED: 0.03, ORPHANED: 0.005, INTERRUPTED: 0.005, DUPLICATE: 0.03, INFEASIBLE: 0.07, INVALID: 0.01}
FAILURE_REASONS = ("diverged: loss is nan at epoch {e}", "oom: CUDA out of memory at batch 256",
                   "error: RuntimeError in worker", "worker died (node lost)")


@dataclass
class SyntheticTrial:
    """One finished trial, as ``optuna.trial.create_trial`` takes it."""

    state: TrialState
    params: dict[str, Any]
    values: list[float] | None
    user_attrs: dict[str, Any]
    constraints: dict[str, float] = field(default_factory=dict)


@dataclass
class _Model:
    """The invented ground truth of one space: how accuracy follows from an architecture."""

    space: SearchSpace
    log_fmin: float
    log_fmax: float
    epochs: int
    latency: bool
    low: float
    high: float
    rng: random.Random
    finished: list[float] = field(default_factory=list)  # final accuracies so far (the pruning rule's peers)

    def final_accuracy(self, config: ArchConfig, flops: int) -> float:
        x = (math.log(flops) - self.log_fmin) / max(self.log_fmax - self.log_fmin, 1e-9)
        acc = 0.52 + 0.38 * math.sqrt(min(max(x, 0.0), 1.0))  # concave in log FLOPs: diminishing returns
        s = config.stages
        acc += {0: 0.0, 1: 0.006, 2: 0.012, 4: 0.004}.get(max(st.radix for st in s), 0.0)
        acc += 0.003 * sum(1 for st in s if st.se_ratio)
        acc -= 0.012 * math.log2(s[0].group_width / 24) ** 2  # a sweet spot, so the best range is visible
        if len(s) >= 3 and s[2].depth < max(st.depth for st in s):
            acc -= 0.01  # the third stage should be the deepest (as in ResNet-50)
        return min(max(acc + self.rng.gauss(0.0, 0.008), 0.05), 0.995)

    def curve(self, final: float, epochs: int) -> list[dict[str, Any]]:
        out = []
        for e in range(1, epochs + 1):
            frac = (1 - math.exp(-3.0 * e / self.epochs)) / (1 - math.exp(-3.0))
            acc = min(max(final * frac + self.rng.gauss(0.0, 0.004), 0.0), 1.0)
            out.append({"epoch": e, "accuracy": round(acc, 5), "loss": round(2.3 * (1.05 - acc), 5),
                        "lr": round(0.1 * 0.5 * (1 + math.cos(math.pi * (e - 1) / self.epochs)), 6)})
        return out

    def arch_attrs(self, config: ArchConfig) -> dict[str, Any]:
        cx = complexity(config)
        return {"arch": config.describe(), "arch_hash": config.arch_hash(), "config": config.to_dict(),
                "flops": cx.flops, "n_params": cx.params, "activations": cx.activations,
                "train_flops": cx.flops, "train_n_params": cx.params, "train_activations": cx.activations}

    def constraints(self, flops: float) -> dict[str, float]:
        out = {CONSTRAINT_HIGH: flops / self.high - 1.0}
        if self.low > 0:
            out[CONSTRAINT_LOW] = 1.0 - flops / self.low
        return out

    def run_attrs(self, flops: float, epochs: int) -> dict[str, Any]:
        wall = 40.0 * flops / 1e9 * epochs * self.rng.uniform(0.8, 1.25) + 5.0  # "GPU seconds", made up
        return {"wall_time_s": round(wall, 2), "images_per_s": round(50_000 * epochs / wall, 1),
                "device": "cuda:0", "host": "synthetic-host", "node": "synthetic-node",
                "worker_pid": self.rng.randint(1000, 60000), "peak_memory_mb": round(800 + flops / 2e6, 1)}

    def latency_ms(self, config: ArchConfig, flops: float) -> float:
        radix = max(st.radix for st in config.stages)
        return round((0.4 + flops / 1.2e9) * (1 + 0.12 * radix) * self.rng.uniform(0.95, 1.05), 3)

    def values(self, objectives: Sequence[str], attrs: dict[str, Any]) -> list[float]:
        key = {"accuracy": "accuracy", "flops": "flops", "params": "n_params", "latency": "latency_ms"}
        return [float(attrs[key[o]]) for o in objectives]


def settings_for(space: SearchSpace, low: float, high: float, objectives: Sequence[str], epochs: int) -> StudySettings:
    res = int(space.base.get("resolution", 224))
    return StudySettings(
        space=space.name, space_fingerprint=hashlib.sha256(space.source.encode()).hexdigest()[:12],
        space_resolution=res, budget_low=low, budget_high=high, dataset="synthetic", train_resolution=res,
        classes=int(space.base.get("classes", 1000)), train_images=50_000, val_images=10_000, epochs=epochs,
        batch_size=256, schedule={"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                                  "warmup_epochs": 1, "decay": "cosine"},
        objectives=tuple(objectives), early_stopping={"grace": max(1, epochs // 4), "eta": 2},
        nas_version=__version__, created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def _model(space: SearchSpace, low: float, high: float, epochs: int, latency: bool, seed: int) -> _Model:
    fmin, fmax, _ = flops_range(space)
    return _Model(space=space, log_fmin=math.log(max(fmin, 1)), log_fmax=math.log(max(fmax, 2)), epochs=epochs,
                  latency=latency, low=low, high=high, rng=random.Random(seed))


def _draw(m: _Model) -> tuple[dict[str, Any], ArchConfig | None, str]:
    """A proposal as a budget-aware sampler makes it: mostly valid and inside the budget."""
    rng = m.rng
    while True:
        values = m.space.draw(rng)
        config = m.space.try_decode(values)
        if config is None:
            if rng.random() < RATES[INVALID] * 20:
                return values, None, INVALID
            continue
        flops = complexity(config).flops
        if m.low <= flops <= m.high:
            return values, config, COMPLETE
        if rng.random() < RATES[INFEASIBLE]:
            return values, config, INFEASIBLE


def _trained(m: _Model, values: dict[str, Any], config: ArchConfig, objectives: Sequence[str],
             roll: float) -> SyntheticTrial:
    """Train (invent) one in-budget candidate: complete, pruned by the early-stopping rule, or failed."""
    rng = m.rng
    attrs = m.arch_attrs(config)
    flops = attrs["flops"]
    final = m.final_accuracy(config, flops)
    if m.latency:
        attrs["latency_ms"] = m.latency_ms(config, flops)
    constraints = m.constraints(flops)
    failed_cut = RATES[FAILED]
    retry_cut = failed_cut + RATES[ORPHANED] + RATES[INTERRUPTED]
    if roll < retry_cut:
        outcome = FAILED if roll < failed_cut else (ORPHANED if roll < failed_cut + RATES[ORPHANED] else INTERRUPTED)
        stop = rng.randint(1, m.epochs)
        curve = m.curve(final, stop - 1) if outcome == FAILED else m.curve(final, stop)
        attrs.update(outcome=outcome, curve=curve, epochs=len(curve),
                     reason=(rng.choice(FAILURE_REASONS).format(e=stop) if outcome == FAILED
                             else "its driver died" if outcome == ORPHANED else "stopped by the user"),
                     **m.run_attrs(flops, len(curve)))
        if curve:
            attrs["accuracy"] = curve[-1]["accuracy"]
        return SyntheticTrial(TrialState.FAIL, values, None, attrs, constraints)
    # The early-stopping rule: a weak candidate stops at a rung (grace epochs, then eta-fold later).
    grace = max(1, m.epochs // 4)
    peers = sorted(m.finished)
    weak = len(peers) >= 10 and final < peers[int(0.45 * len(peers))]
    if weak and rng.random() < 0.75:
        stop = grace if rng.random() < 0.6 else min(m.epochs - 1, grace * 2)
        curve = m.curve(final, stop)
        attrs.update(outcome=PRUNED, curve=curve, epochs=stop, accuracy=curve[-1]["accuracy"],
                     best_accuracy=max(p["accuracy"] for p in curve), **m.run_attrs(flops, stop))
        m.finished.append(final)
        return SyntheticTrial(TrialState.PRUNED, values, None, attrs, constraints)
    curve = m.curve(final, m.epochs)
    curve[-1]["accuracy"] = round(final, 5)
    attrs.update(outcome=COMPLETE, curve=curve, epochs=m.epochs, accuracy=round(final, 5),
                 best_accuracy=max(p["accuracy"] for p in curve), **m.run_attrs(flops, m.epochs))
    m.finished.append(final)
    return SyntheticTrial(TrialState.COMPLETE, values, m.values(objectives, attrs), attrs, constraints)


def synthesize(space: SearchSpace, n: int, *, low: float = 0.0, high: float = 4e9,
               objectives: Sequence[str] = ("accuracy", "flops"), epochs: int = 10, latency: bool = False,
               seed: int = 0) -> Iterator[SyntheticTrial]:
    """``n`` finished trials of a search over ``space`` within ``[low, high]`` FLOPs."""
    m = _model(space, low, high, epochs, latency or "latency" in objectives, seed)
    rng = m.rng
    done: list[tuple[int, SyntheticTrial]] = []  # complete trials: what a duplicate can repeat
    for number in range(n):
        roll = rng.random()
        if done and roll < RATES[DUPLICATE]:
            orig_number, orig = rng.choice(done)
            attrs = {**orig.user_attrs, "outcome": DUPLICATE, "duplicate_of": orig_number, "wall_time_s": 0.0}
            yield SyntheticTrial(TrialState.COMPLETE, orig.params, orig.values, attrs, orig.constraints)
            continue
        values, config, kind = _draw(m)
        if kind == INVALID:
            yield SyntheticTrial(TrialState.PRUNED, values, None,
                                 {"outcome": INVALID, "reason": "the parameters are no valid network"})
            continue
        assert config is not None
        if kind == INFEASIBLE:
            attrs = {**m.arch_attrs(config), "outcome": INFEASIBLE,
                     "reason": f"{config.describe()} is outside the budget"}
            yield SyntheticTrial(TrialState.PRUNED, values, None, attrs, m.constraints(attrs["flops"]))
            continue
        trial = _trained(m, values, config, objectives, rng.random())
        if trial.state == TrialState.COMPLETE:
            done.append((number, trial))
        yield trial


def create_synthetic_study(storage: Any, name: str, space: SearchSpace, *, low: float, high: float,
                           objectives: Sequence[str], epochs: int) -> optuna.Study:
    """An empty study with the settings, metric names and marks that ``nas search`` would give it."""
    if "synthetic" not in name:
        name = f"synthetic-{name}"
    study = optuna.create_study(storage=storage, study_name=name,
                                directions=["maximize" if OBJECTIVES[o][0] else "minimize" for o in objectives])
    with warnings.catch_warnings():  # experimental since Optuna 3.2, and the schema's way to name objectives
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(objectives))
    for key, value in settings_for(space, low, high, objectives, epochs).to_attrs().items():
        study.set_user_attr(key, value)
    study.set_user_attr(SYNTHETIC_ATTR, True)
    # No public setter for study system attributes; the storage's is what Optuna itself uses.
    study._storage.set_study_system_attr(study._study_id, SPACE_SOURCE_ATTR, space.source)
    return study


def make_study(storage: Any, name: str | None = None, *, space: str = "resnest", n: int = 300,
               low: float = 0.0, high: float = 4e9, objectives: Sequence[str] = ("accuracy", "flops"),
               epochs: int = 10, latency: bool = False, seed: int = 0) -> optuna.Study:
    """Create a synthetic study of ``n`` finished trials in ``storage`` (an Optuna storage or URL)."""
    sp = load_space(space)
    name = name or f"synthetic-{sp.name}-{n}"
    study = create_synthetic_study(storage, name, sp, low=low, high=high, objectives=objectives, epochs=epochs)
    dists = space_distributions(sp)
    batch: list[optuna.trial.FrozenTrial] = []
    for t in synthesize(sp, n, low=low, high=high, objectives=objectives, epochs=epochs, latency=latency,
                        seed=seed):
        batch.append(_frozen(t, dists))
        if len(batch) == 500:
            study.add_trials(batch)
            batch = []
    study.add_trials(batch)
    return study


def _frozen(t: SyntheticTrial, dists: dict[str, BaseDistribution]) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        state=t.state, values=t.values, params=t.params, distributions={k: dists[k] for k in t.params},
        user_attrs=t.user_attrs, constraints=t.constraints or None)


# ---- the search-like writer --------------------------------------------------------------------------------


def write_live(storage: Any, name: str, *, space: str = "resnest-cifar", interval: float = 0.5, count: int = 0,
               low: float = 0.0, high: float | None = None, objectives: Sequence[str] = ("accuracy", "flops"),
               epochs: int = 6, seed: int = 0, log: Any = None) -> int:
    """Add trials with ask-and-tell until ``count`` (0: for ever) or SIGTERM/SIGINT; returns trials told.

    Each trial is RUNNING for ``interval`` seconds with its architecture attributes set (what a
    dashboard sees while a candidate trains), then gets its curve, metrics, constraints and
    state, as ``nas search`` records it."""
    sp = load_space(space)
    if high is None:
        fmin, fmax, _ = flops_range(sp)
        high = fmin + 0.5 * (fmax - fmin)
    try:
        study = optuna.load_study(study_name=name, storage=storage,
                                  sampler=optuna.samplers.RandomSampler(seed=seed))
    except KeyError:
        create_synthetic_study(storage, name, sp, low=low, high=high, objectives=objectives, epochs=epochs)
        study = optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=seed))
    m = _model(sp, low, high, epochs, "latency" in objectives, seed)
    dists = space_distributions(sp)
    stop = False

    def _stop(_sig: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    # Stop between trials on SIGTERM/SIGINT (never mid-write); the caller's handlers come back after.
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)} \
        if threading.current_thread() is threading.main_thread() else {}
    try:
        return _write(study, sp, m, dists, objectives, interval, count, log, lambda: stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _write(study: optuna.Study, sp: SearchSpace, m: _Model, dists: dict[str, BaseDistribution],
           objectives: Sequence[str], interval: float, count: int, log: Any, stopped: Any) -> int:
    told = 0
    while not stopped() and (count <= 0 or told < count):
        trial = study.ask(dists)
        config = sp.try_decode(dict(trial.params))
        if config is None:
            trial.set_user_attr("outcome", INVALID)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            arch = m.arch_attrs(config)
            for k, v in arch.items():
                trial.set_user_attr(k, v)
            for k, v in m.constraints(arch["flops"]).items():
                trial.set_constraint(k, v)
            if not m.low <= arch["flops"] <= m.high:  # never trained: told at once
                trial.set_user_attr("outcome", INFEASIBLE)
                study.tell(trial, state=TrialState.PRUNED)
            else:
                time.sleep(interval)  # "training": the trial is RUNNING meanwhile
                done = _trained(m, trial.params, config, objectives, m.rng.random())
                for k, v in done.user_attrs.items():
                    trial.set_user_attr(k, v)
                study.tell(trial, done.values, state=done.state)
        told += 1
        if log is not None:
            print(f"trial {trial.number} told", file=log, flush=True)
    return told


# ---- command line --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    from nas.common.budget import parse_budget
    from nas.study.storage import open_storage

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--storage", required=True, help="Optuna storage URL (sqlite:///file.db, journal:FILE, ...)")
    ap.add_argument("--name", help="study name (made to contain 'synthetic')")
    ap.add_argument("--space", default=None, help="built-in space (default resnest; resnest-cifar for --write-live)")
    ap.add_argument("-n", type=int, default=300, help="trials (default 300)")
    ap.add_argument("--budget", default=None, help="FLOP budget, e.g. 4GFLOPs or 3-4GFLOPs (default 4GFLOPs; "
                                                   "for --write-live the middle of the space's range)")
    ap.add_argument("--objectives", default="accuracy,flops", help="comma-separated (default accuracy,flops)")
    ap.add_argument("--latency", action="store_true", help="measure latency_ms even if it is no objective")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-live", action="store_true", help="keep adding trials slowly (a search-like writer)")
    ap.add_argument("--interval", type=float, default=0.5, help="--write-live: seconds each trial runs")
    ap.add_argument("--count", type=int, default=0, help="--write-live: stop after this many trials (0: never)")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objectives = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown or not objectives or objectives[0] != "accuracy":
        ap.error(f"objectives must start with accuracy and be among {', '.join(OBJECTIVES)}")
    budget = parse_budget(args.budget) if args.budget else None
    storage = open_storage(args.storage)
    if args.write_live:
        name = args.name or "synthetic-live"
        name = name if "synthetic" in name else f"synthetic-{name}"
        told = write_live(storage, name, space=args.space or "resnest-cifar", interval=args.interval,
                          count=args.count, low=budget.low if budget else 0.0, high=budget.high if budget else None,
                          objectives=objectives, epochs=args.epochs, seed=args.seed,
                          log=sys.stdout if os.environ.get("SYNTHETIC_VERBOSE") else None)
        print(f"{name}: {told} trials written")
        return 0
    study = make_study(storage, args.name, space=args.space or "resnest", n=args.n,
                       low=budget.low if budget else 0.0, high=budget.high if budget else 4e9,
                       objectives=objectives, epochs=args.epochs, latency=args.latency, seed=args.seed)
    print(study.study_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
