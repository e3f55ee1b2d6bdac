"""Fault injection: every way a trial or the driver can die, injected into real ``nas search`` runs.

Each scenario runs real searches (their own local Ray cluster, an SQLite or PostgreSQL study)
of a small test space (``bench/data/small_space.yaml``: 72 networks that train in seconds,
54 within the 6 MFLOPs budget) and checks the study afterwards:

* **lost**: trained candidates missing from the study's total (``--trials``), or a queued
  architecture never trained again;
* **repeated**: architectures trained to COMPLETE more than once;
* **overhead**: wall time of the scenario's searches against one clean search (same settings).

Faults (see ``workers/faults.py`` and ``nas/cluster/fault_points.py`` for how they are injected):
a worker SIGKILLed mid-trial, a trial that raises, a NaN loss, CUDA out-of-memory (simulated on
the CPU), a trial past ``--trial-timeout``; the driver SIGKILLed at random moments and at chosen
points (inside a storage write, between writing a trial and handing it to Ray), SIGINT and
SIGTERM; readers hammering the SQLite file while the search writes; the driver's PostgreSQL
connections terminated (``pg_terminate_backend``) mid-search.

    python bench/faults.py                      # every scenario; a Markdown table at the end
    python bench/faults.py --only driver-kill --kills 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "bench" / "data" / "small_space.yaml"
STUDY = "small-6MFLOPs"
POSTGRES = os.environ.get("NAS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
RAY_PROCESS_MARKERS = ("raylet", "gcs_server", "ray::", "ray/dashboard", "log_monitor.py", "autoscaler")


def search_args(trials: int = 5, epochs: int = 3, extra: list[str] | None = None) -> list[str]:
    return ["search", "--space", str(SPACE), "--budget", "6M", "--trials", str(trials), "--sampler", "random",
            "--seed", "1", "--train-images", "256", "--val-images", "64", "--epochs", str(epochs),
            "--batch-size", "32", "--no-early-stopping", *(extra or [])]


@dataclass
class Row:
    fault: str
    injected: int
    lost: int
    repeated: int
    seconds: float
    baseline: float
    notes: list[str] = field(default_factory=list)
    extra: int = 0  # trained beyond the study's --trials

    @property
    def overhead(self) -> str:
        return f"{self.seconds / self.baseline:.2f}x" if self.baseline else "-"


class Search:
    """One ``nas search`` process."""

    def __init__(self, storage: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.storage = storage
        full_env = {**os.environ, "NAS_STORAGE": storage, **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "nas.cli", *args], env=full_env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)

    def wait(self, timeout: float = 600) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self, sig: int = signal.SIGKILL) -> None:
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def cleanup(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def study_state(storage: str, study: str = STUDY) -> dict[str, Any]:
    import optuna

    from nas.study.records import read_trials
    from nas.study.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        records = read_trials(optuna.load_study(study_name=study, storage=open_storage(storage, create=False)))
    except Exception as exc:
        from nas.common.errors import UserError

        if not isinstance(exc, UserError):  # not "no study yet": a search is still creating it
            print(f"(study not readable: {type(exc).__name__}: {exc})", file=sys.stderr)
        return {"records": [], "trained": 0, "running": 0, "waiting": 0, "repeated": 0}
    complete = [r.get("arch_hash") for r in records if r.outcome == "complete"]
    return {"records": records, "trained": sum(r.trained for r in records),
            "running": sum(r.state == "RUNNING" for r in records),
            "waiting": sum(r.state == "WAITING" for r in records),
            "repeated": len(complete) - len(set(complete))}


def check(storage: str, target: int) -> tuple[int, int, dict[str, Any]]:
    """(lost, repeated, state) of a finished study; ``state["extra"]``: trained beyond ``target``."""
    st = study_state(storage)
    lost = max(0, target - st["trained"]) + st["running"] + st["waiting"]
    st["extra"] = max(0, st["trained"] - target)
    retried = {r.get("retry_of") for r in st["records"] if r.get("retry_of") is not None and r.trained}
    queued = [r.number for r in st["records"] if r.outcome in ("orphaned", "interrupted")]
    lost += sum(1 for n in queued if n not in retried and not _trained_elsewhere(st, n))
    return lost, st["repeated"], st


def _trained_elsewhere(st: dict[str, Any], number: int) -> bool:
    """An orphan's architecture may be trained by a proposal other than its queued retry."""
    orphan = next(r for r in st["records"] if r.number == number)
    return any(r.trained and r.get("arch_hash") == orphan.get("arch_hash") for r in st["records"])


def ray_processes() -> set[int]:
    import psutil

    out = set()
    for p in psutil.process_iter(["pid", "cmdline", "name"]):
        text = " ".join(p.info.get("cmdline") or []) + " " + (p.info.get("name") or "")
        if any(m in text for m in RAY_PROCESS_MARKERS):
            out.add(p.info["pid"])
    return out


def _names(pids: set[int]) -> list[str]:
    import psutil

    names = []
    for pid in pids:
        try:
            names.append(" ".join(psutil.Process(pid).cmdline())[:60])
        except psutil.NoSuchProcess:
            names.append(f"{pid} (gone)")
    return names


def _settle(before: set[int], timeout: float = 10.0) -> set[int]:
    """Ray processes that are not ``before``'s, once the dead driver's reaper has had ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        left = ray_processes() - before
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def fresh_storage(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        tmp.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{tmp / 'nas.db'}"
    import optuna

    try:  # a clean study of the shared database
        optuna.delete_study(study_name=STUDY, storage=POSTGRES)
    except KeyError:
        pass
    return POSTGRES


def run_clean(storage: str, args: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> float:
    start = time.monotonic()
    search = Search(storage, args, env)
    try:
        code, _, err = search.wait(timeout)
    finally:
        search.cleanup()
    if code != 0:
        raise RuntimeError(f"search exited {code}: {err[-2000:]}")
    return time.monotonic() - start


# ---- scenarios ------------------------------------------------------------------------------------


def baseline(tmp: Path) -> float:
    return run_clean(fresh_storage("sqlite", tmp / "baseline"), search_args())


TRIAL_FAULTS = {"die": "worker SIGKILLed mid-trial", "raise": "trial raises", "nan": "NaN loss",
                "oom": "CUDA out-of-memory (simulated)", "slow": "trial past --trial-timeout"}
REASONS = {"raise": "error: RuntimeError: injected failure", "nan": "diverged", "oom": "oom", "slow": "timeout"}


def trial_faults(faults: list[str], tmp: Path, base: float, times: int = 2) -> list[Row]:
    """One search in which ``times`` trials get each of ``faults`` (by dispatch order) and two more
    train normally; one row per fault, each checked on its own trials. The benchmark runs one fault
    a search (its wall time against a clean search); the tests run them together (one cluster
    start instead of five)."""
    storage = fresh_storage("sqlite", tmp)
    plan = {str(i * times + j + 1): fault for i, fault in enumerate(faults) for j in range(times)}
    trials = max(5, len(plan) + 2)
    extra = ["--trial-timeout", "8"] if "slow" in faults else []
    env = {"NAS_FAULTS": json.dumps(plan), "NAS_FAULTS_DIR": str(tmp)}
    seconds = run_clean(storage, search_args(trials=trials, extra=extra), env)
    lost, repeated, st = check(storage, trials)
    records = [r for r in st["records"] if r.trained]
    rows = []
    for fault in faults:
        notes = []
        if fault == "die":
            hit = [r for r in records if r.get("restarts")]
            if len(hit) != times or any(r.outcome != "complete" for r in hit):
                notes.append(f"{len(hit)} trials retried: {[(r.number, r.outcome) for r in hit]}")
        else:
            hit = [r for r in records if (r.get("reason") or "").startswith(REASONS[fault])]
            if len(hit) != times:
                notes.append(f"{len(hit)} trials failed as {REASONS[fault]}")
            if any(r.get("restarts") for r in hit):
                notes.append("a trial was retried")
        if fault == "oom":
            later = [r.get("worker_pid") for r in records if r.outcome == "complete"]
            if not any(r.get("worker_pid") in later for r in hit):
                notes.append("no worker that reported oom trained another trial (not reused)")
        rows.append(Row(fault=TRIAL_FAULTS[fault], injected=times, lost=lost, repeated=repeated, seconds=seconds,
                        baseline=base, notes=notes, extra=st["extra"]))
    return rows


def driver_kills(tmp: Path, base: float, kills: int = 10, seed: int = 0, delays: tuple[float, float] = (4.0, 14.0)
                 ) -> Row:
    """SIGKILL the driver at ``kills`` moments (random delays of ``delays`` seconds after it starts, and
    inside a storage write and between writing a trial and dispatching it), re-running after each;
    then run to the end."""
    storage = fresh_storage("sqlite", tmp)
    rng = random.Random(seed)
    before = ray_processes()
    start = time.monotonic()
    notes: list[str] = []
    points = ["write:3", "dispatch:1", "write:8", "dispatch:2"]
    killed = attempts = 0
    while killed < kills and attempts < 3 * kills:
        attempts += 1
        env = {"NAS_DRIVER_DIE_AT": points[killed]} if killed < len(points) else {}
        search = Search(storage, search_args(trials=5 + killed), env)  # a target ahead: always work left
        try:
            if not env:
                time.sleep(rng.uniform(*delays))
                search.kill()
            code, _, _ = search.wait(timeout=300)
        finally:
            left = _settle(before)
            search.cleanup()
        killed += code == -signal.SIGKILL
        if left:
            notes.append(f"kill {killed}: {len(left)} Ray processes of the dead driver were left "
                         f"({', '.join(sorted(_names(left)))})")
    target = 5 + killed
    run_clean(storage, search_args(trials=target))
    lost, repeated, st = check(storage, target)
    return Row("driver SIGKILLed (random moments, mid-write, before dispatch), then re-run", killed, lost, repeated,
               time.monotonic() - start, base, notes, extra=st["extra"])


def driver_signals(tmp: Path, base: float) -> Row:
    """SIGINT, then SIGTERM, each while a trial trains (a longer schedule, so there is one), each
    followed by a re-run; then the search runs to its end."""
    notes: list[str] = []
    start = time.monotonic()
    storage = fresh_storage("sqlite", tmp)
    slow = search_args(trials=3, epochs=8)
    before: set[int] = set()  # trials interrupted by an earlier signal
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        search = Search(storage, slow)
        try:
            _wait_running(storage, search)
            search.kill(sig)
            got, _, err = search.wait(timeout=120)
        finally:
            search.cleanup()
        name = signal.Signals(sig).name
        if got != code or "Traceback" in err or "stopping" not in err:
            notes.append(f"{name}: exit {got}, stderr {err.strip()[-300:]!r}")
        # Stopped cleanly: nothing left RUNNING, every trial it interrupted queued (WAITING) to train again.
        records = study_state(storage)["records"]
        interrupted = sorted(r.number for r in records if r.outcome == "interrupted" and r.number not in before)
        before.update(interrupted)
        queued = sorted(r.get("retry_of") for r in records if r.state == "WAITING")
        if any(r.state == "RUNNING" for r in records) or not interrupted or not set(interrupted) <= set(queued):
            notes.append(f"{name}: interrupted {interrupted}, queued retries of {queued}, running "
                         f"{[r.number for r in records if r.state == 'RUNNING']}")
    run_clean(storage, slow)
    lost, repeated, st = check(storage, 3)
    if lost:
        notes.append(f"study: {[(r.number, r.state, r.outcome, r.get('retry_of')) for r in st['records']]}")
    return Row("driver SIGINT / SIGTERM (exit 130 / 143), then re-run", 2, lost, repeated,
               time.monotonic() - start, base, notes, extra=st["extra"])


def _wait_running(storage: str, search: Search, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if search.proc.poll() is not None:
            return
        if any(r.state == "RUNNING" and r.curve for r in study_state(storage)["records"]):
            return
        time.sleep(0.3)


def _search_while(storage: str, threads: list[threading.Thread], stop: threading.Event, failures: list[str],
                  join_s: float) -> float:
    """A clean search's wall time while ``threads`` disturb it (they run until ``stop``); a failed
    search is noted in ``failures`` and counts 0 s."""
    for t in threads:
        t.start()
    try:
        return run_clean(storage, search_args())
    except RuntimeError as exc:
        failures.append(str(exc)[-300:])
        return 0.0
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=join_s)


def readers(tmp: Path, base: float) -> Row:
    """``nas status`` in a loop, an Optuna client and dashboard renders on the SQLite file while
    the search writes."""
    storage = fresh_storage("sqlite", tmp)
    stop = threading.Event()
    reads = {"nas status": 0, "optuna client": 0, "nas dashboard": 0}
    failures: list[str] = []

    def loop(name: str, fn) -> None:
        while not stop.is_set():
            try:
                fn()
                reads[name] += 1
            except Exception as exc:  # a study not created yet is fine; a lock error is not
                if "locked" in str(exc):
                    failures.append(f"{name}: {exc}")
            time.sleep(0.05)

    def status() -> None:
        r = subprocess.run([sys.executable, "-m", "nas.cli", "status", "--storage", storage], capture_output=True,
                           text=True)
        if "locked" in r.stderr:
            raise RuntimeError(r.stderr)

    def client() -> None:
        import optuna

        optuna.load_study(study_name=STUDY, storage=storage).get_trials()

    def dashboard() -> None:
        r = subprocess.run([sys.executable, "-m", "nas.cli", "dashboard", "--storage", storage, "-o",
                            str(tmp / "report.html")], capture_output=True, text=True)
        if "locked" in r.stderr:
            raise RuntimeError(r.stderr)

    threads = [threading.Thread(target=loop, args=(n, f), daemon=True)
               for n, f in (("nas status", status), ("optuna client", client), ("nas dashboard", dashboard))]
    seconds = _search_while(storage, threads, stop, failures, join_s=60)
    lost, repeated, st = check(storage, 5)
    notes = failures + [", ".join(f"{k} {v}x" for k, v in reads.items())]
    return Row("readers on the SQLite file during the search", sum(reads.values()), lost, repeated, seconds,
               base, notes, extra=st["extra"])


def postgres_drops(tmp: Path, base: float, every_s: float = 3.0, storm_s: float = 10.0) -> Row:
    """The driver's PostgreSQL connections terminated every 0.1 s for the first ``storm_s`` (while it
    opens the storage and creates the study), then every ``every_s`` mid-search."""
    import psycopg

    storage = fresh_storage("postgresql", tmp)
    stop = threading.Event()
    dropped = [0]

    def drop() -> None:
        start = time.monotonic()
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            while not stop.wait(0.1 if time.monotonic() - start < storm_s else every_s):
                rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                    "application_name = 'nas' AND pid <> pg_backend_pid()").fetchall()
                dropped[0] += sum(1 for (ok,) in rows if ok)

    notes: list[str] = []
    seconds = _search_while(storage, [threading.Thread(target=drop, daemon=True)], stop, notes, join_s=10)
    lost, repeated, st = check(storage, 5)
    return Row("PostgreSQL connection of the driver terminated mid-search", dropped[0], lost, repeated, seconds, base,
               notes, extra=st["extra"])


SCENARIOS = ("die", "raise", "nan", "oom", "slow", "driver-kill", "driver-signals", "readers", "postgres-drop")


def run(only: list[str] | None = None, kills: int = 10) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="nas-faults-") as tmp_root:
        root = Path(tmp_root)
        base = baseline(root)
        for name in only or SCENARIOS:
            tmp = root / name
            tmp.mkdir()
            if name in TRIAL_FAULTS:
                rows += trial_faults([name], tmp, base)
            elif name == "driver-kill":
                rows.append(driver_kills(tmp, base, kills))
            elif name == "driver-signals":
                rows.append(driver_signals(tmp, base))
            elif name == "readers":
                rows.append(readers(tmp, base))
            elif name == "postgres-drop":
                rows.append(postgres_drops(tmp, base))
            print(f"{rows[-1].fault}: injected {rows[-1].injected}, lost {rows[-1].lost}, repeated "
                  f"{rows[-1].repeated}, beyond --trials {rows[-1].extra}, {rows[-1].seconds:.0f} s "
                  f"{'; '.join(rows[-1].notes)}", flush=True)
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| fault | injected | trials lost | trials repeated | beyond --trials | wall time vs a clean search "
             "| notes |", "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.fault} | {r.injected} | {r.lost} | {r.repeated} | {r.extra} | {r.overhead} "
                     f"| {'; '.join(r.notes)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help=f"comma-separated scenarios ({', '.join(SCENARIOS)})")
    p.add_argument("--kills", type=int, default=10, help="driver kills in the driver-kill scenario (default 10)")
    args = p.parse_args(argv)
    rows = run(args.only.split(",") if args.only else None, args.kills)
    print("\n" + table(rows))
    return rows


if __name__ == "__main__":
    main()
