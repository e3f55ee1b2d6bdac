"""Deployment latency in a search: ``--objectives accuracy,latency``, ``--latency-runtime``, ``--max-latency``.

The search space here (``bench/data/tiny_latency_space.yaml``) deploys at 128x128 and trains at 32x32; its
widths 16 and 128 put latencies about ten times apart. The budget is set between the two, from a measurement
made by the test itself on this machine (no absolute time is assumed)."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.study.records import read_settings, read_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = Path(__file__).parents[2] / "bench" / "data" / "tiny_latency_space.yaml"
FAST = ["--train-images", "128", "--val-images", "64", "--epochs", "2", "--batch-size", "32", "--no-early-stopping"]


@pytest.mark.parametrize("args, words", [
    (["--latency-runtime", "tflite", "--objectives", "accuracy,latency"], "unknown latency runtime 'tflite'"),
    (["--latency-runtime", "onnxruntime:tpu", "--objectives", "accuracy,latency"], "unknown device 'tpu'"),
    (["--max-latency", "0"], "--max-latency must be a positive time"),
    (["--max-latency=-8ms"], "--max-latency must be a positive time"),
    (["--max-latency", "soon"], "--max-latency: cannot read 'soon'"),
    (["--latency-runtime", "onnxruntime"], "nothing measures latency"),
    (["--latency-runtime", "onnxruntime:cuda", "--max-latency", "8ms"], "candidates train on cpu here"),
    (["--latency-runtime", "torch:cuda", "--objectives", "accuracy,latency"], "candidates train on cpu here"),
])
def test_latency_mistakes_are_one_line_and_write_nothing(cli, tmp_path, monkeypatch, args, words):
    import torch

    if torch.cuda.is_available() and "cuda" in " ".join(args):
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("search", "--space", SPACE, "--budget", "1G", *args)
    assert code == 2 and err.startswith("error: ") and words in err and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())  # no storage, nothing else


def test_a_runtime_not_installed_is_one_line_saying_how_to_install_it(cli, tmp_path, monkeypatch):
    """onnxruntime is installed here (the test extras): its absence is what find_spec answers without it."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("search", "--space", SPACE, "--budget", "1G", "--objectives", "accuracy,latency",
                       "--latency-runtime", "onnxruntime")
    assert code == 2 and "pip install onnxruntime" in err and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


def test_a_resume_names_a_different_latency_measurement():
    from nas.study.records import StudySettings

    base = dict(space="s", space_fingerprint="f", space_resolution=128, budget_low=0, budget_high=1e9, dataset="d",
                train_resolution=32, classes=10, train_images=1, val_images=1, epochs=1, batch_size=2, schedule={},
                objectives=("accuracy", "latency"))
    plan = {"runtime": "torch", "device": "cpu", "threads": 1, "batch_sizes": [1, 8], "max_ms": 20.0}
    study = StudySettings(**base, latency=plan)
    assert StudySettings.from_attrs(study.to_attrs()).latency == plan
    now = StudySettings(**base, latency={**plan, "runtime": "onnxruntime", "max_ms": None})
    assert study.differences(now) == ["latency torch:cpu, 1 thread, batches 1/8, budget 20 ms (study) vs "
                                      "onnxruntime:cpu, 1 thread, batches 1/8 (now)"]
    # a study whose latency an older nas timed (at the training resolution, no runtime recorded)
    older = StudySettings(**base).differences(study)[0]
    assert "timed by an older nas at the training resolution (study)" in older and "start a new study" in older


def _budget_between_the_extremes() -> float:
    """The geometric mean of the slowest narrow (width 16) and the fastest wide (width 128) architecture's
    latency, each relative to the reference timed beside it and brought back to one reference: a budget in
    the gap between the two groups, so every narrow one is within it and every wide one over it."""
    from nas.search_spaces import load_space
    from nas.workers.deployment_latency import measure_deployed

    space = load_space(SPACE)
    small = space.decode({"stage1.depth": 1, "stage2.depth": 2, "width.base": 16, "cardinality": 1,
                          "group_width.base": 16})
    large = space.decode({"stage1.depth": 1, "stage2.depth": 1, "width.base": 128, "cardinality": 1,
                          "group_width.base": 4})
    a, b = (measure_deployed(c, batch_sizes=(1,)).at(1) for c in (small, large))
    ref = math.sqrt(a.reference_ms * b.reference_ms)
    low, high = a.median_ms / a.reference_ms * ref, b.median_ms / b.reference_ms * ref
    assert high > 2 * low, (low, high)  # the space spreads as it is meant to
    return math.sqrt(low * high)


@pytest.fixture(scope="module")
def latency_search(ray_cluster, tmp_path_factory):
    from nas.cli import main

    budget = _budget_between_the_extremes()
    db = tmp_path_factory.mktemp("latency") / "nas.db"
    args = ["search", "--space", str(SPACE), "--budget", "1G", "--sampler", "random", "--seed", "1",
            "--storage", str(db), "--study", "lat", "--objectives", "accuracy,latency", "--max-latency",
            f"{budget:.3f}ms", *FAST]
    code = main([*args, "--trials", "2"])
    return code, db, budget, args


def test_search_records_deployment_latency_and_never_trains_over_the_budget(latency_search):
    code, db, budget, _ = latency_search
    assert code == 0
    study = optuna.load_study(study_name="lat", storage=f"sqlite:///{db}")
    assert study.metric_names == ["accuracy", "latency"]
    settings = read_settings(study)
    assert settings.latency == {"runtime": "torch", "device": "cpu", "threads": 1, "batch_sizes": [1, 8],
                                "max_ms": pytest.approx(budget, abs=1e-3)}
    records = read_trials(study)
    complete = [r for r in records if r.outcome == "complete"]
    over = [r for r in records if r.outcome == "infeasible" and r.get("latency")]
    predicted = [r for r in records if r.outcome == "infeasible" and not r.get("latency")]
    assert len(complete) == 2 and over, [(r.outcome, r.get("reason")) for r in records]
    for r in predicted:  # predicted far over by the per-block table: recorded with the prediction, never built
        assert r.state == "PRUNED" and r.get("latency_predicted_ms") > budget and "predicted" in r.get("reason")
        assert r.constraints["latency_budget"] > 0 and not r.curve and r.get("latency_ms") is None
    for r in complete + over:
        lat = r.get("latency")
        # the deployed network (the space's 128x128, 10 classes), on the named runtime, with its spread
        assert (lat["runtime"], lat["device"], lat["resolution"], lat["classes"], lat["threads"], lat["dtype"]) == \
            ("torch", "cpu", 128, 10, 1, "float32")
        assert lat["runtime_version"] and lat["device_name"] and lat["reference"]
        first = lat["points"][0]
        assert first["batch_size"] == 1 and first["median_ms"] == r.get("latency_ms")
        assert first["repeats"] >= 5 and first["spread"] >= 0 and first["reference_ms"] > 0
    for r in complete:
        assert r.values[1] == r.get("latency_ms") <= budget and r.constraints["latency_budget"] <= 0
        assert [p["batch_size"] for p in r.get("latency")["points"]] == [1, 8]  # and the throughput batch
        assert r.get("latency")["parts"]  # the per-block table's entries for its parts, reported by the worker
        assert [c["epoch"] for c in r.curve] == [1, 2]
    for r in over:  # timed before training, over the budget: recorded infeasible, never trained
        assert r.state == "PRUNED" and r.get("latency_ms") > budget and r.constraints["latency_budget"] > 0
        assert not r.curve and r.accuracy is None and r.values is None and "latency budget" in r.get("reason")
    assert sum(r.trained for r in records) == 2


def test_the_front_respects_the_latency_budget_and_optuna_dashboard_agrees(latency_search):
    from optuna_dashboard._pareto_front import get_pareto_front_trials

    from nas.study.records import front

    _, db, budget, _ = latency_search
    study = optuna.load_study(study_name="lat", storage=f"sqlite:///{db}")
    members = front(read_trials(study), ("accuracy", "latency"))
    assert members and all(m.objective("latency") <= budget for m in members)
    assert study.best_trials and all(t.values[1] <= budget for t in study.best_trials)
    theirs = get_pareto_front_trials(study.trials, study.directions)
    assert theirs and all(t.state == TrialState.COMPLETE and t.constraints["latency_budget"] <= 0 for t in theirs)


def test_status_pareto_and_export_show_runtime_device_and_latency(latency_search, cli, tmp_path):
    import json

    import yaml

    _, db, _, _ = latency_search
    code, out, _ = cli("status", "--storage", db, "--study", "lat")
    assert code == 0 and "latency   torch:cpu" in out and "best      latency" in out
    code, out, _ = cli("pareto", "--storage", db, "--study", "lat", "--json")
    data = json.loads(out)
    assert code == 0 and data["latency"]["runtime"] == "torch"
    for member in data["front"]:
        assert member["latency"]["runtime"] == "torch" and member["latency"]["resolution"] == 128
    code, out, _ = cli("pareto", "--storage", db, "--study", "lat")
    assert code == 0 and "torch:cpu" in out
    code, _, err = cli("export", "--storage", db, "--study", "lat", "--best", "-o", tmp_path / "best.yaml")
    assert code == 0, err
    prov = yaml.safe_load((tmp_path / "best.yaml").read_text())["provenance"]
    lat = prov["latency"]
    assert lat["runtime"] == "torch" and lat["device_name"] and lat["resolution"] == 128
    assert lat["median_ms"] == prov["metrics"]["latency_ms"] and lat["plan"]["max_ms"] > 0


def test_a_resume_keeps_the_runtime(latency_search, cli):
    from nas.cli import main

    _, db, budget, args = latency_search
    n = len(optuna.load_study(study_name="lat", storage=f"sqlite:///{db}").trials)
    code, _, err = cli(*args, "--trials", "3", "--latency-runtime", "onnxruntime")
    assert code == 2 and "latency torch:cpu" in err and "onnxruntime:cpu" in err and err.count("\n") == 1, err
    code, _, err = cli(*args[:-len(FAST) - 2], *FAST, "--trials", "3")  # without --max-latency
    assert code == 2 and "budget" in err and err.count("\n") == 1, err
    assert len(optuna.load_study(study_name="lat", storage=f"sqlite:///{db}").trials) == n
    assert main([*args, "--trials", "3"]) == 0
    records = read_trials(optuna.load_study(study_name="lat", storage=f"sqlite:///{db}"))
    assert sum(r.outcome == "complete" for r in records) == 3
    assert {r.get("latency")["runtime"] for r in records if r.get("latency")} == {"torch"}
    assert all(r.get("latency_ms") <= budget for r in records if r.outcome == "complete")
