"""The live page: the report's figures served with Dash, refreshed as trials land.

A ``dcc.Interval`` polls every few seconds. Each poll asks :class:`LiveBoard` for the current
dashboard; it re-reads the studies at most once per interval whatever the number of open
tabs (Optuna's cached storage fetches only new and unfinished trials, in one short read
transaction; SQLite runs in WAL mode, so the search's writes never wait for the page), and
rebuilds the figures only when something changed. A poll that finds nothing new sends
nothing. The page never writes to the study.

The study's fidelity checks (the linked studies ``nas fidelity`` writes) are read with it, so a
check that runs while the page is open shows its proxy-vs-reference plots and verdict as its
candidates land, as the report draws them.

A read that fails (a database restarting, a network blip) keeps the last figures on screen
and says so in the status line; the next poll tries again.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from nas.common.errors import UserError
from nas.dashboards.figures import (
    FIDELITY_HEADING,
    FIDELITY_NOTE,
    FIGURES,
    Dashboard,
    build_dashboard,
    fidelity_sections,
)
from nas.dashboards.report import CSS as REPORT_CSS
from nas.dashboards.report import PLOTLY_CONFIG
from nas.dashboards.studies import StudyData, StudySource, quiet_gc

__all__ = ["LiveBoard", "create_app", "make_server"]


def _signature(studies: Sequence[StudyData]) -> str:
    """Changes whenever a trial is added, finishes, or a running one reports an epoch, in a study
    or in one of its fidelity checks."""
    parts = []
    for s in [*studies, *(link for study in studies for link in study.links)]:
        outcomes: dict[str, int] = {}
        points = 0
        for r in s.records:
            outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
            if r.state == "RUNNING":
                points += len(r.curve)
        parts.append(f"{s.name}:{len(s.records)}:{sorted(outcomes.items())}:{points}")
    return "|".join(parts)


class LiveBoard:
    """The latest dashboard of some studies, re-read at most once per ``min_age`` seconds."""

    def __init__(self, sources: Sequence[StudySource], color_by: str | None, min_age: float) -> None:
        self.sources = list(sources)
        self.color_by = color_by
        self.min_age = min_age
        self._lock = threading.Lock()
        self._read_at = -float("inf")
        self.signature = ""
        self.board: Dashboard | None = None
        self.error: str | None = None
        self.updated: datetime | None = None

    def current(self) -> tuple[Dashboard, str]:
        with self._lock:
            now = time.monotonic()
            if self.board is None or now - self._read_at >= self.min_age:
                self._read_at = now
                try:
                    with quiet_gc():
                        studies = [s.read() for s in self.sources]
                    self.error = None
                except Exception as exc:  # keep the last figures; say why they are not fresh
                    if self.board is None:
                        raise
                    self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                    return self.board, self.signature
                sig = _signature(studies)
                if sig != self.signature or self.board is None:
                    self.board = build_dashboard(studies, self.color_by, keep_empty_latency=True)
                    self.signature = sig
                    self.updated = datetime.now()
            assert self.board is not None
            return self.board, self.signature


def _table(rows: Sequence[dict[str, Any]], ident: str | None = None) -> Any:
    from dash import html

    if not rows:
        return html.P("none yet", className="note")
    keys = list(rows[0])

    def cell(v: Any) -> Any:
        if isinstance(v, float):
            return html.Td(f"{v:.3f}", className="num")
        if isinstance(v, int):
            return html.Td(f"{v:,}", className="num")
        return html.Td(str(v))

    props = {"id": ident} if ident else {}
    return html.Table([html.Thead(html.Tr([html.Th(k) for k in keys])),
                       html.Tbody([html.Tr([cell(r.get(k, "")) for k in keys]) for r in rows])], **props)


def _status(live: LiveBoard, board: Dashboard) -> list[Any]:
    from dash import html

    when = live.updated.strftime("%H:%M:%S") if live.updated else "?"
    out: list[Any] = [html.Span(f"{board.n_trials}", id="trial-count"), f" trials · last change {when}"]
    if live.error:
        out.append(html.Span(f" · last read failed ({live.error}); showing the previous figures",
                             style={"color": "#b00"}))
    return out


def _fronts(board: Dashboard) -> list[Any]:
    from dash import html

    out: list[Any] = []
    for name, rows in board.fronts.items():
        if len(board.fronts) > 1:
            out.append(html.H3(name))
        out.append(_table(rows))
    return out


def _fidelity(board: Dashboard) -> list[Any]:
    """The fidelity checks' section, as the report lays it out: per check its title, verdict,
    statistics and plot; for a study without one, how to make one."""
    from dash import dcc, html

    sections = fidelity_sections(board)
    if not sections:
        return []
    out: list[Any] = [html.H2(FIDELITY_HEADING, style={"fontSize": "19px", "marginTop": "28px"})]
    if board.fidelity:
        out.append(html.P(FIDELITY_NOTE, className="note"))
    k = 0
    for prefix, item in sections:
        if isinstance(item, str):
            out.append(html.P(item, className="note fidelity-hint"))
            continue
        stats = item.statistics()
        out += [html.H3(prefix + item.title), html.P([html.B("verdict:"), " " + item.verdict], className="verdict"),
                html.P((stats + ". " if stats else "") + f"Retrained in study {item.linked}.", className="note"),
                dcc.Graph(id=f"fig-fidelity-{k}", figure=item.figure, config=PLOTLY_CONFIG)]
        k += 1
    return out


CSS = {"fontFamily": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "maxWidth": "1400px",
       "margin": "16px auto", "padding": "0 16px", "color": "#222"}


def create_app(sources: Sequence[StudySource], color_by: str | None = None, refresh_s: float = 5.0) -> Any:
    """The Dash app for ``sources``. The figures' set is fixed at start (an empty latency panel
    until a latency is measured), so every refresh fills the same graphs."""
    import dash
    from dash import Input, Output, State, dcc, html
    from dash.exceptions import PreventUpdate

    live = LiveBoard(sources, color_by, min_age=max(0.2, refresh_s * 0.8))
    board, _ = live.current()  # fail now (bad --color-by, unreadable study), not in the browser
    keys = list(board.figures)
    names = ", ".join(s.name for s in sources)
    app = dash.Dash(__name__, title=f"nas: {names}", update_title=None, serve_locally=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per poll on the console
    # The report's style sheet, so the tables read the same on both pages.
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + REPORT_CSS + "</style>")

    def layout() -> Any:
        # A function: every page load starts from the latest data, not the data at start-up.
        board, sig = live.current()
        children: list[Any] = [
            html.H1(f"nas: {names}", style={"fontSize": "24px", "marginBottom": "4px"}),
            html.P(_status(live, board), id="status", style={"color": "#555", "fontSize": "13px"}),
            html.Div(_table(board.summary), id="summary"),
        ]
        if any(s.get("study", "").find("synthetic") >= 0 for s in board.summary):
            children.append(html.P("Synthetic data: made by bench/synthetic_study.py, not measured.",
                                   style={"background": "#fff4d6", "padding": "6px 10px", "fontSize": "13px"}))
        for key in keys:
            children += [html.H2(FIGURES[key], style={"fontSize": "19px", "marginTop": "28px"}),
                         html.P(board.notes.get(key, ""), style={"color": "#555", "fontSize": "13px"}),
                         dcc.Graph(id=f"fig-{key}", figure=board.figures[key], config=PLOTLY_CONFIG)]
            if key == "edf":
                children.append(html.Div(_table(board.ks) if board.ks else None, id="ks"))
        children += [html.Div(_fidelity(board), id="fidelity"),
                     html.H2("Pareto front", style={"fontSize": "19px", "marginTop": "28px"}),
                     html.Div(_fronts(board), id="fronts"),
                     dcc.Interval(id="tick", interval=int(refresh_s * 1000)), dcc.Store(id="stamp", data=sig)]
        return html.Div(children, style=CSS)

    app.layout = layout

    @app.callback([Output(f"fig-{k}", "figure") for k in keys]
                  + [Output("status", "children"), Output("summary", "children"), Output("ks", "children"),
                     Output("fidelity", "children"), Output("fronts", "children"), Output("stamp", "data")],
                  Input("tick", "n_intervals"), State("stamp", "data"))
    def refresh(_n: int | None, stamp: str | None) -> list[Any]:
        board, sig = live.current()
        if sig == stamp and not live.error:
            raise PreventUpdate  # nothing new: send nothing
        return [board.figures[k] for k in keys] + [
            _status(live, board), _table(board.summary), _table(board.ks) if board.ks else None,
            _fidelity(board), _fronts(board), sig]

    return app


def make_server(app: Any, host: str, port: int) -> Any:
    """Bind the app's server now, so a port in use is a one-line error before anything is printed.

    The socket is bound here and handed to werkzeug by its descriptor: werkzeug's own bind
    prints a paragraph and exits on a port in use, which would not be one line."""
    import socket

    from werkzeug.serving import make_server as _make

    if not 1 <= port <= 65535:
        raise UserError(f"--port {port} is out of range (1-65535)")
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart within TIME_WAIT still binds
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is in use; pick another with --port") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise UserError(f"not allowed to listen on {host}:{port} ({exc.strerror}); pick a port above 1023") \
                from None
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    try:
        return _make(host, port, app.server, threaded=True, fd=sock.fileno())
    finally:
        sock.close()  # the server holds its own duplicate of the descriptor
