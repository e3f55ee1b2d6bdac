"""The MO-ASHA scheduler (nas.stopping.tune_scheduler) inside real Ray Tune runs of synthetic learning curves."""

import random
import threading
from pathlib import Path

import pytest

from nas.stopping.rule import MOASHA, STOP

tune = pytest.importorskip("ray.tune")

from nas.stopping.tune_scheduler import ConfigKey, MOASHAScheduler  # noqa: E402


@pytest.fixture(autouse=True)
def quiet_tune(monkeypatch):
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    monkeypatch.setenv("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")


def make_trainable(curves, fail_once=None, marker_dir=None):
    """A function trainable reporting ``curves[trial_number] = (flops, [accuracy per epoch])``, one
    report per epoch, ``final`` on the last. ``fail_once = (trial, epoch)`` raises there the first
    time (a worker death); the retry reports a tenth of the accuracy, so a re-ranked repeat would
    be stopped. Built here so that cloudpickle ships it by value to the workers."""

    def trainable(config):
        from ray import tune

        number = config["nas"]["trial_number"]
        flops, curve = curves[number]
        marker = Path(marker_dir, f"failed-{number}") if marker_dir else None
        retried = marker is not None and marker.exists()
        for epoch, accuracy in enumerate(curve, start=1):
            if fail_once == (number, epoch) and not retried:
                marker.touch()
                raise RuntimeError("simulated worker death")
            tune.report({"epoch": epoch, "accuracy": accuracy * (0.1 if retried else 1.0), "flops": flops,
                         "params": 10.0 * flops, "latency": None, "final": epoch == len(curve)})

    return trainable


def run(tmp_path, trainable, n_trials, scheduler, concurrent, max_failures=0):
    tuner = tune.Tuner(
        trainable,
        param_space={"nas": {"trial_number": tune.grid_search(list(range(n_trials)))}},
        tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=1, reuse_actors=True,
                                    max_concurrent_trials=concurrent),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=max_failures)),
    )
    grid = tuner.fit()
    return {r.config["nas"]["trial_number"]: r.metrics for r in grid}


def test_dominated_trials_stop_at_rungs_in_a_real_tune_run(ray_cluster, tmp_path):
    # eta 2, 4 epochs: rungs at 1 and 2. One trial at a time, so the order of results is known.
    curves = {
        0: (10.0, [0.50, 0.60, 0.70, 0.80]),  # first at every rung; dies at epoch 3, retried
        1: (20.0, [0.40, 0.45, 0.50, 0.55]),  # rung 1, n=2, keep 1: dominated by 0
        2: (5.0, [0.30, 0.35, 0.40, 0.45]),   # the cheapest: an end of the front at both rungs
        3: (30.0, [0.20, 0.25, 0.30, 0.35]),  # rung 1, n=4, keep 2: dominated by 0, 1 and 2
        4: (8.0, [0.55, 0.58, 0.60, 0.62]),   # rung 1: on the front; rung 2 (n=3, keep 1): its middle
        5: (50.0, [0.10]),                    # a one-epoch schedule: its final report is at a rung
    }
    stops = []
    rule = MOASHA(("accuracy", "flops"), (True, False), max_epochs=4, grace=1, eta=2)
    scheduler = MOASHAScheduler(rule, key=ConfigKey("nas", "trial_number"), on_stop=lambda *a: stops.append(a))
    last = run(tmp_path, make_trainable(curves, fail_once=(0, 3), marker_dir=tmp_path), len(curves), scheduler,
               concurrent=1, max_failures=1)

    assert scheduler.stopped_trials() == {1: 1, 3: 1, 4: 2}
    assert stops == [(1, 1), (3, 1), (4, 2)]
    assert scheduler.retried_trials() == [0]
    for number, metrics in last.items():
        if number in (1, 3, 4):
            assert (metrics["epoch"], metrics["final"]) == (scheduler.stopped_trials()[number], False)
        else:
            assert metrics["final"] is True and metrics["epoch"] == len(curves[number][1])
    # The retried trial's first vectors stand; the one-epoch trial's final report was not recorded.
    assert [k for k, _ in rule.recorded(1)] == [0, 1, 2, 3, 4]
    assert dict(rule.recorded(1))[0] == (0.5, 10.0)
    assert dict(rule.recorded(2)) == {0: (0.6, 10.0), 2: (0.35, 5.0), 4: (0.58, 8.0)}


def test_concurrent_trials_are_stopped_only_at_rungs_and_never_at_their_final_report(ray_cluster, tmp_path):
    rng = random.Random(7)
    curves = {}
    for i in range(12):
        final = rng.uniform(0.3, 0.9)
        curves[i] = (rng.uniform(1, 10), [final * (1 - 0.5 ** e) for e in range(1, 10)])
    rule = MOASHA(("accuracy", "flops", "params"), (True, False, False), max_epochs=9, eta=3)  # rungs 1, 3
    scheduler = MOASHAScheduler(rule)  # keyed by Tune trial id
    last = run(tmp_path, make_trainable(curves), len(curves), scheduler, concurrent=2)

    stopped = scheduler.stopped_trials()
    assert stopped, "some trial should have been stopped"
    by_number = {m["trial_id"]: n for n, m in last.items()}
    for trial_id, epoch in stopped.items():
        metrics = last[by_number[trial_id]]
        assert epoch in rule.rungs and (metrics["epoch"], metrics["final"]) == (epoch, False)
        assert rule.decision_at(trial_id, epoch) == STOP
    for metrics in last.values():
        if metrics["trial_id"] not in stopped:
            assert metrics["final"] is True and metrics["epoch"] == 9
    assert sum(len(rule.recorded(r)) for r in rule.rungs) > len(curves)


def test_the_scheduler_pickles_without_its_hook_and_preloads_recorded_vectors():
    import ray.cloudpickle as cloudpickle

    rule = MOASHA(("accuracy", "flops"), (True, False), max_epochs=4, eta=2)
    lock = threading.Lock()  # unpicklable, like a study or a driver's state
    scheduler = MOASHAScheduler(rule, key=ConfigKey("nas", "trial_number"), on_stop=lambda *a: lock,
                                preload=[(7, 1, (0.9, 1.0)), (7, 2, (0.95, 1.0)), (7, 3, (0.96, 1.0))])
    assert rule.recorded(1) == [(7, (0.9, 1.0))] and rule.recorded(2) == [(7, (0.95, 1.0))]
    copy = cloudpickle.loads(cloudpickle.dumps(scheduler))  # what the Tuner does to its TuneConfig
    assert copy.rule.state() == rule.state() and copy._on_stop is None
    assert scheduler.metric is None and scheduler.set_search_properties("accuracy", "max")
    assert scheduler.metric is None
