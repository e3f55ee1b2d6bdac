"""The per-block latency table against measurement, and FLOPs, params and activations as predictors of latency.

    python bench/latency_predictor.py [--spaces resnext-cifar,resnest] [--n 200] [--runtime torch]
                                      [--threads 1] [--fit 40] [--seed 0] [--table-dir DIR] [--json FILE]

For each space: ``--n`` distinct candidates drawn uniformly (``search_spaces/sampler.py::sample`` over the
space's whole FLOPs range), each deployed at the space's resolution and classes and timed whole at batch 1 on
``--runtime`` (``workers/deployment_latency.py::measure_deployed``: warm-up, repeats until the spread is known,
the reference network timed interleaved); the per-block table (``workers/latency_table.py``) is filled with
every part of every candidate (each distinct part timed once, kept in ``--table-dir``, so a second run reuses
it). The first ``--fit`` candidates fit the table's overhead and, for FLOPs, params and activations, a line
latency = a x + b (least squares); every figure is then reported on the *other* candidates, held out:

* the share of predictions within +-10 % and +-20 % of the measured latency;
* Spearman's rank correlation with the measured latency (what a search's ranking needs).

Noise is stated beside them: the median spread (IQR / median) of the candidates' measurements and of the
reference's medians across the run (a drifting machine shows there).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _within(pred: list[float], meas: list[float], tol: float) -> float:
    return sum(abs(p - m) <= tol * m for p, m in zip(pred, meas)) / len(meas)


def _line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    a = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
    return a, my - a * mx


def _scores(pred: list[float], meas: list[float]) -> dict[str, float]:
    from scipy.stats import spearmanr

    rho = spearmanr(pred, meas).statistic if len(meas) > 2 else float("nan")
    return {"within_10": _within(pred, meas, 0.10), "within_20": _within(pred, meas, 0.20), "spearman": float(rho)}


def run_space(name: str, n: int, runtime: str, threads: int, fit: int, seed: int, table_dir: Path) -> dict[str, Any]:
    import torch

    from nas.search_spaces import complexity, load_space
    from nas.search_spaces.sampler import flops_range, sample
    from nas.workers.deployment_latency import measure_deployed
    from nas.workers.latency_table import LatencyTable

    torch.set_num_threads(threads)
    space = load_space(name)
    lo, hi, _ = flops_range(space)
    candidates = sample(space, high=hi, low=0.0, n=n, seed=seed).candidates
    table = LatencyTable.open(table_dir, runtime, "cpu", threads)
    rows = []
    start = time.perf_counter()
    for i, c in enumerate(candidates):
        filled = table.fill(c.config)
        r = measure_deployed(c.config, runtime=runtime, threads=threads, batch_sizes=(1,)).at(1)
        cx = complexity(c.config)
        rows.append({"arch": c.config.describe(), "measured_ms": r.median_ms, "spread": r.spread,
                     "reference_ms": r.reference_ms, "flops": cx.flops, "params": cx.params,
                     "activations": cx.activations, "config": c.config, "new_parts": filled})
        print(f"  {name} {i + 1}/{len(candidates)}: {r.median_ms:.2f} ms (IQR ±{50 * r.spread:.0f} %), "
              f"{filled} new parts, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    fit = max(2, min(fit, len(rows) - 2))
    train, test = rows[:fit], rows[fit:]
    table.fit([(r["config"], r["measured_ms"]) for r in train])
    meas = [r["measured_ms"] for r in test]
    out: dict[str, Any] = {
        "space": space.name, "resolution": int(space.base.get("resolution", 224)), "candidates": len(rows),
        "fitted_on": len(train), "held_out": len(test), "parts_in_table": len(table.entries),
        "overhead_ms": table.overhead_ms, "seconds": round(time.perf_counter() - start, 1),
        "median_ms": statistics.median(meas), "median_spread": statistics.median(r["spread"] for r in rows),
        "reference_ms": {"median": statistics.median(r["reference_ms"] for r in rows),
                         "min": min(r["reference_ms"] for r in rows), "max": max(r["reference_ms"] for r in rows)},
        "predictors": {"table": _scores([table.predict(r["config"]) for r in test], meas)},
    }
    for key in ("flops", "params", "activations"):
        a, b = _line([r[key] for r in train], [r["measured_ms"] for r in train])
        out["predictors"][key] = _scores([a * r[key] + b for r in test], meas)
        # a proxy's rank correlation does not depend on the fitted line
        out["predictors"][key]["spearman"] = _scores([r[key] for r in test], meas)["spearman"]
    return out


def report(results: list[dict[str, Any]], runtime: str, threads: int) -> str:
    from nas.workers.deployment_latency import device_name, runtime_version

    lines = [f"latency predictors on {runtime} {runtime_version(runtime)}, {device_name('cpu')} "
             f"({platform.machine()}), {threads} thread(s), batch 1"]
    for r in results:
        ref = r["reference_ms"]
        lines.append(f"\n{r['space']} at {r['resolution']}x{r['resolution']}: {r['candidates']} candidates "
                     f"({r['fitted_on']} fit, {r['held_out']} held out), median {r['median_ms']:.2f} ms, "
                     f"measurement spread (IQR/median) {100 * r['median_spread']:.0f} %, reference "
                     f"{ref['median']:.2f} ms ({ref['min']:.2f}-{ref['max']:.2f}); table: {r['parts_in_table']} "
                     f"parts, overhead {r['overhead_ms']:.2f} ms; {r['seconds']:.0f} s")
        lines.append(f"  {'predictor':<12} {'within ±10 %':>13} {'within ±20 %':>13} {'Spearman':>9}")
        for name, s in r["predictors"].items():
            lines.append(f"  {name:<12} {100 * s['within_10']:>12.0f}% {100 * s['within_20']:>12.0f}% "
                         f"{s['spearman']:>9.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spaces", default="resnext-cifar,resnest", help="comma-separated space names or files")
    ap.add_argument("--n", type=int, default=200, help="candidates per space (default 200)")
    ap.add_argument("--runtime", default="torch", help="torch (default), torch-compile or onnxruntime")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fit", type=int, default=40, help="candidates the predictors are fitted on (default 40)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table-dir", help="where the per-block tables are kept (default: a temporary folder)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    from nas.workers.deployment_latency import check_runtime

    check_runtime(args.runtime, "cpu")
    with tempfile.TemporaryDirectory(prefix="nas-latency-table-") as tmp:
        table_dir = Path(args.table_dir) if args.table_dir else Path(tmp)
        results = [run_space(s.strip(), args.n, args.runtime, args.threads, args.fit, args.seed, table_dir)
                   for s in args.spaces.split(",") if s.strip()]
    print(report(results, args.runtime, args.threads))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
