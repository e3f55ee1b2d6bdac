"""Several drivers on one study at once: the study's total is met, no architecture is trained to
COMPLETE twice, and neither driver fails the other's running trials."""

import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from nas.study.records import read_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
SMALL = Path(__file__).parents[2] / "bench" / "data" / "small_space.yaml"


def _records(storage, study_name):
    try:
        return read_trials(optuna.load_study(study_name=study_name, storage=storage))
    except Exception:  # not created yet, or mid-creation
        return []


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_two_drivers_finish_one_study_together(backend, tmp_path, study_name, request):
    """On PostgreSQL both drivers live to the end. On SQLite the first is SIGKILLed once both are
    training: the survivor fails what it left running (within a heartbeat, not at its next start),
    trains that architecture again and still finishes the study's total exactly."""
    storage = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{tmp_path}/s.db"
    args = [sys.executable, "-m", "nas.cli", "search", "--space", str(SMALL), "--budget", "6M", "--trials", "6",
            "--study", study_name, "--storage", storage, "--sampler", "random", "--train-images", "128",
            "--val-images", "32", "--epochs", "2", "--batch-size", "32", "--no-early-stopping", "--max-concurrent", "1",
            "--artifacts", str(tmp_path / "artifacts")]
    drivers = [subprocess.Popen([*args, "--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for seed in (1, 2)]
    killed = None
    if backend == "sqlite":
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and killed is None:
            running = [r for r in _records(storage, study_name) if r.outcome == "running"]
            if len({r.driver for r in running}) == 2:  # both drivers are training one trial each
                killed = running[0]
                pid = _driver_pid(storage, study_name, killed.driver)
                next(d for d in drivers if d.pid == pid).kill()
            time.sleep(0.2)
        assert killed is not None, "the two drivers never trained at the same time"
        # The survivor is waited on first: the killed driver stays a zombie (its pid still there)
        # until the survivor ends, and must count as dead all the same.
        drivers.sort(key=lambda d: d.pid == pid)
    outputs = [(d, *d.communicate(timeout=600)) for d in drivers]
    survivors = [(d, out, err) for d, out, err in outputs if d.returncode != -9]
    assert len(survivors) == (1 if killed else 2)
    for d, _, err in survivors:
        assert d.returncode == 0, err[-3000:]
    records = read_trials(optuna.load_study(study_name=study_name, storage=storage))
    trained = [r for r in records if r.trained]
    assert len(trained) == 6  # the study's total, exactly: the write of a trial is guarded
    complete = [r.get("arch_hash") for r in records if r.outcome == "complete"]
    assert len(complete) == len(set(complete))
    assert not [r for r in records if r.outcome in ("interrupted", "running")]
    if killed is None:
        assert len({r.driver for r in trained}) == 2  # both drivers trained
        assert not [r for r in records if r.outcome == "orphaned"]
        optuna.delete_study(study_name=study_name, storage=storage)
        return
    orphaned = [r for r in records if r.outcome == "orphaned"]
    assert [r.number for r in orphaned] == [killed.number]
    retry = [r for r in records if r.get("retry_of") == killed.number]
    assert len(retry) == 1 and retry[0].trained and retry[0].get("arch_hash") == killed.get("arch_hash")
    assert f"trial {killed.number} was left running by a driver that stopped" in survivors[0][1]


def _driver_pid(storage, study_name, driver_id):
    from nas.study.liveness import drivers

    study = optuna.load_study(study_name=study_name, storage=storage)
    return drivers(study._storage, study._study_id)[driver_id].pid


def test_a_second_driver_on_a_journal_file_is_refused(ray_cluster, tmp_path, cli):
    """A journal file has no transactions: while one driver works on a study there, another is
    refused in one line (here the first is this test process, registered as a live driver)."""
    from nas.study.liveness import Driver

    url = f"journal:{tmp_path / 'j.log'}"
    same = ["--space", SMALL, "--budget", "6M", "--trials", "1", "--storage", url, "--study", "j", "--sampler",
            "random", "--train-images", "128", "--val-images", "32", "--epochs", "2", "--batch-size", "32",
            "--artifacts", tmp_path / "artifacts"]
    code, _, err = cli("search", *same)
    assert code == 0, err
    study = optuna.load_study(study_name="j", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log"))))
    first = Driver(study._storage, study._study_id)
    first.record.started -= 60  # started before the next one
    first.beat(force=True)
    n = len(study.trials)
    code, out, err = cli("search", *same[:5], "2", *same[6:])
    assert code == 2 and err.startswith("error: study 'j' in journal:") and "use PostgreSQL" in err
    assert err.count("\n") == 1 and out == "" and len(study.trials) == n
    first.end()
    code, _, err = cli("search", *same[:5], "2", *same[6:])  # once it has ended, the next driver goes on
    assert code == 0, err
