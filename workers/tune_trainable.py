"""The function a Ray Tune trial runs: one candidate, one ``tune.report`` per epoch.

The driver puts a :class:`~nas.workers.contract.TrialRequest` in the Tune config (``config["nas"]``):
the :class:`~nas.workers.contract.TrialSpec`, ``constants`` (the objectives known before training:
FLOPs and params at the space's resolution) and the study's ``trial_number``. This function trains
it with :func:`~nas.workers.trial.run_trial` and reports (the records of :mod:`nas.workers.contract`):

* after every epoch but the last: an :class:`~nas.workers.contract.EpochReport`, ``final=False``;
* at the end: a :class:`~nas.workers.contract.FinalReport`, the last epoch's metrics and everything
  :func:`run_trial` measured, ``final=True`` and ``status`` (``ok``, ``diverged``, ``oom``, ``error``,
  ``over_latency``: the deployed network is over the latency budget, measured and not trained).
  A scheduler must never stop a final report, and a trial without one was stopped (or died).

Every report carries the constants, ``latency`` (ms at batch 1, when measured), ``epoch``,
``accuracy`` (validation top-1 of that epoch) and where it runs (host, Ray node, pid), so a
multi-objective scheduler can rank it at any epoch and the study records where it ran.
A failure is a result, never an exception: Ray Tune retries exceptions (``FailureConfig``),
and a deterministic failure must not be retried. Only a dead worker process is.

Nothing here touches study storage.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import traceback
from pathlib import Path
from typing import Any

from nas.workers import faults
from nas.workers.contract import EPOCH_KEYS, EpochReport, FinalReport, TrialRequest
from nas.workers.engine import EpochRecord
from nas.workers.trial import run_trial


def epoch_metrics(record: EpochRecord | dict[str, Any]) -> dict[str, Any]:
    r = record.to_dict() if isinstance(record, EpochRecord) else dict(record)
    r["accuracy"] = r.pop("val_acc", r.get("accuracy"))
    return {k: r.get(k) for k in EPOCH_KEYS}


def _where() -> dict[str, Any]:
    node = None
    try:
        import ray

        node = ray.get_runtime_context().get_node_id()
    except Exception:  # not inside Ray (a direct call in a test)
        pass
    return {"host": socket.gethostname(), "node": node, "worker_pid": os.getpid()}


def _latency_ms(latency: dict[str, Any] | None) -> float | None:
    for point in (latency or {}).get("points", []):
        if point["batch_size"] == 1:
            return float(point["median_ms"])
    return None


def _latency(latency: dict[str, Any] | None) -> dict[str, Any]:
    """A report's ``latency`` (ms at batch 1) and, for a deployment measurement, ``latency_detail``."""
    detail = json.dumps(latency) if "runtime" in (latency or {}) else None
    return {"latency": _latency_ms(latency), "latency_detail": detail}


def tune_trainable(config: dict[str, Any]) -> None:
    """The Ray Tune function trainable (``tune.with_resources(tune_trainable, ...)``)."""
    from ray import tune

    request = TrialRequest.from_config(config)
    spec = dict(request.spec)
    fault = request.fault  # only in the fault tests (workers/faults.py)
    faults.prepare(fault, spec)
    epochs = int(spec.get("schedule", {}).get("epochs", 10))
    base = {**request.constants, **_where(), "trial_number": request.trial_number}
    started: dict[str, Any] = {}

    def on_epoch(record: EpochRecord) -> None:
        faults.after_epoch(fault, record.epoch, request.key)
        if record.epoch < epochs:  # the last epoch is reported with the final result
            tune.report(EpochReport(**base, **_latency(started.get("latency")), **epoch_metrics(record)).to_result())

    box = request.weights_box
    if box:  # the driver keeps the weights of the trials on the front: write them where we can read them
        fd, spec["weights_path"] = tempfile.mkstemp(prefix="nas-weights-", suffix=".pt")
        os.close(fd)
    try:
        out = run_trial(spec, on_epoch=on_epoch, started=started)
        if box and out.get("status") == "ok":
            _hand_over(box, request.trial_number, Path(spec["weights_path"]))
    except Exception as exc:  # a bug or a broken candidate: a result, so Tune does not retry it
        lines = traceback.format_exception_only(type(exc), exc)
        out = {"status": "error", "reason": (lines[-1].strip() if lines else type(exc).__name__)[:500],
               "history": []}
    finally:
        if box:
            Path(spec["weights_path"]).unlink(missing_ok=True)
    tune.report(final_result(out, base))


def _hand_over(box: str, number: int, path: Path) -> None:
    """Give the trained weights to the driver's box (a Ray actor), before the final report: the
    driver takes them when it records the result."""
    import ray

    ray.get(ray.get_actor(box).put.remote(number, path.read_bytes()), timeout=300)


def final_result(out: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The last report of a trial, from :func:`run_trial`'s output."""
    history = out.get("history") or []
    last = epoch_metrics(history[-1]) if history else dict.fromkeys(EPOCH_KEYS)
    status = out.get("status", "error")
    if status == "stopped":  # only an engine callback stops; the driver's scheduler never gets here
        status = "ok"
    cx = out.get("complexity") or {}
    peak = out.get("peak_memory_bytes")
    last["images_per_s"] = out.get("images_per_s")  # the run's, not the last epoch's
    return FinalReport(
        **base, **last, status=status, reason=out.get("reason"), **_latency(out.get("latency")),
        curve=[epoch_metrics(h) for h in history], best_accuracy=out.get("best_val_acc"),
        epochs_completed=out.get("epochs_completed", len(history)), wall_time_s=out.get("wall_time_s"),
        device=out.get("device"), peak_memory_mb=round(peak / 2**20, 1) if peak else None,
        train_flops=cx.get("flops"), train_n_params=cx.get("params"), train_activations=cx.get("activations"),
        arch_hash=out.get("arch_hash"), val_images=out.get("val_images"),
    ).to_result()
