"""The refinement-recovery benchmark on a few seeds: the true best range and monotone constraint are
found, and a parameter without effect that costs no FLOPs (the SE ratio) is never narrowed."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).parents[2] / "bench" / "refine_recovery.py"


def _bench():
    spec = importlib.util.spec_from_file_location("refine_recovery", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recovery_on_a_few_seeds():
    bench = _bench()
    (row,) = bench.run("resnext-cifar", [200], seeds=4)
    assert row["stage3.depth best range"] >= 0.75 and row["depth non-decreasing"] >= 0.75
    assert row["false narrowing, FLOP-neutral"] == 0.0
    assert "| resnext-cifar | 200 |" in bench.table([row])
