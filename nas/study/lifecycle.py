"""The search's study: created or resumed with its settings checked, and the drivers' liveness.

A study is made by one ``nas search`` and resumed by re-running it: the settings stored on the
study (:class:`~nas.study.records.StudySettings`) must match, or the search is refused with what
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
import time
import warnings
from collections.abc import Sequence
from typing import Any

import optuna

from nas import __version__
from nas.common.errors import UserError
from nas.common.files import fingerprint  # noqa: F401  (part of this module's interface)
from nas.study.records import (
    OBJECTIVES,
    SPACE_SOURCE_ATTR,
    StudySettings,
)


def directions(objectives: tuple[str, ...]) -> list[str]:
    return ["maximize" if OBJECTIVES[o][0] else "minimize" for o in objectives]


def study_names(storage: Any) -> list[str]:
    return sorted(s.study_name for s in storage.get_all_studies())


def resolve_study_names(storage: Any, wanted: Sequence[str] | None, where: str = "this storage") -> list[str]:
    """The studies a command reads: ``wanted`` (each must exist), or the storage's only study.
    One-line errors that name what the storage holds. Every command and the dashboards choose so."""
    names = study_names(storage)
    if wanted:
        missing = [w for w in dict.fromkeys(wanted) if w not in names]
        if missing:
            known = f" (studies: {', '.join(names)})" if names else " (it holds no study yet)"
            raise UserError(f"no study named {', '.join(repr(m) for m in missing)} in {where}{known}")
        return list(dict.fromkeys(wanted))
    if not names:
        raise UserError(f"{where} holds no study yet (run 'nas search' first)")
    if len(names) > 1:
        raise UserError(f"{where} holds {len(names)} studies; pick one with --study: {', '.join(names)}")
    return names


def resolve_study_name(storage: Any, name: str | None, where: str = "this storage") -> str:
    """``name`` if the storage holds it; with no name, the storage's only study."""
    return resolve_study_names(storage, [name] if name is not None else None, where)[0]


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
                      sampler: optuna.samplers.BaseSampler | None = None) -> tuple[optuna.Study, bool]:
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
