"""How one candidate is trained and measured: datasets, the training engine, latency, and the trial
contract with the search driver (:mod:`nas.workers.contract`).

This part imports torch, torchvision, numpy and ``nas.search_spaces``, and Ray only in
``tune_trainable`` (the function a Ray Tune trial runs); it never touches study storage -- it
returns JSON-serialisable results to whoever drives it. Names are imported on first use, so the
driver can import the contract (which needs none of them) without PyTorch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: public name -> the submodule that defines it
_PUBLIC = {
    "DATASET_NAMES": "datasets", "SHAPES_CLASSES": "datasets", "DatasetSplits": "datasets", "cache_dir": "datasets",
    "load_dataset": "datasets", "EpochRecord": "engine", "Schedule": "engine", "StopTraining": "engine",
    "TrainResult": "engine", "evaluate": "engine", "save_weights": "engine", "train": "engine",
    "LatencyPoint": "latency", "LatencyResult": "latency", "measure_latency": "latency", "TrialSpec": "contract",
    "run_trial": "trial",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'nas.workers' has no attribute {name!r}")
    value = getattr(import_module(f"nas.workers.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
