"""The static report: one self-contained file, and it draws every figure in a real browser, offline."""

from __future__ import annotations

import re
import time
from pathlib import Path

from nas.dashboards.figures import build_dashboard
from nas.dashboards.report import render_report, write_report
from nas.dashboards.studies import open_sources


def _board(url: str, names: list[str] | None):
    sources, su = open_sources(url, names)
    return build_dashboard([s.read() for s in sources]), su.display()


def test_report_is_one_self_contained_file(two_studies, tmp_path):
    url, names = two_studies
    board, where = _board(url, names)
    text = render_report(board, where)
    # plotly.js once, inline; nothing fetched from the network (a CDN page renders blank offline).
    assert text.count("* plotly.js v") == 1
    assert text.count("Plotly.newPlot") == len(board.figures)
    assert not re.search(r"<script[^>]+src=", text)
    assert not re.search(r"<link[^>]+href=['\"]https?:", text)
    for key in board.figures:
        assert f'id="fig-{key}"' in text
    assert "Synthetic data" in text
    out = write_report(tmp_path / "report.html", text)
    assert out.read_text() == text
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed, not left behind


def test_report_draws_in_headless_chromium(two_studies, tmp_path, browser, expect_drawn, picture):
    """Two studies overlaid (different spaces, one with latency): every figure draws all its traces,
    the front table is filled, no JavaScript error, and the screenshot is a picture, not a blank."""
    url, names = two_studies
    board, where = _board(url, names)
    assert set(board.figures) == {"flops", "params", "latency", "effects", "edf", "hypervolume", "curves"}
    path = write_report(tmp_path / "report.html", render_report(board, where))
    start = time.perf_counter()
    browser.offline(True)  # it must not need the network (a plotly.js from a CDN renders blank offline)
    try:
        browser.goto(path.as_uri())
        drawn = expect_drawn(browser, board.figures)
    finally:
        browser.offline(False)
    load_s = time.perf_counter() - start
    by_id = {d["id"]: d for d in drawn}
    # every point of every trace was laid out (every trial with FLOPs, plus the fronts' markers)
    for key in ("flops", "params", "latency"):
        assert by_id[f"fig-{key}"]["points"] == sum(len(t.x) for t in board.figures[key].data) > 100
    assert browser.evaluate("document.querySelectorAll('#front-synthetic-resnest tbody tr').length") == \
        len(board.fronts["synthetic-resnest"]) > 0
    assert browser.evaluate("document.querySelectorAll('#ks tbody tr').length") == 1
    assert browser.js_errors() == []
    png = browser.screenshot(tmp_path / "report.png")
    colors, ink = picture(png)
    assert colors > 500 and ink > 0.05, (colors, ink)
    assert load_s < 30


def test_report_of_one_study_without_latency(one_study, tmp_path, browser, expect_drawn):
    url, name = one_study
    board, where = _board(url, None)  # one study in the storage: no --study needed
    assert "latency" not in board.figures  # nothing measured: no empty panel in a report
    path = write_report(tmp_path / "r.html", render_report(board, where))
    browser.goto(Path(path).as_uri())
    expect_drawn(browser, board.figures)
    assert browser.js_errors() == []
