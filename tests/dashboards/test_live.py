"""The live page: the report's figures with Dash, refreshed as trials land, never disturbing the search."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from nas.dashboards.figures import FIGURES
from nas.dashboards.live import create_app
from nas.dashboards.studies import open_sources
from nas.study.storage import open_storage

ROOT = Path(__file__).resolve().parents[2]


def test_refresh_sends_nothing_until_a_trial_lands(synthetic, tmp_path, tick):
    """In-process: a tick with nothing new is answered 204 (no data sent); after a trial is told,
    the tick returns every figure with the new trial counted."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    storage = open_storage(url)
    study = synthetic.make_study(storage, "synthetic-refresh", space="resnest-cifar", n=30, high=1e9, seed=4)
    sources, _ = open_sources(url, None)
    app = create_app(sources, refresh_s=0.2)
    client = app.server.test_client()
    assert client.get("/").status_code == 200
    code, body = tick(client, None)  # the first tick of a page fills it
    assert code == 200 and body is not None
    stamp = body["response"]["stamp"]["data"]
    assert set(k.removeprefix("fig-") for k in body["response"] if k.startswith("fig-")) == set(FIGURES)
    time.sleep(0.25)
    assert tick(client, stamp)[0] == 204  # nothing new: nothing sent
    synthetic.write_live(storage, study.study_name, space="resnest-cifar", interval=0.0, count=1, high=1e9,
                         seed=5)
    time.sleep(0.25)
    code, body = tick(client, stamp)
    assert code == 200 and body is not None
    status = json.dumps(body["response"]["status"]["children"])
    assert '"31"' in status  # the trial-count span now says 31


def test_live_page_of_an_empty_study_waits_for_trials(two_studies, tick):
    """A search that has only just created its study: the page serves, with empty figures."""
    url, _ = two_studies
    app = create_app(open_sources(url, ["synthetic-empty"])[0], refresh_s=1)
    client = app.server.test_client()
    assert client.get("/").status_code == 200
    assert tick(client, None)[0] == 200


class _Lines:
    """A subprocess's output lines, read by a thread (so waiting for one never blocks for ever)."""

    def __init__(self, stream: Any) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        self.all: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.all.append(line)
            self.q.put(line)

    def join(self, timeout: float = 10.0) -> list[str]:
        """All lines, once the process closed its end."""
        self._thread.join(timeout)
        return self.all

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            if text in line:
                return line
        raise TimeoutError(f"no line with {text!r} in {timeout:g} s; got {''.join(self.all)[-2000:]}")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=45)  # a server closing its connections on 2 loaded cores can take a while
        except subprocess.TimeoutExpired:
            # Still running: SIGABRT makes Python's fault handler (PYTHONFAULTHANDLER) print every
            # thread's stack on stderr, so the failure says where it hung.
            proc.send_signal(signal.SIGABRT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return proc.returncode


def test_live_page_picks_up_trials_while_a_search_writes(synthetic, tmp_path, browser, free_port, picture):
    """`nas dashboard --serve` in its own process, a search-like writer in another adding a trial
    every 0.3 s (ask, RUNNING while it "trains", tell): the page in Chromium draws every figure,
    then shows trials that landed after it loaded, and the writer never sees an error."""
    url = f"sqlite:///{tmp_path / 'search.db'}"
    name = "synthetic-live"
    synthetic.make_study(open_storage(url), name, space="resnest-cifar", n=40, high=1e9, seed=6)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SYNTHETIC_VERBOSE": "1", "PYTHONFAULTHANDLER": "1"}
    writer = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "synthetic_study.py"), "--storage", url, "--name", name,
         "--space", "resnest-cifar", "--budget", "1GFLOPs", "--write-live", "--interval", "0.3", "--seed", "7"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    server = subprocess.Popen(
        [sys.executable, "-m", "nas.cli", "dashboard", "--serve", "--storage", url, "--port", str(free_port),
         "--refresh", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    out, err = _Lines(server.stdout), _Lines(server.stderr)
    written = _Lines(writer.stdout)
    try:
        line = out.wait_for("serving", timeout=60)
        page = line.split(" at ")[1].split()[0]
        assert page == f"http://127.0.0.1:{free_port}/"
        written.wait_for("told", timeout=30)  # the writer is running
        browser.goto(page)
        browser.wait_for(f"document.querySelectorAll('.js-plotly-plot').length === {len(FIGURES)} && "
                         "Array.from(document.querySelectorAll('.js-plotly-plot'))"
                         ".every(gd => gd._fullLayout && gd.querySelector('.main-svg'))", timeout=40)
        before = int(browser.evaluate("document.getElementById('trial-count').textContent"))
        flops_points = browser.evaluate(
            "document.querySelector('#fig-flops .js-plotly-plot').calcdata.reduce((n, cd) => n + cd.length, 0)")
        # Trials that land now reach the open page through its Interval poll (no reload).
        after = browser.wait_for(f"(n => n > {before} ? n : 0)"
                                 "(+document.getElementById('trial-count').textContent)", timeout=30)
        assert after > before >= 40
        browser.wait_for("document.querySelector('#fig-flops .js-plotly-plot').calcdata"
                         f".reduce((n, cd) => n + cd.length, 0) > {flops_points}", timeout=30)
        drawn = browser.evaluate("Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => "
                                 "[gd.querySelectorAll('g.trace').length, (gd.data || []).length])")
        assert len(drawn) == len(FIGURES) and all(svg >= data for svg, data in drawn), drawn
        assert sum(data for _, data in drawn) >= 10
        assert browser.js_errors() == []
        colors, ink = picture(browser.screenshot())
        assert colors > 300 and ink > 0.05
    finally:
        writer_rc = _stop(writer, signal.SIGTERM)
        server_rc = _stop(server)
    assert writer_rc == 0, "".join(written.all)[-2000:] + writer.stderr.read()[-2000:]
    assert "Traceback" not in "".join(err.all), "".join(err.all)[-3000:]
    assert server_rc == 0, "".join(err.all)[-4000:]
    # The writer's trials all landed, and the page never wrote (trials: the 40 + what the writer told).
    told = sum(1 for x in written.join() if "told" in x)
    study = optuna.load_study(study_name=name, storage=open_storage(url, create=False))
    assert len(study.trials) == 40 + told and told >= 3


@pytest.mark.parametrize("port", [0, 70000])
def test_port_out_of_range_is_one_line(two_studies, port, capsys):
    from nas.cli import main

    url, names = two_studies
    code = main(["dashboard", "--serve", "--storage", url, "--study", names[0], "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --port") and err.count("\n") == 1
