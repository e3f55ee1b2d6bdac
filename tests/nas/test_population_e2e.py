"""The design-space loop end to end on the CPU at a tiny fidelity, every step real (a local Ray cluster,
an SQLite study, real training): population -> refine -> a population of the refined file -> compare."""

from pathlib import Path

import optuna
import pytest
import yaml

from nas.study.records import read_settings, read_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = Path(__file__).parents[2] / "bench" / "data" / "population_space.yaml"
FAST = ["--train-images", "96", "--val-images", "64", "--epochs", "1", "--batch-size", "32"]


@pytest.mark.slow
def test_population_refine_search_compare(cli, tmp_path, ray_cluster):
    db = tmp_path / "nas.db"
    space = tmp_path / "my_space.yaml"  # the user's own file: the lineage names it
    space.write_text(SPACE.read_text())
    code, out, err = cli("search", "--population", "--space", space, "--budget", "1-11MFLOPs", "--trials", "20",
                         "--storage", db, "--study", "pop-A", *FAST)
    assert code == 0, err
    assert "a population: random sampler" in out and "stopping  off" in out
    study = optuna.load_study(study_name="pop-A", storage=f"sqlite:///{db}")
    assert read_settings(study).population
    assert sum(r.scored for r in read_trials(study)) == 20 and not any(r.outcome == "pruned"
                                                                       for r in read_trials(study))
    code, out, err = cli("status", "--study", "pop-A", "--storage", db)
    assert code == 0 and "sample    population" in out

    refined = tmp_path / "refined.yaml"
    code, out, err = cli("space", "refine", "--study", "pop-A", "--storage", db, "-o", refined,
                         "--apply", "share depth across stages")
    assert code == 0, err
    assert "share depth across stages" in out and "depth non-decreasing" in out and "rule: " in out
    assert "--epochs 1 --batch-size 32" in out and "--train-images 96 --val-images 64" in out  # the next: line
    assert "--budget 1-11MFLOPs " in out  # the parent's window, as the user typed it
    doc = yaml.safe_load(refined.read_text())
    assert "depth" in doc["ties"] and doc["lineage"]["study"]["models"] == 20
    assert doc["lineage"]["parent"]["file"] == str(space.resolve())
    code, out, err = cli("space", "show", refined)
    assert code == 0 and "lineage:" in out and "architectures: 16" in out and err == ""

    code, out, err = cli("search", "--population", "--space", refined, "--budget", "1-11MFLOPs", "--trials", "8",
                         "--storage", db, "--study", "pop-B", *FAST)
    assert code == 0, err
    child = optuna.load_study(study_name="pop-B", storage=f"sqlite:///{db}")
    for r in read_trials(child):  # every model of the child is a point of the refined space
        if r.scored:
            assert r.params["depth"] in (1, 2) and "stage1.depth" not in r.params

    code, out, err = cli("space", "compare", "--study", "pop-A", "--study", "pop-B", "--storage", db)
    assert code == 0, err
    verdict = [line for line in out.splitlines() if line.startswith("verdict: ")]
    assert len(verdict) == 1 and "pop-B" in verdict[0] and "KS" in verdict[0]
    space.write_text(SPACE.read_text().replace("cardinality: [1, 2]", "cardinality: [1, 2, 4]"))
    code, _, err = cli("space", "show", refined)  # the parent changed since: one warning line, not a crash
    assert code == 0 and err.startswith("warning: ") and "has changed" in err and len(err.splitlines()) == 1
    # a search study is not a population: refine says why and how to make one
    code, out, err = cli("search", "--space", SPACE, "--budget", "1-11MFLOPs", "--trials", "2", "--storage", db,
                         "--study", "search-C", "--sampler", "tpe", *FAST)
    assert code == 0, err
    code, _, err = cli("space", "refine", "--study", "search-C", "--storage", db, "-o", tmp_path / "x.yaml")
    assert code == 2 and "not a population" in err and "--population" in err


def test_population_mistakes(cli, tmp_path):
    for extra, words in ((["--sampler", "tpe"], "drop --sampler tpe"), (["--grace", "1"], "drop --grace")):
        code, _, err = cli("search", "--population", "--space", SPACE, "--budget", "1-11MFLOPs",
                           "--storage", tmp_path / "x.db", *extra)
        assert code == 2 and err.startswith("error: ") and words in err and len(err.splitlines()) == 1
        assert not (tmp_path / "x.db").exists()
