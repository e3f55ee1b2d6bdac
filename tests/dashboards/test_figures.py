"""The figures, checked on what a user reads off them (no browser: the Plotly objects themselves)."""

from __future__ import annotations

import numpy as np
import pytest

from nas.common.errors import UserError
from nas.dashboards.figures import FIGURES, build_dashboard, color_choices, hover_text
from nas.dashboards.studies import StudyData, open_sources
from nas.study.records import front


@pytest.fixture(scope="module")
def studies(two_studies) -> list[StudyData]:
    url, names = two_studies
    return [s.read() for s in open_sources(url, names)[0]]


def _trace(fig, name_part: str):
    found = [t for t in fig.data if name_part in (t.name or "")]
    assert found, [t.name for t in fig.data]
    return found


def test_accuracy_vs_flops_shows_every_outcome_the_front_and_the_budget(studies):
    one = studies[:1]
    s = one[0]
    fig = build_dashboard(one).figures["flops"]
    by_outcome = {o: sum(1 for r in s.records if r.outcome == o) for o in ("complete", "pruned", "infeasible")}
    assert len(_trace(fig, "complete")[0].x) == by_outcome["complete"]
    assert len(_trace(fig, "pruned")[0].x) == by_outcome["pruned"]
    assert len(_trace(fig, "infeasible")[0].x) == by_outcome["infeasible"] > 0
    assert _trace(fig, "pruned")[0].marker.symbol == "circle-open"  # told apart from complete ones
    # With accuracy and FLOPs the study's objectives, the panel's front is the study's front.
    (line,) = _trace(fig, "Pareto front")
    assert line.line.shape == "hv"
    ours = sorted(zip(line.x, line.y))
    theirs = sorted((r.objective("flops"), r.accuracy) for r in front(s.records, s.objectives))
    assert ours == theirs
    # The budget: a dashed vertical line at 4 GFLOPs (shape), labelled.
    assert any(sh.x0 == 4e9 and sh.x1 == 4e9 for sh in fig.layout.shapes)
    assert any("budget 4 GFLOPs" in (a.text or "") for a in fig.layout.annotations)
    # Coloured by total depth, with a colour bar.
    assert fig.layout.coloraxis.colorbar.title.text == "depth"


def test_hover_tells_the_architecture(studies):
    s = studies[0]
    r = next(r for r in s.records if r.outcome == "complete")
    text = hover_text(r)
    cfg = r.get("config")
    assert f"trial {r.number}" in text
    assert "depths " + "-".join(str(st["depth"]) for st in cfg["stages"]) in text
    assert "×" in text and "radix" in text and "SE " in text and "params" in text and "GFLOPs" in text
    assert f"{r.accuracy:.2%}" in text


def test_several_studies_are_coloured_by_study_and_compared(studies):
    board = build_dashboard(studies)
    assert set(board.figures) == set(FIGURES)  # latency measured in one study: its panel is there
    fig = board.figures["flops"]
    assert not fig.layout.coloraxis.colorscale  # no colour scale: one colour per study
    assert {t.marker.color for t in fig.data if "complete" in t.name} == {"#1f77b4", "#ff7f0e"}
    assert len(board.ks) == 1
    ks = board.ks[0]
    assert 0 < ks["KS"] <= 1 and 0 <= ks["KS normalised"] <= 1
    edf = board.figures["edf"]
    assert len(edf.data) == 4  # raw and normalised EDF per study
    for t in edf.data:
        y = np.asarray(t.y)
        assert np.all(np.diff(y) >= 0) and y[-1] == pytest.approx(1.0)  # a distribution function
    assert set(board.fronts) == {s.name for s in studies}


def test_color_by_a_parameter_and_refusing_an_unknown_one(studies):
    one = studies[:1]
    assert "radix" in color_choices(one) and "depth" in color_choices(one)
    fig = build_dashboard(one, color_by="stage1.se_ratio").figures["flops"]
    assert list(fig.layout.coloraxis.colorbar.ticktext) == ["none", "16"]  # categorical: ordered choices
    with pytest.raises(UserError, match="--color-by 'bogus'.*choose one of: depth"):
        build_dashboard(one, color_by="bogus")


def test_parameter_effects_show_a_band_per_parameter(studies):
    s = studies[0]
    fig = build_dashboard([s]).figures["effects"]
    boxes = [t for t in fig.data if t.type == "box"]
    varied = {p for r in s.records if r.state == "COMPLETE" for p in r.params}
    assert {b.name for b in boxes} <= varied and len(boxes) >= 8
    bands = [sh for sh in fig.layout.shapes if sh.type == "rect"]
    assert len(bands) == len(boxes)
    titles = [a.text for a in fig.layout.annotations if "best" in (a.text or "")]
    assert len(titles) == len(boxes)


def test_curves_include_pruned_trials_and_hypervolume_grows(studies):
    s = studies[0]
    board = build_dashboard([s])
    curves = board.figures["curves"]
    pruned = _trace(curves, "pruned")[0]
    n_pruned = sum(1 for r in s.records if r.outcome == "pruned")
    assert np.isnan(np.asarray(pruned.y, dtype=float)).sum() == n_pruned  # one gap after each pruned curve
    assert any(sh.x0 == 2 for sh in curves.layout.shapes)  # the first early-stopping rung
    hv = np.asarray(board.figures["hypervolume"].data[0].y)
    assert np.all(np.diff(hv) >= 0) and hv[-1] > 0


def test_pareto_table_lists_the_front(studies):
    s = studies[0]
    rows = build_dashboard([s]).fronts[s.name]
    members = front(s.records, s.objectives)
    assert [r["trial"] for r in rows] == [m.number for m in members]
    assert rows[0]["architecture"] == members[0].get("arch") and "latency" in rows[0]


def test_a_study_with_nothing_complete_still_draws(synthetic, tmp_path):
    """No complete trial (pruned, infeasible, failed only: a search in trouble): figures, no front."""
    import optuna

    from nas.study.storage import open_storage

    url = f"sqlite:///{tmp_path / 'bad.db'}"
    storage = open_storage(url)
    study = synthetic.make_study(storage, "synthetic-bad", space="resnest-cifar", n=12, high=1e9, seed=11)
    bad = optuna.create_study(storage=storage, study_name="synthetic-all-failed",
                              directions=["maximize", "minimize"])
    for k, v in study.user_attrs.items():
        bad.set_user_attr(k, v)
    for t in study.trials:
        if t.state != optuna.trial.TrialState.COMPLETE:
            bad.add_trial(t)
    data = [s.read() for s in open_sources(url, ["synthetic-all-failed"])[0]]
    board = build_dashboard(data)
    assert board.fronts["synthetic-all-failed"] == []
    assert "latency" not in board.figures and len(board.figures) == len(FIGURES) - 1


def test_the_latency_panel_names_the_runtime_and_draws_the_budget():
    from dataclasses import replace

    from nas.dashboards.figures import accuracy_vs
    from nas.dashboards.studies import StudyData
    from nas.study.lifecycle import new_settings
    from nas.study.records import TrialRecord

    plan = {"runtime": "onnxruntime", "device": "cpu", "threads": 1, "batch_sizes": [1, 8], "max_ms": 8.0}
    settings = new_settings(space="tiny", space_fingerprint="x", space_resolution=32, budget_low=0.0,
                            budget_high=5e6, dataset="shapes", train_resolution=32, classes=10, train_images=128,
                            val_images=64, epochs=1, batch_size=32, schedule={"lr": 0.0125},
                            objectives=("accuracy", "latency"))
    settings = replace(settings, latency=plan)
    records = [TrialRecord(number=i, state="COMPLETE", outcome="complete", values=(0.2 + i / 10, 3.0 + i),
                           params={}, feasible=True, attrs={"accuracy": 0.2 + i / 10, "latency_ms": 3.0 + i,
                                                            "flops": 1e6})
               for i in range(3)]
    study = StudyData(name="lat", objectives=("accuracy", "latency"), settings=settings, attrs={}, records=records)
    fig = accuracy_vs([study], "latency", None, None)
    assert "onnxruntime:cpu, 1 thread, batches 1/8, budget 8 ms" in fig.layout.xaxis2.title.text
    assert any(shape.x0 == 8.0 for shape in fig.layout.shapes)
    assert any("latency budget 8 ms" in a.text for a in fig.layout.annotations)
