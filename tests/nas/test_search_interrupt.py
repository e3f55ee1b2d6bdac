"""A driver killed or interrupted mid-search, then re-run: nothing trained is lost or repeated.

Each search here is a real ``nas search`` process with its own local Ray cluster."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.records import read_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
TINY = Path(__file__).parent / "data" / "tiny_space.yaml"
ARGS = ["search", "--space", str(TINY), "--budget", "5M", "--trials", "4", "--sampler", "random", "--seed", "1",
        "--train-images", "256", "--val-images", "64", "--epochs", "3", "--batch-size", "32"]


def _start(db):
    env = {**os.environ, "NAS_STORAGE": f"sqlite:///{db}"}
    return subprocess.Popen([sys.executable, "-m", "nas.cli", *ARGS], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _trials(db):
    try:
        return optuna.load_study(study_name="tiny-5MFLOPs", storage=f"sqlite:///{db}").trials
    except Exception:  # not created yet, or mid-creation
        return []


def _wait_for(db, proc, ready, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"search ended early ({proc.returncode}): {proc.communicate()[1][-2000:]}")
        if ready(_trials(db)):
            return
        time.sleep(0.3)
    raise AssertionError("timed out waiting for the search")


def _cleanup(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever the driver's local cluster left behind
    except ProcessLookupError:
        pass


def _finish(db):
    """Re-run the same command to the end; returns its output."""
    proc = _start(db)
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        _cleanup(proc)
    assert proc.returncode == 0, err[-3000:]
    return out


def _check_final(db):
    trials = _trials(db)
    records = read_trials(optuna.load_study(study_name="tiny-5MFLOPs", storage=f"sqlite:///{db}"))
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sum(r.trained for r in records) == 4
    complete = [r.get("arch_hash") for r in records if r.outcome == "complete"]
    assert len(complete) == len(set(complete)) == 4  # no architecture completed twice
    return records


def test_sigkill_mid_search_then_rerun(tmp_path):
    db = tmp_path / "nas.db"
    proc = _start(db)
    try:
        _wait_for(db, proc, lambda ts: any(t.state == TrialState.COMPLETE for t in ts)
                  and any(t.state == TrialState.RUNNING for t in ts))
        before = {t.number: t.values for t in _trials(db) if t.state == TrialState.COMPLETE}
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _cleanup(proc)
    orphans = [t.number for t in _trials(db) if t.state == TrialState.RUNNING]
    assert orphans
    out = _finish(db)
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
def test_signal_stops_cleanly_then_rerun_continues(tmp_path, sig, code):
    db = tmp_path / "nas.db"
    proc = _start(db)
    try:
        _wait_for(db, proc, lambda ts: any(t.state == TrialState.RUNNING and t.user_attrs.get("curve")
                                           for t in ts))
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        _cleanup(proc)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err and "stopping" in err
    trials = _trials(db)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in trials if t.user_attrs.get("outcome") == "interrupted"]
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert interrupted and sorted(t.user_attrs["retry_of"] for t in waiting) == sorted(t.number for t in interrupted)
    _finish(db)
    records = _check_final(db)
    assert all(any(r.get("retry_of") == t.number and r.trained for r in records) for t in interrupted)
