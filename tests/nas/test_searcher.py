"""The study searcher's decisions, driven directly (no Tune): what each kind of proposal and each
kind of trial end leaves in the study."""

import math
from pathlib import Path

import optuna
import pytest
from optuna.samplers import BaseSampler
from optuna.trial import TrialState

from nas.search import searcher as searcher_module
from nas.search.searcher import StudySearcher
from nas.search_spaces import load_space
from nas.search_spaces.optuna_bridge import suggest_values
from nas.study.lifecycle import new_settings as make_settings
from nas.study.lifecycle import open_search_study
from nas.study.liveness import Driver
from nas.study.records import read_trials
from nas.study.storage import open_storage
from nas.study.writer import DeferredStorage

optuna.logging.set_verbosity(optuna.logging.WARNING)
TINY = Path(__file__).parents[2] / "bench" / "data" / "tiny_space.yaml"
BUDGET = 5e6  # 5 of the 8 tiny architectures fit


class Scripted(BaseSampler):
    """Proposes the given parameter sets in order (then repeats the last)."""

    def __init__(self, proposals):
        self.proposals, self.i = list(proposals), 0

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def before_trial(self, study, trial):
        self.current = self.proposals[min(self.i, len(self.proposals) - 1)]
        self.i += 1

    def sample_independent(self, study, trial, name, distribution):
        return self.current[name]


def params(d2=1, w=32, g=4):
    return {"stage1.depth": 1, "stage2.depth": d2, "width.base": w, "cardinality": 1, "group_width.base": g}


SMALL, SMALL2, BIG = params(1, 32, 4), params(2, 32, 4), params(2, 64, 8)  # 2.4M, 2.8M, 8.6M FLOPs


def _settings(**kw):
    base = dict(space="tiny", space_fingerprint="f", space_resolution=32, budget_low=0.0, budget_high=BUDGET,
                dataset="shapes", train_resolution=32, classes=10, train_images=64, val_images=32, epochs=3,
                batch_size=32, schedule={"epochs": 3}, objectives=("accuracy", "flops"))
    base.update(kw)
    return make_settings(**base)


def _make(tmp_path, proposals, target=10, name="s", settings=None):
    storage = DeferredStorage(optuna.storages.get_storage(open_storage(f"sqlite:///{tmp_path}/s.db")))
    settings = settings or _settings()
    study, _ = open_search_study(storage, name, settings, TINY.read_text(), Scripted(proposals))
    driver = Driver(storage, study._study_id)
    driver.beat(force=True)
    events = []
    s = StudySearcher(study, storage, load_space(TINY), settings, target, driver.id,
                      {"dataset": "shapes", "schedule": {"epochs": 3}}, on_event=events.append)
    return s, study, events


def _final(acc=0.5, status="ok", epoch=3, **kw):
    return {"final": True, "status": status, "accuracy": acc, "epoch": epoch, "flops": 1.0, "params": 1.0,
            "epochs_completed": epoch, "curve": [{"epoch": e, "accuracy": acc} for e in range(1, epoch + 1)],
            "host": "h", "node": "n", "worker_pid": 1, "wall_time_s": 2.0, **kw}


def _written(tmp_path):
    """What is in the database, read by plain Optuna (pending proposals are not)."""
    return optuna.load_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path}/s.db")).trials


def _by_outcome(study):
    out = {}
    for r in read_trials(study):
        out.setdefault(r.outcome, []).append(r)
    return out


def test_infeasible_proposals_are_recorded_and_never_dispatched(tmp_path):
    s, study, _ = _make(tmp_path, [BIG, BIG, SMALL])
    config = s.suggest("t1")
    assert config["nas"]["spec"]["config"]["stages"][1]["depth"] == 1  # SMALL, after two infeasible
    infeasible = _by_outcome(study)["infeasible"]
    assert len(infeasible) == 2
    for r in infeasible:
        assert r.state == "PRUNED" and not r.feasible and r.constraints["flops_budget"] > 0
        assert r.get("flops") == 8_635_648 and "outside the budget" in r.get("reason")
    running = study.get_trials(states=(TrialState.RUNNING,))
    assert len(running) == 1 and running[0].constraints["flops_budget"] < 0
    assert running[0].user_attrs["train_flops"] == running[0].user_attrs["flops"]  # same resolution here


class Watching(Scripted):
    """Scripted, and notes what the study looked like to the sampler at each proposal."""

    def __init__(self, proposals):
        super().__init__(proposals)
        self.seen = []

    def before_trial(self, study, trial):
        super().before_trial(study, trial)
        self.seen.append(sorted((t.number, t.state.name) for t in study._get_trials(deepcopy=False, use_cache=True)))


def test_the_sampler_sees_every_trained_result_at_its_next_proposal(tmp_path):
    """Trained trials are finished by one storage write, not Study.tell, so the sampler's cached view
    of the study must be refreshed per proposal, as study.ask() does: otherwise TPE, NSGA-II and GP
    learn of results only when an infeasible proposal happens to be told."""
    s, study, _ = _make(tmp_path, [SMALL, SMALL2, params(1, 64, 4)])
    watching = Watching([SMALL, SMALL2, params(1, 64, 4)])
    study.sampler = watching
    s.suggest("a")
    s.on_trial_complete("a", _final(0.6))
    s.suggest("b")
    s.on_trial_complete("b", {"final": False, "epoch": 1, "accuracy": 0.2})  # stopped by the scheduler
    s.suggest("c")
    assert watching.seen[1][0] == (0, "COMPLETE")
    assert watching.seen[2][:2] == [(0, "COMPLETE"), (1, "PRUNED")]


def test_complete_then_duplicate_copies_the_result(tmp_path):
    s, study, _ = _make(tmp_path, [SMALL, SMALL, SMALL2])
    s.suggest("t1")
    s.on_trial_result("t1", {"epoch": 1, "accuracy": 0.3, "final": False})  # within curve_every_s of the start
    assert "curve" not in study.trials[0].user_attrs
    s.curve_every_s = 0.0
    s.on_trial_result("t1", {"epoch": 2, "accuracy": 0.4, "final": False})
    assert [c["accuracy"] for c in study.trials[0].user_attrs["curve"]] == [0.3, 0.4]  # written as it trains
    s.curve_every_s = 3600.0
    s.on_trial_result("t1", {"epoch": 3, "accuracy": 0.45, "final": False})  # within curve_every_s: not yet
    assert [c["accuracy"] for c in study.trials[0].user_attrs["curve"]] == [0.3, 0.4]
    s.on_trial_complete("t1", _final(0.55))
    assert s.suggest("t2")["nas"]["trial_number"] == 2  # trial 1 was the duplicate
    done, dup = study.trials[0], study.trials[1]
    assert done.state == TrialState.COMPLETE and done.values == [0.55, done.user_attrs["flops"]]
    assert dup.state == TrialState.COMPLETE and dup.values == done.values
    assert dup.user_attrs["duplicate_of"] == 0 and dup.user_attrs["outcome"] == "duplicate"
    assert dup.user_attrs["arch_hash"] == done.user_attrs["arch_hash"]
    assert s.trained == 1  # a duplicate costs no training and does not count


def test_pruned_and_failed_results_are_reused_by_duplicates(tmp_path):
    s, study, _ = _make(tmp_path, [SMALL, SMALL2, SMALL, SMALL2, params(1, 64, 4)])
    s.suggest("a")
    s.suggest("b")
    s.on_trial_complete("a", {"final": False, "epoch": 1, "accuracy": 0.2})  # stopped by a scheduler
    s.on_trial_complete("b", _final(None, status="diverged", reason="loss became non-finite"))
    s.suggest("c")
    by = _by_outcome(study)
    pruned, failed = by["pruned"][0], by["failed"][0]
    assert pruned.state == "PRUNED" and pruned.values is None and pruned.accuracy == 0.2
    assert pruned.curve == [{"epoch": 1, "accuracy": 0.2, "val_loss": None, "train_loss": None, "train_acc": None,
                             "seconds": None}]
    assert failed.state == "FAIL" and failed.get("reason") == "diverged: loss became non-finite"
    dups = {r.get("duplicate_of"): r for r in by["duplicate"]}
    assert dups[pruned.number].state == "PRUNED" and dups[failed.number].state == "FAIL"
    assert dups[failed.number].get("reason") == failed.get("reason")


def test_duplicate_of_a_running_trial_waits_for_its_result(tmp_path):
    s, study, _ = _make(tmp_path, [SMALL, SMALL, SMALL2])
    s.suggest("a")
    second = s.suggest("b")  # SMALL again is held in memory, SMALL2 goes out
    assert second["nas"]["spec"]["config"]["stages"][1]["depth"] == 2
    assert len(s.held) == 1 and len(_written(tmp_path)) == 2  # the held proposal is not written yet
    s.on_trial_complete("a", _final(0.7))
    dup = _by_outcome(study)["duplicate"]
    assert len(dup) == 1 and dup[0].values == (0.7, float(study.trials[0].user_attrs["flops"]))
    assert not s.held


def test_duplicate_of_a_dead_drivers_trial_trains_in_its_place(tmp_path):
    s, study, _ = _make(tmp_path, [SMALL, SMALL2])
    # Another driver (now dead) left SMALL running.
    other = DeferredStorage(optuna.storages.get_storage(open_storage(f"sqlite:///{tmp_path}/s.db")))
    trial = optuna.load_study(study_name="s", storage=other).ask(fixed_distributions=None)
    for k, v in SMALL.items():
        trial.suggest_categorical(k, [v])
    cfg = load_space(TINY).decode(SMALL)
    trial.set_user_attr("arch_hash", cfg.arch_hash())
    trial.set_user_attr("config", cfg.to_dict())
    other.set_trial_system_attr(trial._trial_id, "nas:driver", "dead-driver")
    other.commit(trial._trial_id)
    s.sync()
    assert s.suggest("a")["nas"]["spec"]["config"]["stages"][1]["depth"] == 2  # SMALL held, SMALL2 dispatched
    assert len(s.held) == 1
    assert s.recover()  # the dead driver's trial fails, queued again (the driver does it every heartbeat)
    promoted = s.suggest("b")
    assert promoted["nas"]["spec"]["config"]["stages"][1]["depth"] == 1  # the held SMALL trains now
    orphan = _by_outcome(study)["orphaned"][0]
    assert orphan.state == "FAIL" and "queued to train again" in orphan.get("reason")


def test_a_killed_driver_is_dead_before_its_parent_reaps_it():
    """SIGKILLed, a driver stays a zombie (same pid, same start time) until whoever started it
    waits on it, which may be never while that parent runs: it is dead all the same."""
    import subprocess
    import sys
    import time

    from nas.study.liveness import DriverRecord, _machine, _process_start

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = DriverRecord(id="x", machine=_machine(), pid=child.pid, pid_start=_process_start(child.pid),
                              started=time.time(), heartbeat=time.time())
        assert record.alive()
        child.kill()
        deadline = time.monotonic() + 10
        while record.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not record.alive()
    finally:
        child.kill()
        child.wait()


def test_a_driver_in_another_pid_namespace_is_judged_by_its_heartbeat():
    """A container with host networking shares this machine's hostname and boot time, not its
    pids: its driver's pid means nothing here (pid 1 is this namespace's init, started long
    before), so its liveness is its heartbeat, never a pid looked up in this namespace."""
    import json
    import shutil
    import subprocess
    import sys
    import time

    from nas.study.liveness import STALE_S, DriverRecord, _machine

    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) to start a process in a PID namespace of its own")
    probe = ("import json, os; from nas.study.liveness import _machine, _process_start; "
             "print(json.dumps([_machine(), os.getpid(), _process_start(os.getpid())]))")
    run = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", probe],
                         capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        pytest.skip(f"cannot make a PID namespace here: {run.stderr.strip()[-200:]}")
    machine, pid, pid_start = json.loads(run.stdout)
    assert machine != _machine() and machine.split("@")[:2] == _machine().split("@")[:2]
    now = time.time()
    record = DriverRecord(id="c", machine=machine, pid=pid, pid_start=pid_start, started=now, heartbeat=now)
    assert record.alive()
    record.heartbeat = now - 2 * STALE_S
    assert not record.alive()


def _dead_drivers_trial(tmp_path, proposal):
    """Another driver (now dead) left ``proposal`` RUNNING in the study."""
    other = DeferredStorage(optuna.storages.get_storage(open_storage(f"sqlite:///{tmp_path}/s.db")))
    trial = optuna.load_study(study_name="s", storage=other, sampler=Scripted([proposal])).ask()
    suggest_values(trial, load_space(TINY))  # the space's own distributions, as a real driver asks them
    cfg = load_space(TINY).decode(proposal)
    trial.set_user_attr("arch_hash", cfg.arch_hash())
    trial.set_user_attr("config", cfg.to_dict())
    other.set_trial_system_attr(trial._trial_id, "nas:driver", "dead-driver")
    return other.commit(trial._trial_id)


def test_a_survivor_trains_a_dead_drivers_trial_instead_of_finishing_short(tmp_path):
    """The study's total counts a dead driver's RUNNING trial as in flight; once this driver's own
    trials are done it must not finish one short: it fails the orphan and trains it again."""
    s, study, _ = _make(tmp_path, [SMALL2, SMALL], target=2)
    orphan = _dead_drivers_trial(tmp_path, SMALL)
    s.sync()
    s.suggest("a")
    s.on_trial_complete("a", _final(0.5))
    assert s.remaining == 0  # its trial and the dead driver's
    assert s.suggest("b") is None  # not FINISHED: the orphan was found and queued
    again = s.suggest("b")
    assert again["nas"]["spec"]["config"]["stages"][1]["depth"] == 1  # SMALL, the orphan's architecture
    retry = study.trials[again["nas"]["trial_number"]]
    assert retry.user_attrs["retry_of"] == orphan.number and retry.system_attrs["nas:driver"] == s.driver_id
    s.on_trial_complete("b", _final(0.6))
    assert s.suggest("c") == "FINISHED" and s.trained == 2


def test_weights_are_kept_for_the_front_only(ray_cluster, tmp_path):
    """Weights a worker handed over are kept while their trial is on the front: a trial pushed off
    later has its file removed (and export says why), a dominated one is never written."""
    from nas.common.errors import UserError
    from nas.export import weights_bytes
    from nas.search.weights import WeightsKeeper

    s, study, _ = _make(tmp_path, [SMALL2, SMALL, params(1, 32, 8)])  # 2.8M, 2.4M, 3.9M FLOPs
    s.weights = keeper = WeightsKeeper(tmp_path / "artifacts", "nas-weights-test-front")
    for tune_id, acc in (("a", 0.5), ("b", 0.6), ("c", 0.4)):  # b dominates a, then c
        number = s.suggest(tune_id)["nas"]["trial_number"]
        ray_cluster.get(keeper.box.put.remote(number, f"weights of {number}".encode()))
        s.on_trial_complete(tune_id, _final(acc))
    a, b, c = sorted((r for r in read_trials(study) if r.outcome == "complete"), key=lambda r: r.number)
    assert weights_bytes(b, keeper.folder) == f"weights of {b.number}".encode()
    assert any(k.startswith("artifacts:") for k in study.trials[b.number].system_attrs)  # optuna-dashboard lists it
    assert {p.name for p in keeper.folder.iterdir()} == {b.get("weights")["artifact_id"]}
    with pytest.raises(UserError, match="removed when another trial pushed it off the front"):
        weights_bytes(a, keeper.folder)
    with pytest.raises(UserError, match="were not kept"):
        weights_bytes(c, keeper.folder)


def _params(study, config):
    """The design parameters of the trial a suggest handed to Tune."""
    return study.trials[config["nas"]["trial_number"]].params


def test_a_queued_retry_starts_only_when_its_architecture_is_free(tmp_path):
    """Claiming a queued retry is guarded like a fresh start, inside the claim's transaction: while
    another driver trains that architecture it stays queued (this driver trains something else,
    even on a view of the study older than the other's start); once trained there it is recorded
    as a duplicate, never trained twice; a study at its total claims nothing."""
    a, study, _ = _make(tmp_path, [SMALL2, params(1, 32, 8)])
    b, _, _ = _make(tmp_path, [SMALL])
    gone = _dead_drivers_trial(tmp_path, SMALL)  # an earlier trial of SMALL, now queued again
    a.recover()
    assert a._waiting  # A's view: a retry of SMALL is queued, nothing of SMALL runs
    fresh = b.suggest("b")  # B starts SMALL from a fresh proposal
    assert _params(study, fresh) == SMALL
    first = a.suggest("a")  # A, without reading the study again, must not start SMALL too
    assert _params(study, first) == SMALL2
    running = [t for t in _written(tmp_path) if t.state == TrialState.RUNNING]
    assert sorted(t.number for t in running) == sorted([fresh["nas"]["trial_number"], first["nas"]["trial_number"]])
    retry = next(t for t in _written(tmp_path) if t.user_attrs.get("retry_of") == gone.number)
    assert retry.state == TrialState.WAITING
    b.on_trial_complete("b", _final(0.6))
    a.sync()
    assert a.suggest("a2") is not None  # a new architecture; the retry was claimed and recorded first
    retry = study.trials[retry.number]
    assert retry.user_attrs["outcome"] == "duplicate"
    assert retry.user_attrs["duplicate_of"] == fresh["nas"]["trial_number"]
    assert sum(1 for r in read_trials(study) if r.get("arch_hash") == retry.user_attrs["arch_hash"] and r.trained) == 1
    # At the study's total, a queued retry is left queued and nothing starts, even for a driver
    # whose view says there is room (its proposal is refused at the claim and at the start).
    busy = len([r for r in read_trials(study) if r.trained or r.state == "RUNNING"])
    c, _, _ = _make(tmp_path, [params(2, 32, 8)], target=busy)
    other = params(2, 32, 8)  # an architecture neither running nor trained: only the total stops it
    study.enqueue_trial(other, user_attrs={"arch_hash": load_space(TINY).decode(other).arch_hash()})
    queued = len(study.trials) - 1
    c.sync()
    before = _written(tmp_path)
    assert c._waiting and c._propose("c") is None
    after = _written(tmp_path)
    assert [(t.number, t.state) for t in after] == [(t.number, t.state) for t in before]
    assert after[queued].state == TrialState.WAITING


def test_a_retry_is_never_held_behind_itself(tmp_path):
    """A retry queued while its architecture still runs under a driver that died is not claimed
    (and so never sits RUNNING here, waiting on itself): once the orphan is failed, the retry
    trains, and the study's total is met."""
    from nas.study.requeue import enqueue_retry

    s, study, _ = _make(tmp_path, [SMALL2, params(1, 32, 8)], target=2)
    orphan = _dead_drivers_trial(tmp_path, SMALL)  # still RUNNING: its driver is not yet found dead
    enqueue_retry(study, study.trials[orphan.number])  # e.g. queued by an interrupt earlier
    s.sync()
    first = s.suggest("a")
    assert _params(study, first) == SMALL2 and not s.held
    s.on_trial_complete("a", _final(0.5))
    assert s.suggest("b") is None  # at the total with the orphan: it is found and failed
    again = s.suggest("b")
    assert _params(study, again) == SMALL  # the retry of SMALL, claimed now
    s.on_trial_complete("b", _final(0.6))
    assert s.suggest("c") == "FINISHED" and s.trained == 2


def test_a_held_proposal_survives_a_result_and_trains_when_its_original_is_gone(tmp_path):
    """A proposal held behind another driver's run that dies: a result arriving before the next
    suggest does not forget it (it would stay pending in memory, a phantom trial for the sampler);
    the next suggest trains it."""
    s, study, _ = _make(tmp_path, [SMALL, SMALL2, params(1, 32, 8)])
    _dead_drivers_trial(tmp_path, SMALL)
    s.sync()
    assert _params(study, s.suggest("a")) == SMALL2 and len(s.held) == 1  # SMALL held behind the dead driver's
    s.recover()  # the driver's heartbeat finds the dead one
    s.on_trial_complete("a", _final(0.6))
    assert len(s.held) == 1
    promoted = s.suggest("b")
    assert _params(study, promoted) == SMALL and not s.held and not s.storage._pending


def test_target_counts_trained_trials_of_every_driver_and_finishes(tmp_path):
    s, study, _ = _make(tmp_path, [SMALL, SMALL2, params(1, 64, 4)], target=2)
    s.suggest("a")
    s.suggest("b")
    assert s.suggest("c") is None  # two running: nothing left to propose, not finished yet
    s.on_trial_complete("a", _final(0.5))
    s.on_trial_complete("b", _final(0.6))
    assert s.suggest("c") == "FINISHED" and s.trained == 2


def test_exhausted_space_finishes_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr(searcher_module, "STALL_PROPOSALS", 5)
    s, study, events = _make(tmp_path, [SMALL, SMALL], target=5)
    s.suggest("a")
    s.on_trial_complete("a", _final(0.5))
    assert s.suggest("b") == "FINISHED"
    assert any(e.kind == "exhausted" for e in events)


def test_a_rarely_feasible_window_is_not_mistaken_for_an_exhausted_one(tmp_path, monkeypatch):
    """One proposal in 21 was fresh: a run of 60 misses is what that rate gives, not the end of the
    space (a fixed limit of 30 would stop here); 10x the measured cost in a row is."""
    monkeypatch.setattr(searcher_module, "STALL_PROPOSALS", 30)
    s, study, events = _make(tmp_path, [BIG] * 20 + [SMALL] + [BIG] * 60 + [SMALL2] + [BIG], target=5)
    seen = []
    for tune_id in "abcdefgh":
        out = s.suggest(tune_id)
        seen.append(out)
        if out == "FINISHED":
            break
        if out is not None:
            s.on_trial_complete(tune_id, _final(0.5))
    assert s.trained == 2  # SMALL and SMALL2, 60 misses apart
    assert seen[-1] == "FINISHED" and any(e.kind == "exhausted" for e in events)
    (exhausted,) = [e for e in events if e.kind == "exhausted"]
    assert exhausted.proposals == s.stall_limit() == math.ceil(10 * 82 / 2)  # 10x the 41 proposals a fresh cost


def test_interrupted_trials_are_failed_and_queued_again(tmp_path):
    s, study, _ = _make(tmp_path, [SMALL, SMALL2, SMALL])
    s.suggest("a")
    s.suggest("b")
    s.suggest("c")  # SMALL again: held
    s.interrupt_running()
    by = _by_outcome(study)
    assert {r.outcome for r in by["interrupted"]} == {"interrupted"} and len(by["interrupted"]) == 2
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.user_attrs["retry_of"] for t in waiting) == [0, 1]
    assert not s.held and len(_written(tmp_path)) == 4  # the held proposal was dropped, never written


def test_worker_deaths_beyond_retries_and_restarts(tmp_path):
    s, study, _ = _make(tmp_path, [SMALL, SMALL2])
    s.curve_every_s = 0.0  # every epoch written
    s.suggest("a")
    s.on_trial_result("a", {"epoch": 1, "accuracy": 0.1, "final": False})
    s.on_trial_result("a", {"epoch": 2, "accuracy": 0.2, "final": False})
    s.on_trial_result("a", {"epoch": 1, "accuracy": 0.15, "final": False})  # the worker died; Tune restarted it
    t = study.trials[0]
    assert t.user_attrs["restarts"] == 1 and [c["accuracy"] for c in t.user_attrs["curve"]] == [0.15]
    s.on_trial_complete("a", None, error=True)
    failed = _by_outcome(study)["failed"][0]
    assert failed.state == "FAIL" and "Ray Tune's retries are spent" in failed.get("reason")


@pytest.mark.parametrize("window", [False, True])
def test_budget_window_adds_a_floor_constraint(tmp_path, window):
    settings = _settings(budget_low=3e6 if window else 0.0)
    s, study, _ = _make(tmp_path, [SMALL, params(1, 64, 4)], settings=settings)
    s.suggest("a")
    first = study.trials[0]
    assert ("flops_floor" in first.constraints) == window
    assert (first.user_attrs.get("outcome") == "infeasible") == window  # SMALL (2.4M) is under a 3M floor


def test_two_drivers_never_start_the_same_architecture_nor_overshoot(tmp_path):
    """Driver B's view is stale (the race between two drivers' reads and writes): the guarded
    commit still refuses what A has started, and any trial beyond the study's target."""
    a, study, _ = _make(tmp_path, [SMALL], target=2)
    b, _, _ = _make(tmp_path, [SMALL, SMALL2, params(1, 64, 4)], target=2)
    assert a.suggest("a1") is not None  # A starts SMALL
    assert b._propose("b1") is None  # B, not yet aware of it, proposes SMALL: refused, held
    assert len(b.held) == 1 and b.held[0].original == 0
    assert b._propose("b2") is not None  # SMALL2: two running, the study's target
    assert b._propose("b3") is None and b.remaining <= 0  # a third would overshoot: not made
    running = [t for t in _written(tmp_path) if t.state == TrialState.RUNNING]
    assert len(running) == 2 and len({t.user_attrs["arch_hash"] for t in running}) == 2
