"""Multi-objective asynchronous successive halving (MO-ASHA): the early-stopping rule of ``nas search``.

A plain class with no Ray or Optuna import, so it is unit-tested and replayed in milliseconds;
:mod:`nas.stopping.tune_scheduler` wraps it as a Ray Tune scheduler.

The rule
--------
Rungs sit at ``grace * eta**k`` epochs (k = 0, 1, ...) strictly below the full schedule
``max_epochs``: a trial at its last epoch is complete and never stopped. When a trial reports a
rung epoch, its objective vector there (accuracy at that epoch plus its constant objectives) is
recorded at the rung and ranked among every vector recorded at that rung so far, its own included:
by non-dominated sorting first (:func:`nas.common.pareto.non_dominated_sort`), then, inside its front, by
crowding distance (:func:`nas.common.pareto.crowding_distance`, larger is better). Its *position* is the
number of vectors ranked strictly ahead of it: all vectors of better fronts, plus those of its own
front with a strictly larger crowding distance. With ``n`` vectors at the rung it continues when
``position < keep(n)``, where::

    keep(n) = n            while n < eta     (the rung is still filling: nobody is stopped)
    keep(n) = n // eta     once n >= eta     (the top 1/eta, rounded down)

Why this share rule. Synchronous successive halving and promotion-based ASHA (Li et al. 2020) keep
``floor(n / eta)`` of a rung, and promote nobody from a rung with fewer than ``eta`` results: those
trials wait until enough arrive to compare them. MO-ASHA's reference implementation (Schmucker et
al. 2021, AutoGluon's promotion rung system) does the same: no promotion below ``eta`` records,
then the top ``int(n / eta)``. A stopping rule cannot make a trial wait, and a stop is final, so
the first ``eta - 1`` trials at a rung continue rather than being stopped on one or two comparisons
(Ray Tune's ASHA and syne-tune's stop the second trial at a rung whenever it ranks below the
first). That costs at most ``eta - 1`` extra continuations per rung over a whole search; after
that a trial continues when it is among the top ``floor(n/eta)`` of the ``n``, a share that tends
to ``1/eta`` from below (the tests check it over many trials). Rounding up instead (``ceil``)
would continue more than the 1/eta share at every ``n`` that is no multiple of ``eta``; ``eta`` is
the one knob for how aggressive the rule is.

Ties. Counting only vectors *strictly* ahead resolves ties in favour of the trial being decided:
in two objectives both ends of a front have infinite crowding distance, and a new trial that
widens the front (the cheapest, or the most accurate, so far) is not stopped because an earlier
extreme happens to share its infinite distance. Earlier decisions are never revisited (they are
already acted on), so only the new trial's rank matters.

A vector with a NaN or infinite objective (a diverged run) ranks behind every finite one and is
stopped at the first rung it reaches; it still counts in ``n``, as ASHA would rank it last.

Determinism and retries. A decision is a pure function of the vectors recorded at the rung before
it and its own vector: the first record of a (trial, rung) stands. A Tune trial retried after a
worker died restarts at epoch 1 and reports its rung epochs again; each repeat gets the decision the
first report got, whatever accuracy it reports this time. Once a trial is stopped at a rung, every
later report of it at or past that rung is answered "stop" as well.

Resume. :meth:`MOASHA.record` adds a vector without deciding (for rebuilding the rungs from stored
learning curves; non-rung epochs are ignored, so whole curves can be fed), and
:meth:`MOASHA.state` / :meth:`MOASHA.from_state` export and import the rungs as JSON-ready data.
Since the ranking of a new vector depends only on the *set* of vectors already at its rung (up to
crowding-distance ties among exactly equal vectors), a rebuilt rule decides every later trial as
the uninterrupted one would have, whatever order the stored curves are replayed in; the exported
state keeps the order, so a rule rebuilt from it also repeats every earlier decision.

Exact rung epochs only: a report at epoch 4 does not stand in for a missed rung at 3 (the
trainable reports every epoch; a skipped rung is a bug to see, not to paper over).

Rungs that know when they are noise
-----------------------------------
A rung's ranking is only worth acting on if accuracy at that epoch ranks candidates the way the
final accuracy does, and early epochs often do not (on BENCHMARKS.md's recorded curves, Kendall tau
between epoch 1 of 9 and epoch 9 is 0.03). With a :class:`RungGate`, a rung stops nothing until the
study's own completed curves show that it ranks like the end: at least :data:`GATE_MIN_CURVES`
curves trained to the full schedule, and Kendall tau between the accuracy at the rung and the final
accuracy of at least :data:`GATE_MIN_TAU`. Until then the rung is *waiting*: every trial reaching it
continues (its vector is still recorded, so the rung is full when it opens). Once open, a rung stays
open for the rest of the run (the trials it stops no longer complete, so later curves are a
selected sample that would understate tau); a resumed search measures the gate again from every
completed curve in the study.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Literal

from nas.common.errors import UserError
from nas.common.pareto import Vector, crowding_distance, dominates, iter_fronts, to_minimisation

__all__ = ["CONTINUE", "STOP", "MOASHA", "RungEvidence", "RungGate", "keep_count", "rung_epochs"]

CONTINUE: Literal["continue"] = "continue"
STOP: Literal["stop"] = "stop"
Decision = Literal["continue", "stop"]

STATE_VERSION = 1


def rung_epochs(grace: int, eta: int, max_epochs: int) -> list[int]:
    """Epochs ``grace * eta**k`` strictly below ``max_epochs`` (may be empty)."""
    rungs, r = [], grace
    while r < max_epochs:
        rungs.append(r)
        r *= eta
    return rungs


def keep_count(n: int, eta: int) -> int:
    """How many of the ``n`` vectors at a rung rank high enough to continue (see the module doc)."""
    return n if n < eta else n // eta


def _check_int(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"early stopping: {name} must be an integer, got {value!r}")
    if value < least:
        raise UserError(f"early stopping: {name} must be at least {least}, got {value}")
    return value


#: A rung opens once this many curves trained to the full schedule show it ranks like the end...
GATE_MIN_CURVES = 10
#: ...with Kendall tau between the accuracy at the rung and the final accuracy at least this. At 10
#: curves tau's standard error under no association is 0.25, so 0.6 is 2.4 of them (p about 0.01
#: one-sided): strict, because the gate is tested again after every curve. Chosen on the replay of
#: the recorded curves (BENCHMARKS.md, "Early stopping"): of (8, 0.5), (10, 0.5), (12, 0.5), (8, 0.6)
#: and (10, 0.6), only (10, 0.6) never opened epoch 2 of 9 (tau 0.22 there) in 20 trial orders, and it
#: kept 100.0 % of the pool's hypervolume with rungs at 2 and 6 (99.2 % with rungs at 1 and 3).
GATE_MIN_TAU = 0.6


class RungEvidence:
    """What the completed curves say of one rung: ``n`` curves, ``tau`` (None below 3), open or waiting."""

    def __init__(self, rung: int, n: int, tau: float | None, open_: bool, min_curves: int, min_tau: float) -> None:
        self.rung, self.n, self.tau, self.open = rung, n, tau, open_
        self.min_curves, self.min_tau = min_curves, min_tau

    def describe(self) -> str:
        tau = "-" if self.tau is None else f"{self.tau:.2f}"
        if self.open:
            return f"epoch {self.rung} active (tau {tau} over {self.n})"
        why = (f"{self.n} of {self.min_curves} completed curves" if self.n < self.min_curves
               else f"tau {tau} over {self.n} < {self.min_tau:g}")
        return f"epoch {self.rung} waiting ({why})"

    def to_dict(self) -> dict[str, Any]:
        return {"rung": self.rung, "n": self.n, "tau": self.tau, "active": self.open}


class RungGate:
    """Which rungs may stop trials, from the rank agreement of completed curves (see the module doc).

    :param rungs: the rule's rung epochs. :param max_epochs: the full schedule.
    """

    def __init__(self, rungs: Sequence[int], max_epochs: int, min_curves: int = GATE_MIN_CURVES,
                 min_tau: float = GATE_MIN_TAU) -> None:
        self.rungs, self.max_epochs = list(rungs), int(max_epochs)
        self.min_curves, self.min_tau = int(min_curves), float(min_tau)
        self._curves: dict[Hashable, dict[int, float]] = {}
        self._open: set[int] = set()
        self._cache: dict[int, RungEvidence] = {}

    def add_curve(self, key: Hashable, curve: Mapping[int, float | None]) -> None:
        """A trial's per-epoch accuracy; kept only when it reached the full schedule with finite values."""
        clean = {int(e): float(a) for e, a in curve.items() if a is not None and math.isfinite(float(a))}
        if self.max_epochs in clean and key not in self._curves:
            self._curves[key] = clean
            self._cache.clear()

    def evidence(self, rung: int) -> RungEvidence:
        cached = self._cache.get(rung)
        if cached is not None:
            return cached
        pairs = [(c[rung], c[self.max_epochs]) for c in self._curves.values() if rung in c]
        tau = _kendall_tau([a for a, _ in pairs], [b for _, b in pairs]) if len(pairs) >= 3 else None
        if rung not in self._open and len(pairs) >= self.min_curves and tau is not None and tau >= self.min_tau:
            self._open.add(rung)  # stays open (see the module doc)
        ev = RungEvidence(rung, len(pairs), tau, rung in self._open, self.min_curves, self.min_tau)
        self._cache[rung] = ev
        return ev

    def is_open(self, rung: int) -> bool:
        return self.evidence(rung).open

    def describe(self) -> str:
        return ", ".join(self.evidence(r).describe() for r in self.rungs)


def _kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b, 0 where either side is constant (no ranking to agree with)."""
    import warnings

    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant input warns and answers NaN
        tau = stats.kendalltau(x, y).statistic
    return 0.0 if tau is None or math.isnan(tau) else float(tau)


class MOASHA:
    """The MO-ASHA stopping rule over ``objectives`` (see the module doc for the rule itself).

    :param objectives: names of the objectives, in the order of the vectors given to it.
    :param maximise: one flag per objective (accuracy True; flops, params, latency False).
    :param max_epochs: the trials' full schedule; rungs lie strictly below it.
    :param grace: the first rung (epochs), at least 1.
    :param eta: the reduction factor, an integer of at least 2: the top 1/eta of a rung continues.
    :param gate_curves: above 0, a rung stops nothing until that many completed curves show it ranks
        like the end (:class:`RungGate`; feed them with ``rule.gate.add_curve``); 0, the plain rule.

    Trial keys are any hashable values (a Tune trial id, an Optuna trial number); vectors are
    sequences in ``objectives`` order or mappings from objective name to value.
    """

    def __init__(self, objectives: Sequence[str], maximise: Sequence[bool], max_epochs: int,
                 grace: int = 1, eta: int = 3, gate_curves: int = 0) -> None:
        objectives = tuple(str(o) for o in objectives)
        maximise = tuple(bool(m) for m in maximise)
        if not objectives:
            raise UserError("early stopping needs at least one objective")
        if len(set(objectives)) != len(objectives):
            raise UserError(f"early stopping: objectives repeat: {', '.join(objectives)}")
        if len(maximise) != len(objectives):
            raise UserError(f"early stopping: {len(objectives)} objectives but {len(maximise)} directions")
        self.max_epochs = _check_int("max_epochs", max_epochs, 1)
        self.grace = _check_int("grace", grace, 1)
        self.eta = _check_int("eta", eta, 2)
        if grace >= max_epochs:
            raise UserError(f"early stopping: grace {grace} is not below the {max_epochs}-epoch schedule, so there "
                            "is no rung and no trial could ever be stopped")
        self.objectives = objectives
        self.maximise = maximise
        self.rungs: list[int] = rung_epochs(grace, eta, max_epochs)
        # Per rung, in the order recorded: the trial keys, their vectors as given, and as minimisation
        # vectors (what is ranked); decisions are computed on demand and cached.
        self._keys: dict[int, list[Hashable]] = {r: [] for r in self.rungs}
        self._given: dict[int, list[Vector]] = {r: [] for r in self.rungs}
        self._points: dict[int, list[Vector]] = {r: [] for r in self.rungs}
        self._index: dict[int, dict[Hashable, int]] = {r: {} for r in self.rungs}
        self._decisions: dict[int, dict[Hashable, Decision]] = {r: {} for r in self.rungs}
        self.gate: RungGate | None = (RungGate(self.rungs, self.max_epochs, min_curves=gate_curves)
                                      if gate_curves > 0 else None)

    # ---- the rule ---------------------------------------------------------------------------

    def on_result(self, trial_key: Hashable, epoch: int, vector: Sequence[float] | Mapping[str, float]) -> Decision:
        """The decision for a trial that has just finished ``epoch`` (1-based) with ``vector``.

        Records the vector when ``epoch`` is a rung the trial has not been recorded at; a repeat of a
        (trial, rung) gets the first report's decision. Never "stop" at ``epoch >= max_epochs``.
        """
        epoch = int(epoch)
        if epoch >= self.max_epochs:
            return CONTINUE
        stopped = self._stopped_at(trial_key, epoch)
        if stopped is not None:
            return STOP
        if epoch not in self._index:
            return CONTINUE
        self._add(trial_key, epoch, vector)
        if self.gate is not None and not self.gate.is_open(epoch):
            # A waiting rung promotes everyone; the first decision of a (trial, rung) stands.
            self._decisions[epoch].setdefault(trial_key, CONTINUE)
        return self.decision_at(trial_key, epoch)  # type: ignore[return-value]

    def record(self, trial_key: Hashable, epoch: int, vector: Sequence[float] | Mapping[str, float]) -> None:
        """Add a stored result without deciding (resume). Epochs that are no rung, and (trial, rung)
        pairs already recorded, are ignored, so whole learning curves can be fed in."""
        epoch = int(epoch)
        if epoch in self._index:
            self._add(trial_key, epoch, vector)

    def decision_at(self, trial_key: Hashable, rung: int) -> Decision | None:
        """The decision for the trial's record at ``rung``, ranked among the vectors recorded there
        before it; None when the trial has no record at that rung."""
        index = self._index.get(rung, {}).get(trial_key)
        if index is None:
            return None
        cached = self._decisions[rung].get(trial_key)
        if cached is None:
            cached = self._decide(self._points[rung][: index + 1])
            self._decisions[rung][trial_key] = cached
        return cached

    def stopped(self) -> dict[Hashable, int]:
        """Trial key -> the rung it was (or, for records added by :meth:`record`, would have been)
        stopped at."""
        out: dict[Hashable, int] = {}
        for r in self.rungs:
            for key in self._keys[r]:
                if key not in out and self.decision_at(key, r) == STOP:
                    out[key] = r
        return out

    def recorded(self, rung: int) -> list[tuple[Hashable, Vector]]:
        """(trial key, vector as given) for each record at ``rung``, in the order recorded."""
        return list(zip(self._keys[rung], self._given[rung]))

    def _decide(self, points: Sequence[Vector]) -> Decision:
        # The last point is the one being decided.
        n, new = len(points), len(points) - 1
        if not all(math.isfinite(x) for x in points[new]):
            return STOP
        keep = keep_count(n, self.eta)
        if keep >= n:
            return CONTINUE
        sub = [p for p in points if all(math.isfinite(x) for x in p)]
        me = len(sub) - 1  # ``new`` is finite and last, so it is the last of ``sub`` too
        if sum(1 for p in sub if dominates(p, sub[me])) >= keep:
            return STOP  # every vector that dominates it lies in an earlier front
        ahead = 0
        for front in iter_fronts(sub):
            if me not in front:
                ahead += len(front)
                if ahead >= keep:
                    return STOP
                continue
            if ahead + len(front) <= keep:
                return CONTINUE  # the whole front fits: no tie to break
            distance = crowding_distance([sub[i] for i in front])
            mine = distance[front.index(me)]
            ahead += sum(1 for d in distance if d > mine)
            break
        return CONTINUE if ahead < keep else STOP

    def _stopped_at(self, trial_key: Hashable, epoch: int) -> int | None:
        for r in self.rungs:
            if r > epoch:
                break
            if trial_key in self._index[r] and self.decision_at(trial_key, r) == STOP:
                return r
        return None

    def _add(self, trial_key: Hashable, rung: int, vector: Sequence[float] | Mapping[str, float]) -> None:
        if trial_key in self._index[rung]:
            return  # the first record stands
        given = self._vector(vector)
        self._index[rung][trial_key] = len(self._keys[rung])
        self._keys[rung].append(trial_key)
        self._given[rung].append(given)
        self._points[rung].append(to_minimisation([given], self.maximise)[0])

    def _vector(self, vector: Sequence[float] | Mapping[str, float]) -> Vector:
        if isinstance(vector, Mapping):
            missing = [o for o in self.objectives if o not in vector]
            if missing:
                raise ValueError(f"result lacks objective(s) {', '.join(missing)}")
            values = [vector[o] for o in self.objectives]
        else:
            values = list(vector)
            if len(values) != len(self.objectives):
                raise ValueError(f"expected {len(self.objectives)} objective values "
                                 f"({', '.join(self.objectives)}), got {len(values)}")
        return tuple(math.nan if v is None else float(v) for v in values)

    # ---- state ------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The rule's settings and every rung's records, in order, as JSON-ready data (trial keys
        are kept as they are: use str or int keys to round-trip through JSON)."""
        return {
            "version": STATE_VERSION,
            "objectives": list(self.objectives), "maximise": list(self.maximise),
            "max_epochs": self.max_epochs, "grace": self.grace, "eta": self.eta,
            "gate_curves": self.gate.min_curves if self.gate else 0,
            "rungs": {str(r): [[k, list(v)] for k, v in zip(self._keys[r], self._given[r])] for r in self.rungs},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> MOASHA:
        """A rule rebuilt from :meth:`state`: same settings, same records in the same order, so it
        answers every later result as the original would have."""
        if state.get("version") != STATE_VERSION:
            raise UserError(f"early stopping state has version {state.get('version')!r}, expected {STATE_VERSION}")
        rule = cls(state["objectives"], state["maximise"], state["max_epochs"], state["grace"], state["eta"],
                   gate_curves=int(state.get("gate_curves", 0)))
        for rung, records in state["rungs"].items():
            for key, vector in records:
                rule.record(_hashable(key), int(rung), vector)
        return rule

    def record_all(self, records: Iterable[tuple[Hashable, int, Sequence[float] | Mapping[str, float]]]) -> None:
        """:meth:`record` for each (trial key, epoch, vector)."""
        for key, epoch, vector in records:
            self.record(key, epoch, vector)

    def __repr__(self) -> str:
        counts = ", ".join(f"{r}: {len(self._keys[r])}" for r in self.rungs)
        return (f"MOASHA(objectives={list(self.objectives)}, max_epochs={self.max_epochs}, grace={self.grace}, "
                f"eta={self.eta}, recorded={{{counts}}})")


def _hashable(key: Any) -> Hashable:
    # JSON turns tuples into lists; a key must hash again.
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key
