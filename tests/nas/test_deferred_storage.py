"""The one-transaction storage wrapper: what it writes reads back identically through plain Optuna."""

import optuna
import pytest
from optuna.trial import TrialState

from nas.search_spaces import load_space
from nas.search_spaces.optuna_bridge import suggest_values
from nas.study.storage import open_storage
from nas.study.writer import DeferredStorage

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(params=["sqlite", "journal", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    if request.param == "journal":
        return f"journal:{tmp_path}/j.log"
    return request.getfixturevalue("postgres_url")


def _study(url, name, sampler=None):
    storage = DeferredStorage(optuna.storages.get_storage(open_storage(url)))
    study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"],
                                sampler=sampler or optuna.samplers.RandomSampler(seed=0), load_if_exists=True)
    return study, storage


def test_told_proposal_is_written_whole(url, study_name):
    space = load_space("resnest")
    study, storage = _study(url, study_name)
    for i in range(5):
        trial = study.ask()
        assert storage.is_pending(trial._trial_id)
        values = suggest_values(trial, space)
        trial.set_user_attr("outcome", "infeasible")
        trial.set_user_attr("config", {"i": i, "nested": [1, 2]})
        trial.set_constraint("flops_budget", 0.25)
        frozen = study.tell(trial, state=TrialState.PRUNED)
        assert frozen.number == i and frozen.params == values
    # A separate reader (plain Optuna, no wrapper) sees exactly what was written.
    plain = optuna.load_study(study_name=study_name, storage=open_storage(url))
    trials = plain.get_trials()
    assert [t.number for t in trials] == list(range(5))
    t = trials[3]
    assert t.state == TrialState.PRUNED
    assert t.user_attrs == {"outcome": "infeasible", "config": {"i": 3, "nested": [1, 2]}}
    assert t.constraints == {"flops_budget": 0.25}
    assert set(t.params) == set(space.params) and t.distributions == plain.get_trials()[0].distributions


def test_committed_trial_is_running_then_updated_in_one_go(url, study_name):
    study, storage = _study(url, study_name)
    trial = study.ask()
    x = trial.suggest_int("x", 0, 10)
    trial.set_user_attr("arch", "d1")
    frozen = storage.commit(trial._trial_id)
    plain = optuna.load_study(study_name=study_name, storage=open_storage(url))
    seen = plain.get_trials()[0]
    assert seen.state == TrialState.RUNNING and seen.params == {"x": x} and seen.user_attrs == {"arch": "d1"}
    storage.update(frozen._trial_id, user_attrs={"arch": "d1-bis", "curve": [0.1, 0.2]},
                   system_attrs={"constraints:flops_budget": -0.5})
    storage.update(frozen._trial_id, state=TrialState.COMPLETE, values=[0.5, 3e9],
                   user_attrs={"curve": [0.1, 0.2, 0.5]})
    done = optuna.load_study(study_name=study_name, storage=open_storage(url)).get_trials()[0]
    assert done.state == TrialState.COMPLETE and done.values == [0.5, 3e9]
    assert done.user_attrs == {"arch": "d1-bis", "curve": [0.1, 0.2, 0.5]}
    assert done.constraints == {"flops_budget": -0.5} and done.datetime_complete is not None
    assert [t.number for t in study.best_trials] == [0]


def test_tpe_learns_through_the_wrapper(tmp_path, study_name):
    # TPE reads the trials the wrapper wrote (pending ones included) and keeps sampling.
    study, storage = _study(f"sqlite:///{tmp_path}/s.db", study_name,
                            optuna.samplers.TPESampler(seed=0, n_startup_trials=5, constant_liar=True))
    for _ in range(15):
        trial = study.ask()
        x = trial.suggest_int("x", 0, 100)
        if x > 50:
            trial.set_constraint("flops_budget", 1.0)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            trial.set_constraint("flops_budget", -1.0)
            study.tell(trial, [x / 100, x])
    assert len(study.trials) == 15 and not any(storage.is_pending(t._trial_id) for t in study.trials)


def test_a_queued_trial_is_claimed_with_its_owner_in_one_write(url, study_name):
    """A retry queued by enqueue_trial is taken RUNNING together with the driver that took it, so
    another driver never sees it running without an owner (and fails it as orphaned); the queue is
    taken oldest first, once each; a queued trial given back is claimable again."""
    from nas.study.records import DRIVER_ATTR

    study, storage = _study(url, study_name)
    study.enqueue_trial({"x": 1})
    study.enqueue_trial({"x": 2})
    plain = optuna.load_study(study_name=study_name, storage=open_storage(url))
    (first, reason), (second, _) = (storage.claim_waiting(study._study_id, {DRIVER_ATTR: d})
                                    for d in ("driver-a", "driver-b"))
    assert reason is None and storage.claim_waiting(study._study_id, {DRIVER_ATTR: "driver-c"}) is None
    by_id = {t._trial_id: t for t in plain.get_trials()}
    assert (by_id[first].number, by_id[second].number) == (0, 1)
    for tid, owner in ((first, "driver-a"), (second, "driver-b")):
        assert by_id[tid].state == TrialState.RUNNING and by_id[tid].system_attrs[DRIVER_ATTR] == owner
        assert by_id[tid].datetime_start is not None
    trial = optuna.Trial(study, first)
    assert trial.suggest_int("x", 0, 10) == 1  # the queued parameters, as study.ask() would give them
    storage.set_trial_state_values(first, TrialState.WAITING)  # given back untrained
    assert storage.claim_waiting(study._study_id, {DRIVER_ATTR: "driver-c"}) == (first, None)


def test_a_queued_trial_is_claimed_only_as_its_guard_allows(url, study_name):
    """The guard sees the study inside the claim: a queued trial whose architecture runs elsewhere
    stays queued (the next one is taken), a study at its total gives nothing, and one whose
    architecture was trained meanwhile is taken with the reason, to be recorded, not trained."""
    from nas.study.records import DRIVER_ATTR

    study, storage = _study(url, study_name)
    for x, h in ((1, "busy"), (2, "free")):
        study.enqueue_trial({"x": x}, user_attrs={"arch_hash": h})
    seen = []

    def guard_for(arch_hash, number):
        def guard(trials):
            seen.append((arch_hash, number, sorted(n for n, _, _ in trials)))
            return {"busy": "running 7", "free": verdict}.get(arch_hash)
        return guard

    verdict = "target"
    assert storage.claim_waiting(study._study_id, {DRIVER_ATTR: "a"}, guard_for) is None
    verdict = "trained 3"
    tid, reason = storage.claim_waiting(study._study_id, {DRIVER_ATTR: "a"}, guard_for)
    plain = optuna.load_study(study_name=study_name, storage=open_storage(url))
    states = {t.number: t.state for t in plain.get_trials()}
    assert reason == "trained 3" and plain.get_trials()[1]._trial_id == tid
    assert states == {0: TrialState.WAITING, 1: TrialState.RUNNING}  # the busy one stays queued
    assert seen[0] == ("busy", 0, [0, 1])  # the guard saw every trial of the study


def test_a_new_studys_settings_appear_all_at_once(url, study_name):
    """A second driver that opens a study an instant after another created it must not read half
    of its settings (it would refuse the study as made with other settings): a reader polling
    while studies are created sees each study's settings all or none."""
    import threading

    from nas.study.lifecycle import new_settings, open_search_study

    settings = new_settings(space="tiny", space_fingerprint="f", space_resolution=32, budget_low=0.0,
                            budget_high=5e6, dataset="shapes", train_resolution=32, classes=10, train_images=64,
                            val_images=32, epochs=3, batch_size=32, schedule={"epochs": 3},
                            objectives=("accuracy", "flops"))
    expected = len(settings.to_attrs())
    names = [f"{study_name}-{i}" for i in range(8)]
    seen, done = set(), threading.Event()

    def read() -> None:
        reader = optuna.storages.get_storage(open_storage(url))
        while not done.is_set():
            for s in reader.get_all_studies():
                if s.study_name in names:
                    seen.add(len(s.user_attrs))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for name in names:
            storage = DeferredStorage(optuna.storages.get_storage(open_storage(url)))
            open_search_study(storage, name, settings, "", optuna.samplers.RandomSampler(seed=0))
    finally:
        done.set()
        thread.join()
    if url.startswith("journal"):  # one record per attribute, in order: the reader waits for the last
        from nas.study.records import StudySettings

        assert list(settings.to_attrs())[-1] == "created"
        partial = dict(list(settings.to_attrs().items())[:-1])
        assert StudySettings.from_attrs(partial) is None
        assert StudySettings.from_attrs(settings.to_attrs()) == settings
        return
    assert seen and seen <= {0, expected}, seen


def test_an_orphan_is_failed_and_queued_again_in_one_write(url, study_name, monkeypatch):
    """Failing a dead driver's trial and queueing its retry are one transaction: stopped in the
    middle (here the write's own fault point raises, as a SIGKILL there would end it) neither is
    written and the trial is still RUNNING, to be recovered again; a trial another driver
    recovered first is left alone."""
    import nas.study.writer as deferred
    from nas.study.requeue import _retry_of

    study, storage = _study(url, study_name)
    trial = study.ask()
    trial.suggest_int("x", 0, 10)
    storage.commit(trial._trial_id)
    running = study.trials[0]
    attrs = {"outcome": "orphaned", "reason": "its driver stopped"}
    if not url.startswith("journal"):  # one driver at a time there, and no transactions
        def die(name):
            if name == "write":
                raise RuntimeError("the driver died here")

        monkeypatch.setattr(deferred, "point", die)
        with pytest.raises(RuntimeError):
            storage.fail_and_requeue(study._study_id, running._trial_id, attrs, _retry_of(running))
        monkeypatch.undo()
        plain = optuna.load_study(study_name=study_name, storage=open_storage(url)).trials
        assert [t.state for t in plain] == [TrialState.RUNNING] and "outcome" not in plain[0].user_attrs
    queued = storage.fail_and_requeue(study._study_id, running._trial_id, attrs, _retry_of(running))
    plain = optuna.load_study(study_name=study_name, storage=open_storage(url)).trials
    assert queued == 1 and [t.state for t in plain] == [TrialState.FAIL, TrialState.WAITING]
    assert plain[0].user_attrs == attrs and plain[1].user_attrs["retry_of"] == 0
    assert storage.fail_and_requeue(study._study_id, running._trial_id, attrs, _retry_of(running)) is None
    assert len(optuna.load_study(study_name=study_name, storage=open_storage(url)).trials) == 2
