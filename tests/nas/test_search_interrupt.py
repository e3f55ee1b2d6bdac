"""A driver killed or interrupted mid-search, then re-run: nothing trained is lost or repeated.

Each search here is a real ``nas search`` process with its own local Ray cluster."""

import signal
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.records import read_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
TINY = Path(__file__).parent / "data" / "tiny_space.yaml"
ARGS = ["--space", TINY, "--budget", "5M", "--trials", "4", "--sampler", "random", "--seed", "1",
        "--train-images", "256", "--val-images", "64", "--epochs", "3", "--batch-size", "32", "--no-early-stopping"]


def _finish(search_process, db):
    code, out, err = search_process(db, ARGS).run()
    assert code == 0, err[-3000:]
    return out


def _check_final(db):
    study = optuna.load_study(study_name="tiny-5MFLOPs", storage=f"sqlite:///{db}")
    records = read_trials(study)
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert sum(r.trained for r in records) == 4
    complete = [r.get("arch_hash") for r in records if r.outcome == "complete"]
    assert len(complete) == len(set(complete)) == 4  # no architecture completed twice
    return records


def test_sigkill_mid_search_then_rerun(tmp_path, search_process):
    db = tmp_path / "nas.db"
    search = search_process(db, ARGS).start()
    search.wait_for(lambda ts: any(t.state == TrialState.COMPLETE for t in ts)
                    and any(t.state == TrialState.RUNNING for t in ts))
    before = {t.number: t.values for t in search.trials() if t.state == TrialState.COMPLETE}
    search.proc.kill()
    search.proc.wait(timeout=30)
    orphans = [t.number for t in search.trials() if t.state == TrialState.RUNNING]
    assert orphans
    out = _finish(search_process, db)
    assert f"trial {orphans[0]} was left running by a driver that stopped" in out
    records = _check_final(db)
    by_number = {r.number: r for r in records}
    for number, values in before.items():  # completed trials are untouched
        assert by_number[number].state == "COMPLETE" and by_number[number].values == tuple(values)
    for number in orphans:
        assert by_number[number].outcome == "orphaned" and by_number[number].state == "FAIL"
        retried = [r for r in records if r.get("retry_of") == number]
        assert retried and retried[0].get("arch_hash") == by_number[number].get("arch_hash")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_then_rerun_continues(tmp_path, search_process, sig, code):
    db = tmp_path / "nas.db"
    search = search_process(db, ARGS).start()
    search.wait_for(lambda ts: any(t.state == TrialState.RUNNING and t.user_attrs.get("curve") for t in ts))
    out, err = search.signal(sig)
    assert search.proc.returncode == code, err[-2000:]
    assert "Traceback" not in err and "stopping" in err
    trials = search.trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in trials if t.user_attrs.get("outcome") == "interrupted"]
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert interrupted and sorted(t.user_attrs["retry_of"] for t in waiting) == sorted(t.number for t in interrupted)
    _finish(search_process, db)
    records = _check_final(db)
    assert all(any(r.get("retry_of") == t.number and r.trained for r in records) for t in interrupted)
