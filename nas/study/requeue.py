"""What is queued to train again: the orphans of dead drivers, interrupted trials, and
architectures queued by hand (``nas fidelity``), each as a WAITING trial whose claim is guarded
by its architecture."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from nas.study.liveness import drivers
from nas.study.records import (
    DRIVER_ATTR,
    ORPHANED,
)
from nas.study.storage import clock


def recover_orphans(study: optuna.Study, storage: Any, me: str | None = None) -> list[tuple[int, int]]:
    """Fail every RUNNING trial whose driver is not alive (``orphaned``, with the reason) and queue
    its architecture to train again. ``storage``: the study's :class:`nas.study.writer.DeferredStorage`.
    Returns ``(orphan number, queued number)`` pairs."""
    now = clock(storage)
    alive = {d.id for d in drivers(storage, study._study_id).values() if d.alive(now)}
    if me:
        alive.add(me)
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.system_attrs.get(DRIVER_ATTR)
        if owner in alive or storage.is_pending(trial._trial_id):  # a proposal of this process, not yet written
            continue
        reason = f"its driver {owner or '(unknown)'} stopped without recording a result; queued to train again"
        # Failed and queued again in one transaction: never failed without its retry.
        queued = storage.fail_and_requeue(study._study_id, trial._trial_id, {"outcome": ORPHANED, "reason": reason},
                                          _retry_of(trial))
        if queued is not None:  # None: another driver recovered it first
            recovered.append((trial.number, queued))
    return recovered


def enqueue_retry(study: optuna.Study, trial: Any) -> int:
    """Queue a trial's parameters to be asked again (:func:`_retry_of`). Returns its number (of the
    trial written here, whatever other drivers queue meanwhile)."""
    trial_id = study._storage.create_new_trial(study._study_id, template_trial=_retry_of(trial))
    return study._storage.get_trial_number_from_id(trial_id)


def _retry_of(trial: Any) -> optuna.trial.FrozenTrial:
    """A WAITING trial with ``trial``'s parameters, as ``study.enqueue_trial`` makes one, remembering
    which trial it retries and its architecture, by which a driver's claim of it is guarded."""
    return _queued(trial.params, trial.user_attrs.get("arch_hash"), {"retry_of": trial.number})


def _queued(params: dict[str, Any], arch_hash: str | None, attrs: dict[str, Any]) -> optuna.trial.FrozenTrial:
    """A WAITING trial with fixed parameters, as ``study.enqueue_trial`` makes one; its architecture
    (when known) guards a driver's claim of it like a fresh proposal's."""
    attrs = {**attrs, **({"arch_hash": arch_hash} if arch_hash else {})}
    return optuna.trial.create_trial(state=TrialState.WAITING, user_attrs=attrs,
                                     system_attrs={"fixed_params": dict(params)})


def enqueue_architectures(study: optuna.Study, queue: list[tuple[dict[str, Any], str, dict[str, Any]]]) -> int:
    """Queue ``(params, arch_hash, attrs)`` architectures the study holds in no trial yet (so a resumed
    run queues nothing twice). Returns how many were queued."""
    held = {t.user_attrs.get("arch_hash") for t in study.get_trials(deepcopy=False)}
    n = 0
    for params, arch_hash, attrs in queue:
        if arch_hash not in held:
            study._storage.create_new_trial(study._study_id, template_trial=_queued(params, arch_hash, attrs))
            held.add(arch_hash)
            n += 1
    return n
