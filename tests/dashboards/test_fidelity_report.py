"""The report's fidelity checks: a study's accuracies against a linked study's (``nas fidelity``),
per architecture, with the check's verdict; and one line on how to make a check where none exists.

The linked studies are written directly (no training): a parent made by ``bench/synthetic_study.py``
with ``val_images`` recorded (so accuracies have standard errors), a reference check that retrained 9
of its candidates at 30 epochs (8 trained, 1 failed) with a known monotone accuracy map, and a reseed
check (same fidelity, seed 1) of 3 candidates in reversed order.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from typing import Any

import optuna
import plotly.graph_objects as go
import pytest

from nas.common.errors import UserError
from nas.dashboards.figures import build_dashboard
from nas.dashboards.live import create_app
from nas.dashboards.report import render_report, write_report
from nas.dashboards.studies import open_sources
from nas.search.fidelity import LINK_ATTR, compare
from nas.study.records import standard_error
from nas.study.storage import open_storage

PARENT = "synthetic-fidelity"
REFERENCE = f"{PARENT}@fidelity-e30-nall-vall-b256-s0"
RESEED = f"{PARENT}@fidelity-e10-n50000-v10000-b256-s1"
VAL = 10_000


def _reference_accuracy(proxy: float) -> float:
    return round(0.3 + 0.7 * proxy, 5)  # monotone: the proxy ranks exactly like the reference


def _parent(synthetic: Any, storage: Any, name: str, n: int, seed: int) -> optuna.Study:
    """A synthetic study whose trials record their validation size, as the worker does."""
    space = synthetic.load_space("resnest-cifar")
    study = synthetic.create_synthetic_study(storage, name, space, low=0.0, high=1e8, objectives=("accuracy", "flops"),
                                             epochs=10)
    dists = synthetic.space_distributions(space)
    trials = []
    for t in synthetic.synthesize(space, n, high=1e8, epochs=10, seed=seed):
        t.user_attrs["val_images"] = VAL
        trials.append(synthetic._frozen(t, dists))
    study.add_trials(trials)
    return study


def _check(synthetic: Any, storage: Any, name: str, parent: optuna.Study, sample: list[Any], *, epochs: int,
           seed: int, accuracy: dict[int, float], failed: tuple[int, ...] = ()) -> optuna.Study:
    """A linked study as ``nas fidelity`` leaves it: settings at the new fidelity, the link, one trial
    per sampled architecture (COMPLETE with ``accuracy[number]``, or FAIL)."""
    space = synthetic.load_space("resnest-cifar")
    study = synthetic.create_synthetic_study(storage, name, space, low=0.0, high=1e8, objectives=("accuracy", "flops"),
                                             epochs=epochs)
    study.set_user_attr("schedule", {**study.user_attrs["schedule"], "seed": seed})
    study.set_user_attr(LINK_ATTR, {
        "study": parent.study_name,
        "reference": {"epochs": epochs, "train_images": 50_000, "val_images": VAL, "batch_size": 256, "lr": None,
                      "train_seed": seed},
        "trials": {t.user_attrs["arch_hash"]: t.number for t in sample}})
    for t in sample:
        study.add_trial(_retrained(t, epochs, None if t.number in failed else accuracy[t.number]))
    return study


def _retrained(t: optuna.trial.FrozenTrial, epochs: int, acc: float | None) -> optuna.trial.FrozenTrial:
    """Parent trial ``t`` as a fidelity check records it: COMPLETE at ``acc``, or FAIL (``None``)."""
    attrs = {k: v for k, v in t.user_attrs.items() if k not in ("curve", "best_accuracy")}
    attrs[LINK_ATTR] = t.number
    if acc is None:
        attrs.update(outcome="failed", reason="diverged: loss is nan at epoch 2", accuracy=None)
        state, values = optuna.trial.TrialState.FAIL, None
    else:
        attrs.update(outcome="complete", accuracy=acc, epochs=epochs,
                     curve=[{"epoch": e, "accuracy": acc} for e in range(1, epochs + 1)])
        state, values = optuna.trial.TrialState.COMPLETE, [acc, attrs["flops"]]
    return optuna.trial.create_trial(state=state, values=values, params=t.params, distributions=t.distributions,
                                     user_attrs=attrs)


@pytest.fixture(scope="module")
def checked(synthetic, tmp_path_factory) -> dict[str, Any]:
    """A storage holding a study and two fidelity checks of it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path_factory.mktemp('fidelity') / 'f.db'}"
    storage = open_storage(url)
    parent = _parent(synthetic, storage, PARENT, 40, seed=5)
    done = [t for t in parent.trials if t.state == optuna.trial.TrialState.COMPLETE
            and t.user_attrs.get("outcome") == "complete"]
    assert len(done) >= 9
    sample = done[:9]
    reference = {t.number: _reference_accuracy(t.user_attrs["accuracy"]) for t in sample}
    _check(synthetic, storage, REFERENCE, parent, sample, epochs=30, seed=0, accuracy=reference,
           failed=(sample[-1].number,))
    few = sorted(sample[:3], key=lambda t: t.user_attrs["accuracy"])
    reversed_acc = {t.number: a for t, a in zip(few, sorted((t.user_attrs["accuracy"] for t in few), reverse=True))}
    _check(synthetic, storage, RESEED, parent, few, epochs=10, seed=1, accuracy=reversed_acc)
    proxy = {t.number: t.user_attrs["accuracy"] for t in sample}
    return {"url": url, "storage": storage, "proxy": proxy, "reference": reference, "failed": sample[-1].number,
            "reseed": reversed_acc, "sample": sample}


@pytest.fixture(scope="module")
def board(checked):
    sources, _ = open_sources(checked["url"], [PARENT])
    data = [s.read() for s in sources]
    assert [s.name for s in data[0].links] == sorted([REFERENCE, RESEED])
    return build_dashboard(data)


def _points(figure: go.Figure) -> Any:
    (trace,) = [t for t in figure.data if (t.name or "").startswith("architectures")]
    return trace


def test_the_plot_has_one_point_per_architecture_trained_in_both(checked, board):
    reference, reseed = board.fidelity[PARENT]  # references before reseeds
    assert (reference.linked, reseed.linked) == (REFERENCE, RESEED) and not reference.reseed and reseed.reseed
    trace = _points(reference.figure)
    numbers = [int(c[0]) for c in trace.customdata]
    trained = {n: a for n, a in checked["reference"].items() if n != checked["failed"]}
    assert sorted(numbers) == sorted(trained) and len(numbers) == 8  # the failed retraining is no point
    for n, x, y in zip(numbers, trace.x, trace.y):
        assert x == pytest.approx(checked["proxy"][n]) and y == pytest.approx(trained[n])
    # +-1 standard error from the validation size, on both axes
    for n, ex, ey in zip(numbers, trace.error_x.array, trace.error_y.array):
        assert ex == pytest.approx(standard_error(checked["proxy"][n], VAL))
        assert ey == pytest.approx(standard_error(trained[n], VAL))
    assert trace.error_x.visible and trace.error_y.visible
    # the hover names the trial, its retraining, the architecture and both accuracies with their errors
    n0 = numbers[0]
    hover = trace.hovertext[0]
    assert f"<b>trial {n0}</b> · retrained as trial" in hover and "depths" in hover
    assert f"proxy {checked['proxy'][n0]:.2%} ±" in hover and f"reference {trained[n0]:.2%} ±" in hover
    (guide,) = [t for t in reference.figure.data if t.name == "y = x"]
    assert list(guide.x) == list(guide.y)
    # the title names both fidelities and carries the verdict
    title = reference.figure.layout.title.text
    assert "proxy (10 epochs × 50,000 images, seed 0) vs reference (30 epochs × 50,000 images, seed 0)" in title
    assert "verdict: ranks like the reference: tau 1.00 over 8" in title
    assert reference.report.pending == 1 and "1 of the sample not trained" in reference.statistics()


def test_the_panel_agrees_with_nas_fidelity(checked, board):
    """The report's verdict and rows are what ``nas fidelity`` (``fidelity.compare``) says."""
    for panel in board.fidelity[PARENT]:
        assert panel.report.to_dict() == compare(checked["storage"], PARENT, panel.linked).to_dict()


def test_a_reseed_check_is_labelled_as_the_seed_noise(checked, board):
    panel = board.fidelity[PARENT][1]
    assert panel.title == "seed 0 vs seed 1 (10 epochs × 50,000 images): the seed noise"
    assert panel.names == ("seed 0", "seed 1")
    assert panel.figure.layout.xaxis.title.text.startswith("accuracy with seed 0")
    assert panel.verdict.startswith("ranking is noise at this fidelity (tau -1.00 over 3")
    trace = _points(panel.figure)
    assert {int(c[0]): y for c, y in zip(trace.customdata, trace.y)} == pytest.approx(checked["reseed"])


def test_the_report_shows_each_plot_with_its_verdict(checked, board, tmp_path):
    text = render_report(board, "test")
    assert "<h2 id='h-fidelity'>Proxy vs reference accuracy (fidelity checks)</h2>" in text
    for k, panel in enumerate(board.fidelity[PARENT]):
        assert f'id="fig-fidelity-{k}"' in text
        assert f"<b>verdict:</b> {panel.verdict}" in text.replace("&#x27;", "'")
    assert "<b>verdict:</b> ranks like the reference: tau 1.00 over 8, top-2 overlap 100%" in text
    assert "seed 0 vs seed 1" in text
    assert text.count("Plotly.newPlot") == len(board.figures) + 2
    assert "No fidelity check" not in text
    # the rows as a table too: 8 architectures, best reference first
    table = re.search(r"<table id='table-fidelity-0'>.*?</table>", text).group(0)
    assert table.count("<tr>") == 1 + 8
    write_report(tmp_path / "r.html", text)


def test_a_study_without_a_check_says_how_to_make_one(one_study):
    url, name = one_study
    sources, _ = open_sources(url, None)
    text = render_report(build_dashboard([s.read() for s in sources]), "test")
    line = re.search(r"<p class='note fidelity-hint'>(.*?)</p>", text).group(1).replace("&#x27;", "'")
    assert line.startswith(f"No fidelity check of {name} yet: 'nas fidelity --study {name}'")
    assert "fig-fidelity" not in text


def test_checks_do_not_count_in_the_default_choice_of_study(checked, synthetic, tmp_path):
    # one study and its two checks: the study, with no --study
    sources, _ = open_sources(checked["url"], None)
    assert [s.name for s in sources] == [PARENT]
    # a check named explicitly is shown, and points to its study's report
    sources, _ = open_sources(checked["url"], [REFERENCE])
    data = sources[0].read()
    assert data.links == []
    hint = build_dashboard([data]).fidelity_hints[REFERENCE]
    assert hint.startswith(f"{REFERENCE} is itself a fidelity check of {PARENT}")
    # two studies and a check: the choice names the two only
    url = f"sqlite:///{tmp_path / 'two.db'}"
    storage = open_storage(url)
    a = _parent(synthetic, storage, "synthetic-a", 12, seed=1)
    _parent(synthetic, storage, "synthetic-b", 12, seed=2)
    done = [t for t in a.trials if t.user_attrs.get("outcome") == "complete"][:3]
    _check(synthetic, storage, "synthetic-a@fidelity-e30-nall-vall-b256-s0", a, done, epochs=30, seed=0,
           accuracy={t.number: 0.5 for t in done})
    with pytest.raises(UserError, match=r"holds 2 studies; pick one with --study: synthetic-a, synthetic-b \(1 "
                                        r"fidelity check of them not listed"):
        open_sources(url, None)


def _component(tree: Any, ident: str) -> dict[str, Any]:
    """The Dash component with id ``ident`` in a callback's JSON output."""
    if isinstance(tree, dict):
        if tree.get("props", {}).get("id") == ident:
            return tree
        children = list(tree.values())
    elif isinstance(tree, list):
        children = tree
    else:
        children = []
    for child in children:
        found = _component(child, ident)
        if found:
            return found
    return {}


def test_the_live_page_draws_each_check_and_follows_it(checked, tmp_path, tick):
    """The live page shows each fidelity check as the report does (title, verdict, one point per
    architecture trained in both); a candidate that a check retrains while the page is open
    reaches the page on the next tick."""
    db = tmp_path / "live.db"
    with sqlite3.connect(checked["url"].removeprefix("sqlite:///")) as src, sqlite3.connect(db) as dst:
        src.backup(dst)  # a copy to write to (the module's storage is in WAL mode: copying the file is not enough)
    url = f"sqlite:///{db}"
    expected = build_dashboard([s.read() for s in open_sources(url, [PARENT])[0]]).fidelity[PARENT]
    assert [p.linked for p in expected] == [REFERENCE, RESEED]
    client = create_app(open_sources(url, [PARENT])[0], refresh_s=0.2).server.test_client()
    assert client.get("/").status_code == 200
    code, body = tick(client, None)
    assert code == 200 and body is not None
    section = body["response"]["fidelity"]["children"]
    text = json.dumps(section, ensure_ascii=False)
    for k, panel in enumerate(expected):
        assert panel.title in text and panel.verdict in text
        drawn = go.Figure(_component(section, f"fig-fidelity-{k}")["props"]["figure"])
        assert len(_points(drawn).x) == len(panel.report.rows)
    assert len(_points(expected[1].figure).x) == 3
    stamp = body["response"]["stamp"]["data"]
    time.sleep(0.25)
    assert tick(client, stamp)[0] == 204  # nothing new anywhere: nothing sent

    # The seed check retrains a fourth architecture of the sample.
    study = optuna.load_study(study_name=RESEED, storage=open_storage(url))
    study.add_trial(_retrained(checked["sample"][3], 10, 0.5))
    time.sleep(0.25)
    code, body = tick(client, stamp)
    assert code == 200 and body is not None
    reseed = _component(body["response"]["fidelity"]["children"], "fig-fidelity-1")
    assert len(_points(go.Figure(reseed["props"]["figure"])).x) == 4


def test_the_plots_draw_in_headless_chromium(board, tmp_path, browser):
    """Every point of each check is laid out by plotly.js (the page offline), with no JavaScript error."""
    path = write_report(tmp_path / "report.html", render_report(board, "test"))
    panels = board.fidelity[PARENT]
    browser.offline(True)
    try:
        browser.goto(path.as_uri())
        browser.wait_for(f"document.querySelectorAll('.js-plotly-plot').length == {len(board.figures) + len(panels)}"
                         " && Array.from(document.querySelectorAll('.js-plotly-plot'))"
                         ".every(gd => gd._fullLayout && gd.querySelector('.main-svg'))", timeout=60)
    finally:
        browser.offline(False)
    for k, panel in enumerate(panels):
        drawn = browser.evaluate(f"document.getElementById('fig-fidelity-{k}').calcdata.map(cd => cd.length)")
        assert drawn == [len(t.x) for t in panel.figure.data] and drawn[-1] == len(panel.report.rows)
    assert browser.js_errors() == []
