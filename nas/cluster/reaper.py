"""Cleans up the local Ray cluster of a driver that died without shutting it down.

A driver killed with SIGKILL (or by the kernel's OOM killer) cannot call ``ray.shutdown()``. Ray's
own fate-sharing takes its GCS, raylet and workers down with it, but not every helper it starts
(measured with Ray 2.60: ``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent`` were left running,
re-parented to init). So a driver that starts a local cluster also starts this small watcher in
a session of its own, and finds the cluster's processes two ways:

- a mark: the driver starts the cluster with ``NAS_CLUSTER=<token>`` in its environment, which
  every process Ray starts from it inherits (the raylet passes it on to the workers and agents it
  starts later, at any moment); the watcher knows the token;
- a list: the driver writes ``PID START_TIME`` lines for its child processes to the watcher's
  stdin every 0.2 s, for the processes whose mark is gone (Ray's agents rename themselves, which
  overwrites the memory ``/proc/PID/environ`` reads).

When the stdin closes (the driver exited, cleanly or not) the watcher terminates the listed
processes that are still the same processes (PID and start time match) and every marked process,
then kills those that did not exit. It ignores SIGINT, so a Ctrl-C in the terminal does not stop
it first.

    python -m nas.cluster.reaper TOKEN   # reads the list on stdin (started by nas.cluster.execution)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import IO, Any

MARK = "NAS_CLUSTER"


def _alive(pid: int, start: float):
    import psutil

    try:
        p = psutil.Process(pid)
        return p if abs(p.create_time() - start) < 1.0 else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _marked(token: str, spare: set[int]) -> list:
    """The processes whose environment carries ``NAS_CLUSTER=token``, but not those in ``spare``."""
    import psutil

    found = []
    for p in psutil.process_iter():
        if p.pid in spare:
            continue
        try:
            if p.environ().get(MARK) == token:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def _end(procs: list, grace_s: float) -> None:
    import psutil

    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, survivors = psutil.wait_procs(procs, timeout=grace_s)
    for p in survivors:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def watch(stream: IO[str], token: str | None = None, grace_s: float = 2.0, spare: set[int] | None = None) -> int:
    """Read the process list until EOF, then end what is left of the cluster; returns how many were ended.

    ``spare``: processes never ended (the driver itself, which carries the mark while it starts the
    cluster, and this watcher)."""
    import psutil

    spare = {os.getpid(), os.getppid()} if spare is None else spare
    watched: dict[int, float] = {}
    for line in stream:
        try:
            pid, start = line.split()
            watched[int(pid)] = float(start)
        except ValueError:
            continue
    # what the processes still running have started since the last list (the raylet outlives its
    # driver for a moment): their parents are known now, not after they are re-parented to init
    for pid, start in list(watched.items()):
        p = _alive(pid, start)
        if p is None:
            continue
        try:
            watched.update({c.pid: c.create_time() for c in p.children(recursive=True)})
        except psutil.NoSuchProcess:
            continue
    time.sleep(0.5)  # a clean shutdown is still stopping them: let it finish
    ended: set[int] = set()
    for _ in range(3):  # a process being ended may still start another: look again until none is left
        left = {p.pid: p for p in (_alive(pid, start) for pid, start in watched.items()) if p is not None}
        if token:
            left.update({p.pid: p for p in _marked(token, spare)})
        left = {pid: p for pid, p in left.items() if pid not in spare}
        if not left:
            break
        _end(list(left.values()), grace_s)
        ended.update(left)
        watched = {}
    return len(ended)


class Reaper:
    """The driver's side: start the watcher, mark the cluster, tell the watcher about its processes."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.token = uuid.uuid4().hex
        self._lock = threading.Lock()
        self.proc = subprocess.Popen([sys.executable, "-m", "nas.cluster.reaper", self.token], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                                     start_new_session=True)
        self._known: set[int] = set()
        # The processes the embedding program had started before (a notebook's server, another tool):
        # never the cluster's. After the cluster has started, only its processes' descendants are.
        import psutil

        self._before = {c.pid for c in psutil.Process().children()}
        self._roots: list[Any] | None = None  # the driver's children started while marking
        # Ray starts processes at any time (its agents after ray.init returns, workers per trial): a
        # driver killed at any moment must have told the watcher about all of them, so look often.
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, args=(every_s,), name="nas-reaper", daemon=True)
        self._poller.start()

    @contextlib.contextmanager
    def marking(self) -> Iterator[None]:
        """Processes started inside carry the mark (start the cluster here); the driver's later
        children (a user's subprocess, another search) do not."""
        import psutil

        saved = os.environ.get(MARK)
        os.environ[MARK] = self.token
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop(MARK, None)
            else:
                os.environ[MARK] = saved
            with self._lock:
                self._roots = self._tops(psutil.Process())

    def _poll(self, every_s: float) -> None:
        while not self._closed.wait(every_s):
            self.watch_children()

    def watch_children(self) -> None:
        """Send the cluster's processes (the driver's children started while marking, and their
        descendants) that the watcher does not know."""
        with self._lock:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self._watch_children()

    def _tops(self, me: Any) -> list[Any]:
        """The driver's direct children that may be the cluster's: those it started since this
        watcher (while the cluster starts), or those it started while marking (afterwards)."""
        if self._roots is not None:
            return [p for p in self._roots if p.is_running()]
        return [c for c in me.children() if c.pid not in self._before and c.pid != self.proc.pid]

    def _watch_children(self) -> None:
        import psutil

        lines = []
        family = []
        for top in self._tops(psutil.Process()):
            try:
                family += [top, *top.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        for child in family:
            if child.pid in self._known or child.pid == self.proc.pid:
                continue
            try:
                lines.append(f"{child.pid} {child.create_time()}\n")
            except psutil.NoSuchProcess:
                continue
            self._known.add(child.pid)
        if lines:  # the caller checked that the pipe is open
            try:
                self.proc.stdin.write("".join(lines))
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass

    def close(self) -> None:
        """The cluster was shut down: let the watcher sweep what is left, and go."""
        self._closed.set()
        self._poller.join()
        with self._lock:
            if self.proc.stdin is not None:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(sys.stdin, sys.argv[1] if len(sys.argv) > 1 else None)
