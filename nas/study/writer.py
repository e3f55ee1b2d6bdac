"""A storage wrapper that writes a proposal in one transaction instead of twenty.

``study.ask()`` followed by a dozen ``suggest_*`` calls, a few attributes, a constraint and
``tell`` costs one database transaction each through Optuna's RDB storage, and each parameter
costs several ORM queries more (distribution checks): about 20 ms per proposal on SQLite.
Most proposals of a budgeted search never train (over budget, invalid, duplicates), so that
was the driver's whole per-proposal cost.

:class:`DeferredStorage` wraps an Optuna storage. A trial created by ``study.ask()`` is
*pending*: it lives in memory under a negative id; the sampler and ``optuna.Trial`` read and
write it as usual; it reaches the database in one transaction, either when it is told (an
infeasible or duplicate proposal, written finished) or when the driver :meth:`commit`\\ s it
for training (written RUNNING). :meth:`update` writes a running trial's attributes, state and
values in one transaction too. Everything else passes straight through.

On an RDB backend the one-transaction writes are SQLAlchemy Core statements on Optuna's own
tables (its private models, through :mod:`nas.study.optuna_internals`: the schema stays Optuna's,
migrations included; the ORM's session and unit of work cost more than the writes) and skip the
per-parameter distribution checks, which the driver makes once per study instead (the study's
space fingerprint). Other backends (the journal file) take
Optuna's public calls, which are cheap there.

What a crash can lose: a pending proposal, which by construction was never trained. A pending
trial is visible to this process's sampler (``get_all_trials``), not to other processes; it
lives for milliseconds.
"""

from __future__ import annotations

import copy
import datetime
import json
import uuid
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nas.cluster.fault_points import point
from nas.study.optuna_internals import frozen_copy, rdb_models, rdb_of
from nas.study.storage import Retrying, with_retries

if TYPE_CHECKING:
    from nas.study.optuna_internals import FrozenStudy

#: The system attribute holding the token of the write that created a trial (idempotent retries).
WRITE_TOKEN = "nas:write"
#: The user attributes a commit guard sees of every trial.
GUARD_KEYS = ("arch_hash", "outcome")
Guard = Callable[[list[tuple[int, TrialState, dict[str, Any]]]], "str | None"]


class Refused(Exception):  # noqa: N818 -- a decision, not a failure
    """A guard refused to write a trial; ``str(exc)`` is its reason."""


class DeferredStorage(BaseStorage):
    def __init__(self, backend: BaseStorage) -> None:
        self._database: RDBStorage | None = rdb_of(backend)  # Optuna wraps RDBStorage in a read cache
        self.backend = Retrying(backend)  # a dropped connection is retried, not fatal
        self._pending: dict[int, tuple[int, FrozenTrial]] = {}  # pending id -> (study id, trial)
        self._committed: dict[int, int] = {}  # pending id -> database id, for late callers
        self._written: dict[int, FrozenTrial] = {}  # pending id -> the trial as just written
        self._next_id = -1
        self._n_trials: dict[int, int] = {}  # study id -> trials seen in the database

    # ---- pending trials ------------------------------------------------------------------------
    def is_pending(self, trial_id: int) -> bool:
        return trial_id in self._pending

    def commit(self, trial_id: int, guard: Guard | None = None) -> FrozenTrial:
        """Write a pending trial as RUNNING (one transaction); returns it with its database id and number.

        ``guard`` sees every trial of the study (number, state, the attributes in :data:`GUARD_KEYS`)
        inside that transaction, after it has taken the study's write lock, and may refuse with a
        reason (:class:`Refused`; the trial stays pending). Several drivers then never both start
        the same architecture, nor start more trials than the study wants: the check and the write
        are one step. A journal file has no transactions: the check is made just before the write, and
        ``nas search`` lets one driver at a time work on a journal study.
        """
        study_id, trial = self._pending.pop(trial_id)
        try:
            trial._trial_id, trial.number = self._insert(study_id, trial, guard)
        except Refused:
            self._pending[trial_id] = (study_id, trial)
            raise
        self._committed[trial_id] = trial._trial_id
        return trial

    def claim_waiting(self, study_id: int, system_attrs: Mapping[str, Any],
                      guard_for: Callable[[str | None, int], Guard] | None = None) -> tuple[int, str | None] | None:
        """Take the oldest queued (WAITING) trial of the study that ``guard_for`` lets through: RUNNING,
        with ``system_attrs`` (its driver), in one transaction, so no other driver ever sees it running
        without an owner (and takes it for an orphan). Optuna's ``study.ask`` claims first and leaves
        the owner to a second write, and checks nothing.

        ``guard_for(arch_hash, number)`` makes the guard for a queued trial (its ``arch_hash``
        attribute, None when it has none) and sees the study inside the transaction, as
        :meth:`commit`'s guard does: a trial refused as ``running N`` stays queued (its architecture
        trains elsewhere), ``target`` claims nothing (the study has what it wants), and any other
        reason (``trained N``) is claimed all the same, to be recorded rather than trained. Returns
        ``(trial id, reason)``, or ``None`` when nothing is claimed."""
        if self._database is None:  # the journal: one driver at a time (nas.search.run refuses a second one)
            trials = self.backend.get_all_trials(study_id, deepcopy=False)
            view = [(t.number, t.state, {k: t.user_attrs.get(k) for k in GUARD_KEYS}) for t in trials]
            waiting = [(t._trial_id, t.number) for t in trials if t.state == TrialState.WAITING]
            for tid, reason in _claimable(guard_for, view, waiting):
                if self.backend.set_trial_state_values(tid, TrialState.RUNNING):
                    for key, value in system_attrs.items():
                        self.backend.set_trial_system_attr(tid, key, value)
                    return tid, reason
            return None
        attrs = {**system_attrs, WRITE_TOKEN: uuid.uuid4().hex}
        attempts = iter(range(1000))
        claimed = with_retries(lambda: self._claim_once(study_id, attrs, guard_for, next(attempts) > 0))
        if claimed is not None:  # Optuna's read cache learns of the trial (its parameters are written through it)
            self.backend.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return claimed

    def _claim_once(self, study_id: int, attrs: dict[str, Any], guard_for: Callable[[str | None, int], Guard] | None,
                    retry: bool) -> tuple[int, str | None] | None:
        from sqlalchemy import select, update
        models = rdb_models()

        assert self._database is not None
        trials = models.TrialModel.__table__
        with self._database.engine.begin() as conn:  # Core, one transaction (see _insert_once)
            _lock_study(conn, study_id)
            if retry:  # the first attempt may have committed before its connection dropped
                mine = _written(conn, study_id, attrs[WRITE_TOKEN])
                if mine is not None:
                    return mine[0], "claimed before the connection dropped"  # the caller re-reads the study
            view = self._guard_view(conn, study_id) if guard_for is not None else []
            waiting = conn.execute(select(trials.c.trial_id, trials.c.number).where(
                trials.c.study_id == study_id, trials.c.state == TrialState.WAITING).order_by(trials.c.number)).all()
            for tid, reason in _claimable(guard_for, view, waiting):
                conn.execute(update(trials).where(trials.c.trial_id == tid)
                             .values(state=TrialState.RUNNING, datetime_start=datetime.datetime.now()))
                # a retry given back and claimed again has them: replace them
                _replace_attrs(conn, models.TrialSystemAttributeModel.__table__, tid, attrs)
                point("write")
                return int(tid), reason
        return None

    def set_user_attrs(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """Several user attributes at once. A pending trial takes the values as they are, without the
        deep copy of one ``set_trial_user_attr`` per value: the caller hands them over and never changes
        them (a config's nested dict was a tenth of an infeasible proposal's time)."""
        if trial_id in self._pending:
            self._pending[trial_id][1].user_attrs.update(attrs)
            return
        for key, value in attrs.items():
            self.backend.set_trial_user_attr(self._real(trial_id), key, value)

    def discard(self, trial_id: int) -> None:
        """Forget a pending trial without writing it."""
        self._pending.pop(trial_id, None)

    def update(self, trial_id: int, state: TrialState | None = None, values: Sequence[float] | None = None,
               user_attrs: Mapping[str, Any] | None = None, system_attrs: Mapping[str, Any] | None = None) -> None:
        """Attributes, then values and state, of a written trial, in one transaction on RDB backends
        (retried if the connection drops; a retry after a commit whose answer was lost is a no-op)."""
        with_retries(self._update, self._real(trial_id), state, values, user_attrs, system_attrs)

    def _update(self, trial_id: int, state: TrialState | None, values: Sequence[float] | None,
                user_attrs: Mapping[str, Any] | None, system_attrs: Mapping[str, Any] | None) -> None:
        user_attrs, system_attrs = dict(user_attrs or {}), dict(system_attrs or {})
        if self._database is None:
            for k, v in user_attrs.items():
                self.backend.set_trial_user_attr(trial_id, k, v)
            for k, v in system_attrs.items():
                self.backend.set_trial_system_attr(trial_id, k, v)
            if state is not None:
                self.backend.set_trial_state_values(trial_id, state, values)
            return
        from sqlalchemy import insert, select, update
        models = rdb_models()

        trials = models.TrialModel.__table__
        with self._database.engine.begin() as conn:  # Core, one transaction (see _insert_once)
            row = conn.execute(select(trials.c.state).where(trials.c.trial_id == trial_id).with_for_update()).first()
            if row is None:
                raise KeyError(f"no trial with trial_id {trial_id}")
            if state is not None and state.is_finished() and row[0] == state:
                return  # written already (a retry after a commit whose answer the dropped connection lost)
            self._database.check_trial_is_updatable(trial_id, row[0])
            for model, attrs in ((models.TrialUserAttributeModel, user_attrs),
                                 (models.TrialSystemAttributeModel, system_attrs)):
                _replace_attrs(conn, model.__table__, trial_id, attrs)
            if state is not None:
                if values:
                    conn.execute(insert(models.TrialValueModel.__table__), [
                        dict(zip(("value", "value_type"), models.TrialValueModel.value_to_stored_repr(float(v))),
                             trial_id=trial_id, objective=objective) for objective, v in enumerate(values)])
                done = {"datetime_complete": datetime.datetime.now()} if state.is_finished() else {}
                conn.execute(update(trials).where(trials.c.trial_id == trial_id).values(state=state, **done))
            point("write")

    def _real(self, trial_id: int) -> int:
        return self._committed.get(trial_id, trial_id)

    def fail_and_requeue(self, study_id: int, trial_id: int, user_attrs: Mapping[str, Any],
                         retry: FrozenTrial) -> int | None:
        """Fail a RUNNING trial (with ``user_attrs``: its outcome and reason) and queue ``retry`` in its
        place, in one transaction: a driver that dies, or a connection that drops, at any moment leaves
        both done or neither (the trial still RUNNING, to be recovered again). Returns the queued
        trial's number, or ``None`` when the trial had finished already (another driver recovered it)."""
        if self._database is None:  # the journal: one driver at a time (nas.search.run refuses a second one)
            try:
                for key, value in user_attrs.items():
                    self.backend.set_trial_user_attr(trial_id, key, value)
                self.backend.set_trial_state_values(trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                return None
            return self._insert(study_id, retry)[1]
        from sqlalchemy import select, update
        models = rdb_models()

        trials = models.TrialModel.__table__

        def fail(conn: Any) -> None:
            row = conn.execute(select(trials.c.state).where(trials.c.trial_id == trial_id).with_for_update()).first()
            if row is None or row[0] != TrialState.RUNNING:
                raise Refused("finished already")  # rolled back: nothing written
            _replace_attrs(conn, models.TrialUserAttributeModel.__table__, trial_id, user_attrs)
            conn.execute(update(trials).where(trials.c.trial_id == trial_id).values(
                state=TrialState.FAIL, datetime_complete=datetime.datetime.now()))

        try:
            return self._insert(study_id, retry, also=fail)[1]
        except Refused:
            return None

    def _insert(self, study_id: int, trial: FrozenTrial, guard: Guard | None = None,
                also: Callable[[Any], None] | None = None) -> tuple[int, int]:
        """Write a whole trial (params, values, attributes, state) in one transaction; returns its
        database id and number. ``also(connection)`` writes more in the same transaction (it may
        refuse, as ``guard`` may)."""
        if self._database is None:
            if guard is not None:
                seen = [(t.number, t.state, {k: t.user_attrs.get(k) for k in GUARD_KEYS})
                        for t in self.backend.get_all_trials(study_id, deepcopy=False)]
                reason = guard(seen)
                if reason:
                    raise Refused(reason)
            tid = self.backend.create_new_trial(study_id, template_trial=trial)
            return tid, self.backend.get_trial_number_from_id(tid)
        # A write token makes a retry idempotent: if the connection dropped after the commit, the
        # retry finds the trial the first attempt wrote instead of writing it twice.
        token = uuid.uuid4().hex
        trial.system_attrs[WRITE_TOKEN] = token
        attempts = iter(range(1000))
        return with_retries(lambda: self._insert_once(study_id, trial, guard, also, token, next(attempts) > 0))

    def _insert_once(self, study_id: int, trial: FrozenTrial, guard: Guard | None,
                     also: Callable[[Any], None] | None, token: str, retry: bool) -> tuple[int, int]:
        from sqlalchemy import func, insert, select, update
        models = rdb_models()

        assert self._database is not None
        trials = models.TrialModel.__table__
        # SQLAlchemy Core on one connection, one transaction: the ORM's session and unit of work took
        # most of an infeasible proposal's time (one object per attribute, then per statement).
        with self._database.engine.begin() as conn:
            # Take the study's write lock first (a row lock on PostgreSQL, the database's on SQLite,
            # where SELECT ... FOR UPDATE takes none): trial numbers stay unique, and a guard's view
            # cannot change before the write.
            _lock_study(conn, study_id)
            if retry:
                written = _written(conn, study_id, token)
                if written is not None:
                    return written
            if guard is not None:
                reason = guard(self._guard_view(conn, study_id))
                if reason:
                    raise Refused(reason)  # rolled back: nothing written
            if also is not None:
                also(conn)
            # The number is the trial's rank in the study, as Optuna's TrialModel.count_past_trials
            # counts it (the study lock above keeps it unique).
            tid = conn.execute(insert(trials).values(
                study_id=study_id, number=None, state=trial.state, datetime_start=trial.datetime_start,
                datetime_complete=trial.datetime_complete)).inserted_primary_key[0]
            number = conn.execute(select(func.count(trials.c.trial_id)).where(
                trials.c.study_id == study_id, trials.c.trial_id < tid)).scalar_one()
            conn.execute(update(trials).where(trials.c.trial_id == tid).values(number=number))
            # The trial's rows in one executemany per table.
            tables: dict[Any, list[dict[str, Any]]] = {
                models.TrialParamModel: [
                    {"trial_id": tid, "param_name": name, "param_value": trial.distributions[name].to_internal_repr(v),
                     "distribution_json": distribution_to_json(trial.distributions[name])}
                    for name, v in trial.params.items()],
                models.TrialValueModel: [
                    dict(zip(("value", "value_type"), models.TrialValueModel.value_to_stored_repr(float(v))),
                         trial_id=tid, objective=objective) for objective, v in enumerate(trial.values or ())],
                models.TrialUserAttributeModel: [{"trial_id": tid, "key": k, "value_json": json.dumps(v)}
                                                 for k, v in trial.user_attrs.items()],
                models.TrialSystemAttributeModel: [{"trial_id": tid, "key": k, "value_json": json.dumps(v)}
                                                   for k, v in trial.system_attrs.items()],
                models.TrialIntermediateValueModel: [
                    dict(zip(("intermediate_value", "intermediate_value_type"),
                             models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(v)),
                         trial_id=tid, step=step) for step, v in trial.intermediate_values.items()],
            }
            for model, values in tables.items():
                if values:
                    conn.execute(insert(model.__table__), values)
            point("write")
        self._n_trials[study_id] = max(self._n_trials.get(study_id, 0), number + 1)
        return tid, number

    @staticmethod
    def _guard_view(conn: Any, study_id: int) -> list[tuple[int, TrialState, dict[str, Any]]]:
        from sqlalchemy import select
        models = rdb_models()

        trials, user_attrs = models.TrialModel.__table__, models.TrialUserAttributeModel.__table__
        attrs: dict[int, dict[str, Any]] = {}
        q = (select(user_attrs.c.trial_id, user_attrs.c.key, user_attrs.c.value_json)
             .join(trials, trials.c.trial_id == user_attrs.c.trial_id)
             .where(trials.c.study_id == study_id, user_attrs.c.key.in_(GUARD_KEYS)))
        for tid, key, value in conn.execute(q):
            attrs.setdefault(tid, {})[key] = json.loads(value)
        q = select(trials.c.trial_id, trials.c.number, trials.c.state).where(trials.c.study_id == study_id)
        return [(number, state, attrs.get(tid, {})) for tid, number, state in conn.execute(q)]

    # ---- studies: pass through ----------------------------------------------------------------
    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        return self.backend.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self.backend.delete_study(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self.backend.set_study_user_attr(study_id, key, value)

    def set_study_user_attrs(self, study_id: int, attrs: Mapping[str, Any]) -> None:
        """Set a study's user attributes together: in one transaction on a database, so a driver
        that opens the study an instant after another created it sees all of its settings or none
        (and then waits for them), never half of them taken for other settings."""
        if self._database is None:
            for key, value in attrs.items():
                self.backend.set_study_user_attr(study_id, key, value)
            return
        models = rdb_models()

        def write() -> None:
            assert self._database is not None
            with self._database.engine.begin() as conn:
                _replace_attrs(conn, models.StudyUserAttributeModel.__table__, study_id, attrs, owner="study_id")

        with_retries(write)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self.backend.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self.backend.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self.backend.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self.backend.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self.backend.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self.backend.get_study_system_attrs(study_id)

    def get_all_studies(self) -> list[FrozenStudy]:
        return self.backend.get_all_studies()

    # ---- trials ----------------------------------------------------------------------------------
    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is not None:
            return self._insert(study_id, template_trial)[0]
        if study_id not in self._n_trials:
            self._n_trials[study_id] = self.backend.get_n_trials(study_id)
        trial_id = self._next_id
        self._next_id -= 1
        # The number it will most likely get; the database assigns the real one when it is written.
        number = self._n_trials[study_id] + sum(s == study_id for s, _ in self._pending.values())
        trial = FrozenTrial(number=number, state=TrialState.RUNNING, value=None,
                            datetime_start=datetime.datetime.now(), datetime_complete=None, params={},
                            distributions={}, user_attrs={}, system_attrs={}, intermediate_values={},
                            trial_id=trial_id)
        self._pending[trial_id] = (study_id, trial)
        return trial_id

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        if trial_id in self._pending:
            trial = self._pending[trial_id][1]
            trial.params[param_name] = distribution.to_external_repr(param_value_internal)
            trial.distributions[param_name] = distribution
            return
        self.backend.set_trial_param(self._real(trial_id), param_name, param_value_internal, distribution)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        try:  # the database first: another process may have written that number meanwhile
            return self.backend.get_trial_id_from_study_id_trial_number(study_id, trial_number)
        except KeyError:
            for tid, (sid, trial) in self._pending.items():
                if sid == study_id and trial.number == trial_number:
                    return tid
            raise

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        if trial_id in self._pending:
            if not state.is_finished():
                return True  # a pending trial is RUNNING already
            study_id, trial = self._pending.pop(trial_id)
            trial.state = state
            trial.values = values
            trial.datetime_complete = datetime.datetime.now()
            trial._trial_id, trial.number = self._insert(study_id, trial)
            self._committed[trial_id] = trial._trial_id
            self._written[trial_id] = trial  # Study.tell reads it back once: spare it a query
            return True
        return self.backend.set_trial_state_values(self._real(trial_id), state, values)

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        if trial_id in self._pending:
            self._pending[trial_id][1].intermediate_values[step] = intermediate_value
            return
        self.backend.set_trial_intermediate_value(self._real(trial_id), step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        if trial_id in self._pending:
            self._pending[trial_id][1].user_attrs[key] = copy.deepcopy(value)
            return
        self.backend.set_trial_user_attr(self._real(trial_id), key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if trial_id in self._pending:
            self._pending[trial_id][1].system_attrs[key] = copy.deepcopy(value)
            return
        self.backend.set_trial_system_attr(self._real(trial_id), key, value)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        if trial_id in self._pending:
            return frozen_copy(self._pending[trial_id][1])
        if trial_id in self._written:
            return self._written.pop(trial_id)
        return self.backend.get_trial(self._real(trial_id))

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        trials = self.backend.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        if states is None:
            self._n_trials[study_id] = len(trials)
        pending = [t for sid, t in self._pending.values()
                   if sid == study_id and (states is None or t.state in states)]
        if pending:
            trials = list(trials) + [copy.deepcopy(t) if deepcopy else t for t in pending]
        return trials

    def remove_session(self) -> None:
        self.backend.remove_session()


def _claimable(guard_for: Callable[[str | None, int], Guard] | None, view: list[tuple[int, TrialState, dict[str, Any]]],
               waiting: Sequence[tuple[int, int]]) -> Iterator[tuple[int, str | None]]:
    """The queued trials (``(id, number)``, oldest first) a claim may take, with the guard's reason:
    one whose architecture runs elsewhere is passed over, and none once the study is at its total."""
    hashes = {number: attrs.get("arch_hash") for number, _, attrs in view}
    for trial_id, number in waiting:
        reason = None if guard_for is None else guard_for(hashes.get(number), number)(view)
        if reason == "target":
            return
        if reason is None or not reason.startswith("running"):
            yield int(trial_id), reason


def _lock_study(conn: Any, study_id: int) -> None:
    """Take the study's write lock first (a row lock on PostgreSQL, the database's on SQLite, where
    SELECT ... FOR UPDATE takes none): trial numbers stay unique, a guard's view cannot change before
    the write, and no read snapshot goes stale under SQLite's WAL."""
    from sqlalchemy import update
    models = rdb_models()

    studies = models.StudyModel.__table__
    conn.execute(update(studies).where(studies.c.study_id == study_id).values(study_name=studies.c.study_name))


def _written(conn: Any, study_id: int, token: str) -> tuple[int, int] | None:
    """(id, number) of the trial a write with ``token`` made, if it committed (a retried write)."""
    from sqlalchemy import select
    models = rdb_models()

    trials, attrs = models.TrialModel.__table__, models.TrialSystemAttributeModel.__table__
    row = conn.execute(select(trials.c.trial_id, trials.c.number).join(attrs, attrs.c.trial_id == trials.c.trial_id)
                       .where(trials.c.study_id == study_id, attrs.c.key == WRITE_TOKEN,
                              attrs.c.value_json == json.dumps(token))).first()
    return None if row is None else (int(row[0]), row[1])


def _replace_attrs(conn: Any, table: Any, owner_id: int, attrs: Mapping[str, Any], owner: str = "trial_id") -> None:
    """Set the attributes of a trial (user or system ``table``), or of a study (``owner="study_id"``
    with a study attribute table), replacing those of the same keys: a retried write is harmless."""
    from sqlalchemy import delete, insert

    if attrs:
        conn.execute(delete(table).where(table.c[owner] == owner_id, table.c.key.in_(list(attrs))))
        conn.execute(insert(table), [{owner: owner_id, "key": k, "value_json": json.dumps(v)}
                                     for k, v in attrs.items()])
