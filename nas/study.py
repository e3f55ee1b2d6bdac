"""The search's study: created or resumed with its settings checked, and the drivers' liveness.

A study is made by one ``nas search`` and resumed by re-running it: the settings stored on the
study (:class:`~nas.records.StudySettings`) must match, or the search is refused with what
differs. Several drivers may work on one study (PostgreSQL); each keeps a liveness record in
the study, so a trial left RUNNING by a driver that died is told apart from one that another
driver is still training. Optuna's own heartbeats only run inside ``study.optimize``, not with
ask-and-tell, so the driver keeps its own.

Liveness: each driver writes ``nas:driver:<id>`` (host, boot time, pid and the process's start
time, last heartbeat) as a study system attribute every :data:`HEARTBEAT_S` seconds. A driver
on this machine is alive while its process is (same pid and start time: no waiting for a
heartbeat to expire after a SIGKILL); a driver elsewhere while its heartbeat is younger than
:data:`STALE_S`. A RUNNING trial whose driver is not alive is failed as ``orphaned`` and its
architecture queued (``enqueue_trial``) to train again. Nothing here imports Ray.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import socket
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from nas import __version__
from nas.records import (
    DRIVER_ATTR,
    DRIVER_PREFIX,
    OBJECTIVES,
    ORPHANED,
    SPACE_SOURCE_ATTR,
    StudySettings,
)
from nas.search_spaces.errors import UserError
from nas.storage import clock

HEARTBEAT_S = 10.0
STALE_S = 60.0


def fingerprint(text: str) -> str:
    """A short content hash of a space file: the same text, the same fingerprint."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def directions(objectives: tuple[str, ...]) -> list[str]:
    return ["maximize" if OBJECTIVES[o][0] else "minimize" for o in objectives]


def study_names(storage: Any) -> list[str]:
    return sorted(s.study_name for s in storage.get_all_studies())


def resolve_study_name(storage: Any, name: str | None) -> str:
    """``name`` if the storage holds it; with no name, the storage's only study. One-line errors."""
    names = study_names(storage)
    if name is not None:
        if name not in names:
            known = f"; it holds: {', '.join(names)}" if names else "; it holds no study yet"
            raise UserError(f"no study named {name!r} in this storage{known}")
        return name
    if len(names) == 1:
        return names[0]
    if not names:
        raise UserError("this storage holds no study yet (run 'nas search' first)")
    raise UserError(f"this storage holds {len(names)} studies; pick one with --study: {', '.join(names)}")


def _check_settings(study: optuna.Study, name: str, settings: StudySettings) -> None:
    stored = StudySettings.from_attrs(study.user_attrs)
    for _ in range(20):  # another driver may have created the study an instant ago: its settings follow
        if stored is not None or study.trials:
            break
        time.sleep(0.25)
        stored = StudySettings.from_attrs(study.user_attrs)
    if stored is None:
        raise UserError(f"study {name!r} exists but was not made by 'nas search'; pick another --study")
    diff = stored.differences(settings)
    if diff:
        raise UserError(f"study {name!r} was made with other settings: {'; '.join(diff)}; "
                        f"re-run with the study's settings to resume it, or pick another --study")


def check_existing(storage: Any, name: str, settings: StudySettings) -> bool:
    """Read-only check before anything starts: whether study ``name`` exists (refusing one made
    with other settings)."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return False
    _check_settings(study, name, settings)
    return True


def open_search_study(storage: Any, name: str, settings: StudySettings, space_source: str,
                      sampler: optuna.samplers.BaseSampler) -> tuple[optuna.Study, bool]:
    """The study ``name``: created with ``settings``, or loaded after checking they match.
    Returns ``(study, created)``."""
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        try:
            study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                        directions=directions(settings.objectives))
        except (optuna.exceptions.DuplicatedStudyError, optuna.exceptions.StorageInternalError):
            # another driver created it just now
            return open_search_study(storage, name, settings, space_source, sampler)
        with warnings.catch_warnings():  # set_metric_names is "experimental" since Optuna 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(settings.objectives))
        storage.set_study_user_attrs(study._study_id, settings.to_attrs())
        storage.set_study_system_attr(study._study_id, SPACE_SOURCE_ATTR, space_source)
        return study, True
    _check_settings(study, name, settings)
    return study, False


def new_settings(**fields: Any) -> StudySettings:
    now = datetime.datetime.now().isoformat(timespec="seconds")
    return StudySettings(nas_version=__version__, created=now, **fields)


# ---- liveness ---------------------------------------------------------------------------------


def _process_start(pid: int) -> float | None:
    """When a live process started; None when there is none. A zombie (killed, not yet reaped by
    its parent) is dead: it keeps its pid and start time until it is reaped, which a parent may
    not do for as long as it runs."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _machine() -> str:
    """Where a pid means this process: hostname, boot time and PID namespace. Containers on one
    host share its boot time, and with host networking its hostname too, but not its pids: a
    driver in another PID namespace is judged by its heartbeat, never by a pid looked up here."""
    import psutil

    try:
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:  # no procfs (macOS): one namespace per machine
        namespace = ""
    return f"{socket.gethostname()}@{int(psutil.boot_time())}{'@' + namespace if namespace else ''}"


@dataclass
class DriverRecord:
    id: str
    machine: str
    pid: int
    pid_start: float | None
    started: float
    heartbeat: float
    ended: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def alive(self, now: float | None = None) -> bool:
        if self.ended:
            return False
        if self.machine == _machine():
            start = _process_start(self.pid)
            return start is not None and (self.pid_start is None or abs(start - self.pid_start) < 1.0)
        return (now or time.time()) - self.heartbeat < STALE_S


def drivers(storage: Any, study_id: int) -> dict[str, DriverRecord]:
    out = {}
    for key, value in storage.get_study_system_attrs(study_id).items():
        if key.startswith(DRIVER_PREFIX):
            try:
                out[key[len(DRIVER_PREFIX):]] = DriverRecord(**value)
            except TypeError:
                continue
    return out


class Driver:
    """This process's liveness record in a study."""

    def __init__(self, storage: Any, study_id: int) -> None:
        self.storage, self.study_id = storage, study_id
        now = time.time()
        self.record = DriverRecord(id=uuid.uuid4().hex[:12], machine=_machine(), pid=os.getpid(),
                                   pid_start=_process_start(os.getpid()), started=now, heartbeat=now)
        self._last = 0.0

    @property
    def id(self) -> str:
        return self.record.id

    def beat(self, force: bool = False) -> bool:
        """Write the heartbeat if :data:`HEARTBEAT_S` has passed (or ``force``); returns whether it did."""
        now = time.time()
        if not (force or now - self._last >= HEARTBEAT_S):
            return False
        self.record.heartbeat = clock(self.storage)  # the database's clock, by which the others judge it
        self.storage.set_study_system_attr(self.study_id, DRIVER_PREFIX + self.id, self.record.to_dict())
        self._last = now
        return True

    def end(self) -> None:
        self.record.ended = True
        self.beat(force=True)


def recover_orphans(study: optuna.Study, storage: Any, me: str | None = None) -> list[tuple[int, int]]:
    """Fail every RUNNING trial whose driver is not alive (``orphaned``, with the reason) and queue
    its architecture to train again. ``storage``: the study's :class:`nas.deferred_storage.DeferredStorage`.
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
