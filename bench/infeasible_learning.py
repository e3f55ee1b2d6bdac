"""Does the sampler learn from infeasible proposals? The infeasible share over a study, TPE vs random.

Drives ``nas search``'s own :class:`~nas.search.searcher.StudySearcher` — the production path: the same
proposals, budget constraints and one-transaction records in an SQLite study — with an instant
trainer: a dispatched candidate completes at once with a SYNTHETIC accuracy (rising with log
FLOPs, plus noise). Only the infeasible share is the point here; the accuracies are invented.

    python bench/infeasible_learning.py                      # resnest <= 4 GFLOPs, 300 proposals, 5 seeds
    python bench/infeasible_learning.py --space resnext --budget 2G --proposals 400
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nas.common.budget import parse_budget  # noqa: E402
from nas.search.options import default_study_name, make_sampler  # noqa: E402
from nas.search.searcher import StudySearcher  # noqa: E402
from nas.search_spaces import load_space  # noqa: E402
from nas.study.lifecycle import fingerprint, new_settings, open_search_study  # noqa: E402
from nas.study.liveness import Driver  # noqa: E402
from nas.study.storage import open_storage  # noqa: E402
from nas.study.writer import DeferredStorage  # noqa: E402

PROPOSAL_KINDS = ("started", "infeasible", "invalid", "duplicate")


def run(space_name: str, budget_text: str, sampler: str, seed: int, proposals: int) -> list[str]:
    """The kind of each proposal, in order, for one synthetic study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(space_name)
    budget = parse_budget(budget_text)
    settings = new_settings(space=space.name, space_fingerprint=fingerprint(space.name),
                            space_resolution=int(space.base.get("resolution", 224)), budget_low=budget.low,
                            budget_high=budget.high, dataset="synthetic", train_resolution=32, classes=10,
                            train_images=None, val_images=None, epochs=1, batch_size=1, schedule={},
                            objectives=("accuracy", "flops"))
    folder = tempfile.mkdtemp(prefix="nas-bench-infeasible-")
    storage = DeferredStorage(optuna.storages.get_storage(open_storage(f"sqlite:///{folder}/s.db")))
    study, _ = open_search_study(storage, default_study_name(space, budget), settings, "", make_sampler(
        sampler, seed, proposals))
    driver = Driver(storage, study._study_id)
    kinds: list[str] = []
    searcher = StudySearcher(study, storage, space, settings, 10**9, driver.id, {},
                             on_event=lambda e: kinds.append(e.kind) if e.kind in PROPOSAL_KINDS else None)
    rng = random.Random(seed)
    i = 0
    while len(kinds) < proposals:
        config = searcher.suggest(f"t{i}")
        if isinstance(config, dict):
            flops = config["nas"]["constants"]["flops"]
            accuracy = min(0.99, 0.1 + 0.08 * math.log(flops / 1e8) + rng.gauss(0, 0.03))  # SYNTHETIC
            searcher.on_trial_complete(f"t{i}", {"final": True, "status": "ok", "accuracy": accuracy, "epoch": 1,
                                                 "epochs_completed": 1, "curve": []})
        i += 1
    return kinds[:proposals]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="resnest")
    p.add_argument("--budget", default="4GFLOPs")
    p.add_argument("--proposals", type=int, default=300)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--window", type=int, default=50)
    p.add_argument("--samplers", default="random,tpe")
    args = p.parse_args(argv)
    samplers = args.samplers.split(",")
    shares: dict[str, list[list[float]]] = {}
    for sampler in samplers:
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            kinds = run(args.space, args.budget, sampler, seed, args.proposals)
            windows = [kinds[k:k + args.window] for k in range(0, len(kinds), args.window)]
            shares.setdefault(sampler, []).append([sum(x == "infeasible" for x in w) / len(w) for w in windows])
            print(f"{sampler} seed {seed}: {args.proposals} proposals in {time.perf_counter() - t0:.1f} s, "
                  f"{sum(x == 'infeasible' for x in kinds)} infeasible, {sum(x == 'duplicate' for x in kinds)} "
                  f"duplicates", flush=True)
    n_windows = len(next(iter(shares.values()))[0])
    print(f"\ninfeasible share of proposals, {args.space} {args.budget}, mean over {args.seeds} seeds "
          f"(accuracies SYNTHETIC)")
    header = "proposals     " + "  ".join(f"{s:>14}" for s in samplers)
    print(header + "\n" + "-" * len(header))
    for k in range(n_windows):
        cells = []
        for s in samplers:
            vals = [run_[k] for run_ in shares[s]]
            sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):>8.1%} ±{sd:4.0%}")
        print(f"{k * args.window + 1:>4}-{min((k + 1) * args.window, args.proposals):<4}     " + "  ".join(cells))
    return {s: [statistics.mean(r[k] for r in runs) for k in range(n_windows)] for s, runs in shares.items()}


if __name__ == "__main__":
    main()
