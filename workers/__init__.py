"""How one candidate is trained and measured: datasets, the training engine, latency.

This part imports torch, torchvision, numpy and ``nas.search_spaces``, and Ray only in
``tune_trainable`` (the function a Ray Tune trial runs); it never touches study storage -- it
returns JSON-serialisable results to whoever drives it.
"""

from nas.workers.datasets import DATASET_NAMES, SHAPES_CLASSES, DatasetSplits, cache_dir, load_dataset
from nas.workers.engine import EpochRecord, Schedule, StopTraining, TrainResult, evaluate, save_weights, train
from nas.workers.latency import LatencyPoint, LatencyResult, measure_latency
from nas.workers.trial import TrialSpec, run_trial

__all__ = [
    "DATASET_NAMES",
    "SHAPES_CLASSES",
    "DatasetSplits",
    "EpochRecord",
    "LatencyPoint",
    "LatencyResult",
    "Schedule",
    "StopTraining",
    "TrainResult",
    "TrialSpec",
    "cache_dir",
    "evaluate",
    "load_dataset",
    "measure_latency",
    "run_trial",
    "save_weights",
    "train",
]
