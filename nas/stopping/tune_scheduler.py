"""MO-ASHA as a Ray Tune trial scheduler: the adapter between Tune's results and :class:`nas.stopping.rule.MOASHA`.

Tune's own schedulers rank one metric; this one hands each result's objective vector to the
multi-objective rule and turns its answer into ``CONTINUE``/``STOP``. What it relies on (Ray 2.60,
``tune/execution/tune_controller.py``):

* ``on_trial_result`` gets every reported result, flattened; a STOP ends the trial, after which
  Tune calls ``on_trial_complete`` (for a natural end too, with the last result, and after a
  natural end ``on_trial_result`` once more with that last result plus ``done``).
* A trial retried after a failure comes back through ``on_trial_add`` with the same trial (and
  config) and reports from epoch 1 again: the rule answers each repeated rung with its first
  decision, so nothing needs undoing here.
* Tune checks ``scheduler.metric`` against every result: it stays None (the objectives are the
  rule's business; failure results without an accuracy must not raise), through Tune's private
  ``_metric`` (:func:`nas.cluster.ray_internals.unset_metric`).
* The Tuner pickles its ``TuneConfig``, this scheduler included, with cloudpickle when it is
  constructed: the ``on_stop`` hook is left out of that copy (it may hold a study or a lock); the
  key function must pickle (a lambda does; :class:`ConfigKey` does).

Results come from a function trainable calling ``tune.report`` once per epoch with ``epoch``
(1-based), ``accuracy``, ``final`` (True only on the last report of a trial that trained its whole
schedule) and the constant objectives (``flops``, ``params``, ``latency``). A result with
``final=True`` is never stopped; a result missing ``epoch`` or an objective (a failure reported as
a result) is let through unrecorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from nas.cluster.ray_internals import unset_metric
from nas.stopping.rule import MOASHA, STOP
from nas.workers.contract import FinalReport

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

__all__ = ["ConfigKey", "MOASHAScheduler"]

logger = logging.getLogger(__name__)


class ConfigKey:
    """A picklable key function: the value at ``path`` in the trial's config, e.g.
    ``ConfigKey("nas", "trial_number")`` reads ``trial.config["nas"]["trial_number"]``."""

    def __init__(self, *path: str) -> None:
        self.path = path

    def __call__(self, trial: Trial) -> Hashable:
        value: Any = trial.config
        for part in self.path:
            value = value[part]
        return value

    def __repr__(self) -> str:
        return f"ConfigKey{self.path!r}"


def _trial_id(trial: Trial) -> Hashable:
    return trial.trial_id


class MOASHAScheduler(FIFOScheduler):
    """A Tune scheduler that stops trials by the MO-ASHA rule (:mod:`nas.stopping.rule`).

    :param rule: the rule (its objectives name the result keys it reads).
    :param key: trial -> the rule's trial key; the Tune trial id by default. The search driver keys
        by Optuna trial number: ``ConfigKey("nas", "trial_number")``.
    :param on_stop: called as ``on_stop(trial_key, epoch)`` each time this scheduler stops a trial.
    :param preload: (trial key, epoch, vector) records to rebuild the rungs from on resume; epochs
        that are no rung are ignored, so whole stored curves can be given.
    :param epoch_attr, final_attr: the result keys of the epoch and of the completion flag.
    """

    def __init__(self, rule: MOASHA, *, key: Callable[[Trial], Hashable] | None = None,
                 on_stop: Callable[[Hashable, int], None] | None = None,
                 preload: Iterable[tuple[Hashable, int, Sequence[float] | Mapping[str, float]]] = (),
                 epoch_attr: str = "epoch", final_attr: str = "final") -> None:
        super().__init__()
        unset_metric(self)
        self.rule = rule
        self._key = key or _trial_id
        self._on_stop = on_stop
        self._epoch_attr = epoch_attr
        self._final_attr = final_attr
        self._stopped: dict[Hashable, int] = {}
        self._added: dict[Hashable, int] = {}  # key -> times added (more than once: retried)
        self._warned: set[str] = set()
        rule.record_all(preload)

    # ---- Tune's interface -------------------------------------------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        # Tune's metric and mode (single-objective) say nothing to a multi-objective rule; accepting
        # them without adopting them keeps ``metric`` None, so Tune never demands it in a result.
        return True

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        key = self._key(trial)
        self._added[key] = self._added.get(key, 0) + 1

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        if result.get(self._final_attr):
            final = FinalReport.from_result(result)
            if self.rule.gate is not None and final.status == "ok":
                # A curve trained to the end: evidence of how well each rung ranks (nas.stopping.rule.RungGate).
                self.rule.gate.add_curve(self._key(trial), {c["epoch"]: c.get("accuracy")
                                                            for c in final.curve if c.get("epoch")})
            return TrialScheduler.CONTINUE
        epoch = result.get(self._epoch_attr)
        missing = [o for o in self.rule.objectives if result.get(o) is None]
        if epoch is None or missing:
            what = self._epoch_attr if epoch is None else ", ".join(missing)
            if what not in self._warned:
                self._warned.add(what)
                logger.warning("MO-ASHA: a result without %s is let through unrecorded", what)
            return TrialScheduler.CONTINUE
        key = self._key(trial)
        decision = self.rule.on_result(key, int(epoch), {o: result[o] for o in self.rule.objectives})
        if decision != STOP:
            return TrialScheduler.CONTINUE
        if key not in self._stopped:
            self._stopped[key] = int(epoch)
            if self._on_stop is not None:
                self._on_stop(key, int(epoch))
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        return f"Using MO-ASHA: rungs {self.rule.rungs}, eta {self.rule.eta}, stopped {len(self._stopped)}"

    # ---- for the driver ---------------------------------------------------------------------

    def stopped_trials(self) -> dict[Hashable, int]:
        """Trial key -> the epoch this scheduler stopped it at (its own STOP decisions only)."""
        return dict(self._stopped)

    def retried_trials(self) -> list[Hashable]:
        """Keys of trials Tune added more than once (retried after a failure)."""
        return [k for k, n in self._added.items() if n > 1]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_on_stop"] = None
        return state
