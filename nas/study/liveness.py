"""Drivers' liveness records in a study: which driver is alive, judged by its process on this
machine or by its heartbeat (the database server's clock) elsewhere."""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from nas.study.records import (
    DRIVER_PREFIX,
)
from nas.study.storage import clock

HEARTBEAT_S = 10.0
STALE_S = 60.0


# ---- liveness ---------------------------------------------------------------------------------


def _process_start(pid: int) -> float | None:
    """When a live process started; None when there is none. A zombie (killed, not yet reaped by
    its parent) is dead: it keeps its pid and start time until it is reaped, which a parent may
    not do for as long as it runs."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _machine() -> str:
    """Where a pid means this process: hostname, boot time and PID namespace. Containers on one
    host share its boot time, and with host networking its hostname too, but not its pids: a
    driver in another PID namespace is judged by its heartbeat, never by a pid looked up here."""
    import psutil

    try:
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:  # no procfs (macOS): one namespace per machine
        namespace = ""
    return f"{socket.gethostname()}@{int(psutil.boot_time())}{'@' + namespace if namespace else ''}"


@dataclass
class DriverRecord:
    id: str
    machine: str
    pid: int
    pid_start: float | None
    started: float
    heartbeat: float
    ended: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def alive(self, now: float | None = None) -> bool:
        if self.ended:
            return False
        if self.machine == _machine():
            start = _process_start(self.pid)
            return start is not None and (self.pid_start is None or abs(start - self.pid_start) < 1.0)
        return (now or time.time()) - self.heartbeat < STALE_S


def drivers(storage: Any, study_id: int) -> dict[str, DriverRecord]:
    out = {}
    for key, value in storage.get_study_system_attrs(study_id).items():
        if key.startswith(DRIVER_PREFIX):
            try:
                out[key[len(DRIVER_PREFIX):]] = DriverRecord(**value)
            except TypeError:
                continue
    return out


class Driver:
    """This process's liveness record in a study."""

    def __init__(self, storage: Any, study_id: int) -> None:
        self.storage, self.study_id = storage, study_id
        now = time.time()
        self.record = DriverRecord(id=uuid.uuid4().hex[:12], machine=_machine(), pid=os.getpid(),
                                   pid_start=_process_start(os.getpid()), started=now, heartbeat=now)
        self._last = 0.0

    @property
    def id(self) -> str:
        return self.record.id

    def beat(self, force: bool = False) -> bool:
        """Write the heartbeat if :data:`HEARTBEAT_S` has passed (or ``force``); returns whether it did."""
        now = time.time()
        if not (force or now - self._last >= HEARTBEAT_S):
            return False
        self.record.heartbeat = clock(self.storage)  # the database's clock, by which the others judge it
        self.storage.set_study_system_attr(self.study_id, DRIVER_PREFIX + self.id, self.record.to_dict())
        self._last = now
        return True

    def end(self) -> None:
        self.record.ended = True
        self.beat(force=True)
