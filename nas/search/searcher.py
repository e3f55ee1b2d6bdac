"""The Ray Tune searcher that asks and tells the Optuna study: the study is the source of truth.

Why not Tune's ``OptunaSearch``: it records a trial stopped by a scheduler as COMPLETE with
half-trained values, keeps its Tune-to-Optuna map only in a pickle and swallows ``tell`` errors.
Here every decision is in the study the moment it is made:

* ``suggest`` asks the study for proposals until one is worth training. A proposal that is no
  valid network (``invalid``), over or under the budget (``infeasible``, counted analytically,
  nothing built) or an architecture the study has already trained (``duplicate``: the earlier
  result copied, with ``duplicate_of``) is recorded at once, in one transaction, and never
  reaches a worker. One that duplicates an architecture still training is held in memory until
  that result arrives. A proposal worth training is written RUNNING, with its driver's id, and
  handed to Tune.
* ``on_trial_result`` writes each epoch to the trial's learning curve.
* ``on_trial_complete`` writes the outcome: COMPLETE with its values when the trial trained its
  whole schedule; FAIL with the reason when training failed (diverged, oom, error) or its
  worker died more often than ``FailureConfig`` retries; PRUNED with its last metrics when a
  scheduler stopped it (no final report). Attributes, values and state go in one transaction.
* Interrupted trials (Ctrl-C, SIGTERM) are failed as ``interrupted`` and queued to train again
  by :meth:`interrupt_running`.

``--trials`` is the study's total of *trained* candidates (complete, pruned, failed): the
searcher stops proposing once trained + running (by every live driver) reaches it.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from nas.cluster.fault_points import planned, point
from nas.common.pareto import dominates, to_minimisation
from nas.search.progress import EpochDone, Event, Exhausted, Finished, Interrupted, Orphaned, Skipped, Started
from nas.search.weights import WeightsKeeper
from nas.search_spaces.complexity_model import complexity, format_flops
from nas.search_spaces.config import parse_config
from nas.search_spaces.optuna_bridge import suggest_values
from nas.search_spaces.sampler import feasible_architectures
from nas.search_spaces.space import SearchSpace
from nas.study.optuna_internals import cached_frozen_trial, clear_trials_cache
from nas.study.records import (
    COMPLETE,
    CONSTRAINT_HIGH,
    CONSTRAINT_LATENCY,
    CONSTRAINT_LOW,
    DRIVER_ATTR,
    DUPLICATE,
    FAILED,
    INFEASIBLE,
    INTERRUPTED,
    INVALID,
    OBJECTIVES,
    PRUNED,
    TRAINED,
    StudySettings,
    TrialRecord,
)
from nas.study.requeue import enqueue_retry, recover_orphans
from nas.study.writer import DeferredStorage, Guard, Refused
from nas.workers.contract import EpochReport, FinalReport, TrialRequest, is_final

#: Stop proposing after this many proposals in a row that were not worth training (a sampler that
#: keeps repeating itself, or a budget that leaves little of a large space) ...
STALL_PROPOSALS = 300
#: ... or after STALL_FACTOR times the proposals one fresh candidate has cost this driver so far, where
#: that is more: a narrow FLOP window of a large space (1 proposal in 75 inside resnext-cifar's 15-20 MFLOPs)
#: misses 300 in a row by chance, and would stop a population short. A run of 10/r misses at a fresh rate
#: r happens by chance with probability about e^-10. Never more than STALL_CAP (each proposal is an ask).
STALL_FACTOR = 10
STALL_CAP = 3000
#: What a duplicate proposal copies from the trial it repeats.
DUPLICATE_COPIES = ("accuracy", "best_accuracy", "epochs", "reason", "latency_ms", "latency", "train_flops",
                    "train_n_params", "train_activations", "images_per_s")
#: Longest one ``suggest`` call may spend proposing (Tune's loop waits on it).
SUGGEST_BUDGET_S = 0.5
#: A final report's status for a candidate whose deployed latency is over the budget (measured, not trained).
OVER_LATENCY = "over_latency"
#: Networks measured whole before the per-block table's predictions are used (the overhead is fitted on them).
PREDICT_AFTER = 3
#: The least relative margin over the latency budget a prediction must clear to skip a candidate unmeasured
#: (the margin used is the larger of this and twice the table's median relative error on measured networks).
PREDICT_MARGIN = 0.5


@dataclass
class Running:
    """A trial of this driver that Tune is training, as written when it was dispatched."""

    frozen: optuna.trial.FrozenTrial
    arch_hash: str
    started: float
    curve: list[dict[str, Any]] = field(default_factory=list)
    restarts: int = 0
    written: float = 0.0  # when the trial or its curve was last written (time.monotonic)

    @property
    def number(self) -> int:
        return self.frozen.number

    @property
    def trial_id(self) -> int:
        return self.frozen._trial_id


@dataclass
class Held:
    """A pending proposal duplicating an architecture still in training (here or elsewhere)."""

    trial: optuna.Trial
    arch_hash: str
    original: int  # trial number of the running original




class StudySearcher(Searcher):
    #: A running trial's curve is written at most this often (seconds, counted from its start): every
    #: epoch when epochs take longer (a CPU, or a GPU on a real dataset), fewer writes when a small proxy
    #: reports several epochs a second, none for a trial done within it. The final record always holds
    #: the whole curve; a resumed search rebuilds its rungs from trained trials only, so nothing decided
    #: depends on these interim writes.
    curve_every_s = 2.0
    #: How often ``suggest`` re-reads the study for what other drivers did (seconds). Nothing depends on
    #: it for correctness: the write that starts a trial is guarded (an architecture another driver has
    #: started or trained, or a study already at its total, is refused and re-read at once), and this
    #: driver's own counts are kept as it goes. A read per proposal took a third of a trial's overhead.
    sync_every_s = 1.0

    def __init__(self, study: optuna.Study, storage: DeferredStorage, space: SearchSpace, settings: StudySettings,
                 target: int, driver_id: str, spec: dict[str, Any],
                 on_event: Callable[[Event], None] | None = None, weights: WeightsKeeper | None = None) -> None:
        """``spec`` is the :class:`~nas.workers.trial.TrialSpec` (as a dict) every trial shares; its
        ``config`` is filled in per trial, at the training resolution and number of classes."""
        super().__init__(metric=None, mode=None)
        self.study, self.storage, self.space, self.settings = study, storage, space, settings
        self.target, self.driver_id, self.spec = target, driver_id, spec
        self.on_event = on_event or (lambda event: None)
        self.weights = weights
        self.tune_trials: dict[str, Any] = {}  # Tune's trial objects by id (filed by nas.cluster.execution)
        self.running: dict[str, Running] = {}  # Tune trial id -> trial
        self.held: list[Held] = []
        self.stall = 0
        self._proposals = 0  # proposals this driver made, and how many had been made at its last fresh one
        self._at_fresh = 0
        self._fresh = 0  # proposals of this driver that were trained (fresh, feasible, claimed)
        self.exhausted = False
        self.interrupting = False
        self._finished_index: dict[str, TrialRecord] = {}  # arch hash -> first trained record
        self._running_elsewhere: dict[str, int] = {}  # arch hash -> running trial number (any driver)
        self._seen: dict[int, str] = {}  # trial number -> state last seen, for incremental sync
        self._trained = self._in_flight = 0
        self._waiting = False
        self._dispatched = 0
        self._synced = 0.0  # when the study was last read (time.monotonic)
        #: arch hash -> the infeasible record of its latency measured over the budget (never trained)
        self._over_latency: dict[str, TrialRecord] = {}
        self._table = self._latency_table()
        self._timed: dict[int, tuple[Any, float]] = {}  # trial number -> (config, measured ms): the fit's data
        self._fitted = 0  # how many of them the table's overhead was fitted on
        # A small space is enumerated once: the search then knows when every architecture within
        # the budget has been trained (or is training) and stops asking at once.
        self._feasible = feasible_architectures(space, settings.budget_high, settings.budget_low)
        self.sync()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its search algorithm into its experiment folder (for Tuner.restore, which a
        # search never uses: it resumes from the study). Nothing of this object outlives the process.
        return {}

    # ---- reading the study -------------------------------------------------------------------
    def sync(self) -> None:
        """Read the study (incrementally: Optuna caches finished trials) and rebuild what the
        decisions need: trained count, running count, architectures trained or in training."""
        self._synced = time.monotonic()
        trained = in_flight = 0
        waiting = False
        running: dict[str, int] = {}
        for t in self.storage.get_all_trials(self.study._study_id, deepcopy=False):
            if self.storage.is_pending(t._trial_id):
                continue
            if t.state == TrialState.WAITING:
                waiting = True
                continue
            h = t.user_attrs.get("arch_hash")
            if t.state == TrialState.RUNNING:
                in_flight += 1
                if h:
                    running.setdefault(h, t.number)
                continue
            outcome = t.user_attrs.get("outcome")
            self._learn_latency(t.number, t.user_attrs)
            if outcome == INFEASIBLE and h and h not in self._over_latency and \
                    t.system_attrs.get(f"constraints:{CONSTRAINT_LATENCY}", 0) > 0 and "latency" in t.user_attrs:
                self._over_latency[h] = TrialRecord.from_frozen(t)  # measured over the latency budget
            if outcome in TRAINED:
                trained += 1
                if h and h not in self._finished_index:
                    self._finished_index[h] = TrialRecord.from_frozen(t)
        self._trained, self._in_flight, self._waiting, self._running_elsewhere = trained, in_flight, waiting, running

    def recover(self) -> list[tuple[int, int]]:
        """Fail the trials that dead drivers left RUNNING (``orphaned``) and queue their architectures
        to train again (:func:`nas.study.recover_orphans`); the study is re-read when there were any.
        Returns ``(orphan, queued)`` trial numbers."""
        recovered = recover_orphans(self.study, self.storage, me=self.driver_id)
        for orphan, queued in recovered:
            self.on_event(Orphaned(orphan, queued))
        if recovered:
            self.sync()
        return recovered

    @property
    def trained(self) -> int:
        return self._trained

    @property
    def remaining(self) -> int:
        return self.target - self._trained - self._in_flight

    # ---- Tune's interface --------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.interrupting:
            return None
        if time.monotonic() - self._synced >= self.sync_every_s:
            self.sync()
        promoted = self._resolve_held()
        if promoted is not None:
            config = self._dispatch(trial_id, promoted.trial, promoted.arch_hash)
            if config is not None:
                return config
        if self.remaining <= 0 or self.exhausted:
            if self.held or self.running:
                return None
            # Trials of other drivers make up the rest of the total: if a driver of them died, they are
            # not coming, and this one trains them again rather than finish the study short.
            if not self.exhausted and self._in_flight and self.recover():
                return None
            return Searcher.FINISHED
        if self._feasible is not None and \
                self._feasible <= set(self._finished_index) | set(self._running_elsewhere) | set(self._over_latency):
            self.exhausted = True
            self.on_event(Exhausted(architectures=len(self._feasible)))
            return Searcher.FINISHED if not self.held and not self.running else None
        deadline = time.monotonic() + SUGGEST_BUDGET_S
        while time.monotonic() < deadline and self.remaining > 0:
            if self.stall >= self.stall_limit():
                self.exhausted = True
                self.on_event(Exhausted(proposals=self.stall))
                return Searcher.FINISHED if not self.held and not self.running else None
            config = self._propose(trial_id)
            if config is not None:
                return config
        return None

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        run = self.running.get(trial_id)
        if run is None or is_final(result):
            return
        report = EpochReport.from_result(result)
        epoch = report.epoch
        if run.curve and epoch <= run.curve[-1]["epoch"]:  # the worker died and Tune restarted the trial
            run.curve = [c for c in run.curve if c["epoch"] < epoch]
            run.restarts += 1
        point = report.curve_point()
        run.curve.append(point)
        now = time.monotonic()
        if now - run.written >= self.curve_every_s:
            run.written = now
            self._write(run.trial_id, user_attrs={"curve": run.curve, "accuracy": point["accuracy"],
                                                  "epochs": epoch, "restarts": run.restarts,
                                                  **report.where()})
        self.on_event(EpochDone(run.number, epoch, point["accuracy"]))

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        run = self.running.pop(trial_id, None)
        if run is None:
            return
        if self.interrupting and not is_final(result or {}):
            self._interrupt(run)
            return
        # Restarts: Ray Tune's count of its retries (a worker that died before reporting an epoch leaves
        # no trace in the curve), or the curve's own count of epochs that started over.
        failures = int(getattr(self.tune_trials.get(trial_id), "num_failures", 0) or 0)
        attrs: dict[str, Any] = {"restarts": max(run.restarts, failures if not error else failures - 1),
                                 "wall_time_s": time.time() - run.started}
        values = None
        if result is None and not error:  # removed before it ran (the experiment ended)
            self._interrupt(run)
            return
        if error or result is None:
            state, outcome = TrialState.FAIL, FAILED
            attrs["reason"] = self._tune_error(trial_id)
            attrs["curve"] = run.curve
        elif is_final(result):
            final = FinalReport.from_result(result)
            if final.status == OVER_LATENCY:
                self._record_over_latency(run, final, attrs)
                return
            attrs.update(final.study_attrs())
            if final.status == "ok" and final.accuracy is not None:
                state, outcome = TrialState.COMPLETE, COMPLETE
                values = self._values(run, final)
                if any(math.isnan(v) for v in values):
                    state, outcome, values = TrialState.FAIL, FAILED, None
                    attrs["reason"] = "error: an objective was not measured (latency)"
            else:
                state, outcome = TrialState.FAIL, FAILED
                where = f" (on node {str(final.node or '')[:8]} of {final.host})" if final.status == "error" else ""
                attrs["reason"] = f"{final.status}: {final.reason}{where}"
        else:  # no final report and no error: a scheduler stopped it
            state, outcome = TrialState.PRUNED, PRUNED
            last = EpochReport.from_result(result)
            point = last.curve_point()
            if not run.curve or run.curve[-1]["epoch"] != point["epoch"]:
                run.curve.append(point)
            attrs.update(curve=run.curve, accuracy=point["accuracy"], epochs=point["epoch"], **last.where(),
                         reason=f"stopped by the scheduler after epoch {point['epoch']}")
            # an objective its rung ranked (a resume ranks it again), with how it was measured
            attrs.update(last.latency_attrs())
        attrs["outcome"] = outcome
        system_attrs = self._keep_weights(run, values) if state == TrialState.COMPLETE else {}
        attrs.update(system_attrs.pop("user", {}))
        system_attrs.update(self._latency_constraint(attrs.get("latency_ms")))
        self._finish_written(run.frozen, state, values, attrs, system_attrs)
        self._trained += 1
        self._in_flight -= 1
        self._running_elsewhere.pop(run.arch_hash, None)
        done = run.frozen  # what is now in the study, without reading it back
        done.state, done.values = state, values
        done.user_attrs.update(attrs)
        self._learn_latency(run.number, done.user_attrs)
        record = TrialRecord.from_frozen(done)
        self._finished_index.setdefault(run.arch_hash, record)
        self.on_event(Finished(record))
        # Held proposals whose original has a result now are recorded; the others wait for suggest.
        self._resolve_held(promote=False)

    # ---- the latency budget ---------------------------------------------------------------------------
    def _latency_constraint(self, latency_ms: float | None) -> dict[str, float]:
        """``constraints:latency_budget`` (latency / max - 1) as a system attribute, on a study with a
        latency budget and a measured latency; else nothing."""
        max_ms = (self.settings.latency or {}).get("max_ms")
        if max_ms is None or latency_ms is None:
            return {}
        return {f"constraints:{CONSTRAINT_LATENCY}": float(latency_ms) / float(max_ms) - 1.0}

    def _latency_table(self) -> Any:
        """An in-memory per-block table for the study's latency budget (filled from what workers report),
        or None when the study has no latency budget."""
        plan = self.settings.latency or {}
        if plan.get("max_ms") is None:
            return None
        from nas.workers.latency_table import LatencyTable

        return LatencyTable(plan["runtime"], plan["device"], int(plan["threads"]))

    def _learn_latency(self, number: int, attrs: dict[str, Any]) -> None:
        """Take a measured trial's part latencies into the table, and the trial into the overhead's fit."""
        lat = attrs.get("latency") or {}
        if self._table is None or number in self._timed or not lat.get("parts") or attrs.get("latency_ms") is None:
            return
        self._table.entries.update(lat["parts"])
        self._timed[number] = (parse_config(attrs["config"], source=f"trial {number}"), float(attrs["latency_ms"]))

    def _margin(self) -> float:
        errors = [abs(p - ms) / ms for cfg, ms in self._timed.values() if (p := self._table.predict(cfg)) and ms > 0]
        return max(PREDICT_MARGIN, 2 * statistics.median(errors)) if errors else PREDICT_MARGIN

    def _predicted_over(self, trial: optuna.Trial, arch: dict[str, Any], config: Any) -> bool:
        """Record the proposal infeasible, unbuilt, when the table predicts it far over the latency budget
        (by more than the margin); True when it did. Near the budget, or with parts unknown, it is measured."""
        if len(self._timed) < PREDICT_AFTER:
            return False
        if self._fitted != len(self._timed):
            self._table.fit(list(self._timed.values()))
            self._fitted = len(self._timed)
        predicted = self._table.predict(config)
        max_ms = float(self.settings.latency["max_ms"])
        margin = self._margin()
        if predicted is None or predicted <= max_ms * (1 + margin):
            return False
        set_already = self.storage.get_trial_system_attrs(trial._trial_id)
        if f"constraints:{CONSTRAINT_LATENCY}" not in set_already:
            trial.set_constraint(CONSTRAINT_LATENCY, predicted / max_ms - 1.0)
        self._record(trial, TrialState.PRUNED, None, {
            **arch, "outcome": INFEASIBLE, "latency_predicted_ms": predicted,
            "reason": f"predicted {predicted:.2f} ms at batch 1 from the per-block table (overhead fitted on "
                      f"{len(self._timed)} networks measured whole), over the latency budget {max_ms:g} ms by more "
                      f"than the margin {100 * margin:.0f} %; not built"})
        return True

    def _record_over_latency(self, run: Running, final: FinalReport, attrs: dict[str, Any]) -> None:
        """A dispatched candidate whose deployed latency the worker measured over the budget: recorded
        ``infeasible`` (PRUNED, ``latency_budget`` > 0) with its measurement, as a FLOP-infeasible proposal
        is: never trained, on no front, not counted by ``--trials``."""
        attrs = {**attrs, **final.latency_attrs(), **final.where(), "outcome": INFEASIBLE, "reason": final.reason}
        attrs.pop("wall_time_s", None)
        system_attrs = self._latency_constraint(final.latency)
        self._finish_written(run.frozen, TrialState.PRUNED, None, attrs, system_attrs)
        self._in_flight -= 1
        self._running_elsewhere.pop(run.arch_hash, None)
        self.stall += 1
        done = run.frozen
        done.state, done.values = TrialState.PRUNED, None
        done.user_attrs.update(attrs)
        done.system_attrs.update(system_attrs)
        self._learn_latency(run.number, done.user_attrs)
        self._over_latency.setdefault(run.arch_hash, TrialRecord.from_frozen(done))
        self.on_event(Skipped(INFEASIBLE, run.number, attrs.get("flops")))
        self._resolve_held(promote=False)

    def _record_latency_copy(self, trial: optuna.Trial, arch: dict[str, Any], over: TrialRecord) -> None:
        """A proposal of an architecture already timed over the latency budget: infeasible, with that
        measurement (``duplicate_of`` names the trial that made it), without timing it again."""
        set_already = self.storage.get_trial_system_attrs(trial._trial_id)
        for key, value in self._latency_constraint(over.get("latency_ms")).items():
            if key not in set_already:
                trial.set_constraint(key.split(":", 1)[1], value)
        copied = {k: over.attrs[k] for k in ("latency_ms", "latency") if over.attrs.get(k) is not None}
        self._record(trial, TrialState.PRUNED, None, {
            **arch, **copied, "outcome": INFEASIBLE, "duplicate_of": over.number,
            "reason": f"timed over the latency budget in trial {over.number}: {over.get('reason')}"})

    def _tune_error(self, tune_id: str) -> str:
        """Why Ray Tune gave a trial up (its worker died, or something raised outside the trainable),
        from the error Tune wrote for it: one line."""
        trial = self.tune_trials.get(tune_id)
        failures = getattr(trial, "num_failures", 0) or 1
        text = ""
        try:
            text = Path(trial.error_file).read_text() if trial is not None and trial.error_file else ""
        except OSError:
            pass
        last = text.rsplit("Failure #", 1)[-1].splitlines()[1:] if text else []
        lines = [ln.strip() for ln in last if ln.strip() and not ln.startswith((" ", "Traceback", "File "))]
        detail = next((ln for ln in lines if "Error" in ln or "error" in ln), lines[0] if lines else "")
        return f"failed {failures} time(s), Ray Tune's retries are spent" + (f": {detail[:300]}" if detail else "")

    def _values(self, run: Running, result: FinalReport) -> list[float]:
        """The objectives: accuracy and latency as measured; FLOPs and params as the study recorded
        them when the trial was proposed (at the space's resolution)."""
        attrs = run.frozen.user_attrs
        known = {"accuracy": result.accuracy, "latency": result.latency,
                 "flops": attrs.get("flops"), "params": attrs.get("n_params")}
        return [math.nan if known[o] is None else float(known[o]) for o in self.settings.objectives]

    # ---- proposals -------------------------------------------------------------------------------
    def _ask(self) -> optuna.Trial:
        """``study.ask()``, in the two ways it is cheaper or safer here: a queued retry is claimed with
        its owner in the same write (:meth:`DeferredStorage.claim_waiting`), and with nothing queued
        the (pending) trial is made directly, without ask's query for queued trials."""
        # What ask does first: the sampler reads the study afresh for every proposal. Trained trials
        # are finished by DeferredStorage.update, not Study.tell, so without this the sampler would
        # learn only when an infeasible or duplicate proposal happened to be told.
        clear_trials_cache(self.study)
        if self._waiting:
            # The claim is guarded like a fresh trial's start (:meth:`_claim`), by the architecture the
            # retry was queued with: one training elsewhere stays queued, and a study at its total
            # claims nothing.
            claimed = self.storage.claim_waiting(self.study._study_id, {DRIVER_ATTR: self.driver_id},
                                                 guard_for=lambda arch_hash, number: self._claim(arch_hash, number))
            if claimed is not None:
                trial_id, reason = claimed
                if reason is not None:  # trained meanwhile: read the study, the retry is recorded as a duplicate
                    self.sync()
                return optuna.Trial(self.study, trial_id)
            self._waiting = False  # nothing queued that may start now
        return optuna.Trial(self.study, self.storage.create_new_trial(self.study._study_id))

    def stall_limit(self) -> int:
        """How many proposals in a row may be wasted before the search stops asking (see STALL_FACTOR)."""
        if not self._fresh:
            return STALL_PROPOSALS
        return min(STALL_CAP, max(STALL_PROPOSALS, math.ceil(STALL_FACTOR * self._at_fresh / self._fresh)))

    def _propose(self, tune_id: str) -> dict[str, Any] | None:
        self._proposals += 1
        trial = self._ask()
        values = suggest_values(trial, self.space)
        config = self.space.try_decode(values)
        if config is None:
            self._set_constraints(trial, None)
            self._record(trial, TrialState.PRUNED, None, {
                "outcome": INVALID, "reason": "the parameters break a constraint of the space or a config rule"})
            return None
        cx = complexity(config)
        feasible = self._set_constraints(trial, cx.flops)
        # Every proposal that is a network keeps its whole config, trained or not: the dashboards show
        # an infeasible or duplicate architecture as fully as a trained one.
        arch = {"arch": config.describe(), "arch_hash": config.arch_hash(), "config": config.to_dict(),
                "flops": cx.flops, "n_params": cx.params, "activations": cx.activations}
        if not feasible:
            self._record(trial, TrialState.PRUNED, None, {
                **arch, "outcome": INFEASIBLE,
                "reason": f"{format_flops(cx.flops)} is outside the budget {self.settings.budget_text()}"})
            return None
        h = arch["arch_hash"]
        over = self._over_latency.get(h)
        if over is not None:  # timed over the latency budget before: infeasible again, not timed again
            self._record_latency_copy(trial, arch, over)
            return None
        if self._table is not None and h not in self._finished_index and self._predicted_over(trial, arch, config):
            return None
        original = self._finished_index.get(h)
        if original is not None:
            self._record_duplicate(trial, arch, original)
            return None
        pending = self.storage.is_pending(trial._trial_id)
        queued_blind = not pending and trial.user_attrs.get("arch_hash") != h
        self._set_attrs(trial, arch)
        if queued_blind:
            # A trial queued without its architecture (study.enqueue_trial by hand) was claimed with
            # no architecture to check: it goes back to the queue now that it has one, and the next
            # claim checks it like any retry.
            self._release(trial)
            return None
        if pending and h in self._running_elsewhere:
            self.held.append(Held(trial, h, self._running_elsewhere[h]))
            self.stall += 1
            return None
        return self._dispatch(tune_id, trial, h)

    def _dispatch(self, tune_id: str, trial: optuna.Trial, arch_hash: str) -> dict[str, Any] | None:
        """Write the trial RUNNING under this driver (one transaction) and hand it to Tune, with
        its config at the training resolution and classes (and that complexity recorded too).

        The write is guarded (:meth:`_claim`): if, by then, another driver has started or trained
        this architecture, or the study has all the trials it wants, the proposal is held,
        recorded as a duplicate, or dropped, and ``None`` is returned."""
        s = self.settings
        config = parse_config(trial.user_attrs["config"], source=f"trial {trial.number}")
        train_config = config.with_input(resolution=s.train_resolution, classes=s.classes)
        tcx = complexity(train_config)
        for key, value in {"train_flops": tcx.flops, "train_n_params": tcx.params,
                           "train_activations": tcx.activations}.items():
            trial.set_user_attr(key, value)
        self.storage.set_trial_system_attr(trial._trial_id, DRIVER_ATTR, self.driver_id)
        if self.storage.is_pending(trial._trial_id):
            try:
                frozen = self.storage.commit(trial._trial_id, guard=self._claim(arch_hash))
            except Refused as refused:
                self._refused(trial, arch_hash, str(refused))
                return None
        else:
            frozen = self.storage.get_trial(trial._trial_id)
        self.stall = 0
        self._fresh += 1
        self._at_fresh = self._proposals
        attrs = frozen.user_attrs
        run = Running(frozen, arch_hash, time.time(), written=time.monotonic())
        self.running[tune_id] = run
        self._running_elsewhere[arch_hash] = frozen.number
        self._in_flight += 1
        self.on_event(Started(frozen.number, attrs.get("arch"), attrs.get("flops")))
        self._dispatched += 1
        point("dispatch")
        spec = {**self.spec, "config": train_config.to_dict()}
        if s.latency is not None:  # timed as deployed (the space's resolution and classes) before it trains
            spec["deployment"] = {"plan": s.latency, "config": config.to_dict()}
        return TrialRequest(trial_number=frozen.number, spec=spec,
                            constants={"flops": float(attrs["flops"]), "params": float(attrs["n_params"])},
                            weights_box=self.weights.box_name if self.weights else None,
                            fault=planned(self._dispatched), key=f"{self.driver_id}-{frozen.number}").to_config()

    def _claim(self, arch_hash: str | None, me: int | None = None) -> Guard:
        """The commit guard: refuse an architecture running or trained in the study (by any driver),
        and any trial beyond the study's target of trained plus running trials. ``me``: the queued
        trial being claimed (not counted against itself)."""

        def guard(trials: list[tuple[int, TrialState, dict[str, Any]]]) -> str | None:
            busy = 0
            for number, state, attrs in trials:
                if number == me:
                    continue
                if state == TrialState.RUNNING:
                    busy += 1
                    if arch_hash is not None and attrs.get("arch_hash") == arch_hash:
                        return f"running {number}"
                elif attrs.get("outcome") in TRAINED:
                    busy += 1
                    if arch_hash is not None and attrs.get("arch_hash") == arch_hash:
                        return f"trained {number}"
            return "target" if busy >= self.target else None

        return guard

    def _refused(self, trial: optuna.Trial, arch_hash: str, reason: str) -> None:
        kind, _, number = reason.partition(" ")
        self.sync()  # another driver wrote meanwhile: see what it wrote
        original = self._finished_index.get(arch_hash)
        if kind == "trained" and original is not None:
            self._record_duplicate(trial, dict(trial.user_attrs), original)
        elif kind == "running":
            self.held.append(Held(trial, arch_hash, int(number)))
            self.stall += 1
        else:  # the study has every trial it wants: this proposal is not made
            self._release(trial)

    def _release(self, trial: optuna.Trial) -> None:
        """Give a proposal up untrained: a pending one is forgotten; a claimed retry goes back to
        the queue (WAITING) for whoever trains next, never left RUNNING."""
        if self.storage.is_pending(trial._trial_id):
            self.storage.discard(trial._trial_id)
        else:
            self.storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)

    def _set_constraints(self, trial: optuna.Trial, flops: int | None) -> bool:
        """Budget constraints (<= 0 feasible): relative excess over the high end, and below the low
        end of a window. An invalid network has no FLOPs: it counts as violating by 1."""
        s = self.settings
        high = 1.0 if flops is None else flops / s.budget_high - 1.0
        constraints = {CONSTRAINT_HIGH: high}
        low = None
        if s.budget_low > 0:
            low = constraints[CONSTRAINT_LOW] = 1.0 if flops is None else 1.0 - flops / s.budget_low
        # A queued trial given back and claimed again has them already (the same values).
        set_already = self.storage.get_trial_system_attrs(trial._trial_id)
        for key, value in constraints.items():
            if f"constraints:{key}" not in set_already:
                trial.set_constraint(key, value)
        return high <= 0 and (low is None or low <= 0)

    def _set_attrs(self, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
        """``trial.set_user_attr`` for each of ``attrs``, without its deep copy of every value: these
        values are made here per proposal and never changed after."""
        self.storage.set_user_attrs(trial._trial_id, attrs)
        cached_frozen_trial(trial).user_attrs.update(attrs)

    def _record_duplicate(self, trial: optuna.Trial, arch: dict[str, Any], original: TrialRecord) -> None:
        """The original's result and state under this proposal's own parameters; the rest (its curve,
        config, where it ran) stays with the original, which ``duplicate_of`` names."""
        copied = {k: original.attrs[k] for k in DUPLICATE_COPIES if original.attrs.get(k) is not None}
        attrs = {**copied, **arch, "outcome": DUPLICATE, "duplicate_of": original.number}
        state = TrialState[original.state]
        latency = original.constraints.get(CONSTRAINT_LATENCY)
        if latency is not None and f"constraints:{CONSTRAINT_LATENCY}" not in \
                self.storage.get_trial_system_attrs(trial._trial_id):
            # every complete trial carries the same constraint names (GP and NSGA-II require it)
            trial.set_constraint(CONSTRAINT_LATENCY, latency)
        self._record(trial, state, list(original.values) if state == TrialState.COMPLETE else None, attrs)

    def _record(self, trial: optuna.Trial, state: TrialState, values: list[float] | None,
                attrs: dict[str, Any]) -> None:
        """Record a proposal that is not trained: one transaction for a pending trial."""
        self.stall += 1
        if self.storage.is_pending(trial._trial_id):
            self._set_attrs(trial, attrs)
            self.study.tell(trial, values, state=state)
        else:
            self._finish_written(self.storage.get_trial(trial._trial_id), state, values, attrs)
        self.on_event(Skipped(attrs["outcome"], trial.number, attrs.get("flops"), attrs.get("duplicate_of")))

    def _finish_written(self, frozen: optuna.trial.FrozenTrial, state: TrialState, values: list[float] | None,
                        attrs: dict[str, Any], system_attrs: dict[str, Any] | None = None) -> None:
        """Finish a trial that is in the database: the sampler's hook, then attributes, values and
        state in one transaction (a crash leaves it RUNNING, to be recovered, never half-told)."""
        self.study.sampler.after_trial(self.study, frozen, state, values)
        self._write(frozen._trial_id, state=state, values=values, user_attrs=attrs, system_attrs=system_attrs)

    # ---- weights of the front --------------------------------------------------------------------
    def _front_points(self) -> list[tuple[int, tuple[float, ...], str | None]]:
        """(number, minimisation vector, kept artifact id) of every feasible complete original."""
        maximise = [OBJECTIVES[o][0] for o in self.settings.objectives]
        out = []
        for r in self._finished_index.values():
            if r.state == "COMPLETE" and r.feasible and r.values is not None:
                kept = (r.get("weights") or {}).get("artifact_id")
                out.append((r.number, to_minimisation([r.values], maximise)[0], kept))
        return out

    def _keep_weights(self, run: Running, values: list[float] | None) -> dict[str, Any]:
        """Take the trial's weights from the workers' box; keep them if it joins the front (and drop
        the files of the trials it pushes off). Returns system attributes, plus user ones under "user"."""
        if self.weights is None:
            return {}
        data = self.weights.take(run.number)
        if data is None or values is None:
            return {}
        mine = to_minimisation([values], [OBJECTIVES[o][0] for o in self.settings.objectives])[0]
        others = self._front_points()
        if any(dominates(v, mine) for _, v, _ in others):
            return {}
        for _, v, kept in others:
            if kept and dominates(mine, v):
                self.weights.forget(kept)
        system, user = self.weights.keep(run.number, data)
        return {**system, "user": user}

    def _write(self, trial_id: int, **kwargs: Any) -> None:
        try:
            self.storage.update(trial_id, **kwargs)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another driver took this one for dead (a heartbeat older than nas.study.STALE_S) and failed
            # the trial as orphaned, queuing its architecture again: the study keeps that record.
            pass

    # ---- held duplicates -----------------------------------------------------------------------
    def _resolve_held(self, promote: bool = True) -> Held | None:
        """Record held duplicates whose original has a result now; return one whose original will
        never have one (it ended without a result: its driver died), to be trained in its place."""
        promoted, keep = None, []
        for held in self.held:
            original = self._finished_index.get(held.arch_hash)
            if original is not None:
                self._record_duplicate(held.trial, dict(held.trial.user_attrs), original)
            elif held.arch_hash in self._over_latency:
                self._record_latency_copy(held.trial, dict(held.trial.user_attrs), self._over_latency[held.arch_hash])
            elif promote and held.arch_hash not in self._running_elsewhere and promoted is None:
                promoted = held
            else:
                keep.append(held)
        self.held = keep
        return promoted

    # ---- interruption -----------------------------------------------------------------------------
    def _interrupt(self, run: Running) -> None:
        # The retry first: stopped in between (a second Ctrl-C), the trial is still RUNNING and is
        # recovered as an orphan at the next start (a second retry is then a duplicate, never trained),
        # rather than failed as "queued" with no retry queued.
        enqueue_retry(self.study, run.frozen)
        self._finish_written(run.frozen, TrialState.FAIL, None, {
            "outcome": INTERRUPTED, "reason": "the search was interrupted; queued to train again",
            "curve": run.curve})
        self._in_flight -= 1
        self.on_event(Interrupted(run.number))

    def interrupt_running(self) -> None:
        """After Tune stopped (a signal): fail what is still running here as ``interrupted`` and
        queue it to train again; drop held proposals (never written, never trained)."""
        self.interrupting = True
        for tune_id in list(self.running):
            self._interrupt(self.running.pop(tune_id))
        for held in self.held:
            self._release(held.trial)
        self.held = []
