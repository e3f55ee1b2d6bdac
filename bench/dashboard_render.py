"""How long ``nas dashboard`` takes to render the report of a large study (synthetic, made through Optuna).

    python bench/dashboard_render.py [--trials 10000] [--repeat 3] [--storage URL --study NAME]

Without ``--storage`` it makes (once, then reuses) a synthetic study of ``--trials`` trials of
the resnest space under 4 GFLOPs with ``bench/synthetic_study.py`` in
``$TMPDIR/nas-bench/synthetic-resnest-N.db`` (about 20 ms a trial to write through Optuna's
API, so 10,000 take a few minutes the first time). Each repeat is a fresh process, so every
figure is a cold start, as for a user. It reports, best of the repeats:

* the phases inside one process: imports, opening the storage, reading the trials, building
  the figures, writing the HTML;
* ``nas dashboard`` end to end (process start to exit), as a user waits for it;
* where Chromium is installed, the time headless Chromium takes to load and draw the report
  (minus its time for an empty page), and the report's size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

PHASES = r"""
import json, sys, time
t0 = time.perf_counter()
from nas.dashboards.figures import build_dashboard
from nas.dashboards.report import render_report, write_report
from nas.dashboards.studies import open_sources, quiet_gc
t1 = time.perf_counter()
sources, su = open_sources(sys.argv[1], [sys.argv[2]])
t2 = time.perf_counter()
with quiet_gc():
    studies = [s.read() for s in sources]
t3 = time.perf_counter()
board = build_dashboard(studies)
t4 = time.perf_counter()
write_report(sys.argv[3], render_report(board, su.display()))
t5 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "open": t2 - t1, "read": t3 - t2, "figures": t4 - t3, "html": t5 - t4,
                  "trials": board.n_trials}))
"""


def ensure_study(trials: int) -> tuple[str, str]:
    folder = Path(tempfile.gettempdir()) / "nas-bench"
    folder.mkdir(exist_ok=True)
    db = folder / f"synthetic-resnest-{trials}.db"
    name = f"synthetic-resnest-{trials}"
    url = f"sqlite:///{db}"
    if not db.exists():
        print(f"making {name} in {db} (once) ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        partial = db.with_suffix(".partial.db")
        partial.unlink(missing_ok=True)
        subprocess.run([sys.executable, str(HERE / "synthetic_study.py"), "--storage", f"sqlite:///{partial}",
                        "--name", name, "-n", str(trials)], check=True, stdout=subprocess.DEVNULL)
        partial.rename(db)
        print(f"  {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return url, name


def chromium() -> str | None:
    return os.environ.get("NAS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") \
        or shutil.which("google-chrome")


def browser_seconds(exe: str, url: str, out: Path) -> float:
    with tempfile.TemporaryDirectory() as profile:
        start = time.perf_counter()
        subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                        "--window-size=1400,6000", "--virtual-time-budget=30000", f"--screenshot={out}", url],
                       check=True, capture_output=True, timeout=180)
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--storage", help="an existing storage (default: a cached synthetic study)")
    ap.add_argument("--study", help="with --storage: the study to render")
    args = ap.parse_args()
    url, name = (args.storage, args.study) if args.storage else ensure_study(args.trials)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.html"
        phases: list[dict[str, float]] = []
        cli: list[float] = []
        for _ in range(args.repeat):
            res = subprocess.run([sys.executable, "-c", PHASES, url, name, str(report)], env=env, check=True,
                                 capture_output=True, text=True)
            phases.append(json.loads(res.stdout.strip().splitlines()[-1]))
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "nas.cli", "dashboard", "--storage", url, "--study", name,
                            "-o", str(report)], env=env, check=True, capture_output=True)
            cli.append(time.perf_counter() - start)
        best = {k: min(p[k] for p in phases) for k in phases[0]}
        size = report.stat().st_size / 1e6
        print(f"study {name}: {int(best['trials']):,} trials; report {size:.1f} MB; best of {args.repeat}")
        print("| phase | seconds |")
        print("|---|---:|")
        for k in ("import", "open", "read", "figures", "html"):
            print(f"| {k} | {best[k]:.2f} |")
        print(f"| in-process total (open + read + figures + html) | "
              f"{best['open'] + best['read'] + best['figures'] + best['html']:.2f} |")
        print(f"| `nas dashboard` end to end (process start to exit) | {min(cli):.2f} |")
        exe = chromium()
        if exe:
            blank = Path(tmp) / "blank.html"
            blank.write_text("<html><body>blank</body></html>")
            base = min(browser_seconds(exe, blank.as_uri(), Path(tmp) / "b.png") for _ in range(2))
            page = min(browser_seconds(exe, report.as_uri(), Path(tmp) / "r.png") for _ in range(2))
            print(f"| headless Chromium: load and draw the report (minus an empty page, {base:.2f} s) | "
                  f"{page - base:.2f} |")
        else:
            print("(no chromium found: browser time not measured)")


if __name__ == "__main__":
    main()
