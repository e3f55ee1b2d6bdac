"""The live check of early stopping: a real ``nas search`` with MO-ASHA against the same search without.

The search without early stopping is the one ``bench/record_curves.py`` ran (random sampler, a
fixed seed, every candidate to its full schedule). This script runs the same command with early
stopping on (the default) for its first ``--trials`` candidates: the random sampler with the same
seed proposes the same architectures in the same order, so the two studies differ only in what
the scheduler stopped. It reports, over those candidates:

* epochs trained and the hypervolume of the completed trials (accuracy x FLOPs, the curves
  file's reference point) with and without early stopping;
* the trials the live scheduler stopped against the ones the replay (``early_stopping_replay``,
  the same rule on the recorded curves, the same order, the same number of workers, each epoch
  taking its measured time) predicts it stops.

    python bench/early_stopping_live.py bench/data/resnext_cifar_curves.json --storage sqlite:///bench-curves.db

Where that study is gone (the shipped curves file without its database), the search without early
stopping is read from the curves file: its candidates are that search's trials, in order.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nas.common.pareto import hypervolume, pareto_front  # noqa: E402
from nas.study.records import read_settings, read_trials  # noqa: E402
from nas.study.storage import open_storage  # noqa: E402


def _replay_module():
    spec = importlib.util.spec_from_file_location("early_stopping_replay", ROOT / "bench" / "early_stopping_replay.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def trained(storage: str, study: str) -> list:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.load_study(study_name=study, storage=open_storage(storage, create=False))
    return read_settings(s), sorted((r for r in read_trials(s) if r.trained), key=lambda r: r.number)


class Recorded:
    """A candidate of the curves file in the shape of a trained trial's record (trial ``number``)."""

    outcome = "complete"

    def __init__(self, number: int, candidate) -> None:
        self.number = number
        self.curve = [{"epoch": e + 1, "accuracy": a} for e, a in enumerate(candidate.accuracy)]
        self._attrs = {"arch_hash": candidate.arch_hash, "flops": candidate.flops, "arch": candidate.arch_hash}

    def get(self, key: str):
        return self._attrs.get(key)


def front_hv(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    if not points:
        return 0.0
    return hypervolume([points[i] for i in pareto_front(points)], reference)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("curves", help="the curves file record_curves.py wrote from the search without early stopping")
    p.add_argument("--storage", default="sqlite:///bench-curves.db", help="storage of both studies")
    p.add_argument("--study", default="curves", help="the study without early stopping")
    p.add_argument("--live-study", default="curves-early-stopping", help="the study with early stopping")
    p.add_argument("--trials", type=int, default=16, help="candidates of the live search")
    p.add_argument("--no-run", action="store_true", help="compare existing studies only")
    args = p.parse_args(argv)

    replay = _replay_module()
    curves = replay.load_curves(args.curves)
    reference = replay.reference_point(curves)
    if not args.no_run:
        command = shlex.split(curves.description.split("recorded with: ", 1)[1])
        # the plain rule (no evidence gate): the one this benchmark replays
        command = [a for a in command if a != "--no-early-stopping"] + ["--rung-evidence", "0"]
        for flag, value in (("--trials", str(args.trials)), ("--study", args.live_study),
                            ("--storage", args.storage)):
            command[command.index(flag) + 1] = value
        print(" ".join(command), flush=True)
        subprocess.run([sys.executable, "-m", "nas.cli", *command[1:]], check=True)
    live_settings, live = trained(args.storage, args.live_study)
    try:
        _, full = trained(args.storage, args.study)
    except KeyError:  # that study is gone: its trials, in order, are the curves file's candidates
        print(f"(no study {args.study} in {args.storage}: the search without early stopping is read from "
              f"{args.curves})")
        full = [Recorded(i, c) for i, c in enumerate(curves.candidates)]
    es = live_settings.early_stopping or {}

    full = full[:len(live)]
    same = [a.get("arch_hash") == b.get("arch_hash") for a, b in zip(full, live)]
    index = {c.arch_hash: i for i, c in enumerate(curves.candidates)}
    order = [index[r.get("arch_hash")] for r in full]
    rule = replay.make_policy("moasha", curves.max_epochs, es.get("grace", 1), es.get("eta", 3),
                              tuple(o for o in live_settings.objectives if o in ("accuracy", "flops", "params")))
    predicted = replay.replay(curves, order, 2, rule, reference)
    predicted_stops = {curves.candidates[k].arch_hash: e for k, e in predicted.stopped.items()}
    live_stops = {r.get("arch_hash"): len(r.curve) for r in live if r.outcome == "pruned"}

    def summary(records: list) -> tuple[int, float, int]:
        done = [r for r in records if r.outcome == "complete"]
        return (sum(len(r.curve) for r in records),
                front_hv([(-r.curve[-1]["accuracy"], float(r.get("flops"))) for r in done], reference), len(done))

    (e_full, hv_full, n_full), (e_live, hv_live, n_live) = summary(full), summary(live)
    pool = front_hv([(-c.accuracy[-1], c.flops) for c in curves.candidates if c.arch_hash in {
        r.get("arch_hash") for r in full}], reference)
    print(f"\n{len(live)} candidates, the same architectures in the same order: {sum(same)}/{len(same)}")
    print(f"{'':28s} {'epochs':>7s} {'completed':>9s} {'hypervolume':>12s} {'% of theirs':>11s}")
    print(f"{'without early stopping':28s} {e_full:7d} {n_full:9d} {hv_full:12.4g} {100 * hv_full / pool:10.1f}%")
    print(f"{'with MO-ASHA (live)':28s} {e_live:7d} {n_live:9d} {hv_live:12.4g} {100 * hv_live / pool:10.1f}%")
    print(f"{'with MO-ASHA (replay)':28s} {predicted.total_epochs:7d} {predicted.completed:9d} "
          f"{predicted.hv[-1] if predicted.hv else 0.0:12.4g} "
          f"{100 * (predicted.hv[-1] if predicted.hv else 0.0) / pool:10.1f}%")
    agree = sum((h in live_stops) == (h in predicted_stops) and live_stops.get(h) == predicted_stops.get(h)
                for h in (r.get("arch_hash") for r in full))
    print(f"decisions: live and replay agree on {agree}/{len(full)} candidates "
          f"(stopped live {sorted(live_stops.values())}, by the replay {sorted(predicted_stops.values())})")
    for r in full:
        h = r.get("arch_hash")
        if (live_stops.get(h)) != predicted_stops.get(h):
            print(f"  differs: trial {r.number} ({r.get('arch')}): live {live_stops.get(h, 'full')}, "
                  f"replay {predicted_stops.get(h, 'full')}")


if __name__ == "__main__":
    main()
