"""``nas export``: the file rebuilds the network the study recorded, with its weights and provenance."""

import json
from pathlib import Path

import optuna
import pytest
import torch
import yaml

import nas
from nas.search.searcher import StudySearcher
from nas.search_spaces import complexity, load_space, space_names
from nas.search_spaces.sampler import flops_range
from nas.study.lifecycle import fingerprint, new_settings, open_search_study
from nas.study.liveness import Driver
from nas.study.records import read_trials
from nas.study.storage import open_storage
from nas.study.writer import DeferredStorage

optuna.logging.set_verbosity(optuna.logging.WARNING)
TINY = Path(__file__).parents[2] / "bench" / "data" / "tiny_space.yaml"


@pytest.fixture(scope="module")
def study_db(ray_cluster, tmp_path_factory):
    """A real search of the tiny space: three trained candidates, the front's weights kept."""
    from nas.cli import main

    db = tmp_path_factory.mktemp("export") / "nas.db"
    assert main(["search", "--space", str(TINY), "--budget", "5M", "--trials", "3", "--sampler", "random",
                 "--seed", "3", "--storage", str(db), "--train-images", "128", "--val-images", "64",
                 "--epochs", "2", "--batch-size", "32", "--no-early-stopping"]) == 0
    return db


def _records(db):
    return read_trials(optuna.load_study(study_name="tiny-5MFLOPs", storage=f"sqlite:///{db}"))


def test_best_export_rebuilds_the_trained_network(study_db, cli, tmp_path):
    out, weights, onnx_file = tmp_path / "best.yaml", tmp_path / "best.pt", tmp_path / "best.onnx"
    code, stdout, stderr = cli("export", "--storage", study_db, "--best", "-o", out, "--weights", weights,
                               "--onnx", onnx_file)
    assert code == 0, stderr
    prov = yaml.safe_load(out.read_text())["provenance"]
    best = max((r for r in _records(study_db) if r.outcome == "complete"), key=lambda r: r.accuracy)
    assert prov["trial"] == best.number and prov["study"] == "tiny-5MFLOPs" and prov["space"] == "tiny"
    assert prov["space_fingerprint"] == fingerprint(TINY.read_text()) and prov["budget"] == "<= 5 MFLOPs"
    assert prov["fidelity"] == {"train_images": 128, "val_images": 64, "epochs": 2, "batch_size": 32}
    assert prov["objectives"]["accuracy"] == best.accuracy
    # The file rebuilds the network the trial recorded, through every door a user has.
    model = nas.build_model(str(out))
    assert sum(p.numel() for p in model.parameters()) == best.get("n_params")
    assert complexity(nas.resolve_config(str(out))).flops == best.get("flops") == prov["complexity"]["space"]["flops"]
    code, summary, _ = cli("model", "summary", out, "--json")
    assert code == 0 and (json.loads(summary)["params"], json.loads(summary)["flops"]) == \
        (best.get("n_params"), best.get("flops"))
    assert nas.resolve_config(str(out)).arch_hash() == best.get("arch_hash")
    # The weights are the trained ones: evaluated again, the network scores what the search recorded.
    from nas.workers import evaluate, load_dataset

    data = load_dataset("shapes", resolution=32, seed=0).take(val=64)
    trained = nas.build_model(str(out), classes=10, weights=weights)
    acc, _ = evaluate(trained, data.val_x, data.val_y, data.mean, data.std)
    assert acc == pytest.approx(best.accuracy, abs=1.5 / 64)
    import onnx

    onnx.checker.check_model(onnx.load(onnx_file))
    assert "timm: no equivalent timm ResNet (stem.type" in stderr  # a CIFAR stem: said in one line


def test_export_by_objective_knee_and_number(study_db, cli, tmp_path):
    records = {r.number: r for r in _records(study_db)}
    for by in ("flops", "knee"):
        code, _, err = cli("export", "--storage", study_db, "--best", "--by", by, "-o", tmp_path / f"{by}.yaml")
        assert code == 0, err
        trial = yaml.safe_load((tmp_path / f"{by}.yaml").read_text())["provenance"]["trial"]
        assert records[trial].state == "COMPLETE"
    cheapest = min((r for r in records.values() if r.outcome == "complete"), key=lambda r: r.get("flops"))
    assert yaml.safe_load((tmp_path / "flops.yaml").read_text())["provenance"]["trial"] == cheapest.number
    dup = next((r for r in records.values() if r.outcome == "duplicate"), None)
    if dup is not None:  # a duplicate exports the trial it repeats
        assert cli("export", "--storage", study_db, "--trial", dup.number, "-o", tmp_path / "d.yaml")[0] == 0
        prov = yaml.safe_load((tmp_path / "d.yaml").read_text())["provenance"]
        assert prov["trial"] == dup.get("duplicate_of") and prov["requested_trial"] == dup.number


def test_exported_file_retrains(study_db, cli, tmp_path):
    cli("export", "--storage", study_db, "--best", "-o", tmp_path / "best.yaml")
    code, out, err = cli("train", tmp_path / "best.yaml", "--epochs", "1", "--limit", "64", "--batch-size", "32",
                         "--out", tmp_path / "run", "--threads", "1")
    assert code == 0, err
    assert (tmp_path / "run" / "weights.pt").exists()


def _member(number, accuracy, flops, n_params=1):
    from nas.study.records import TrialRecord

    return TrialRecord(number=number, state="COMPLETE", outcome="complete", values=(accuracy, flops), params={},
                       feasible=True, attrs={"accuracy": accuracy, "flops": flops, "n_params": n_params})


def test_knee_of_a_front():
    from nas.export import knee

    two = ("accuracy", "flops")
    # Convex: the middle point bulges towards the ideal; the knee is it, not the most accurate end.
    convex = [_member(0, 0.60, 4e9), _member(1, 0.58, 1.5e9), _member(2, 0.40, 1e9)]
    assert knee(convex, two).number == 1
    assert knee([_member(0, 0.60, 4e9), _member(1, 0.59, 3.9e9), _member(2, 0.58, 1.5e9), _member(3, 0.40, 1e9)],
                two).number == 2
    # Concave (the README's search: 0.546 at 1.93 G, 0.536 at 1.75 G, 0.526 at 1.24 G): no point bulges,
    # so the one nearest the ideal point, the balanced middle, not an end.
    concave = [_member(0, 0.546, 1.93e9), _member(3, 0.536, 1.75e9), _member(17, 0.526, 1.24e9)]
    assert knee(concave, two).number == 3
    assert knee(concave[::-1], two).number == 3  # whatever order the front comes in
    assert knee([_member(5, 0.5, 2e9), _member(6, 0.4, 1e9)][::-1], two).number == 5  # a tie: the better accuracy
    assert knee([_member(5, 0.5, 2e9)], two).number == 5
    three = ("accuracy", "flops", "params")
    assert knee([_member(0, 0.6, 4e9, 40), _member(1, 0.55, 2e9, 15), _member(2, 0.4, 1e9, 10)], three).number == 1


def test_export_mistakes_are_one_line(study_db, cli, tmp_path):
    infeasible = next(r for r in _records(study_db) if r.outcome == "infeasible")
    optuna.create_study(study_name="other", storage=f"sqlite:///{study_db}")
    cases = [
        (["--study", "nope", "--best"], "no study named 'nope'"),
        (["--best"], "pick one with --study"),
        (["--study", "tiny-5MFLOPs", "--trial", "999"], "study has no trial 999"),
        (["--study", "tiny-5MFLOPs", "--trial", str(infeasible.number)], "did not complete (infeasible"),
        (["--study", "tiny-5MFLOPs", "--best", "--by", "latency"], "--by latency: not an objective"),
        (["--study", "other", "--best"], "was not made by 'nas search'"),
    ]
    for args, words in cases:
        code, _, err = cli("export", "--storage", study_db, *args, "-o", tmp_path / "x.yaml")
        assert code == 2 and words in err and err.count("\n") == 1, (args, err)
    code, _, err = cli("export", "--storage", study_db, "--study", "tiny-5MFLOPs", "--best",
                       "-o", tmp_path / "missing" / "x.yaml")
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "x.yaml").exists()


def test_a_failed_onnx_export_writes_nothing(study_db, cli, tmp_path, monkeypatch):
    """The ONNX graph is made before anything is moved into place: when it fails, neither the
    config nor the weights are left behind (nor any staging file)."""
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "best.onnx"))

    monkeypatch.setattr(torch.onnx, "export", broken)
    out, weights, onnx_file = tmp_path / "best.yaml", tmp_path / "best.pt", tmp_path / "best.onnx"
    code, _, err = cli("export", "--storage", study_db, "--study", "tiny-5MFLOPs", "--best", "-o", out,
                       "--weights", weights, "--onnx", onnx_file)
    assert code == 2 and err.startswith("error: cannot write ") and "No space left on device" in err
    assert err.count("\n") == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("space_name", space_names())
def test_round_trip_for_every_built_in_space(space_name, tmp_path, cli):
    """A study recorded by the searcher's own code (trained instantly: the accuracy is invented),
    exported: the file's network has the params and FLOPs the study recorded, at both resolutions."""
    space = load_space(space_name)
    lo, hi, _ = flops_range(space)
    settings = new_settings(space=space.name, space_fingerprint=fingerprint(space_name), space_resolution=int(
        space.base.get("resolution", 224)), budget_low=0.0, budget_high=float(hi), dataset="shapes",
        train_resolution=32, classes=10, train_images=None, val_images=None, epochs=1, batch_size=2, schedule={},
        objectives=("accuracy", "flops"))
    db = tmp_path / "s.db"
    storage = DeferredStorage(optuna.storages.get_storage(open_storage(str(db))))
    study, _ = open_search_study(storage, "s", settings, "", optuna.samplers.RandomSampler(seed=1))
    searcher = StudySearcher(study, storage, space, settings, 1, Driver(storage, study._study_id).id, {})
    assert isinstance(searcher.suggest("t"), dict)
    searcher.on_trial_complete("t", {"final": True, "status": "ok", "accuracy": 0.5, "epoch": 1,
                                     "epochs_completed": 1})
    code, out, err = cli("export", "--storage", db, "--best", "-o", tmp_path / "x.yaml")
    assert code == 0, err
    record = next(r for r in read_trials(study) if r.outcome == "complete")
    # Where it fits, the printed timm call is the same network (run as a user pastes it); where it
    # does not, one line says why.
    if "timm equivalent:\n" in out:
        namespace: dict = {}
        with torch.device("meta"):
            exec(out.split("timm equivalent:\n", 1)[1], namespace)
        assert sum(p.numel() for p in namespace["model"].parameters()) == record.get("n_params")
    else:
        assert [line for line in err.splitlines() if line.startswith("timm: no equivalent timm ResNet (")]
    config = nas.resolve_config(str(tmp_path / "x.yaml"))
    cx = complexity(config)
    assert (cx.params, cx.flops, cx.activations) == (record.get("n_params"), record.get("flops"),
                                                     record.get("activations"))
    tcx = complexity(config.with_input(resolution=32, classes=10))
    assert (tcx.params, tcx.flops) == (record.get("train_n_params"), record.get("train_flops"))
    assert config.resolution == settings.space_resolution and config.arch_hash() == record.get("arch_hash")
    with torch.device("meta"):
        built = nas.build_model(str(tmp_path / "x.yaml"))
    assert sum(p.numel() for p in built.parameters()) == record.get("n_params")
