"""bench/early_stopping_replay.py on a tiny SYNTHETIC curves file: the machinery's invariants."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from nas.common.pareto import hypervolume

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "early_stopping_replay.py"


@pytest.fixture(scope="module")
def replay():
    spec = importlib.util.spec_from_file_location("early_stopping_replay", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def result(replay, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replay")
    lines = []
    summary = replay.main([str(tmp / "curves.json"), "--synthetic", "--candidates", "30", "--epochs", "9",
                           "--seeds", "3", "--workers", "3", "--html", str(tmp / "replay.html"),
                           "--json", str(tmp / "summary.json")], out=lines.append)
    return summary, "\n".join(lines), tmp


def test_every_policy_runs_every_candidate_and_no_stopping_trains_the_most(result):
    summary, _, _ = result
    runs = summary["runs"]
    full = summary["candidates"] * summary["max_epochs"]
    for seed, none in enumerate(runs["none"]):
        assert none.total_epochs == full and none.completed == summary["candidates"] and not none.stopped
        for policy in ("median", "asha", "moasha"):
            run = runs[policy][seed]
            assert run.completed + len(run.stopped) == summary["candidates"]
            assert run.total_epochs == run.completed * summary["max_epochs"] + sum(run.stopped.values())
            assert run.total_epochs <= none.total_epochs
    assert any(r.stopped for r in runs["moasha"]) and any(r.stopped for r in runs["asha"])


def test_hypervolume_is_monotone_counts_completed_trials_only_and_ends_at_the_pools(result, replay):
    summary, _, tmp = result
    curves = replay.load_curves(tmp / "curves.json")
    reference = (-summary["reference"]["accuracy"], summary["reference"]["flops"])
    for runs in summary["runs"].values():
        for run in runs:
            assert run.epochs == sorted(run.epochs) and run.hv == sorted(run.hv)
            done = [c for k, c in enumerate(curves.candidates) if k not in run.stopped]
            assert run.hv[-1] == pytest.approx(hypervolume([(-c.accuracy[-1], c.flops) for c in done], reference))
    assert summary["policies"]["none"]["final_hv"] == (pytest.approx(1.0), 0.0)


def test_our_rule_never_stops_a_final_epoch_and_stops_only_at_rungs(result, replay):
    summary, _, _ = result
    rungs = replay.rung_epochs(1, 3, summary["max_epochs"])
    assert summary["policies"]["moasha"]["final_stops"] == 0
    for run in summary["runs"]["moasha"]:
        assert set(run.stopped.values()) <= set(rungs)


def test_the_report_says_synthetic_everywhere(result):
    summary, text, tmp = result
    assert summary["synthetic"] is True
    assert text.startswith("SYNTHETIC DATA")
    assert all(line.startswith("SYNTHETIC DATA") for line in text.splitlines() if "target" in line)
    page = (tmp / "replay.html").read_text()
    assert "SYNTHETIC" in page and "plotly" in page.lower() and len(page) > 1_000_000  # plotly.js inside
    assert json.loads((tmp / "summary.json").read_text())["synthetic"] is True
    assert json.loads((tmp / "curves.json").read_text())["synthetic"] is True


def test_measured_curves_are_never_overwritten_and_bad_files_are_refused(replay, tmp_path):
    measured = tmp_path / "measured.json"
    data = replay.synthetic_curves(4, 3, seed=1)
    data["synthetic"] = False
    measured.write_text(json.dumps(data))
    with pytest.raises(SystemExit, match="will not overwrite"):
        replay.main([str(measured), "--synthetic", "--seeds", "1"], out=lambda s: None)
    data["candidates"][0]["accuracy"] = data["candidates"][0]["accuracy"][:2]
    measured.write_text(json.dumps(data))
    with pytest.raises(SystemExit, match="has 2 epochs, the schedule 3"):
        replay.load_curves(measured)


@pytest.mark.parametrize("grace, noise_rungs", [(1, ("1",)), (2, ("2",))])
def test_gated_rungs_on_the_recorded_curves_never_stop_on_noise(replay, grace, noise_rungs):
    """On the 48 recorded curves, accuracy at epoch 1 of 9 ranks the final accuracy with tau 0.03 and
    at epoch 2 with 0.22: over 20 trial orders the default (gated) rule stops nobody there and keeps
    at least 98 % of the pool's hypervolume, while it still saves epochs."""
    curves = Path(__file__).resolve().parents[2] / "bench" / "data" / "resnext_cifar_curves.json"
    summary = replay.main([str(curves), "--seeds", "20", "--workers", "2", "--grace", str(grace),
                           "--policies", "none,gated"], out=lambda s: None)
    gated = summary["policies"]["gated"]
    assert all(gated["stops_by_epoch"][e] == 0 for e in noise_rungs)
    assert gated["final_hv"][0] >= 0.98 and gated["final_stops"] == 0
    assert gated["epochs"][0] < summary["policies"]["none"]["epochs"][0]
