"""Every private name of Optuna that nas uses, in one place, checked against the installed Optuna.

Optuna's public API is a storage of single-row calls and a ``Study``/``Trial`` pair that copies
as it goes; nas needs a few things it does not offer (each function below says which and why):

* :func:`rdb_models`: Optuna's table models (``optuna.storages._rdb.models``), for the
  one-transaction writes of :mod:`nas.study.writer` and the fast reader of
  :mod:`nas.dashboards.studies` (SQLAlchemy Core on Optuna's own tables: the ORM calls behind
  ``RDBStorage`` cost a transaction per value and an ORM object per row).
* :func:`rdb_of`: the ``RDBStorage`` behind Optuna's read cache (``_CachedStorage._backend``).
* :func:`clear_trials_cache` and :func:`cached_frozen_trial`: the study's per-thread trial cache
  (``study._thread_local.cached_all_trials``) and a trial's own copy of its row
  (``trial._cached_frozen_trial``), which :mod:`nas.search.searcher` manages itself because it makes
  trials without ``study.ask()`` and sets their attributes without a deep copy each.
* :func:`frozen_copy`: a cheap copy of a ``FrozenTrial`` (writes its ``_params``, ``_values``, ...).
* :func:`constraints_of`: Optuna's reading of a trial's constraints from its system attributes
  (``optuna.study._constrained_optimization._get_constraints_from_system_attrs``).

What would break on an upgrade: any of these may change in any Optuna release (they are private);
a changed table model would make the Core writes fail or write rows Optuna reads differently, a
renamed cache would let the sampler read a stale study (or fail), a renamed field of
``FrozenTrial`` would make copies share containers. :func:`check` says which, in one sentence
each; ``tests/nas/test_library_internals.py`` runs it, and ``pyproject.toml`` pins ``optuna<6``.

Checks: at import, the installed version (it must be Optuna :data:`WRITTEN_FOR`) and every private
name whose Optuna module is already imported (so importing this module imports nothing more: the
table models, for one, bring SQLAlchemy); a problem is logged, never raised, so commands that never
touch these names still start. :func:`check` checks every name, importing what it must, and
returns the problems. Each function checks its own names on first use and raises
``RuntimeError`` with the sentence when they are not what this module was written for.

The remaining accepted private attributes, used directly where they are needed (nas/search/run.py,
nas/study/lifecycle.py, nas/search/fidelity.py, nas/search/searcher.py, nas/study/writer.py, nas/cli/,
dashboards/studies.py, bench/): ``study._study_id``, ``study._storage`` and ``trial._trial_id``
(of ``Trial`` and ``FrozenTrial``). Optuna exposes none of them (a study's id only as a query by
its name, ``storage.get_study_id_from_name``); they are too many and too simple to wrap, a rename
fails loudly (``AttributeError``) at the first proposal, and :func:`check` checks them too.

:class:`Internals` (the checks) serves :mod:`nas.cluster.ray_internals` as well.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for annotations only: Optuna does not export it (BaseStorage.get_all_studies returns it)
    from optuna.study._frozen import FrozenStudy as FrozenStudy
    from optuna.trial import FrozenTrial

__all__ = ["INTERNALS", "TESTED", "WRITTEN_FOR", "Internals", "cached_frozen_trial", "check", "clear_trials_cache",
           "constraints_of", "frozen_copy", "rdb_models", "rdb_of"]

#: The Optuna major version this module was written for, and the release it was tested with.
WRITTEN_FOR, TESTED = 5, "5.1.0"

#: The tables and columns nas reads and writes with SQLAlchemy Core.
MODEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "StudyModel": ("study_id", "study_name"),
    "StudyUserAttributeModel": ("study_id", "key", "value_json"),
    "TrialModel": ("trial_id", "number", "study_id", "state", "datetime_start", "datetime_complete"),
    "TrialParamModel": ("param_id", "trial_id", "param_name", "param_value", "distribution_json"),
    "TrialValueModel": ("trial_id", "objective", "value", "value_type"),
    "TrialUserAttributeModel": ("trial_id", "key", "value_json"),
    "TrialSystemAttributeModel": ("trial_id", "key", "value_json"),
    "TrialIntermediateValueModel": ("trial_id", "step", "intermediate_value", "intermediate_value_type"),
}
#: The models' conversions nas uses, so values are stored and read exactly as Optuna does.
MODEL_HELPERS = ("TrialValueModel.value_to_stored_repr", "TrialValueModel.stored_repr_to_value",
                 "TrialIntermediateValueModel.intermediate_value_to_stored_repr")
#: FrozenTrial's containers behind its public properties (``params`` returns ``_params``, ...).
FROZEN_FIELDS = ("_params", "_distributions", "_user_attrs", "_system_attrs", "_values")


class Internals:
    """The private names one library adapter (this module, :mod:`nas.cluster.ray_internals`) relies on, and
    their checks. ``probe`` registers a check: it returns None when the names are as written for, else
    what differs; the library module it looks into decides whether it runs at import (only if that
    module is imported already, so the check costs no import)."""

    def __init__(self, dist: str, title: str, module: str, written_for: int, tested: str, pin: str) -> None:
        self.dist, self.title, self.module = dist, title, module  # "optuna", "Optuna", "nas.study.optuna_internals"
        self.written_for, self.tested, self.pin = written_for, tested, pin
        self.probes: dict[str, tuple[str, str, Callable[[], str | None]]] = {}  # name -> (what, module, probe)
        self.verified: set[str] = set()
        self.at_import: list[str] = []

    def probe(self, name: str, what: str, module: str) -> Callable[[Callable[[], str | None]], Any]:
        def register(fn: Callable[[], str | None]) -> Callable[[], str | None]:
            self.probes[name] = (what, module, fn)
            return fn

        return register

    def version(self) -> str:
        try:
            return version(self.dist)
        except PackageNotFoundError:
            return "none"

    def _sentence(self, what: str | None, detail: str | None) -> str | None:
        v = self.version()
        where = f"{self.dist} {v} is installed"
        fix = f"update {self.module.replace('.', '/')}.py"
        if v.split(".")[0] != str(self.written_for):
            changed = f": {what} changed ({detail})" if what else ""
            return f"{where} but {self.module} was written for {self.title} {self.written_for}{changed}; " \
                   f"pin {self.pin} or {fix}"
        if what is None:
            return None
        return f"{where} and {self.module} was written for {self.title} {self.written_for} (tested with " \
               f"{self.tested}), but {what} changed ({detail}); install {self.dist}=={self.tested} or {fix}"

    def problems(self, names: Iterable[str]) -> list[str]:
        """One sentence per probe of ``names`` that fails; the version's sentence when none does."""
        found: list[str | None] = []
        for name in names:
            what, _, probe = self.probes[name]
            try:
                detail = probe()
            except Exception as exc:  # the module or the name is gone
                detail = f"{type(exc).__name__}: {exc}"
            if detail is not None:
                found.append(self._sentence(what, detail))
        return [s for s in found or [self._sentence(None, None)] if s]

    def check(self) -> list[str]:
        return self.problems(list(self.probes))

    def check_at_import(self) -> None:
        self.at_import = self.problems(n for n, (_, module, _) in self.probes.items() if module in sys.modules)
        if self.at_import:
            logging.getLogger(self.module).warning("%s", " ".join(self.at_import))

    def require(self, name: str) -> None:
        """Check the names of probe ``name`` once; raise ``RuntimeError`` with the sentence if they differ."""
        if name not in self.verified:
            problems = self.problems([name])
            if problems:
                raise RuntimeError(" ".join(problems))
            self.verified.add(name)


INTERNALS = Internals("optuna", "Optuna", __name__, WRITTEN_FOR, TESTED, f"optuna<{WRITTEN_FOR + 1}")


@INTERNALS.probe("models", "its private table models", "optuna.storages._rdb.models")
def _models() -> str | None:
    from optuna.storages._rdb import models

    for name, columns in MODEL_COLUMNS.items():
        model = getattr(models, name, None)
        if model is None:
            return f"there is no {name}"
        table = model.__table__
        missing = [c for c in columns if c not in table.c]
        if missing:
            return f"{name} has no column {missing[0]!r}"
        if name != "StudyModel":  # nas inserts rows into every other table: a new required column breaks that
            required = [c.name for c in table.c if not (c.nullable or c.primary_key or c.name in columns
                                                        or c.default is not None or c.server_default is not None)]
            if required:
                return f"{name} has a required column {required[0]!r} that nas does not write"
    for helper in MODEL_HELPERS:
        model, attr = helper.split(".")
        if not callable(getattr(getattr(models, model), attr, None)):
            return f"there is no {helper}"
    return None


@INTERNALS.probe("read cache", "its read cache (_CachedStorage._backend)", "optuna.storages._cached_storage")
def _read_cache() -> str | None:
    from optuna.storages._cached_storage import _CachedStorage

    return None if "_backend" in _CachedStorage.__init__.__code__.co_names else "_CachedStorage has no _backend"


@INTERNALS.probe("trials cache", "its study's trial cache (study._thread_local.cached_all_trials)",
                 "optuna.study.study")
def _trials_cache() -> str | None:
    from optuna.study.study import Study, _ThreadLocalStudyAttribute

    if "cached_all_trials" not in vars(_ThreadLocalStudyAttribute):
        return "_ThreadLocalStudyAttribute has no cached_all_trials"
    if "cached_all_trials" not in Study._get_trials.__code__.co_names:
        return "Study._get_trials no longer reads cached_all_trials"
    return None


@INTERNALS.probe("trial cache", "its trial's cached row (trial._cached_frozen_trial)", "optuna.trial._trial")
def _trial_cache() -> str | None:
    from optuna.trial import Trial

    return None if "_cached_frozen_trial" in Trial.user_attrs.fget.__code__.co_names \
        else "Trial.user_attrs no longer reads _cached_frozen_trial"


@INTERNALS.probe("frozen trial", "its FrozenTrial fields (_params, _values, ...)", "optuna.trial._frozen")
def _frozen_trial() -> str | None:
    from optuna.trial import FrozenTrial, TrialState

    trial = FrozenTrial(number=0, state=TrialState.COMPLETE, value=1.0, datetime_start=None, datetime_complete=None,
                        params={}, distributions={}, user_attrs={}, system_attrs={}, intermediate_values={},
                        trial_id=0)
    missing = [f for f in FROZEN_FIELDS if not hasattr(trial, f)]
    return f"FrozenTrial has no {missing[0]}" if missing else None


@INTERNALS.probe("constraints", "its constraint reader (_get_constraints_from_system_attrs)",
                 "optuna.study._constrained_optimization")
def _constraints() -> str | None:
    from optuna.study._constrained_optimization import _get_constraints_from_system_attrs

    got = _get_constraints_from_system_attrs({"constraints:high": 0.5})
    return None if got == {"high": 0.5} else f"it reads {{'constraints:high': 0.5}} as {got!r}"


@INTERNALS.probe("ids", "its private ids (study._study_id, study._storage, trial._trial_id)", "optuna.study.study")
def _ids() -> str | None:
    from optuna.study.study import Study
    from optuna.trial import FrozenTrial, Trial

    for cls, names in ((Study, ("_study_id", "_storage")), (Trial, ("_trial_id",))):
        missing = [n for n in names if n not in cls.__init__.__code__.co_names]
        if missing:
            return f"{cls.__name__} has no {missing[0]}"
    return None if "_trial_id" in FrozenTrial.__init__.__code__.co_names else "FrozenTrial has no _trial_id"


def check() -> list[str]:
    """One sentence per private name of Optuna that is not what this module was written for (empty: all fine)."""
    return INTERNALS.check()


INTERNALS.check_at_import()


# ---- the adapters ---------------------------------------------------------------------------------------
def rdb_models() -> Any:
    """Optuna's SQLAlchemy table models (``optuna.storages._rdb.models``). Public API: none; the
    storage's single-row calls cost a transaction each (about 20 ms a proposal). Using Optuna's own
    models keeps the schema, and its migrations, Optuna's."""
    INTERNALS.require("models")
    from optuna.storages._rdb import models

    return models


def rdb_of(storage: Any) -> Any:
    """The ``RDBStorage`` that ``storage`` is, or that Optuna's read cache wraps (``optuna.storages.
    get_storage`` hands back a ``_CachedStorage`` around an ``RDBStorage``; its ``_backend`` is the
    only way to it); None for any other storage."""
    from optuna.storages import RDBStorage

    if isinstance(storage, RDBStorage):
        return storage
    INTERNALS.require("read cache")
    inner = getattr(storage, "_backend", None)
    return inner if isinstance(inner, RDBStorage) else None


def clear_trials_cache(study: Any) -> None:
    """Make the study's sampler read the study afresh, as ``study.ask()`` does first (nas makes its
    trials without ``ask``: it claims queued trials with their owner in one write)."""
    INTERNALS.require("trials cache")
    study._thread_local.cached_all_trials = None


def cached_frozen_trial(trial: Any) -> FrozenTrial:
    """The row an ``optuna.Trial`` keeps of itself (what ``trial.user_attrs`` and the sampler read):
    nas writes attributes to the storage in one call and updates this copy with the same values,
    instead of ``set_user_attr``'s deep copy of every value."""
    INTERNALS.require("trial cache")
    return trial._cached_frozen_trial


def frozen_copy(trial: FrozenTrial) -> FrozenTrial:
    """A copy whose containers are the caller's own. Attribute values were deep-copied when they
    were set and distributions are not mutated, so this is as safe as a deep copy at a fraction
    of its cost (three of these per proposal took a third of an infeasible one's time). The public
    constructor validates every field, and ``copy.deepcopy`` copies every value."""
    import copy

    INTERNALS.require("frozen trial")
    out = copy.copy(trial)
    out._params = dict(trial._params)
    out._distributions = dict(trial._distributions)
    out._user_attrs = dict(trial._user_attrs)
    out._system_attrs = dict(trial._system_attrs)
    out.intermediate_values = dict(trial.intermediate_values)
    if trial._values is not None:
        out._values = list(trial._values)
    return out


def constraints_of(system_attrs: dict[str, Any]) -> dict[str, float]:
    """A trial's constraints as Optuna reads them from its system attributes (``FrozenTrial.constraints``
    does the same, but the dashboards' fast reader builds no ``FrozenTrial``)."""
    INTERNALS.require("constraints")
    from optuna.study._constrained_optimization import _get_constraints_from_system_attrs

    return _get_constraints_from_system_attrs(system_attrs)
