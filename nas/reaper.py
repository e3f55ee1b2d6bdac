"""Cleans up the local Ray cluster of a driver that died without shutting it down.

A driver killed with SIGKILL (or by the kernel's OOM killer) cannot call ``ray.shutdown()``. Ray's
own fate-sharing takes its GCS, raylet and workers down with it, but not every helper it starts
(measured with Ray 2.60: ``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent`` were left running,
re-parented to init). So a driver that starts a local cluster also starts this small watcher in
a session of its own: the driver writes ``PID START_TIME`` lines for the cluster's processes to
its stdin; when the stdin closes — the driver exited, cleanly or not — the watcher terminates the
listed processes that are still the same processes (PID and start time match), then kills those
that did not exit. It ignores SIGINT, so a Ctrl-C in the terminal does not stop it first.

    python -m nas.reaper        # reads the list on stdin (started by nas.execution)
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import IO


def _alive(pid: int, start: float):
    import psutil

    try:
        p = psutil.Process(pid)
        return p if abs(p.create_time() - start) < 1.0 else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def watch(stream: IO[str], grace_s: float = 5.0) -> int:
    """Read the process list until EOF, then end what is left of it; returns how many were ended."""
    import psutil

    watched: dict[int, float] = {}
    for line in stream:
        try:
            pid, start = line.split()
            watched[int(pid)] = float(start)
        except ValueError:
            continue
    time.sleep(1.0)  # a clean shutdown is still stopping them: let it finish
    left = [p for p in (_alive(pid, start) for pid, start in watched.items()) if p is not None]
    for p in left:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, survivors = psutil.wait_procs(left, timeout=grace_s)
    for p in survivors:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return len(left)


class Reaper:
    """The driver's side: start the watcher, tell it about the cluster's processes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "nas.reaper"], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                                     start_new_session=True)
        self._known: set[int] = set()

    def watch_children(self) -> None:
        """Send the processes this process has started (recursively) that the watcher does not know."""
        import psutil

        lines = []
        for child in psutil.Process().children(recursive=True):
            if child.pid in self._known or child.pid == self.proc.pid:
                continue
            try:
                lines.append(f"{child.pid} {child.create_time()}\n")
            except psutil.NoSuchProcess:
                continue
            self._known.add(child.pid)
        if lines and self.proc.stdin is not None:
            try:
                self.proc.stdin.write("".join(lines))
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass

    def close(self) -> None:
        """The cluster was shut down: let the watcher sweep what is left, and go."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(sys.stdin)
