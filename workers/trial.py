"""The entry point that runs on a Ray worker: one trial in, plain results out.

The search driver sends a JSON-ready :class:`~nas.workers.contract.TrialSpec` (the config as a
dict, the dataset spec, the schedule) and gets a JSON-ready dict back; nothing here touches study
storage.
A user mistake in the spec comes back as status ``error`` with the one-line message, so one
bad trial never takes the worker (or the search) down.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from nas.common.errors import UserError
from nas.search_spaces.complexity_model import complexity
from nas.search_spaces.config import ArchConfig, parse_config
from nas.workers.contract import TrialSpec
from nas.workers.datasets import DatasetSplits, load_dataset
from nas.workers.engine import EpochRecord, Schedule, train
from nas.workers.latency import measure_latency


def fit_to_data(config: ArchConfig, data: DatasetSplits) -> ArchConfig:
    """The config with the dataset's number of classes and resolution (the head and input follow
    the data; everything else is the architecture as given)."""
    if (config.classes, config.resolution) != (data.num_classes, data.resolution):
        return config.with_input(resolution=data.resolution, classes=data.num_classes)
    return config


def deployment_latency(deployment: dict[str, Any]) -> dict[str, Any]:
    """The deployment latency of a spec's ``deployment`` (the network at the space's resolution and classes,
    on the plan's runtime): :func:`~nas.workers.deployment_latency.measure_deployed`'s record as a dict."""
    from nas.workers.contract import LatencyPlan
    from nas.workers.deployment_latency import measure_deployed

    plan = LatencyPlan.from_dict(deployment["plan"])
    config = parse_config(deployment["config"], source="deployed config")
    out = measure_deployed(config, runtime=plan.runtime, device=plan.device, threads=plan.threads,
                           batch_sizes=plan.batch_sizes, max_ms=plan.max_ms).to_dict()
    if plan.max_ms is not None:
        # The per-block table this node keeps for the runtime (each part timed once, ever): the driver
        # predicts later proposals' latency from the parts reported here and skips those far over budget.
        from nas.workers.datasets import cache_dir
        from nas.workers.latency_table import LatencyTable, parts

        table = LatencyTable.open(cache_dir() / "latency", plan.runtime, plan.device, plan.threads)
        table.fill(config)
        out["parts"] = {key: table.entries[key] for key, _ in parts(config)}
    return out


def _over_budget(latency: dict[str, Any], deployment: dict[str, Any]) -> str | None:
    """Why a measured latency is over the plan's budget (one line), or None when within it."""
    max_ms = deployment["plan"].get("max_ms")
    point = next(p for p in latency["points"] if p["batch_size"] == 1)
    if max_ms is None or point["median_ms"] <= max_ms:
        return None
    return (f"measured {point['median_ms']:.2f} ms at batch 1 (IQR ±{50 * point['spread']:.0f} %) on "
            f"{latency['runtime']}:{latency['device']}, over the latency budget {max_ms:g} ms; not trained")


def run_trial(spec: TrialSpec | dict[str, Any],
              on_epoch: Callable[[EpochRecord], bool | None] | None = None,
              started: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and measure one candidate; returns metrics, complexity, latency and the status.

    Latency (when asked for) is measured first, on the freshly built network: it does not depend
    on the weights, and a search that stops a candidate after one epoch still knows it. With a
    ``deployment`` in the spec it is the deployed network's (:func:`deployment_latency`), measured
    before the data is loaded; over the plan's budget, the trial ends there with status
    ``over_latency`` and the measurement, untrained. Without one it is the trained network's, in
    PyTorch eager on the training device (:func:`~nas.workers.latency.measure_latency`).
    ``on_epoch`` is the engine's per-epoch callback (a search reports each epoch through it;
    whatever it raises that is not ``StopTraining`` propagates, so Ray Tune can end the trial).
    ``started``, when given, is filled in before the first epoch with what is known by then
    (``latency``, ``complexity`` at the training resolution, ``device``, ``dataset``), so per-epoch
    reports can carry it.
    """
    try:
        if isinstance(spec, dict):
            spec = TrialSpec(**spec)
        config = parse_config(spec.config, source="trial config")
        schedule = Schedule.from_dict(spec.schedule)
    except (TypeError, UserError) as exc:  # unknown keys or wrongly typed values in the spec
        return {"status": "error", "reason": f"trial spec: {exc}", "worker_pid": os.getpid()}
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = spec.device or ("cuda" if torch.cuda.is_available() else "cpu")
    deployed = None
    if spec.latency and spec.deployment:
        # The network as deployed, before anything else (no data needed): over the budget, it is not trained.
        try:
            deployed = deployment_latency(spec.deployment)
        except UserError as exc:
            return {"status": "error", "reason": f"latency: {exc}", "worker_pid": os.getpid()}
        over = _over_budget(deployed, spec.deployment)
        if over is not None:
            return {"status": "over_latency", "reason": over, "latency": deployed, "worker_pid": os.getpid()}
    try:
        # The validation split is the same for every trial (split seed 0), whatever the schedule's
        # seed: trials trained with different seeds are ranked on the same images.
        # Only the images the trial uses are made (the first of each split, as ``take`` would keep).
        data = load_dataset(spec.dataset, resolution=config.resolution, seed=0,
                            train_limit=spec.train_limit or None, val_limit=spec.val_limit or None)
        config = fit_to_data(config, data)
        latency = deployed if deployed is not None else (
            measure_latency(config, device=device).to_dict() if spec.latency else None)
        if started is not None:
            started.update(latency=latency, complexity=complexity(config).to_dict(), device=device,
                           dataset=data.name)
        result = train(config, data, schedule, device=device, on_epoch=on_epoch, keep_model=False,
                       save_path=spec.weights_path, time_limit_s=spec.time_limit_s)
    except UserError as exc:
        return {"status": "error", "reason": str(exc), "worker_pid": os.getpid()}
    out = result.to_dict()
    out.update(arch_hash=config.arch_hash(), complexity=complexity(config).to_dict(), worker_pid=os.getpid(),
               dataset=data.name, val_images=int(data.val_y.shape[0]))
    if latency is not None:
        out["latency"] = latency
    if spec.weights_path and result.status in ("ok", "stopped"):
        out["weights_path"] = spec.weights_path
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # hand the device memory back: a worker trains many candidates in turn
    return out
