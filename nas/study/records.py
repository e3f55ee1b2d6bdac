"""What a study holds and how it is read: the study's schema, listed here.

The study (Optuna storage) is the single source of truth. Only the search driver writes it;
the inspection commands, the dashboards and export read it through this module. The names
below are the schema; the modules that write and read them spell most of them as string
literals (``"arch_hash"``, ``"outcome"``...) rather than importing them, and a few are named
only by the module that owns them: ``fidelity_of`` (a study and trial user attribute,
:mod:`nas.search.fidelity`), ``weights`` (a trial user attribute) and ``artifacts:<id>`` (Optuna's
artifact record, a trial system attribute; both :mod:`nas.search.weights`), ``nas:write`` (a trial
system attribute, :mod:`nas.study.writer`) and ``synthetic`` (a study user attribute,
``bench/synthetic_study.py``). The ``constraints:<name>`` and ``fixed_params`` trial system
attributes are Optuna's own.

* Study user attributes: ``space``, ``space_fingerprint``, ``space_resolution``, ``budget``,
  ``dataset``, ``train_resolution``, ``classes``, ``fidelity``, ``schedule``, ``early_stopping``,
  ``objectives``, ``nas_version``, ``created`` (see :class:`StudySettings`); the space file's text
  is the system attribute ``nas:space_source``, so a study can rebuild its architectures without
  the file.
* Trial parameters: the space's design parameters (``stage2.depth``, ``radix``, ``width.base``...).
* Trial values: one per objective, in the study's order (``set_metric_names``): ``accuracy``
  (validation top-1, maximised), ``flops`` (multiply-adds at the space's resolution), ``params``,
  ``latency`` (ms at batch 1), minimised.
* Trial user attributes (:data:`ATTR_KEYS`): the outcome, the architecture (config, hash, short
  description), its complexity at the space's and at the training resolution, the learning
  curve, timings, where it ran, and why it failed.
* Trial constraints (``trial.set_constraint``): ``flops_budget`` = FLOPs / high - 1, and for a
  window ``flops_floor`` = 1 - FLOPs / low; with a latency budget ``latency_budget`` = latency
  (measured on the worker before training, or predicted by the per-block table) / max - 1, set
  when the latency is known; feasible when all are <= 0.
* Latency (study attribute ``latency``, :class:`StudySettings`): the runtime, device, threads,
  batch sizes and budget; trial attributes ``latency_ms`` (batch 1), ``latency`` (the whole
  measurement of the deployed network) and ``latency_predicted_ms``.

How each kind of proposal is recorded, and why:

==============  ========  ========================================================================
outcome         state     meaning
==============  ========  ========================================================================
complete        COMPLETE  trained for its whole schedule; values set
pruned          PRUNED    stopped early by the scheduler; its last metrics and curve in attributes
infeasible      PRUNED    over (or under) the budget: never trained, constraint > 0. PRUNED, not
                          COMPLETE, so no front counts it (optuna-dashboard ignores constraints
                          but only puts COMPLETE trials on its front), while TPE still learns from
                          it (it reads PRUNED trials and ranks infeasible ones last). Over the
                          latency budget too: predicted (unbuilt) or timed before training
invalid         PRUNED    the parameters are no valid network (a space constraint or config rule)
duplicate       as orig.  an architecture the study already trained: the earlier result, copied,
                          with ``duplicate_of``
failed          FAIL      training failed: ``reason`` says why (diverged, oom, error, worker died)
orphaned        FAIL      its driver died; the architecture was queued to train again
interrupted     FAIL      the user stopped the search; the architecture was queued to train again
==============  ========  ========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from nas.common.pareto import pareto_front, to_minimisation

# ---- objectives ------------------------------------------------------------------------------

#: name -> (maximise?, short description)
OBJECTIVES: dict[str, tuple[bool, str]] = {
    "accuracy": (True, "validation top-1 accuracy"),
    "flops": (False, "multiply-adds at the space's resolution"),
    "params": (False, "parameters"),
    "latency": (False, "ms at batch 1 of the deployed network on the study's latency runtime"),
}

#: objective -> the trial attribute that holds it (for pruned and infeasible trials too, which have no values)
OBJECTIVE_ATTRS = {"accuracy": "accuracy", "flops": "flops", "params": "n_params", "latency": "latency_ms"}

# ---- outcomes --------------------------------------------------------------------------------

COMPLETE, PRUNED, INFEASIBLE, INVALID = "complete", "pruned", "infeasible", "invalid"
DUPLICATE, FAILED, ORPHANED, INTERRUPTED, RUNNING = "duplicate", "failed", "orphaned", "interrupted", "running"
OUTCOMES = (COMPLETE, PRUNED, INFEASIBLE, INVALID, DUPLICATE, FAILED, ORPHANED, INTERRUPTED, RUNNING)
#: Outcomes that cost a training run: what ``--trials`` counts.
TRAINED = frozenset({COMPLETE, PRUNED, FAILED})
#: Outcomes whose architecture must train again (nothing was learnt about it).
RETRY = frozenset({ORPHANED, INTERRUPTED})

# ---- attribute names -------------------------------------------------------------------------

ATTR_KEYS = (
    "outcome", "arch", "arch_hash", "config",
    "flops", "n_params", "activations", "train_flops", "train_n_params", "train_activations",
    "accuracy", "best_accuracy", "val_images", "epochs", "curve", "wall_time_s", "images_per_s",
    "device", "host", "node", "worker_pid", "latency_ms", "latency", "latency_predicted_ms", "peak_memory_mb",
    "reason", "duplicate_of", "retry_of", "restarts",
)
DRIVER_ATTR = "nas:driver"  # trial system attribute: the id of the driver that dispatched it
DRIVER_PREFIX = "nas:driver:"  # study system attributes: one liveness record per driver
SPACE_SOURCE_ATTR = "nas:space_source"  # study system attribute: the space file's text
CONSTRAINT_HIGH, CONSTRAINT_LOW = "flops_budget", "flops_floor"
#: latency (ms at batch 1, measured or predicted) / max_ms - 1, on studies with a latency budget
CONSTRAINT_LATENCY = "latency_budget"


# ---- study settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StudySettings:
    """What defines a study: a later search on it must agree on every compared field."""

    space: str
    space_fingerprint: str
    space_resolution: int
    budget_low: float
    budget_high: float
    dataset: str
    train_resolution: int
    classes: int
    train_images: int | None  # None: the whole training split
    val_images: int | None
    epochs: int
    batch_size: int
    schedule: dict[str, Any]
    objectives: tuple[str, ...]
    early_stopping: dict[str, Any] | None = None  # {"grace": g, "eta": e} or None (off)
    population: bool = False  # sampled as a design-space population (nas search --population)
    space_file: str | None = None  # the user's space file (absolute path) the study was made from; None: built in
    #: how latency is measured, or None when it is not (nas.workers.contract.LatencyPlan.to_dict: runtime,
    #: device, threads, batch_sizes, max_ms, the latency budget at batch 1 or None)
    latency: dict[str, Any] | None = None
    nas_version: str = ""
    created: str = ""

    #: Fields a resumed search must match, with the words used when they differ.
    COMPARED = {
        "space_fingerprint": "space", "budget_low": "budget", "budget_high": "budget", "dataset": "dataset",
        "train_resolution": "training resolution", "train_images": "train images", "val_images": "val images",
        "epochs": "epochs", "batch_size": "batch size", "schedule": "schedule", "objectives": "objectives",
        "early_stopping": "early stopping", "population": "population", "latency": "latency",
    }

    @property
    def fidelity(self) -> dict[str, Any]:
        return {"train_images": self.train_images, "val_images": self.val_images, "epochs": self.epochs,
                "batch_size": self.batch_size}

    @property
    def rungs(self) -> list[int]:
        """The early-stopping rung epochs (none when early stopping is off)."""
        from nas.stopping.rule import rung_epochs

        es = self.early_stopping or {}
        return rung_epochs(int(es["grace"]), int(es["eta"]), self.epochs) if es else []

    def bias(self) -> list[str]:
        """Why the study's error EDFs and best ranges may not describe its space (none for a population)."""
        if self.population:
            return []
        out = ["not sampled as a population: its sampler may follow results (TPE, NSGA-II, GP), so the models "
               "describe the search's preferences (nas search --population samples without bias)"]
        if self.early_stopping:
            out.append("early stopping cut short the candidates it stopped, truncating the error distribution")
        return out

    def sample_text(self) -> str:
        if self.population:
            return "population: uniform random in the budget, one fidelity, no early stopping (EDFs unbiased)"
        return "search: EDFs and best ranges biased (" + "; ".join(self.bias()) + ")"

    def budget_text(self) -> str:
        from nas.common.units import format_flops

        if self.budget_low > 0:
            return f"{format_flops(self.budget_low)} - {format_flops(self.budget_high)}"
        return f"<= {format_flops(self.budget_high)}"

    def to_attrs(self) -> dict[str, Any]:
        """Study user attributes (JSON values, readable in optuna-dashboard)."""
        return {
            "space": self.space, "space_fingerprint": self.space_fingerprint,
            "space_resolution": self.space_resolution,
            "budget": {"low": self.budget_low, "high": self.budget_high, "text": self.budget_text()},
            "dataset": self.dataset, "train_resolution": self.train_resolution, "classes": self.classes,
            "fidelity": self.fidelity, "schedule": self.schedule, "objectives": list(self.objectives),
            "early_stopping": self.early_stopping, "population": self.population, "latency": self.latency,
            "space_file": self.space_file,
            "nas_version": self.nas_version, "created": self.created,
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> StudySettings | None:
        """The settings stored on a study, or ``None`` if it was not made by ``nas search`` or its
        settings are still being written (every key is required; ``created`` is written last)."""
        try:
            fid, budget = attrs["fidelity"], attrs["budget"]
            return cls(space=attrs["space"], space_fingerprint=attrs["space_fingerprint"],
                       space_resolution=int(attrs["space_resolution"]), budget_low=float(budget["low"]),
                       budget_high=float(budget["high"]), dataset=attrs["dataset"],
                       train_resolution=int(attrs["train_resolution"]), classes=int(attrs["classes"]),
                       train_images=fid["train_images"], val_images=fid["val_images"], epochs=int(fid["epochs"]),
                       batch_size=int(fid["batch_size"]), schedule=dict(attrs["schedule"]),
                       objectives=tuple(attrs["objectives"]), early_stopping=_early_stopping(attrs["early_stopping"]),
                       population=bool(attrs.get("population", False)), latency=attrs.get("latency"),
                       space_file=attrs.get("space_file"),
                       nas_version=attrs["nas_version"], created=attrs["created"])
        except (KeyError, TypeError, ValueError):
            return None

    def differences(self, other: StudySettings) -> list[str]:
        """Human-readable differences ``"epochs 3 (study) vs 5 (now)"`` on the compared fields."""
        out: list[str] = []
        for name, label in self.COMPARED.items():
            mine, theirs = getattr(self, name), getattr(other, name)
            if _norm(mine) == _norm(theirs):
                continue
            if label == "budget":
                text = f"budget {self.budget_text()} (study) vs {other.budget_text()} (now)"
            elif label == "space":
                text = (f"space {self.space} #{self.space_fingerprint} (study) vs "
                        f"{other.space} #{other.space_fingerprint} (now)")
            elif label == "schedule":
                # Epochs and batch size are compared on their own; the warm-up follows the epochs.
                keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k)
                              and k not in ("epochs", "batch_size", "warmup_epochs"))
                if not keys:
                    continue
                text = ", ".join(f"{k} {mine.get(k)} (study) vs {theirs.get(k)} (now)" for k in keys)
            elif label == "early stopping":
                text = f"{label} {_show(mine, 'off')} (study) vs {_show(theirs, 'off')} (now)"
            elif label == "latency" and mine is None and "latency" in self.objectives:
                text = (f"latency timed by an older nas at the training resolution (study) vs the deployed network "
                        f"on {latency_text(theirs)} (now); start a new study (another --study) to search by "
                        f"deployment latency")
            elif label == "latency":
                text = f"latency {latency_text(mine)} (study) vs {latency_text(theirs)} (now)"
            else:
                text = f"{label} {_show(mine)} (study) vs {_show(theirs)} (now)"
            if text not in out:
                out.append(text)
        return out


def latency_text(plan: dict[str, Any] | None) -> str:
    """``onnxruntime:cpu, 1 thread, batches 1/8, budget 8 ms`` (or ``not measured``)."""
    if not plan:
        return "not measured"
    threads = int(plan["threads"])
    budget = f", budget {plan['max_ms']:g} ms" if plan.get("max_ms") is not None else ""
    return (f"{plan['runtime']}:{plan['device']}, {threads} thread{'s' if threads != 1 else ''}, batches "
            f"{'/'.join(map(str, plan['batch_sizes']))}{budget}")


def _early_stopping(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """A study made before rungs were gated by evidence (no ``gate_curves``) resumes with the default
    gate: the gate only keeps a rung from stopping on noise."""
    if stored is None or "gate_curves" in stored:
        return stored
    from nas.stopping.rule import GATE_MIN_CURVES

    return {**stored, "gate_curves": GATE_MIN_CURVES}


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in sorted(v.items())}
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _show(v: Any, none: str = "all") -> str:
    if v is None:
        return none
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    if isinstance(v, dict):
        return ", ".join(f"{k} {x}" for k, x in v.items())
    return str(v)


# ---- trials ------------------------------------------------------------------------------------


@dataclass
class TrialRecord:
    """One trial as the dashboards and commands see it (read from a ``FrozenTrial``)."""

    number: int
    state: str  # Optuna's: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    outcome: str
    values: tuple[float, ...] | None
    params: dict[str, Any]
    feasible: bool
    constraints: dict[str, float] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    datetime_start: str | None = None
    datetime_complete: str | None = None
    driver: str | None = None

    def get(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    @property
    def trained(self) -> bool:
        """Cost a training run (counts toward ``--trials``)."""
        return self.outcome in TRAINED

    @property
    def scored(self) -> bool:
        """What fronts, EDFs, best ranges and fidelity checks count: trained to the end, feasible, the
        first of its architecture (not a duplicate), with an accuracy."""
        return self.state == "COMPLETE" and self.feasible and self.outcome != DUPLICATE and self.accuracy is not None

    @property
    def curve(self) -> list[dict[str, Any]]:
        return list(self.attrs.get("curve") or [])

    @property
    def accuracy(self) -> float | None:
        return self.attrs.get("accuracy")

    @property
    def accuracy_se(self) -> float | None:
        """The standard error of the accuracy from the validation size (``val_images``, recorded by
        the worker): ``sqrt(p (1 - p) / n)``; None when either is unknown."""
        return standard_error(self.accuracy, self.attrs.get("val_images"))

    def objective(self, name: str) -> float | None:
        """An objective's value: from ``values`` for complete trials, else from the attributes
        (a pruned or infeasible trial keeps what is known of it there)."""
        v = self.attrs.get(OBJECTIVE_ATTRS[name])
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_frozen(cls, trial: Any) -> TrialRecord:
        attrs = dict(trial.user_attrs)
        constraints = dict(getattr(trial, "constraints", {}) or {})
        state = trial.state.name
        outcome = attrs.get("outcome") or ("running" if state in ("RUNNING", "WAITING") else state.lower())
        if state == "RUNNING":
            outcome = RUNNING
        return cls(
            number=trial.number, state=state, outcome=outcome,
            values=tuple(trial.values) if trial.values is not None else None,
            params=dict(trial.params), feasible=all(v <= 0 for v in constraints.values()),
            constraints=constraints, attrs=attrs,
            datetime_start=trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else None,
            datetime_complete=(trial.datetime_complete.isoformat(timespec="seconds")
                               if trial.datetime_complete else None),
            driver=trial.system_attrs.get(DRIVER_ATTR),
        )


#: Two accuracies are "within noise" of each other when they differ by less than this many standard
#: errors of their difference (a two-sided 95 % test of equal accuracy).
NOISE_Z = 1.96


def standard_error(accuracy: float | None, n: int | None) -> float | None:
    """Standard error of an accuracy measured on ``n`` images (binomial): 1.6 points at 0.5 and n = 1,000."""
    if accuracy is None or not n or not 0 <= accuracy <= 1:
        return None
    return math.sqrt(accuracy * (1 - accuracy) / n)


def near_chance(record: TrialRecord, classes: int) -> bool:
    """Whether a trial's accuracy is not measurably above chance (``1 / classes``): less than
    :data:`NOISE_Z` standard errors of chance above it, at the trial's validation size."""
    n = record.attrs.get("val_images")
    if record.accuracy is None or not n or classes < 2:
        return False
    chance = 1.0 / classes
    return record.accuracy < chance + NOISE_Z * standard_error(chance, n)


def within_noise(a: TrialRecord, b: TrialRecord) -> bool:
    """Whether two trials' accuracies are indistinguishable at their validation sizes."""
    sa, sb = a.accuracy_se, b.accuracy_se
    if sa is None or sb is None or a.accuracy is None or b.accuracy is None:
        return False
    return abs(a.accuracy - b.accuracy) < NOISE_Z * math.sqrt(sa * sa + sb * sb)


def noise_neighbours(members: Sequence[TrialRecord]) -> dict[int, list[int]]:
    """For each trial, the other trials whose accuracy is within noise of its own."""
    return {a.number: [b.number for b in members if b is not a and within_noise(a, b)] for a in members}


def read_trials(study: Any) -> list[TrialRecord]:
    return [TrialRecord.from_frozen(t) for t in study.get_trials(deepcopy=False)]


def read_settings(study: Any) -> StudySettings | None:
    return StudySettings.from_attrs(study.user_attrs)


def counts(records: Iterable[TrialRecord]) -> dict[str, int]:
    """Trials by outcome (every outcome present, zero where none)."""
    out = dict.fromkeys(OUTCOMES, 0)
    for r in records:
        out[r.outcome] = out.get(r.outcome, 0) + 1
    return out


def front(records: Sequence[TrialRecord], objectives: Sequence[str]) -> list[TrialRecord]:
    """The Pareto front: feasible COMPLETE trials, one per architecture (the first trained; a
    duplicate repeats its original's values), sorted by the first objective, best first."""
    done = [r for r in records if r.scored and r.values is not None]
    if not done:
        return []
    maximise = [OBJECTIVES[o][0] for o in objectives]
    points = to_minimisation([r.values for r in done], maximise)  # type: ignore[misc]
    members = [done[i] for i in pareto_front(points)]
    return sorted(members, key=lambda r: r.values[0], reverse=maximise[0])  # type: ignore[index]
