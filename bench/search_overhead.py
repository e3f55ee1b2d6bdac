"""Orchestration cost of a search: our driver against stock Ray Tune + OptunaSearch, side by side.

Both run the same number of trials at the same concurrency on one local Ray cluster, with the
same trivial trainer (it reports a few "epochs" instantly), so what is measured is everything
but training: proposing, Tune's scheduling and actor reuse, result handling, and writing the
study. Ours writes an SQLite study (the default storage) with the full record of every trial;
stock OptunaSearch is run with its default in-memory study and with the same SQLite storage.

It also times the proposals that never reach a worker — infeasible (over budget) and duplicate
— through the searcher's own code, split into the sampler's own time and everything else.

    python bench/search_overhead.py                 # 100 trials, 2 at a time, 3 epochs each
    python bench/search_overhead.py --trials 300 --concurrency 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nas.cluster.execution import Interrupt, quiet_ray, run_tune  # noqa: E402
from nas.common.budget import parse_budget  # noqa: E402
from nas.search.options import default_study_name, make_sampler  # noqa: E402
from nas.search.searcher import StudySearcher  # noqa: E402
from nas.search_spaces import load_space  # noqa: E402
from nas.search_spaces.optuna_bridge import suggest_values  # noqa: E402
from nas.study.lifecycle import fingerprint, new_settings, open_search_study  # noqa: E402
from nas.study.liveness import Driver  # noqa: E402
from nas.study.storage import open_storage  # noqa: E402
from nas.study.writer import DeferredStorage  # noqa: E402

EPOCHS = 3


def trivial_trainable(config: dict) -> None:
    """Reports like the real trainable (``nas.workers.tune_trainable``), without training."""
    from ray import tune

    constants = config.get("nas", {}).get("constants", {"flops": 1.0, "params": 1.0})
    for epoch in range(1, EPOCHS):
        tune.report({**constants, "epoch": epoch, "accuracy": 0.1 * epoch, "final": False, "status": "running"})
    tune.report({**constants, "epoch": EPOCHS, "accuracy": 0.5, "final": True, "status": "ok",
                 "epochs_completed": EPOCHS, "curve": [], "host": "bench", "wall_time_s": 0.0})


_SPACES: dict = {}


def define_by_run(trial, space_name: str = "resnest") -> None:
    """Stock OptunaSearch's search space: the same named parameters as ours (module level: it pickles it)."""
    if space_name not in _SPACES:
        _SPACES[space_name] = load_space(space_name)
    suggest_values(trial, _SPACES[space_name])


def _settings(space, budget):
    return new_settings(space=space.name, space_fingerprint=fingerprint(space.name),
                        space_resolution=int(space.base.get("resolution", 224)), budget_low=budget.low,
                        budget_high=budget.high, dataset="none", train_resolution=32, classes=10,
                        train_images=None, val_images=None, epochs=EPOCHS, batch_size=1, schedule={},
                        objectives=("accuracy", "flops"))


def _searcher(space_name: str, budget_text: str, sampler: str, trials: int, on_event=None):
    space, budget = load_space(space_name), parse_budget(budget_text)
    settings = _settings(space, budget)
    folder = tempfile.mkdtemp(prefix="nas-bench-overhead-")
    storage = DeferredStorage(optuna.storages.get_storage(open_storage(f"sqlite:///{folder}/s.db")))
    study, _ = open_search_study(storage, default_study_name(space, budget), settings, "",
                                 make_sampler(sampler, 0, trials))
    driver = Driver(storage, study._study_id)
    driver.beat(force=True)
    return StudySearcher(study, storage, space, settings, trials, driver.id, {}, on_event=on_event), driver


def ours(trials: int, concurrency: int, sampler: str) -> float:
    searcher, driver = _searcher("resnest", "100GFLOPs", sampler, trials)  # every candidate feasible
    start = time.perf_counter()
    run_tune(searcher, {"cpu": 1}, concurrency, Interrupt(), on_step=driver.beat, trainable=trivial_trainable)
    elapsed = time.perf_counter() - start
    assert searcher.trained == trials, searcher.trained
    return elapsed


def stock(trials: int, concurrency: int, sampler: str, storage_url: str | None) -> float:
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    storage = open_storage(storage_url) if storage_url else None
    search = OptunaSearch(space=define_by_run, metric=["accuracy", "flops"],
                          mode=["max", "min"], sampler=make_sampler(sampler, 0, trials), storage=storage,
                          study_name="stock" if storage else None)
    folder = tempfile.mkdtemp(prefix="nas-bench-stock-")
    tuner = tune.Tuner(
        tune.with_resources(trivial_trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=search, num_samples=trials, max_concurrent_trials=concurrency,
                                    reuse_actors=True),
        run_config=tune.RunConfig(storage_path=folder, verbose=0))
    start = time.perf_counter()
    results = tuner.fit()
    elapsed = time.perf_counter() - start
    assert len(results) == trials
    return elapsed


def proposal_costs(kind: str, n: int) -> dict[str, float]:
    """Per-proposal time of infeasible (tight budget) or duplicate (a space of 8, all trained)
    proposals through the searcher, and how much of it the sampler itself took."""
    sampler_time = 0.0
    stamps: list[float] = []
    if kind == "infeasible":
        searcher, _ = _searcher("resnest", "1GFLOPs", "random", 10**9)
    else:
        tiny = ROOT / "bench" / "data" / "tiny_space.yaml"
        searcher, _ = _searcher(str(tiny), "100M", "random", 10**9)
        for i in range(40):  # train (instantly) every architecture of the tiny space first
            cfg = searcher.suggest(f"w{i}")
            if isinstance(cfg, dict):
                searcher.on_trial_complete(f"w{i}", {"final": True, "status": "ok", "accuracy": 0.5, "epoch": 1})
    sampler = searcher.study.sampler
    original = sampler.sample_independent

    def timed(*args, **kwargs):
        nonlocal sampler_time
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            sampler_time += time.perf_counter() - t0

    sampler.sample_independent = timed
    searcher.on_event = lambda e: stamps.append(time.perf_counter()) if e.kind == kind else None
    searcher.target = searcher.trained  # nothing may train: every proposal is recorded and skipped
    start = time.perf_counter()
    while len(stamps) < n:
        searcher._propose("x")
    total = time.perf_counter() - start
    return {"per_proposal_ms": 1e3 * total / len(stamps), "sampler_ms": 1e3 * sampler_time / len(stamps),
            "handling_ms": 1e3 * (total - sampler_time) / len(stamps)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--sampler", default="random", help="random (default: isolates orchestration) or tpe")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--proposals", type=int, default=300)
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet_ray()
    import ray

    ray.init(num_cpus=args.concurrency, include_dashboard=False, log_to_driver=False, configure_logging=False)
    print(f"{args.trials} trials, {args.concurrency} at a time, {EPOCHS} reports each, {args.sampler} sampler, "
          f"{os.cpu_count()} CPUs; median of {args.repeats} runs (interleaved)")
    times: dict[str, list[float]] = {"ours (SQLite study)": [], "stock OptunaSearch (in memory)": [],
                                     "stock OptunaSearch (same SQLite)": []}
    for _ in range(args.repeats):
        times["ours (SQLite study)"].append(ours(args.trials, args.concurrency, args.sampler))
        times["stock OptunaSearch (in memory)"].append(stock(args.trials, args.concurrency, args.sampler, None))
        db = f"sqlite:///{tempfile.mkdtemp(prefix='nas-bench-stock-db-')}/s.db"
        times["stock OptunaSearch (same SQLite)"].append(stock(args.trials, args.concurrency, args.sampler, db))
    ray.shutdown()
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["stock OptunaSearch (in memory)"]
    stock_runs = times["stock OptunaSearch (in memory)"]
    print(f"\n{'':36} {'per trial':>10} {'vs stock in memory':>20}   paired ratios (each run against the "
          f"stock run beside it): median [min-max]")
    for k, v in med.items():
        paired = sorted(a / b for a, b in zip(times[k], stock_runs))
        print(f"{k:36} {1e3 * v / args.trials:>7.1f} ms {v / base:>19.2f}x   {statistics.median(paired):.2f}x "
              f"[{paired[0]:.2f}-{paired[-1]:.2f}]")
    print(f"\nproposals that never reach a worker ({args.proposals} each, random sampler):")
    for kind in ("infeasible", "duplicate"):
        c = proposal_costs(kind, args.proposals)
        print(f"  {kind:10} {c['per_proposal_ms']:.2f} ms per proposal: sampler {c['sampler_ms']:.2f} ms, "
              f"checks and the one-transaction record {c['handling_ms']:.2f} ms")


if __name__ == "__main__":
    main()
