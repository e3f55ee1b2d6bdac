"""Several drivers on one study at once: the study's total is met, no architecture is trained to
COMPLETE twice, and neither driver fails the other's running trials."""

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from nas.records import read_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
SMALL = Path(__file__).parent / "data" / "small_space.yaml"


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_two_drivers_finish_one_study_together(backend, tmp_path, study_name, request):
    storage = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{tmp_path}/s.db"
    args = [sys.executable, "-m", "nas.cli", "search", "--space", str(SMALL), "--budget", "6M", "--trials", "8",
            "--study", study_name, "--storage", storage, "--sampler", "random", "--train-images", "128",
            "--val-images", "32", "--epochs", "2", "--batch-size", "32", "--no-early-stopping", "--max-concurrent", "1",
            "--artifacts", str(tmp_path / "artifacts")]
    drivers = [subprocess.Popen([*args, "--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for seed in (1, 2)]
    outputs = [d.communicate(timeout=600) for d in drivers]
    for d, (_, err) in zip(drivers, outputs):
        assert d.returncode == 0, err[-3000:]
    records = read_trials(optuna.load_study(study_name=study_name, storage=storage))
    trained = [r for r in records if r.trained]
    assert len(trained) == 8  # the study's total, exactly: the write of a trial is guarded
    complete = [r.get("arch_hash") for r in records if r.outcome == "complete"]
    assert len(complete) == len(set(complete))
    assert not [r for r in records if r.outcome in ("orphaned", "interrupted", "running")]
    assert len({r.driver for r in trained}) == 2  # both drivers trained
    if backend == "postgresql":
        optuna.delete_study(study_name=study_name, storage=storage)
