"""``nas dashboard``: the static HTML report of one or more studies, or the live page (``--serve``)."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from nas.common.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dashboard", help="report or live page: accuracy vs complexity, design-space comparison, progress",
        description="Write one self-contained HTML report of a study (accuracy vs FLOPs/params/latency, the "
                    "effect of each design parameter, error EDFs of design spaces, hypervolume, learning curves, "
                    "the Pareto front), or serve the same figures live with --serve. Several --study overlay "
                    "and compare studies. Only reads the study; safe beside a running search.")
    p.add_argument("--study", action="append", metavar="NAME",
                   help="study to show (repeat to overlay several); may be left out when the storage holds one")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna storage (default: $NAS_STORAGE or sqlite:///nas.db)")
    p.add_argument("-o", "--output", default="report.html", metavar="FILE",
                   help="report file to write (default report.html)")
    p.add_argument("--color-by", metavar="PARAM",
                   help="colour points by this design parameter, or 'depth' (total blocks; the default with one "
                        "study; several studies are coloured by study unless this is given)")
    p.add_argument("--serve", action="store_true", help="serve a live page that refreshes as trials land")
    p.add_argument("--host", default="127.0.0.1", help="--serve: address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8050, help="--serve: port (default 8050)")
    p.add_argument("--refresh", type=float, default=5.0, metavar="SECONDS",
                   help="--serve: seconds between refreshes (default 5)")
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    # Cheap checks first: a bad port or output path costs the user no wait for the study to load.
    if args.serve:
        if not 1 <= args.port <= 65535:
            raise UserError(f"--port {args.port} is out of range (1-65535)")
        if not 0.2 <= args.refresh <= 3600:
            raise UserError(f"--refresh {args.refresh:g} must be between 0.2 and 3600 seconds")
    else:
        from nas.dashboards.report import check_output

        check_output(args.output)
    from nas.dashboards.studies import open_sources

    sources, su = open_sources(args.storage, args.study)
    if args.serve:
        return _serve(args, sources)
    return _report(args, sources, su.display())


def _report(args: argparse.Namespace, sources: list, where: str) -> int:
    from nas.dashboards.figures import build_dashboard
    from nas.dashboards.report import render_report, write_report
    from nas.dashboards.studies import quiet_gc

    start = time.perf_counter()
    with quiet_gc():
        studies = [s.read() for s in sources]
    empty = [s.name for s in studies if not s.records]
    if empty:
        raise UserError(f"study {', '.join(repr(n) for n in empty)} has no trials yet; nothing to report "
                        f"(watch it fill with 'nas dashboard --serve')")
    board = build_dashboard(studies, args.color_by)
    path = write_report(args.output, render_report(board, where))
    n_front = sum(len(rows) for rows in board.fronts.values())
    size = path.stat().st_size / 1e6
    print(f"wrote {path} ({size:.1f} MB): {len(studies)} {'study' if len(studies) == 1 else 'studies'}, "
          f"{board.n_trials:,} trials, {n_front} on the Pareto front, in {time.perf_counter() - start:.1f} s")
    return 0


def _serve(args: argparse.Namespace, sources: list) -> int:
    from nas.dashboards.live import create_app, make_server

    app = create_app(sources, args.color_by, args.refresh)
    server = make_server(app, args.host, args.port)
    host = f"[{args.host}]" if ":" in args.host else args.host
    names = ", ".join(s.name for s in sources)
    print(f"serving {names} at http://{host}:{server.port}/ (refreshing every {args.refresh:g} s; "
          f"Ctrl-C to stop)", flush=True)
    # Ctrl-C stops the server even when it was started by a process that ignores SIGINT (anything
    # started with '&' from a script inherits that, and Python then never raises KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
