"""The Ray-side entry point: a JSON spec in, JSON results out, on a real local Ray cluster."""

import json

from nas.search_spaces import load_preset
from nas.workers import TrialSpec, run_trial


def _spec(**kw):
    return TrialSpec(config=load_preset("resnext11_2x8d").to_dict(), dataset="shapes",
                     schedule={"epochs": 1, "batch_size": 64}, device="cpu", train_limit=256, val_limit=256,
                     threads=1, **kw)


def test_run_trial_returns_json_ready_metrics_and_complexity():
    out = run_trial(_spec().to_dict())
    assert out["status"] == "ok" and out["epochs_completed"] == 1
    assert out["complexity"]["params"] == out["params"] == 103_450
    assert out["arch_hash"] == load_preset("resnext11_2x8d").arch_hash()
    assert out["latency"]["points"][0]["median_ms"] > 0
    json.dumps(out)


def test_a_bad_spec_comes_back_as_an_error_not_an_exception():
    out = run_trial({**_spec().to_dict(), "dataset": "imagenet"})
    assert out["status"] == "error" and "unknown dataset 'imagenet'" in out["reason"]
    bad_config = {**_spec().to_dict(), "config": {"stages": [{"depth": -1, "width": 8, "group_width": 2}]}}
    assert "stages.0.depth" in run_trial(bad_config)["reason"]


def test_trials_run_as_ray_tasks_on_a_local_cluster(ray_cluster):
    remote = ray_cluster.remote(num_cpus=1)(run_trial)
    specs = [_spec(latency=False).to_dict(), {**_spec().to_dict(), "schedule": {"epochs": 1, "lr": -1}}]
    ok, bad = ray_cluster.get([remote.remote(s) for s in specs], timeout=300)
    assert ok["status"] == "ok" and "latency" not in ok and ok["worker_pid"] > 0
    assert bad["status"] == "error" and "lr must be a positive number" in bad["reason"]


def test_malformed_specs_come_back_as_errors():
    assert "trial spec" in run_trial({**_spec().to_dict(), "colour": "red"})["reason"]
    assert run_trial({**_spec().to_dict(), "schedule": {"lr": "0.1"}})["status"] == "error"
    assert "at least 2 images" in run_trial({**_spec().to_dict(), "train_limit": 1})["reason"]
