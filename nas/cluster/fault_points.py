"""Where the driver may be killed on purpose, for the driver-death tests and ``bench/faults.py``.

``NAS_DRIVER_DIE_AT=POINT:N`` makes the driver SIGKILL itself the N-th time it passes ``POINT``:

* ``write``     inside a storage transaction, before its commit (a write the database never gets);
* ``dispatch``  after a trial is written RUNNING and before Ray Tune receives it.

Unset (always, outside those tests), :func:`point` costs one dictionary lookup.

The faults a trial's worker suffers are planned here too (:func:`planned`, ``NAS_FAULTS``) and carried
out there (:mod:`nas.workers.faults`).
"""

from __future__ import annotations

import json
import os
import signal

_counts: dict[str, int] = {}
_target = os.environ.get("NAS_DRIVER_DIE_AT", "")


def point(name: str) -> None:
    if not _target:
        return
    where, _, n = _target.partition(":")
    if where == name:
        _counts[name] = _counts.get(name, 0) + 1
        if _counts[name] == int(n or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def planned(dispatch_index: int) -> str | None:
    """The worker fault for the driver's ``dispatch_index``-th trial (1-based), if any: ``NAS_FAULTS``
    maps dispatch order to a fault of :data:`nas.workers.faults.FAULTS`."""
    text = os.environ.get("NAS_FAULTS")
    return json.loads(text).get(str(dispatch_index)) if text else None
