"""Which studies a dashboard shows, and reading them: the dashboards' only contact with storage.

Dashboards only read. A study's trials are read, on a database (an ``RDBStorage``), by
:class:`_RDBReader`, not Optuna's ``get_trials``: a few SELECTs with SQLAlchemy Core on Optuna's
own tables in one short read transaction, re-reading only the trials that are new or still
unfinished since the last read, so the live page's polling stays cheap on a study of thousands of
trials. Other storages (a journal file), and a read the reader fails (every later read too, unless
the failure was a dropped connection), use Optuna's ``study.get_trials`` on the ``optuna.Study`` a
:class:`StudySource` keeps between refreshes; the study's attributes and settings are always read
through that Study (``study.user_attrs``).
SQLite is opened in WAL mode by ``nas.study.storage``, so a reader never blocks the search's writes and
is never blocked by them.

A study's *fidelity checks* (the linked studies ``nas fidelity`` makes in the same storage, each
naming its parent in the study user attribute ``fidelity_of``) are read with it
(:attr:`StudyData.links`), for the report's proxy-vs-reference plots; they are left out of the
default choice of study, so a storage holding one study and its checks still needs no ``--study``.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from nas.common.errors import UserError
from nas.study.records import OBJECTIVES, StudySettings, TrialRecord, read_settings, read_trials
from nas.study.storage import StorageURL, open_storage, parse_storage, transient, with_retries

__all__ = ["StudyData", "StudySource", "link_of", "linked_names", "open_sources", "quiet_gc", "resolve_names"]


@contextmanager
def quiet_gc() -> Iterator[None]:
    """No garbage collection while a study is read: building thousands of ORM rows and frozen
    trials allocates only live objects, and the collector's passes over them made a first read
    of a large study 2-5x slower (measured). Collection resumes, and catches up, afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass
class StudyData:
    """One study as the figures see it: its name, settings and trial records at one moment."""

    name: str
    objectives: tuple[str, ...]
    settings: StudySettings | None
    attrs: dict[str, Any]
    records: list[TrialRecord]
    links: list[StudyData] = field(default_factory=list)  # its fidelity checks (linked studies), by name

    @property
    def synthetic(self) -> bool:
        return bool(self.attrs.get("synthetic"))

    @property
    def budget(self) -> tuple[float, float] | None:
        """(low, high) FLOPs; low is 0 for an upper bound only."""
        if self.settings is None:
            return None
        return self.settings.budget_low, self.settings.budget_high


def link_of(attrs: dict[str, Any]) -> str | None:
    """The parent's name when study user attributes ``attrs`` are those of a fidelity check."""
    from nas.study.agreement import LINK_ATTR

    link = attrs.get(LINK_ATTR)
    parent = link.get("study") if isinstance(link, dict) else None
    return parent if isinstance(parent, str) else None


def linked_names(storage: Any, name: str) -> list[str]:
    """The fidelity checks of study ``name`` in ``storage`` (the linked studies ``nas fidelity``
    made), by name."""
    return sorted(s.study_name for s in storage.get_all_studies() if link_of(s.user_attrs) == name)


def resolve_names(storage: Any, wanted: Sequence[str] | None, where: str) -> list[str]:
    """The study names to show (:func:`nas.study.lifecycle.resolve_study_names`). With none
    wanted, fidelity checks do not count when their parent is in the storage: they are shown in
    their parent's report, so a storage of one study and its checks shows that study."""
    from nas.study.lifecycle import resolve_study_names

    if not wanted:
        summaries = storage.get_all_studies()
        names = {s.study_name for s in summaries}
        checks = {s.study_name for s in summaries if link_of(s.user_attrs) in names}
        own = sorted(names - checks)
        if checks and len(own) == 1:
            return own
        if checks and len(own) > 1:
            raise UserError(f"{where} holds {len(own)} studies; pick one with --study: {', '.join(own)} "
                            f"({len(checks)} fidelity check{'s' if len(checks) > 1 else ''} of them not listed: "
                            f"each is shown in its study's report)")
    return resolve_study_names(storage, wanted, where)


def _objectives(study: Any, settings: StudySettings | None) -> tuple[str, ...]:
    if settings is not None:
        return tuple(settings.objectives)
    with warnings.catch_warnings():  # metric_names is "experimental" in Optuna; it is the schema here
        warnings.simplefilter("ignore")
        metric_names = study.metric_names
    if metric_names and all(m in OBJECTIVES for m in metric_names) and metric_names[0] == "accuracy":
        return tuple(metric_names)
    raise UserError(f"study {study.study_name!r} was not made by 'nas search' (it has no nas settings and its "
                    f"objectives are not accuracy, flops, params or latency)")


@dataclass
class _Trial:
    """The fields of a ``FrozenTrial`` that ``TrialRecord.from_frozen`` reads."""

    number: int
    state: Any
    values: list[float] | None
    params: dict[str, Any]
    user_attrs: dict[str, Any]
    system_attrs: dict[str, Any]
    datetime_start: datetime | None
    datetime_complete: datetime | None

    @property
    def constraints(self) -> dict[str, float]:
        from nas.study.optuna_internals import constraints_of

        return constraints_of(self.system_attrs)


def _local(utc: datetime | None) -> datetime | None:
    # Optuna stores naive UTC and hands out naive local time; do as it does.
    return None if utc is None else utc.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)


class _RDBReader:
    """Reads a study's trials from an RDB storage with SQLAlchemy Core, in one short read
    transaction, and re-reads only trials that are new or unfinished since the last call.

    Why not ``study.get_trials()``: Optuna builds an ORM object for every parameter and
    attribute row, and a first read of 10,000 trials took 8-13 s here (about 40 rows a trial),
    which alone broke the report's few-seconds target. Core rows cost a fraction of that. The
    tables and columns come from Optuna's own (private) models, through
    :func:`nas.study.optuna_internals.rdb_models`, and the conversions from its own helpers, so the rows
    are read exactly as Optuna reads them; a test checks that the records equal
    ``read_trials(study)``'s, and any failure falls back to it.
    Finished trials are immutable in Optuna (it refuses to change them), so caching them is safe.
    """

    FINISHED = frozenset({"COMPLETE", "PRUNED", "FAIL"})

    def __init__(self, engine: Any, study_id: int) -> None:
        self.engine, self.study_id = engine, study_id
        self._cache: dict[int, TrialRecord] = {}  # trial_id -> record of a finished trial
        self._dists: dict[str, Any] = {}  # distribution JSON -> distribution (a study has few)

    def read(self) -> list[TrialRecord]:
        from sqlalchemy import select

        from nas.study.optuna_internals import rdb_models

        models = rdb_models()

        T = models.TrialModel.__table__
        with self.engine.connect() as conn, conn.begin():  # one read transaction, closed at once
            rows = conn.execute(select(T.c.trial_id, T.c.number, T.c.state, T.c.datetime_start,
                                       T.c.datetime_complete).where(T.c.study_id == self.study_id)
                                .order_by(T.c.number)).all()
            todo = [r.trial_id for r in rows if r.trial_id not in self._cache]
            children = self._children(conn, todo, len(todo) == len(rows)) if todo else {}
        out: list[TrialRecord] = []
        for r in rows:
            rec = self._cache.get(r.trial_id)
            if rec is None:
                params, values, user, system = children.get(r.trial_id, ({}, {}, {}, {}))
                rec = TrialRecord.from_frozen(_Trial(
                    number=r.number, state=r.state, values=[values[k] for k in sorted(values)] or None,
                    params=params, user_attrs=user, system_attrs=system,
                    datetime_start=_local(r.datetime_start), datetime_complete=_local(r.datetime_complete)))
                if r.state.name in self.FINISHED:
                    self._cache[r.trial_id] = rec
            out.append(rec)
        return out

    def _children(self, conn: Any, ids: list[int], whole_study: bool) -> dict[int, tuple[dict, dict, dict, dict]]:
        import json

        from optuna.distributions import json_to_distribution
        from sqlalchemy import select

        from nas.study.optuna_internals import rdb_models

        models = rdb_models()

        T = models.TrialModel.__table__
        P, V = models.TrialParamModel.__table__, models.TrialValueModel.__table__
        U, S = models.TrialUserAttributeModel.__table__, models.TrialSystemAttributeModel.__table__
        out: dict[int, tuple[dict, dict, dict, dict]] = {i: ({}, {}, {}, {}) for i in ids}
        # The whole study: one sub-select per table. A refresh: the few new or unfinished trials.
        batches = [select(T.c.trial_id).where(T.c.study_id == self.study_id).scalar_subquery()] if whole_study \
            else [ids[k:k + 500] for k in range(0, len(ids), 500)]
        for batch in batches:
            q = conn.execute(select(P.c.trial_id, P.c.param_name, P.c.param_value, P.c.distribution_json)
                             .where(P.c.trial_id.in_(batch)).order_by(P.c.param_id))
            for tid, name, value, dist_json in q:
                if tid in out:
                    dist = self._dists.get(dist_json) or self._dists.setdefault(dist_json,
                                                                                json_to_distribution(dist_json))
                    out[tid][0][name] = dist.to_external_repr(value)
            q = conn.execute(select(V.c.trial_id, V.c.objective, V.c.value, V.c.value_type)
                             .where(V.c.trial_id.in_(batch)))
            for tid, objective, value, kind in q:
                if tid in out:
                    out[tid][1][objective] = models.TrialValueModel.stored_repr_to_value(value, kind)
            for k, table in ((2, U), (3, S)):
                q = conn.execute(select(table.c.trial_id, table.c.key, table.c.value_json)
                                 .where(table.c.trial_id.in_(batch)).order_by(table.c.trial_id))
                for tid, key, value_json in q:
                    if tid in out:
                        out[tid][k][key] = json.loads(value_json)
        return out


class StudySource:
    """One study, re-readable: :meth:`read` returns a fresh :class:`StudyData`."""

    def __init__(self, storage: Any, name: str) -> None:
        import optuna

        self.name = name
        self._storage = storage
        self._links: dict[str, StudySource] = {}  # the fidelity checks' sources, kept between reads
        self._study = optuna.load_study(study_name=name, storage=storage)
        self._settings = read_settings(self._study)
        self.objectives = _objectives(self._study, self._settings)
        engine = getattr(storage, "engine", None)  # RDBStorage: the fast reader; others: Optuna's API
        self._reader = _RDBReader(engine, self._study._study_id) if engine is not None else None

    def records(self) -> list[TrialRecord]:
        if self._reader is not None:
            try:
                return with_retries(self._reader.read)  # a dropped connection: read again, same reader
            except Exception as exc:
                if not transient(exc):  # an Optuna whose tables differ: its own API reads them from now on
                    self._reader = None
        return read_trials(self._study)

    def read(self, links: bool = True) -> StudyData:
        """The study now; with ``links``, its fidelity checks too (:attr:`StudyData.links`)."""
        attrs = dict(self._study.user_attrs)
        settings = read_settings(self._study) or self._settings
        return StudyData(name=self.name, objectives=self.objectives, settings=settings, attrs=attrs,
                         records=self.records(), links=self.read_links() if links else [])

    def read_links(self) -> list[StudyData]:
        """This study's fidelity checks now, found afresh each time (a check may start at any moment).
        A check that cannot be read as a nas study is left out: it cannot hide the study's own report."""
        out = []
        for name in linked_names(self._storage, self.name):
            try:
                source = self._links.get(name) or self._links.setdefault(name, StudySource(self._storage, name))
                out.append(source.read(links=False))
            except (UserError, KeyError):  # not a nas study, or deleted since it was listed
                continue
        return out


def open_sources(storage_url: str | None, names: Sequence[str] | None) -> tuple[list[StudySource], StorageURL]:
    """Open the storage read-only in spirit (``create=False``: a mistyped path is an error, not a
    new empty database) and the studies to show."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    su = parse_storage(storage_url)
    storage = open_storage(su, create=False)
    chosen = resolve_names(storage, names, f"storage {su.display()}")
    return [StudySource(storage, n) for n in chosen], su
