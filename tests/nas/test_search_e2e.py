"""``nas search`` end to end on the CPU: a real local Ray cluster, Ray Tune, an SQLite study,
the embedded shapes data. Small fidelities keep each search to seconds of training."""

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.search_spaces import load_space
from nas.study.records import read_settings, read_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
TINY = Path(__file__).parents[2] / "bench" / "data" / "tiny_space.yaml"
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


def test_search_leaves_no_tune_files_behind(searched, ray_cluster):
    """Tune stages its experiment state and every trial's folder under the Ray session, beside its
    (temporary, removed) storage path: those go too when the search ends."""
    import glob
    import os

    session = ray_cluster._private.worker._global_node.get_session_dir_path()
    assert glob.glob(os.path.join(session, "artifacts")), "Ray staged nothing: the test no longer checks anything"
    assert not glob.glob(os.path.join(session, "artifacts", "*", "nas-tune-*"))


def test_dashboard_reads_a_real_search(searched):
    """The dashboards are tested at scale on synthetic studies; this one is what a search wrote:
    every architecture (infeasible and duplicate ones too) shows whole in the hover and gets a
    colour, and the front drawn is the study's."""
    from nas.dashboards.figures import build_dashboard, hover_text
    from nas.dashboards.studies import open_sources

    sources, _ = open_sources(str(searched[1]), None)
    data = sources[0].read()
    board = build_dashboard([data])
    for r in data.records:
        if r.outcome in ("complete", "infeasible", "duplicate"):
            assert "depths " in hover_text(r) and "widths " in hover_text(r), (r.outcome, hover_text(r))
    marker_traces = [t for t in board.figures["flops"].data if t.marker is not None and t.marker.colorbar]
    labels = [lab for t in marker_traces for lab in (t.marker.colorbar.ticktext or ())]
    assert "none" not in labels
    colours = [c for t in marker_traces if t.marker.color is not None for c in t.marker.color]
    assert colours and all(c is not None for c in colours)
    # the same architectures as Optuna's own front (which also lists their duplicates)
    assert {row["hash"] for row in board.fronts[data.name]} == \
        {t.user_attrs["arch_hash"] for t in _study(searched[1]).best_trials}


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


#: How every line a search prints to a log begins: the plan, the progress, the summary and the front.
OURS = ("space ", "budget ", "data ", "signal ", "trials ", "ray ", "study ", "stopping ", "latency ", "[",
        "Pareto front", "trial ", "-----", "next: ")


def test_rerun_resumes_and_trials_is_the_total(searched, ray_cluster, capfd):
    from nas.cli import main

    code, db = searched
    before = {t.number: (t.state, t.values) for t in _study(db).trials}
    capfd.readouterr()
    assert main(["search", "--space", str(TINY), "--budget", "5M", "--trials", "5", "--sampler", "random",
                 "--seed", "3", "--storage", str(db), *FAST]) == 0
    # Ray and Tune print nothing (not even to the file descriptors): our lines are the whole output.
    out, err = capfd.readouterr()
    strange = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith(OURS) and not ln.strip()[0].isdigit()]
    # on stderr only our own notes (at this tiny fidelity: the candidates that ended within noise of chance)
    foreign = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("note: ")]
    assert not strange and not foreign, (strange, err)
    assert "[5/5]" in out and "Pareto front" in out
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
    # Every compared setting is refused the same way, each naming what differs.
    same = ["--space", TINY, "--budget", "5M", "--trials", "6", "--storage", db, "--study", "tiny-5MFLOPs", *FAST]
    for changed, says in ((["--resolution", "64"], "training resolution 32 (study) vs 64 (now)"),
                          (["--budget", "6M"], "budget <= 5 MFLOPs (study) vs <= 6 MFLOPs (now)"),
                          (["--objectives", "accuracy,params"], "objectives"),
                          (["--train-images", "100"], "train images 128 (study) vs 100 (now)")):
        code, out, err = cli("search", *same, *changed)
        assert code == 2 and says in err and err.count("\n") == 1, (changed, err)
    assert len(_study(db).trials) == n


def test_inspection_commands(searched, cli):
    db = searched[1]
    code, out, _ = cli("studies", "--storage", db)
    assert code == 0 and "tiny-5MFLOPs" in out and "<= 5 MFLOPs" in out
    complete = sum(r.outcome == "complete" for r in read_trials(_study(db)))
    code, out, _ = cli("status", "--storage", db)
    assert code == 0 and f"trained: complete {complete}" in out and "best      accuracy" in out
    code, out, _ = cli("pareto", "--storage", db, "--json")
    import json

    front = json.loads(out)["front"]
    assert code == 0 and front and all(f["values"]["flops"] <= 5e6 for f in front)


def test_search_on_postgresql(fresh_postgres_url, ray_cluster, tmp_path, cli):
    """A first search on a new, empty database: the read-only check before it finds no tables,
    which means no study yet, and the search creates them."""
    from nas.cli import main

    url = fresh_postgres_url
    code, _, err = cli("status", "--storage", url)
    assert code == 2 and err.startswith("error: storage ") and "holds no study yet" in err and err.count("\n") == 1
    assert main(["search", "--space", str(TINY), "--budget", "5M", "--trials", "2", "--sampler", "random",
                 "--storage", url, "--study", "pg", "--artifacts", str(tmp_path), *FAST]) == 0
    study = optuna.load_study(study_name="pg", storage=url)
    records = read_trials(study)
    assert sum(r.trained for r in records) == 2 and not study.get_trials(states=(TrialState.RUNNING,))
    assert study.best_trials and read_settings(study).space == "tiny"
