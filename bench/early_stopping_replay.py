"""Early stopping replayed on recorded learning curves: hypervolume of (accuracy, FLOPs) against epochs trained.

    python bench/early_stopping_replay.py bench/data/CURVES.json [--seeds 20] [--workers 4] [--html replay.html]
    python bench/early_stopping_replay.py --synthetic /tmp/synthetic-curves.json [--candidates 200 --epochs 27]

For each seed, a random sampler's trial order (a random permutation of the candidates) runs on W
simulated asynchronous workers; an epoch of a candidate takes its ``epoch_seconds`` from the file,
or a time proportional to its FLOPs. Each epoch's validation accuracy is handed, in order of
finish time, to one of four policies:

(a) ``none``: no early stopping, every candidate trains its whole schedule;
(b) ``median``: Ray Tune's ``MedianStoppingRule`` on accuracy (its own class);
(c) ``asha``: Ray Tune's ``ASHAScheduler`` on accuracy alone (its own class);
(d) ``moasha``: ours, :class:`nas.stopping.rule.MOASHA` on accuracy and FLOPs (``--objectives``).

(b) and (c) are driven through their own ``on_trial_add`` / ``on_trial_result`` /
``on_trial_complete`` with a lightweight trial object: ``ASHAScheduler`` reads only
``trial.trial_id``; ``MedianStoppingRule`` keys its results by the trial object (hashed by identity)
and, short of samples, asks the controller's ``get_live_trials()`` for PENDING/PAUSED trials to
yield to: the fake controller shows none, so it continues (a search whose searcher proposes one
trial at a time has none pending). A STOP ends the trial there and Tune then calls
``on_trial_complete`` with its last result, as here. A decision at a trial's last epoch changes
nothing (the trial is complete); for (d) the replay also counts how often the rule would have
stopped a final epoch (it must be zero).

Reported: the hypervolume of the *completed* trials only (a stopped trial's partial accuracy never
counts) over (final accuracy maximised, FLOPs minimised) from a fixed reference point (by default
the lowest final accuracy and 1.05 x the largest FLOPs in the file), as a share of the hypervolume
of the whole pool (every candidate complete: (a)'s final value whatever the order), against
cumulative epochs trained (stopped trials' epochs included), mean and spread across seeds: a text
table and, with ``--html``, a self-contained Plotly page.

Curves file (JSON), one object::

    {
      "format": "nas-curves/1",
      "synthetic": false,                 # true for files made by --synthetic: shown everywhere
      "description": "what was trained, on what, with which schedule",
      "max_epochs": 27,                   # the full schedule; every curve has exactly this many epochs
      "candidates": [
        {"arch_hash": "3f2a...", "flops": 41200000, "params": 512000,
         "accuracy": [0.31, 0.45, ...],   # validation top-1 after each epoch 1..max_epochs
         "epoch_seconds": 12.5}           # optional: measured time per epoch
      ]
    }
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.common.pareto import hypervolume, pareto_front
from nas.common.text_table import render_table
from nas.stopping.rule import GATE_MIN_CURVES, MOASHA, STOP, rung_epochs

FORMAT = "nas-curves/1"
POLICIES = ("none", "median", "asha", "moasha", "gated")
LABELS = {"none": "(a) no early stopping", "median": "(b) median stopping (Tune)",
          "asha": "(c) ASHA on accuracy (Tune)", "moasha": "(d) MO-ASHA, fixed rungs",
          "gated": "(e) MO-ASHA, rungs gated by evidence (default)"}
MAXIMISE = {"accuracy": True, "flops": False, "params": False}
BUDGET_SHARES = (0.05, 0.1, 0.2, 1 / 3, 0.5, 1.0)  # of (a)'s epochs: where the table compares policies


# ---- curves -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    arch_hash: str
    flops: float
    params: float
    accuracy: tuple[float, ...]
    epoch_seconds: float | None = None


@dataclass(frozen=True)
class Curves:
    candidates: tuple[Candidate, ...]
    max_epochs: int
    synthetic: bool
    description: str
    path: str = ""

    @property
    def label(self) -> str:
        return "SYNTHETIC curves" if self.synthetic else "measured curves"


def load_curves(path: str | Path) -> Curves:
    """Read and check a curves file (format in the module doc)."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != FORMAT:
        raise SystemExit(f"error: {path}: not a {FORMAT} curves file (format {data.get('format')!r})")
    max_epochs = int(data["max_epochs"])
    candidates = []
    for k, c in enumerate(data["candidates"]):
        acc = tuple(float(a) for a in c["accuracy"])
        if len(acc) != max_epochs:
            raise SystemExit(f"error: {path}: candidate {k} ({c.get('arch_hash')}) has {len(acc)} epochs, "
                             f"the schedule {max_epochs}")
        seconds = c.get("epoch_seconds")
        candidates.append(Candidate(str(c["arch_hash"]), float(c["flops"]), float(c["params"]), acc,
                                    None if seconds is None else float(seconds)))
    if len(candidates) < 2:
        raise SystemExit(f"error: {path}: needs at least 2 candidates")
    return Curves(tuple(candidates), max_epochs, bool(data.get("synthetic", False)),
                  str(data.get("description", "")), str(path))


SYNTHETIC_STYLES = ("default", "slow-large")


def synthetic_curves(n: int = 200, max_epochs: int = 27, seed: int = 0, style: str = "default") -> dict[str, Any]:
    """A SYNTHETIC curves file: CIFAR-sized ResNeXt-like candidates (5-200 MFLOPs) whose final
    accuracy rises with log FLOPs (concave) plus architectural luck, with curves that converge at
    different speeds (larger models somewhat faster per epoch, as wider and deeper CNNs usually do,
    and late bloomers among all), a cosine-schedule finish and per-epoch validation noise: the rank
    correlation of accuracy at epochs 1, 3, 9 of 27 with the final one is about 0.7, 0.75, 0.9.
    ``style="slow-large"`` makes larger models converge more slowly in epochs instead, so early
    rungs underrate them (negative correlation at epochs 1 and 3): the hard case for any rule that
    ranks by early accuracy, and more so with FLOPs as an objective."""
    if style not in SYNTHETIC_STYLES:
        raise ValueError(f"style must be one of {SYNTHETIC_STYLES}")
    rng = random.Random(seed)
    lo, hi = math.log(5e6), math.log(2e8)
    chance = 0.1
    out = []
    for i in range(n):
        log_flops = rng.uniform(lo, hi)
        capacity = (log_flops - lo) / (hi - lo)
        flops = math.exp(log_flops)
        final = min(0.97, max(0.3, 0.70 + 0.22 * capacity ** 0.6 + rng.gauss(0, 0.025)))
        tau = 3.0 * (1.3 - 0.6 * capacity) * rng.lognormvariate(0, 0.25)  # epochs to converge
        if style == "slow-large":
            tau = (1.5 + 4.0 * capacity) * rng.lognormvariate(0, 0.45)
        curve = []
        for e in range(1, max_epochs + 1):
            progress = 0.8 * (1 - math.exp(-e / tau)) + 0.2 * (1 - math.cos(math.pi * e / max_epochs)) / 2
            noise = rng.gauss(0, 0.006 * (1 - e / max_epochs) + 0.002)
            curve.append(round(min(1.0, max(0.0, chance + (final - chance) * progress + noise)), 4))
        out.append({"arch_hash": f"synthetic-{i:04d}", "flops": round(flops),
                    "params": round(flops / rng.uniform(40, 120)), "accuracy": curve})
    return {"format": FORMAT, "synthetic": True,
            "description": f"SYNTHETIC learning curves (bench/early_stopping_replay.py --synthetic, style {style}, "
                           f"seed {seed}): {n} invented candidates, {max_epochs} epochs; not a measurement",
            "max_epochs": max_epochs, "candidates": out}


# ---- policies ---------------------------------------------------------------------------------

class _FakeTrial:
    """What Tune's ASHAScheduler and MedianStoppingRule read of a trial: its id (and, for the
    median rule, the object itself as a dict key: hashed by identity)."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id
        self.status = "RUNNING"

    def __repr__(self) -> str:
        return f"Trial({self.trial_id})"


class _FakeController:
    def get_live_trials(self) -> list[_FakeTrial]:
        return []  # nobody pending: the median rule continues when it lacks samples


class Policy:
    """Decides after each epoch; ``stop`` is ignored at a trial's last epoch (it is complete)."""

    def add(self, trial: int) -> None: ...

    def result(self, trial: int, epoch: int, accuracy: float, cand: Candidate) -> bool:
        return False

    def complete(self, trial: int, epoch: int, accuracy: float, cand: Candidate) -> None: ...


class TunePolicy(Policy):
    """One of Ray Tune's schedulers, driven through its own callbacks."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler, self.controller, self.trials = scheduler, _FakeController(), {}

    def add(self, trial: int) -> None:
        self.trials[trial] = _FakeTrial(f"t{trial:05d}")
        self.scheduler.on_trial_add(self.controller, self.trials[trial])

    def result(self, trial: int, epoch: int, accuracy: float, cand: Candidate) -> bool:
        decision = self.scheduler.on_trial_result(self.controller, self.trials[trial],
                                                  {"epoch": epoch, "accuracy": accuracy})
        return decision == "STOP"

    def complete(self, trial: int, epoch: int, accuracy: float, cand: Candidate) -> None:
        self.scheduler.on_trial_complete(self.controller, self.trials[trial], {"epoch": epoch, "accuracy": accuracy})


class MOASHAPolicy(Policy):
    def __init__(self, rule: MOASHA) -> None:
        self.rule = rule
        self.final_stops = 0  # decisions "stop" at a last epoch: must stay 0

    def complete(self, trial: int, epoch: int, accuracy: float, cand: Candidate) -> None:
        if self.rule.gate is not None and epoch >= self.rule.max_epochs:  # a whole curve: the gate's evidence
            self.rule.gate.add_curve(trial, {e + 1: a for e, a in enumerate(cand.accuracy)})

    def result(self, trial: int, epoch: int, accuracy: float, cand: Candidate) -> bool:
        values = {"accuracy": accuracy, "flops": cand.flops, "params": cand.params}
        stop = self.rule.on_result(trial, epoch, [values[o] for o in self.rule.objectives]) == STOP
        if stop and epoch >= self.rule.max_epochs:
            self.final_stops += 1
        return stop


def make_policy(name: str, max_epochs: int, grace: int, eta: int, objectives: Sequence[str]) -> Policy:
    if name == "none":
        return Policy()
    if name in ("moasha", "gated"):
        return MOASHAPolicy(MOASHA(objectives, [MAXIMISE[o] for o in objectives], max_epochs, grace, eta,
                                   gate_curves=GATE_MIN_CURVES if name == "gated" else 0))
    from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule

    if name == "median":
        return TunePolicy(MedianStoppingRule(time_attr="epoch", metric="accuracy", mode="max", grace_period=grace,
                                             min_samples_required=3, hard_stop=True))
    if name == "asha":
        return TunePolicy(ASHAScheduler(time_attr="epoch", metric="accuracy", mode="max", max_t=max_epochs,
                                        grace_period=grace, reduction_factor=eta, brackets=1))
    raise ValueError(f"unknown policy {name!r}")


# ---- replay -----------------------------------------------------------------------------------

@dataclass
class Run:
    """One policy on one trial order: the hypervolume after each completion, against epochs."""
    policy: str
    seed: int
    epochs: list[int] = field(default_factory=list)  # cumulative epochs trained at each completion
    hv: list[float] = field(default_factory=list)  # hypervolume of the completed trials then
    total_epochs: int = 0
    makespan: float = 0.0  # simulated time until the last worker is idle
    completed: int = 0
    stopped: dict[int, int] = field(default_factory=dict)  # candidate -> epoch stopped at
    final_stops: int = 0

    def hv_at(self, epochs: float) -> float:
        """The hypervolume reached within ``epochs`` epochs trained (0 before any completion)."""
        k = bisect.bisect_right(self.epochs, epochs)
        return self.hv[k - 1] if k else 0.0

    def epochs_to(self, target: float) -> int | None:
        for e, h in zip(self.epochs, self.hv):
            if h >= target * (1 - 1e-9):
                return e
        return None


def replay(curves: Curves, order: Sequence[int], workers: int, policy: Policy, reference: tuple[float, float],
           name: str = "", seed: int = 0) -> Run:
    """Run ``order`` on ``workers`` simulated workers under ``policy``."""
    mean_flops = statistics.fmean(c.flops for c in curves.candidates)
    run = Run(name, seed)
    queue = list(order)[::-1]
    events: list[tuple[float, int, int, int, int]] = []  # (finish time, sequence, worker, candidate, epoch)
    seq = 0
    front: list[tuple[float, float]] = []

    def duration(c: Candidate) -> float:
        return c.epoch_seconds if c.epoch_seconds is not None else c.flops / mean_flops

    def start(worker: int, now: float) -> None:
        nonlocal seq
        if queue:
            k = queue.pop()
            policy.add(k)
            heapq.heappush(events, (now + duration(curves.candidates[k]), seq, worker, k, 1))
            seq += 1

    for w in range(min(workers, len(order))):
        start(w, 0.0)
    while events:
        now, _, worker, k, epoch = heapq.heappop(events)
        cand = curves.candidates[k]
        acc = cand.accuracy[epoch - 1]
        run.total_epochs += 1
        stop = policy.result(k, epoch, acc, cand)
        if epoch == curves.max_epochs:
            policy.complete(k, epoch, acc, cand)
            run.completed += 1
            front.append((-acc, cand.flops))
            front = [front[i] for i in pareto_front(front)]
            run.epochs.append(run.total_epochs)
            run.hv.append(hypervolume(front, reference))
            start(worker, now)
        elif stop:
            policy.complete(k, epoch, acc, cand)
            run.stopped[k] = epoch
            start(worker, now)
        else:
            heapq.heappush(events, (now + duration(cand), seq, worker, k, epoch + 1))
            seq += 1
        run.makespan = now
    run.final_stops = getattr(policy, "final_stops", 0)
    return run


def reference_point(curves: Curves, ref_accuracy: float | None = None,
                    ref_flops: float | None = None) -> tuple[float, float]:
    """The fixed reference, as a minimisation vector (-accuracy, flops)."""
    acc = min(c.accuracy[-1] for c in curves.candidates) if ref_accuracy is None else ref_accuracy
    flops = 1.05 * max(c.flops for c in curves.candidates) if ref_flops is None else ref_flops
    return (-acc, flops)


def replay_all(curves: Curves, seeds: int, workers: int, grace: int, eta: int, objectives: Sequence[str],
               reference: tuple[float, float], policies: Sequence[str] = POLICIES) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {p: [] for p in policies}
    for seed in range(seeds):
        order = list(range(len(curves.candidates)))
        random.Random(seed).shuffle(order)
        for p in policies:
            runs[p].append(replay(curves, order, workers, make_policy(p, curves.max_epochs, grace, eta, objectives),
                                  reference, p, seed))
    return runs


# ---- report -----------------------------------------------------------------------------------

def _mean_sd(xs: Sequence[float]) -> tuple[float, float]:
    return (statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def summarise(curves: Curves, runs: dict[str, list[Run]], reference: tuple[float, float], *, workers: int,
              grace: int, eta: int, objectives: Sequence[str]) -> dict[str, Any]:
    """Numbers for the tables, the targets and the plot; hypervolumes as shares of the pool's."""
    pool = hypervolume([(-c.accuracy[-1], c.flops) for c in curves.candidates], reference)
    full = len(curves.candidates) * curves.max_epochs
    out: dict[str, Any] = {
        "curves": curves.path, "synthetic": curves.synthetic, "description": curves.description,
        "candidates": len(curves.candidates), "max_epochs": curves.max_epochs, "workers": workers,
        "seeds": len(next(iter(runs.values()))), "grace": grace, "eta": eta, "objectives": list(objectives),
        "reference": {"accuracy": -reference[0], "flops": reference[1]}, "pool_hypervolume": pool,
        "full_epochs": full, "policies": {},
    }
    for p, rs in runs.items():
        reach = [r.epochs_to(pool) for r in rs]
        reach99 = [r.epochs_to(0.99 * pool) for r in rs]
        reach95 = [r.epochs_to(0.95 * pool) for r in rs]
        out["policies"][p] = {
            "label": LABELS[p],
            "epochs": _mean_sd([r.total_epochs for r in rs]),
            "completed": statistics.fmean(r.completed for r in rs),
            "stopped": statistics.fmean(len(r.stopped) for r in rs),
            "makespan": statistics.fmean(r.makespan for r in rs),
            "final_hv": _mean_sd([r.hv[-1] / pool if r.hv else 0.0 for r in rs]),
            "epochs_to_pool_hv": reach,
            "epochs_to_99": reach99,
            "epochs_to_95": reach95,
            "final_stops": sum(r.final_stops for r in rs),
            "stops_by_epoch": {str(e): sum(list(r.stopped.values()).count(e) for r in rs) / len(rs)
                               for e in rung_epochs(grace, eta, curves.max_epochs)},
            "hv_at": {f"{s:.3f}": _mean_sd([r.hv_at(s * full) / pool for r in rs]) for s in BUDGET_SHARES},
        }
    if "none" in runs:
        # Epochs (a) needs, on the same trial order, to reach the hypervolume a policy ends with.
        for p, rs in runs.items():
            need = [a.epochs_to(r.hv[-1]) if r.hv else 0 for a, r in zip(runs["none"], rs)]
            out["policies"][p]["none_epochs_to_final_hv"] = statistics.fmean(n or 0 for n in need)
    if "moasha" in runs and "asha" in runs:
        paired = {}
        for s in BUDGET_SHARES:
            d = [(m.hv_at(s * full) - a.hv_at(s * full)) / pool for m, a in zip(runs["moasha"], runs["asha"])]
            paired[f"{s:.3f}"] = {"mean": statistics.fmean(d), "sd": statistics.stdev(d) if len(d) > 1 else 0.0,
                                  "wins": sum(x > 1e-12 for x in d), "ties": sum(abs(x) <= 1e-12 for x in d)}
        # At the epochs the shorter of the two runs used, per trial order: both still had all they trained by then.
        d = [(m.hv_at(min(m.total_epochs, a.total_epochs)) - a.hv_at(min(m.total_epochs, a.total_epochs))) / pool
             for m, a in zip(runs["moasha"], runs["asha"])]
        paired["shorter"] = {"mean": statistics.fmean(d), "sd": statistics.stdev(d) if len(d) > 1 else 0.0,
                             "wins": sum(x > 1e-12 for x in d), "ties": sum(abs(x) <= 1e-12 for x in d)}
        out["moasha_minus_asha"] = paired
    out["rank_correlation"] = _rank_correlation(curves, grace, eta)
    return out


def _rank_correlation(curves: Curves, grace: int, eta: int) -> dict[int, float]:
    """Spearman correlation of accuracy at each rung with final accuracy: how much a rung can tell."""
    def ranks(xs: Sequence[float]) -> list[float]:
        order = sorted(range(len(xs)), key=xs.__getitem__)
        r = [0.0] * len(xs)
        for pos, i in enumerate(order):
            r[i] = float(pos)
        return r

    final = ranks([c.accuracy[-1] for c in curves.candidates])
    out = {}
    for e in rung_epochs(grace, eta, curves.max_epochs):
        at = ranks([c.accuracy[e - 1] for c in curves.candidates])
        out[e] = statistics.correlation(at, final) if len(at) > 2 else float("nan")
    return out


def _reach(epochs: list[int | None], full: int) -> str:
    got = [e for e in epochs if e is not None]
    if not got:
        return f"never (0/{len(epochs)})"
    m = statistics.fmean(got)
    return f"{m:,.0f} = {_pct(m / full)}% ({len(got)}/{len(epochs)})"


def render(summary: dict[str, Any]) -> str:
    s = summary
    tag = "SYNTHETIC DATA -- " if s["synthetic"] else ""
    full = s["full_epochs"]
    lines = [
        f"{tag}early-stopping replay of {s['curves']}: {s['candidates']} candidates x {s['max_epochs']} epochs, "
        f"{s['workers']} workers, {s['seeds']} random trial orders, grace {s['grace']}, eta {s['eta']}, "
        f"MO-ASHA objectives {', '.join(s['objectives'])}",
        f"{tag}{s['description']}",
        f"hypervolume of completed trials over (final accuracy max, FLOPs min), reference accuracy "
        f"{s['reference']['accuracy']:.4f}, FLOPs {s['reference']['flops']:.4g}; shown as % of the whole pool's "
        f"({s['pool_hypervolume']:.4g}); epochs = cumulative epochs trained, stopped trials included",
        "rank correlation (Spearman) of accuracy at each rung with final accuracy: "
        + ", ".join(f"epoch {e}: {c:.2f}" for e, c in s["rank_correlation"].items()),
        "",
    ]
    rows = []
    for d in s["policies"].values():
        e, sd = d["epochs"]
        hv, hv_sd = d["final_hv"]
        rows.append((d["label"], f"{e:,.0f} ± {sd:,.0f}", _pct(e / full), f"{d['completed']:.1f}",
                     f"{d['stopped']:.1f}", f"{_pct(hv)} ± {_pct(hv_sd)}", _reach(d["epochs_to_pool_hv"], full),
                     _reach(d["epochs_to_99"], full), _reach(d["epochs_to_95"], full)))
    lines.append(render_table(("policy", "epochs", "% of (a)", "completed", "stopped", "final HV %",
                               "epochs to (a)'s final HV", "to 99% of it", "to 95% of it"), rows))
    lines.append("stopped per run at each rung epoch: " + "; ".join(
        f"{d['label'][:3]} " + ", ".join(f"epoch {e}: {n:.1f}" for e, n in d["stops_by_epoch"].items())
        for p, d in s["policies"].items() if p in ("moasha", "gated")))
    lines.append("(epochs to a hypervolume: mean over the seeds that reach it = % of (a)'s epochs (seeds reaching it))")
    if "none" in s["policies"]:
        parts = [f"{d['label'][:3]} {d['none_epochs_to_final_hv']:,.0f} vs its own {d['epochs'][0]:,.0f} "
                 f"({d['none_epochs_to_final_hv'] / max(d['epochs'][0], 1):.1f}x)"
                 for p, d in s["policies"].items() if p != "none"]
        lines.append("epochs (a) needs to reach the hypervolume each policy ends with, on the same trial orders: "
                     + "; ".join(parts))
    lines.append("")
    header = ["policy"] + [f"HV % at {_pct(x)}% of (a)'s epochs" if i == 0 else f"at {_pct(x)}%"
                           for i, x in enumerate(BUDGET_SHARES)]
    rows = [[d["label"]] + [f"{_pct(m)} ± {_pct(sd)}" for m, sd in d["hv_at"].values()]
            for d in s["policies"].values()]
    if "moasha_minus_asha" in s:
        rows.append(["(d) - (c), paired"] + [f"{100 * v['mean']:+.1f} ± {_pct(v['sd'])} ({v['wins']} wins)"
                                             for k, v in s["moasha_minus_asha"].items() if k != "shorter"])
    lines.append(render_table(header, rows))
    lines.append("")
    if "moasha" in s["policies"] and "none" in s["policies"]:
        d = s["policies"]["moasha"]
        got = [e for e in d["epochs_to_pool_hv"] if e is not None]
        if got:
            share = statistics.fmean(got) / full
            verdict = "met" if share <= 1 / 3 and len(got) == len(d["epochs_to_pool_hv"]) else "NOT met"
            lines.append(f"{tag}target: (d) reaches (a)'s final hypervolume in {_pct(share)}% of (a)'s epochs "
                         f"({len(got)}/{len(d['epochs_to_pool_hv'])} seeds; target <= 33.3%): {verdict}")
        else:
            lines.append(f"{tag}target: (d) never reaches (a)'s final hypervolume (it stopped a candidate of the "
                         "pool's front in every seed): NOT met")
        if "moasha_minus_asha" in s:
            pc = s["policies"]["asha"]
            for key, where in ((f"{1 / 3:.3f}", "at a third of (a)'s epochs"),
                               ("shorter", "at the epochs the shorter of the two runs used")):
                v = s["moasha_minus_asha"][key]
                lines.append(f"{tag}(d) vs (c) {where}: {100 * v['mean']:+.1f} points of the pool's hypervolume "
                             f"(sd {_pct(v['sd'])}; (d) ahead in {v['wins']}/{s['seeds']} trial orders, level in "
                             f"{v['ties']}); their runs end at {d['epochs'][0]:,.0f} and {pc['epochs'][0]:,.0f} epochs")
        if d["final_stops"]:
            lines.append(f"BUG: MO-ASHA stopped a final epoch {d['final_stops']} times")
    return "\n".join(lines)


def write_html(summary: dict[str, Any], runs: dict[str, list[Run]], path: str | Path) -> None:
    import plotly.graph_objects as go

    pool, full = summary["pool_hypervolume"], summary["full_epochs"]
    top = max(r.total_epochs for rs in runs.values() for r in rs)
    grid = sorted({0, top} | {round(top * i / 400) for i in range(401)})
    colours = {"none": "#636efa", "median": "#00cc96", "asha": "#ef553b", "moasha": "#ab63fa", "gated": "#19d3f3"}
    fig = go.Figure()
    for p, rs in runs.items():
        values = [[100 * r.hv_at(x) / pool for r in rs] for x in grid]
        mean = [statistics.fmean(v) for v in values]
        sd = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
        colour = colours.get(p, "#444")
        fig.add_trace(go.Scatter(x=grid + grid[::-1], y=[m + s for m, s in zip(mean, sd)]
                                 + [m - s for m, s in zip(mean, sd)][::-1], fill="toself", line={"width": 0},
                                 fillcolor=colour, opacity=0.18, hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=grid, y=mean, name=LABELS[p], line={"color": colour, "width": 2}))
    fig.add_vline(x=full / 3, line_dash="dot", annotation_text="1/3 of (a)'s epochs")
    fig.update_layout(updatemenus=[{"type": "buttons", "direction": "right", "x": 0.0, "y": -0.12, "xanchor": "left",
                                    "buttons": [{"label": "linear epochs", "method": "relayout",
                                                 "args": [{"xaxis.type": "linear"}]},
                                                {"label": "log epochs", "method": "relayout",
                                                 "args": [{"xaxis.type": "log"}]}]}])
    tag = "SYNTHETIC DATA — " if summary["synthetic"] else ""
    fig.update_layout(
        title=f"{tag}hypervolume of completed trials vs epochs trained (mean ± sd over {summary['seeds']} trial "
              f"orders, {summary['workers']} workers, {summary['candidates']} candidates)",
        xaxis_title="cumulative epochs trained", yaxis_title="hypervolume, % of the whole pool's",
        template="plotly_white", legend={"x": 0.98, "xanchor": "right", "y": 0.02, "yanchor": "bottom"})
    if summary["synthetic"]:
        fig.add_annotation(text="SYNTHETIC learning curves — not a measurement", xref="paper", yref="paper",
                           x=0.5, y=1.0, yanchor="bottom", showarrow=False, font={"size": 14, "color": "#c00"})
    fig.write_html(str(path), include_plotlyjs=True)


# ---- command line -----------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("curves", help="curves file (JSON, format in the module doc)")
    ap.add_argument("--synthetic", action="store_true",
                    help="first write a SYNTHETIC curves file to CURVES (refuses to overwrite a measured one)")
    ap.add_argument("--candidates", type=int, default=200, help="--synthetic: number of candidates")
    ap.add_argument("--epochs", type=int, default=27, help="--synthetic: epochs per schedule")
    ap.add_argument("--synthetic-seed", type=int, default=0)
    ap.add_argument("--synthetic-style", choices=SYNTHETIC_STYLES, default="default",
                    help="--synthetic: default, or slow-large (larger models converge more slowly)")
    ap.add_argument("--seeds", type=int, default=20, help="random trial orders")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--grace", type=int, default=1)
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--objectives", default="accuracy,flops", help="MO-ASHA's objectives (accuracy, flops, params)")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--ref-accuracy", type=float, help="reference accuracy (default: the lowest final accuracy)")
    ap.add_argument("--ref-flops", type=float, help="reference FLOPs (default: 1.05 x the largest)")
    ap.add_argument("--html", help="write the plot here (self-contained Plotly page)")
    ap.add_argument("--json", help="write the summary numbers here")
    args = ap.parse_args(argv)

    path = Path(args.curves)
    if args.synthetic:
        if path.exists() and not json.loads(path.read_text()).get("synthetic", False):
            raise SystemExit(f"error: {path} holds measured curves; --synthetic will not overwrite it")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = synthetic_curves(args.candidates, args.epochs, args.synthetic_seed, args.synthetic_style)
        path.write_text(json.dumps(data) + "\n")
    curves = load_curves(path)
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    unknown = [o for o in objectives if o not in MAXIMISE]
    if unknown or "accuracy" not in objectives:
        raise SystemExit(f"error: --objectives must include accuracy and only name {', '.join(MAXIMISE)}")
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if any(p not in POLICIES for p in policies):
        raise SystemExit(f"error: --policies takes {', '.join(POLICIES)}")
    reference = reference_point(curves, args.ref_accuracy, args.ref_flops)
    runs = replay_all(curves, args.seeds, args.workers, args.grace, args.eta, objectives, reference, policies)
    summary = summarise(curves, runs, reference, workers=args.workers, grace=args.grace, eta=args.eta,
                        objectives=objectives)
    out(render(summary))
    if args.html:
        write_html(summary, runs, args.html)
        out(f"plot: {args.html}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    summary["runs"] = runs
    return summary


if __name__ == "__main__":
    main()
