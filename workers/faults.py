"""Fault injection, for the fault tests and ``bench/faults.py`` only: real failures on demand.

The driver reads ``NAS_FAULTS`` (:func:`nas.cluster.fault_points.planned`), a JSON map from the
order in which it dispatches trials (1-based) to a fault, e.g.
``{"1": "die", "2": "raise", "3": "nan", "4": "oom", "5": "slow"}``, and hands each trial its fault
in the trial's request. The faults are real, not mocked, except that a CPU cannot run out of CUDA
memory:

* ``die``   the worker process kills itself (SIGKILL) after its first epoch, once: Ray Tune retries;
* ``raise`` a Python exception after the first epoch: a deterministic failure, not retried;
* ``nan``   the learning rate becomes 1e30: the loss really diverges;
* ``oom``   ``torch.OutOfMemoryError`` is raised after the first epoch, as CUDA would (simulated);
* ``slow``  every epoch takes 10 s longer, so ``--trial-timeout`` catches it.

``die`` happens once per trial: a marker file in ``NAS_FAULTS_DIR`` (default: the temp folder)
remembers it, so the retry trains normally. Without ``NAS_FAULTS`` nothing here does anything.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

FAULTS = ("die", "raise", "nan", "oom", "slow")
SLOW_S = 10.0


def prepare(fault: str | None, spec: dict[str, Any]) -> None:
    """Faults that act through the trial's spec, before training."""
    if fault == "nan":
        spec["schedule"] = {**spec.get("schedule", {}), "lr": 1e30}


def after_epoch(fault: str | None, epoch: int, key: str) -> None:
    """Faults that strike when an epoch ends (called from the per-epoch callback)."""
    if fault == "slow":
        time.sleep(SLOW_S)
    if epoch != 1:
        return
    if fault == "raise":
        raise RuntimeError(f"injected failure ({key})")
    if fault == "oom":
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
    if fault == "die":
        marker = Path(os.environ.get("NAS_FAULTS_DIR", tempfile.gettempdir())) / f"nas-fault-died-{key}"
        if not marker.exists():
            marker.write_text("")
            os.kill(os.getpid(), signal.SIGKILL)
