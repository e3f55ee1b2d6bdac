"""``nas search`` with MO-ASHA early stopping, end to end: stopped trials are PRUNED with their
curves and never on a front, and a search killed and resumed decides as one uninterrupted run."""

from pathlib import Path

import optuna
from optuna.trial import TrialState

from nas.stopping.rule import MOASHA
from nas.study.records import OBJECTIVES, front, read_settings, read_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
TINY = Path(__file__).parents[2] / "bench" / "data" / "tiny_space.yaml"
# One trial at a time: the order in which trials reach a rung is then the trial order, so the
# rule's decisions can be replayed from the study alone.
ARGS = ["--space", TINY, "--budget", "5M", "--trials", "5", "--sampler", "random", "--seed", "2",
        "--train-images", "256", "--val-images", "128", "--epochs", "3", "--batch-size", "32",
        "--max-concurrent", "1", "--grace", "1", "--eta", "2", "--rung-evidence", "0"]  # the plain rule


def _replay(study):
    """Apply the rule to the study's trained trials in order, as an uninterrupted search would have,
    and check every live decision against it."""
    settings = read_settings(study)
    rule = MOASHA(settings.objectives, [OBJECTIVES[o][0] for o in settings.objectives], settings.epochs,
                  grace=settings.early_stopping["grace"], eta=settings.early_stopping["eta"])
    stopped = 0
    for r in sorted(read_trials(study), key=lambda r: r.number):
        if not r.trained or r.outcome == "duplicate":
            continue
        decision = None
        for point in r.curve:
            decision = rule.on_result(r.number, point["epoch"], {"accuracy": point["accuracy"],
                                                                 "flops": r.get("flops")})
            if decision == "stop":
                break
        if r.outcome == "pruned":
            stopped += 1
            assert decision == "stop" and r.get("epochs") == point["epoch"] and r.curve[-1]["epoch"] == point["epoch"]
        else:
            assert decision == "continue" and r.outcome == "complete", r
    return stopped


def test_stopped_trials_are_pruned_with_curves_and_never_on_a_front(tmp_path, search_process):
    db = tmp_path / "nas.db"
    code, out, err = search_process(db, ARGS).run()
    assert code == 0, err[-3000:]
    assert "stopping  MO-ASHA: rungs at epochs 1, 2" in out
    study = optuna.load_study(study_name="tiny-5MFLOPs", storage=f"sqlite:///{db}")
    records = read_trials(study)
    pruned = [r for r in records if r.outcome == "pruned"]
    assert pruned and sum(r.trained for r in records) == 5
    for r in pruned:
        assert r.state == "PRUNED" and r.values is None and r.accuracy == r.curve[-1]["accuracy"]
        assert 1 <= r.get("epochs") < 3 and "stopped by the scheduler" in r.get("reason")
    pruned_numbers = {r.number for r in pruned}
    assert not pruned_numbers & {t.number for t in study.best_trials}
    assert not pruned_numbers & {r.number for r in front(records, ("accuracy", "flops"))}
    from optuna_dashboard._pareto_front import get_pareto_front_trials

    assert not pruned_numbers & {t.number for t in get_pareto_front_trials(study.trials, study.directions)}
    assert _replay(study) == len(pruned)
    _check_optuna_dashboard(db, pruned_numbers)


def _check_optuna_dashboard(db, pruned_numbers):
    """optuna-dashboard 0.21, served in-process and asked through its JSON API (what its page
    shows): the objective names, the architecture among the user attributes, and a front of its own
    making (it ignores constraints) with no infeasible or stopped trial."""
    import json

    import optuna_dashboard
    from werkzeug.test import Client

    from nas.study.storage import open_storage

    client = Client(optuna_dashboard.wsgi(open_storage(str(db), create=False)))
    study_id = json.loads(client.get("/api/studies").data)["study_summaries"][0]["study_id"]
    detail = json.loads(client.get(f"/api/studies/{study_id}").data)
    assert detail["objective_names"] == ["accuracy", "flops"]
    assert {"arch", "config", "outcome", "flops"} <= {a["key"] for a in detail["union_user_attrs"]}
    best = {t["number"] for t in detail["best_trials"]}
    outcomes = {t["number"]: {a["key"]: a["value"] for a in t["user_attrs"]}.get("outcome") for t in detail["trials"]}
    assert best and not best & pruned_numbers
    assert {outcomes[n] for n in best} <= {"complete", "duplicate"}


def test_a_killed_and_resumed_search_decides_as_an_uninterrupted_one(tmp_path, search_process):
    """SIGKILL mid-search, then the same command again: the study ends with its total, no trial left
    RUNNING, no finished trial touched, the killed driver's running trial failed as orphaned and its
    architecture trained again, and every early-stopping decision that of one uninterrupted run."""
    db = tmp_path / "nas.db"
    search = search_process(db, ARGS).start()
    search.wait_for(lambda ts: sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in ts
                                   if t.user_attrs.get("outcome") != "duplicate") >= 2
                    and any(t.state == TrialState.RUNNING for t in ts))
    search.proc.kill()
    search.proc.wait(timeout=30)
    killed = search.trials()
    first = {t.system_attrs.get("nas:driver") for t in killed} - {None}
    finished = {t.number: (t.state, t.values, t.user_attrs.get("curve")) for t in killed if t.state.is_finished()}
    orphans = [t.number for t in killed if t.state == TrialState.RUNNING]
    assert orphans
    code, out, err = search_process(db, ARGS).run()
    assert code == 0, err[-3000:]
    assert f"trial {orphans[0]} was left running by a driver that stopped" in out
    study = optuna.load_study(study_name="tiny-5MFLOPs", storage=f"sqlite:///{db}")
    records = read_trials(study)
    by_number = {r.number: r for r in records}
    assert sum(r.trained for r in records) == 5 and not study.get_trials(states=(TrialState.RUNNING,
                                                                                   TrialState.WAITING))
    assert {t.number: (t.state, t.values, t.user_attrs.get("curve")) for t in study.trials
            if t.number in finished} == finished  # what was finished before the kill is untouched
    for number in orphans:
        assert by_number[number].outcome == "orphaned" and by_number[number].state == "FAIL"
        retried = [r for r in records if r.get("retry_of") == number]
        assert retried and retried[0].trained and retried[0].get("arch_hash") == by_number[number].get("arch_hash")
    complete = [r.get("arch_hash") for r in records if r.outcome == "complete"]
    assert len(complete) == len(set(complete))  # no architecture completed twice
    # The resumed driver ranked its own trials at the rung against what the killed one recorded there
    # (rebuilt from the study): those decisions are the ones the replay checks.
    resumed = [r for r in records if r.trained and r.driver not in first and r.curve]
    assert len(first) == 1 and resumed
    _replay(study)
