"""``nas search`` end to end on the CPU: a real local Ray cluster, Ray Tune, an SQLite study,
the embedded shapes data. Small fidelities keep each search to seconds of training."""

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.records import read_settings, read_trials
from nas.search_spaces import load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
TINY = Path(__file__).parent / "data" / "tiny_space.yaml"
FAST = ["--train-images", "128", "--val-images", "64", "--epochs", "2", "--batch-size", "32", "--no-early-stopping"]


def _study(db, name="tiny-5MFLOPs"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


@pytest.fixture(scope="module")
def searched(ray_cluster, tmp_path_factory):
    """One search, shared by the tests that read it: 4 trained candidates of the tiny space, 3 of
    whose 8 architectures are over the 5 MFLOPs budget; the random sampler repeats itself."""
    from nas.cli import main

    db = tmp_path_factory.mktemp("search") / "nas.db"
    code = main(["search", "--space", str(TINY), "--budget", "5M", "--trials", "4", "--sampler", "random",
                 "--seed", "3", "--storage", str(db), *FAST])
    return code, db


def test_search_records_complete_infeasible_and_duplicate_trials(searched):
    code, db = searched
    assert code == 0
    study = _study(db)
    records = read_trials(study)
    by = {}
    for r in records:
        by.setdefault(r.outcome, []).append(r)
    assert sum(r.trained for r in records) == 4 and len(by["complete"]) == 4
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert by.get("infeasible") and by.get("duplicate")
    for r in by["infeasible"]:
        assert r.state == "PRUNED" and r.get("flops") > 5e6 and r.constraints["flops_budget"] > 0
        assert r.get("curve") is None  # never trained
    trained = {r.number: r for r in by["complete"]}
    for d in by["duplicate"]:
        original = trained[d.get("duplicate_of")]
        assert d.get("arch_hash") == original.get("arch_hash") and d.values == original.values
    for r in by["complete"]:
        assert r.values[1] == r.get("flops") <= 5e6 and 0 <= r.values[0] <= 1
        assert [c["epoch"] for c in r.curve] == [1, 2] and r.curve[-1]["accuracy"] == r.values[0]
        for key in ("config", "arch", "arch_hash", "n_params", "activations", "train_flops", "wall_time_s",
                    "images_per_s", "device", "host", "node", "worker_pid"):
            assert r.get(key) is not None, key
        config = load_space(TINY).decode(r.params)  # the params are the space's: they rebuild the network
        assert config.arch_hash() == r.get("arch_hash")
    assert len({r.get("arch_hash") for r in by["complete"]}) == 4  # no architecture trained twice


def test_study_records_its_settings_and_objectives(searched):
    study = _study(searched[1])
    assert study.metric_names == ["accuracy", "flops"]
    s = read_settings(study)
    assert (s.space, s.budget_high, s.dataset, s.epochs, s.train_images, s.val_images) == \
        ("tiny", 5e6, "shapes", 2, 128, 64)


def test_front_is_within_budget_and_optuna_dashboard_agrees(searched):
    from optuna_dashboard._pareto_front import get_pareto_front_trials

    study = _study(searched[1])
    best = study.best_trials
    assert best and all(t.state == TrialState.COMPLETE and t.values[1] <= 5e6 for t in best)
    # optuna-dashboard ignores constraints and computes its own front: only COMPLETE trials reach it.
    theirs = get_pareto_front_trials(study.trials, study.directions)
    assert theirs and all(t.state == TrialState.COMPLETE and t.constraints["flops_budget"] <= 0 for t in theirs)


def test_rerun_resumes_and_trials_is_the_total(searched, ray_cluster):
    from nas.cli import main

    code, db = searched
    before = {t.number: (t.state, t.values) for t in _study(db).trials}
    assert main(["search", "--space", str(TINY), "--budget", "5M", "--trials", "5", "--sampler", "random",
                 "--seed", "3", "--storage", str(db), *FAST]) == 0
    study = _study(db)
    assert {t.number: (t.state, t.values) for t in study.trials if t.number in before} == before
    records = read_trials(study)
    assert sum(r.trained for r in records) == 5
    hashes = [r.get("arch_hash") for r in records if r.outcome == "complete"]
    assert len(hashes) == len(set(hashes)) == 5  # all five feasible architectures, each once
    # Asked again, a finished study says so and trains nothing.
    assert main(["search", "--space", str(TINY), "--budget", "5M", "--trials", "5", "--sampler", "random",
                 "--seed", "3", "--storage", str(db), *FAST]) == 0
    assert len(_study(db).trials) == len(study.trials)


def test_other_settings_are_refused_and_nothing_is_written(searched, cli):
    db = searched[1]
    n = len(_study(db).trials)
    code, out, err = cli("search", "--space", TINY, "--budget", "5M", "--trials", "6", "--storage", db,
                         "--train-images", "128", "--val-images", "64", "--epochs", "3", "--batch-size", "32")
    assert code == 2 and err.startswith("error: study 'tiny-5MFLOPs' was made with other settings: epochs 2 "
                                        "(study) vs 3 (now)") and err.count("\n") == 1
    assert len(_study(db).trials) == n


def test_inspection_commands(searched, cli):
    db = searched[1]
    code, out, _ = cli("studies", "--storage", db)
    assert code == 0 and "tiny-5MFLOPs" in out and "<= 5 MFLOPs" in out
    code, out, _ = cli("status", "--storage", db)
    assert code == 0 and "trained: complete 5" in out and "best      accuracy" in out
    code, out, _ = cli("pareto", "--storage", db, "--json")
    import json

    front = json.loads(out)["front"]
    assert code == 0 and front and all(f["values"]["flops"] <= 5e6 for f in front)


def test_search_on_postgresql(postgres_url, study_name, ray_cluster, tmp_path):
    from nas.cli import main

    assert main(["search", "--space", str(TINY), "--budget", "5M", "--trials", "2", "--sampler", "random",
                 "--storage", postgres_url, "--study", study_name, "--artifacts", str(tmp_path), *FAST]) == 0
    study = optuna.load_study(study_name=study_name, storage=postgres_url)
    records = read_trials(study)
    assert sum(r.trained for r in records) == 2 and not study.get_trials(states=(TrialState.RUNNING,))
    assert study.best_trials and read_settings(study).space == "tiny"
    optuna.delete_study(study_name=study_name, storage=postgres_url)
