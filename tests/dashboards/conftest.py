"""Fixtures for the dashboards' tests: synthetic studies and a headless Chromium.

Studies come from ``bench/synthetic_study.py`` (made through Optuna's own API, schema of
``nas.study.records``, marked synthetic). The browser is Debian's ``chromium`` driven over the
DevTools protocol on a pipe (``--remote-debugging-pipe``: NUL-separated JSON on file
descriptors 3 and 4), so no websocket package is needed and nothing listens on a port. One
browser serves the whole session. Where Chromium is missing the browser tests skip, with
the reason, unless ``NAS_REQUIRE_BROWSER=1`` (CI), where they fail.
"""

from __future__ import annotations

import base64
import fcntl
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_bench(name: str) -> Any:
    """A module of ``bench/`` (not a package), loaded from its file."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def synthetic() -> Any:
    """The synthetic-study generator module (``bench/synthetic_study.py``)."""
    return _load_bench("synthetic_study")


@pytest.fixture(scope="session")
def two_studies(synthetic: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    """An SQLite storage with two synthetic studies of different spaces (one measures latency)
    and an empty one: (storage URL, [names of the two full studies])."""
    import optuna

    from nas.study.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = tmp_path_factory.mktemp("studies") / "studies.db"
    url = f"sqlite:///{db}"
    storage = open_storage(url)
    a = synthetic.make_study(storage, "synthetic-resnest", space="resnest", n=110, high=4e9, latency=True, seed=1)
    b = synthetic.make_study(storage, "synthetic-resnext", space="resnext", n=80, high=4e9, seed=2)
    synthetic.create_synthetic_study(storage, "synthetic-empty", synthetic.load_space("resnest"), low=0.0, high=4e9,
                                     objectives=("accuracy", "flops"), epochs=10)
    return url, [a.study_name, b.study_name]


@pytest.fixture(scope="session")
def one_study(synthetic: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """An SQLite storage holding a single synthetic study (so ``--study`` may be left out)."""
    from nas.study.storage import open_storage

    db = tmp_path_factory.mktemp("one") / "one.db"
    url = f"sqlite:///{db}"
    study = synthetic.make_study(open_storage(url), "synthetic-one", space="resnest-cifar", n=60, high=1e8,
                                 seed=3)
    return url, study.study_name


def _tick(client: Any, stamp: str | None) -> tuple[int, dict[str, Any] | None]:
    """Fire the live page's refresh callback the way the browser does (one Interval tick): the
    status code (204: nothing new, nothing sent) and the outputs sent."""
    dep = client.get("/_dash-dependencies").get_json()[0]
    payload = {"output": dep["output"], "outputs": [{"id": o.split(".")[0], "property": o.split(".")[1]}
                                                    for o in dep["output"].strip(".").split("...")],
               "inputs": [{"id": "tick", "property": "n_intervals", "value": 1}],
               "state": [{"id": "stamp", "property": "data", "value": stamp}],
               "changedPropIds": ["tick.n_intervals"]}
    r = client.post("/_dash-update-component", json=payload)
    return r.status_code, (r.get_json() if r.status_code == 200 else None)


@pytest.fixture
def tick() -> Callable[[Any, str | None], tuple[int, dict[str, Any] | None]]:
    """The live page's refresh tick, fired in process through the Dash app's test client."""
    return _tick


@pytest.fixture
def free_port() -> int:
    """A port nothing listens on (bound and released at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- headless Chromium over the DevTools protocol ----------------------------------------------------------


def chromium_path() -> str | None:
    return os.environ.get("NAS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") \
        or shutil.which("google-chrome")


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--hide-scrollbars", "--mute-audio"]


class Browser:
    """A minimal DevTools-protocol client: one page, navigate, evaluate, screenshot."""

    def __init__(self, exe: str, profile: str, width: int = 1400, height: int = 1000) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Move the browser's ends above 9 first: were one of them fd 3 or 4 itself, the
        # redirections below could overwrite it before it is copied.
        for name in ("to_browser_r", "from_browser_w"):
            fd = locals()[name]
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
            os.close(fd)
            if name == "to_browser_r":
                to_browser_r = high
            else:
                from_browser_w = high
        # bash puts the pipe ends on fds 3 and 4, where --remote-debugging-pipe looks for them
        # (bash, not sh: dash refuses file descriptors above 9).
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}', exe, *FLAGS,
             "--remote-debugging-pipe", f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "about:blank"],
            pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next = 0
        self._lock = threading.Lock()
        self._replies: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._reader, daemon=True).start()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime"):
            self.call(f"{domain}.enable", session=True)
        self.resize(width, height)

    def _reader(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._replies[-1] = {"error": {"message": "browser closed the pipe"}}
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cond.notify_all()

    def call(self, method: str, params: dict[str, Any] | None = None, session: bool = False,
             timeout: float = 60.0) -> dict[str, Any]:
        with self._lock:
            self._next += 1
            ident = self._next
        msg: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while ident not in self._replies and -1 not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{method}: no reply in {timeout:g} s")
                self._cond.wait(left)
            reply = self._replies.pop(ident, None) or self._replies[-1]
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def resize(self, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=True)

    def offline(self, on: bool) -> None:
        """Cut the page off the network (or reconnect it)."""
        self.call("Network.enable", session=True)
        self.call("Network.emulateNetworkConditions", {"offline": on, "latency": 0, "downloadThroughput": -1,
                                                       "uploadThroughput": -1}, session=True)

    def evaluate(self, expression: str, timeout: float = 60.0) -> Any:
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                        session=True, timeout=timeout)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression[:80]!r}: {res['exceptionDetails'].get('text')} "
                               f"{res['exceptionDetails'].get('exception', {}).get('description', '')}")
        return res.get("result", {}).get("value")

    def goto(self, url: str, timeout: float = 60.0) -> None:
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait_for("document.readyState === 'complete'", timeout=timeout)

    def wait_for(self, expression: str, timeout: float = 30.0, interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout:g} s: {expression}")
            time.sleep(interval)

    def js_errors(self) -> list[str]:
        out = []
        for e in self.events:
            if e.get("method") == "Runtime.exceptionThrown":
                d = e["params"]["exceptionDetails"]
                out.append(d.get("exception", {}).get("description") or d.get("text", "?"))
            elif e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in e["params"]["args"]))
        return out

    def screenshot(self, path: Path | None = None, full_page: bool = True) -> bytes:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            height = int(self.evaluate("document.documentElement.scrollHeight"))
            width = int(self.evaluate("document.documentElement.scrollWidth"))
            params["clip"] = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        data = base64.b64decode(self.call("Page.captureScreenshot", params, session=True)["data"])
        if path is not None:
            path.write_bytes(data)
        return data

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    exe = chromium_path()
    if exe is None:
        reason = "no chromium (install Debian's: apt-get install -y chromium)"
        if os.environ.get("NAS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"NAS_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    with tempfile.TemporaryDirectory(prefix="nas-chromium-") as profile:
        b = Browser(exe, profile)
        try:
            yield b
        finally:
            b.close()


# ---- what the page drew -----------------------------------------------------------------------------------

#: Per graph div: its id, the traces plotly drew into the SVG, the traces in its data, and the
#: points plotly computed (``calcdata``: numpy arrays reach the page base64-encoded, so ``data``'s
#: ``x`` has no length to count).
DRAWN = """
Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
  id: (gd.closest('[id^="fig-"]') || gd).id,
  svgTraces: gd.querySelectorAll('g.trace').length,
  dataTraces: (gd.data || []).length,
  points: (gd.calcdata || []).reduce((n, cd) => n + cd.length, 0),
}))
"""


@pytest.fixture(scope="session")
def picture() -> Callable[[bytes], tuple[int, float]]:
    """(distinct colours, share of non-white pixels) of a PNG: a blank page has 1 and 0."""
    return png_colors


def png_colors(data: bytes) -> tuple[int, float]:
    """(distinct colours, share of non-white pixels) of a PNG: a blank page has 1 and 0."""
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    img.thumbnail((700, 4000))
    colors = img.getcolors(maxcolors=1 << 24) or []
    total = img.width * img.height
    white = sum(n for n, c in colors if min(c) >= 250)
    return len(colors), 1 - white / total


@pytest.fixture
def expect_drawn() -> Callable[..., list[dict[str, Any]]]:
    """Check a loaded page's plots: every graph drew every trace of its data, none is empty."""

    def check(b: Browser, figures: dict[str, Any], timeout: float = 60.0) -> list[dict[str, Any]]:
        want = len(figures)
        b.wait_for(f"document.querySelectorAll('.js-plotly-plot').length >= {want} && "
                   "Array.from(document.querySelectorAll('.js-plotly-plot'))"
                   ".every(gd => gd._fullLayout && gd.querySelector('.main-svg'))", timeout=timeout)
        drawn = b.evaluate(DRAWN)
        by_id = {d["id"]: d for d in drawn}
        assert len(drawn) == want, drawn
        for key, fig in figures.items():
            d = by_id[f"fig-{key}"]
            assert d["dataTraces"] == len(fig.data), (key, d)
            assert d["svgTraces"] >= len(fig.data), (key, d)  # one <g class="trace"> per trace at least
        return drawn

    return check
