"""bench/proxy_fidelity.py's analysis on a hand-made recording whose answers are known, and on the
recording shipped in bench/data (when there is one): it replays in seconds."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("proxy_fidelity", BENCH / "proxy_fidelity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _run(epochs, images, val, lr, seed, accs):
    return {"fidelity": {"epochs": epochs, "train_images": images, "val_images": val, "batch_size": 64, "lr": lr,
                         "seed": seed}, "space": "resnext-cifar", "budget": "<= 25 MFLOPs",
            "candidates": {f"h{i}": {"accuracy": a, "arch": f"a{i}", "flops": 1e7, "wall_time_s": 10.0 * epochs}
                           for i, a in enumerate(accs)}}


def test_known_answers(bench):
    data = {"panels": {"panel-x": {
        "panel-x": _run(3, 2000, 1000, 0.025, 0, [0.1, 0.2, 0.3, 0.4]),           # ranks like the reference
        "ref": _run(3, 16000, None, 0.025, 0, [0.5, 0.6, 0.7, 0.8]),
        "reseed": _run(3, 2000, 1000, 0.025, 1, [0.4, 0.3, 0.2, 0.1]),         # the opposite ranking
        "fresh": _run(1, 20000, 1000, 0.1, 0, [0.8, 0.7, 0.6, 0.5]),           # reversed against the reference
    }}}
    rows = {(r["epochs"], r["train_images"]): r for r in bench.analyze(data)}
    default, ref, fresh = rows[(3, 2000)], rows[(3, 16000)], rows[(1, 20000)]
    assert ref["reference"] and "tau" not in ref
    assert default["tau"] == pytest.approx(1.0) and default["regret"] == 0.0 and default["top_overlap"] == 1.0
    assert default["seed_tau"] == pytest.approx(-1.0) and default["seeds"] == [0, 1]
    assert fresh["tau"] == pytest.approx(-1.0) and fresh["regret"] == pytest.approx(0.3)
    assert default["seconds"] == 30.0 and default["accuracy_range"] == (0.1, 0.4)
    # tau with its exact p (1 of 24 orders of 4 agrees fully, so two-sided 2/24), seed tau with its count
    assert "| resnext-cifar | 3 x 2,000 | 1000 | 64 | 0.025 | 4 | 1.00 (0.083) | 1.00 | -1.00 (4) |" \
        in bench.table(bench.analyze(data))


def test_the_shipped_recording_replays(bench):
    path = BENCH / "data" / "proxy_fidelity.json"
    if not path.exists():
        pytest.skip("no recording shipped yet")
    rows = bench.analyze(json.loads(path.read_text()))
    assert rows and all(r["n"] >= 0 for r in rows)
    assert bench.table(rows).count("\n") == len(rows) + 1


def test_the_plans_table_is_what_the_shipped_recording_says(bench):
    """nas/search/measured_fidelity.json (the plan's signal line) holds the analysis of the shipped recording."""
    from nas.search.measured_fidelity import TABLE

    rows = [r for r in bench.analyze(json.loads((BENCH / "data" / "proxy_fidelity.json").read_text()))
            if not r["reference"]]
    shipped = json.loads(TABLE.read_text())["rows"]
    assert [{k: r.get(k) for k in s} for r, s in zip(rows, shipped)] == shipped and len(rows) == len(shipped)


def _recorded(bench, monkeypatch, *argv):
    import argparse

    calls = []
    monkeypatch.setattr(bench, "_nas", calls.append)
    parser = argparse.ArgumentParser()
    parser.add_argument("--panel")
    parser.add_argument("--storage", default="sqlite:///x.db")
    parser.add_argument("--runs")
    bench.record(parser.parse_args(list(argv)))
    return [" ".join(c) for c in calls]


def test_record_runs_each_panel_in_its_order(bench, monkeypatch):
    cifar = _recorded(bench, monkeypatch, "--panel", "resnext-cifar")
    assert cifar[0].startswith("search --space resnext-cifar --budget 25MFLOPs --trials 16 --sampler random")
    # the reference on the front and 5 others; every proxy on the whole panel, the default with seed 1 only
    assert cifar[1] == ("fidelity --study panel-resnext-cifar --storage sqlite:///x.db --random 5 --epochs 3 "
                        "--train-images 16000")
    assert sum("--all" in c for c in cifar) == 7 and cifar[4].endswith("--all --reseed 1")
    resnest = _recorded(bench, monkeypatch, "--panel", "resnest")
    assert "--space resnest --budget 4GFLOPs --trials 8" in resnest[0]
    assert resnest[1].endswith("--all --epochs 3 --train-images 16000") and len(resnest) == 8
    picked = _recorded(bench, monkeypatch, "--panel", "resnest", "--runs", "default:1,2x8k-lr0.1:0")
    assert picked[1:] == ["fidelity --study panel-resnest --storage sqlite:///x.db --all --reseed 1",
                          "fidelity --study panel-resnest --storage sqlite:///x.db --all --epochs 2 --train-images "
                          "8000 --val-images 1000 --lr 0.1"]
