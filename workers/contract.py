"""The trial contract between the search driver and the workers: what a Ray Tune trial is given and
what it reports, as typed records with their one serialisation each.

* :class:`Schedule`: how a candidate is trained (optimiser, learning-rate schedule, seed), with the
  checks that make a bad one a one-line error; a study records it as a dict.
* :class:`TrialSpec`: one candidate to train (config, dataset, schedule, limits), JSON-ready.
* :class:`TrialRequest`: what the driver puts in a Tune trial's config (``config["nas"]``): the
  spec, the study's trial number, the objectives known before training, where to hand weights.
* :class:`EpochReport`: one ``tune.report`` after an epoch that is not the last.
* :class:`FinalReport`: the last ``tune.report`` of a trial: the last epoch's metrics and everything
  the worker measured, with ``final=True`` and the status.

Ray Tune wants flat dicts of metrics, so each report is sent with ``to_result()`` and read back with
``from_result()``; a key added here reaches both sides, and a key missing on either side is a
``TypeError`` in the tests, not a silently dropped value. Nothing here imports torch or Ray: the
driver imports this module without the training stack.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from nas.common.errors import UserError

#: Per-epoch metric keys (an engine ``EpochRecord``, with ``val_acc`` reported as ``accuracy``).
EPOCH_KEYS = ("epoch", "accuracy", "val_loss", "train_loss", "train_acc", "seconds", "eval_seconds",
              "images_per_s", "lr")
#: The keys of a learning-curve point kept in the study.
CURVE_KEYS = ("epoch", "accuracy", "val_loss", "train_loss", "train_acc", "seconds")


@dataclass
class Schedule:
    """How one candidate is trained. SGD with Nesterov momentum, linear warm-up then cosine decay
    to zero, both updated every step. ``lr`` is the peak learning rate for ``batch_size`` as given
    (no implicit scaling). Weight decay skips norm weights and biases (1-d parameters) unless
    ``decay_norm_and_bias``: the usual choice for ResNets and what the reference loop does too.
    """

    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = False
    label_smoothing: float = 0.0
    warmup_epochs: float = 1.0
    seed: int = 0
    augment: bool = True  # random crop with padding + horizontal flip
    crop_padding: int = 4
    eval_batch_size: int = 1024
    eval_every: int = 1  # evaluate every N epochs (the last epoch is always evaluated)
    nan_check_every: int = 50  # steps between non-finite loss checks (each costs one host sync)
    amp: bool = True  # bf16 autocast (CUDA only)
    channels_last: bool = True  # allowed: always on CUDA, on a CPU where it pays (_cpu_channels_last)

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.epochs, int) and self.epochs >= 1, "epochs must be an integer >= 1"),
            (isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size must be an integer >= 1"),
            (self.lr > 0 and math.isfinite(self.lr), "lr must be a positive number"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.warmup_epochs >= 0, "warmup_epochs must be >= 0"),
            (self.crop_padding >= 0, "crop_padding must be >= 0"),
            (self.eval_batch_size >= 1, "eval_batch_size must be >= 1"),
            (self.eval_every >= 1, "eval_every must be >= 1"),
            (self.nan_check_every >= 1, "nan_check_every must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UserError(f"schedule: {msg}")
        if self.nesterov and self.momentum == 0:
            raise UserError("schedule: nesterov needs momentum > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        """Build from plain data; an unknown key is a user mistake, not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"schedule: unknown key(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
        return cls(**dict(data))


#: The runtimes a deployment latency is measured on (``--latency-runtime NAME[:DEVICE]``).
LATENCY_RUNTIMES = {
    "torch": "PyTorch eager",
    "torch-compile": "PyTorch compiled (torch.compile, inductor, static shapes)",
    "onnxruntime": "ONNX Runtime on the graph 'nas export --onnx' writes (CPU or CUDA execution provider)",
}
LATENCY_DEVICES = ("cpu", "cuda")
#: Units ``--max-latency`` reads, in milliseconds.
_MS_UNITS = {"ms": 1.0, "s": 1e3, "us": 1e-3, "µs": 1e-3}


def parse_runtime(text: str, default_device: str) -> tuple[str, str]:
    """``onnxruntime``, ``torch-compile:cpu``... -> (runtime, device); the device defaults to where
    candidates train. An unknown name or device is a one-line error."""
    name, _, device = text.strip().lower().partition(":")
    if name not in LATENCY_RUNTIMES:
        raise UserError(f"unknown latency runtime {text!r}; choose from {', '.join(LATENCY_RUNTIMES)} "
                        f"(optionally :cpu or :cuda, e.g. onnxruntime:cpu)")
    device = device or default_device
    if device not in LATENCY_DEVICES:
        raise UserError(f"latency runtime {text!r}: unknown device {device!r}; use :cpu or :cuda")
    return name, device


def parse_latency_ms(text: str) -> float:
    """``8ms``, ``8``, ``0.5s``, ``800us`` -> milliseconds (a bare number is ms); must be positive."""
    raw = str(text).strip().lower().replace(" ", "")
    for unit in sorted(_MS_UNITS, key=len, reverse=True):
        if raw.endswith(unit):
            number, scale = raw[: -len(unit)], _MS_UNITS[unit]
            break
    else:
        number, scale = raw, 1.0
    try:
        value = float(number) * scale
    except ValueError:
        raise UserError(f"--max-latency: cannot read {text!r}; give a time such as 8ms, 0.5s or 800us") from None
    if not (value > 0 and math.isfinite(value)):
        raise UserError(f"--max-latency must be a positive time, got {text!r}")
    return value


@dataclass(frozen=True)
class LatencyPlan:
    """How a search measures deployment latency: the runtime and device, intra-op threads, the batch
    sizes (batch 1 first, then a throughput batch) and the budget (ms at batch 1, or None). A study
    records it (``StudySettings.latency``), so a resumed search measures the same way."""

    runtime: str
    device: str
    threads: int
    batch_sizes: tuple[int, ...] = (1, 8)
    max_ms: float | None = None

    @property
    def label(self) -> str:
        return f"{self.runtime}:{self.device}"

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "device": self.device, "threads": self.threads,
                "batch_sizes": list(self.batch_sizes), "max_ms": self.max_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyPlan:
        return cls(runtime=data["runtime"], device=data["device"], threads=int(data["threads"]),
                   batch_sizes=tuple(int(b) for b in data["batch_sizes"]),
                   max_ms=None if data.get("max_ms") is None else float(data["max_ms"]))


@dataclass
class TrialSpec:
    """One candidate to train: the config as a dict, the dataset spec, the schedule."""

    config: dict[str, Any]
    dataset: str = "shapes"
    schedule: dict[str, Any] = field(default_factory=dict)
    device: str | None = None  # None: cuda when the worker sees a GPU, else cpu
    train_limit: int | None = None  # train on the first N images only (smoke runs)
    val_limit: int | None = None  # validate on the first N images only (smoke runs)
    latency: bool = True
    threads: int | None = None  # intra-op CPU threads; Ray workers should match their CPU share
    weights_path: str | None = None  # write the trained weights here (a path on the worker's machine)
    time_limit_s: float | None = None  # stop training after this long: status "timeout"
    #: deployment latency: {"plan": LatencyPlan.to_dict(), "config": the network as deployed (the space's
    #: resolution and classes)}; measured before training, and over plan's max_ms the trial is not trained
    deployment: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrialRequest:
    """A Tune trial's ``config["nas"]``: everything the worker needs for one study trial."""

    trial_number: int
    spec: dict[str, Any]  # a TrialSpec as a dict (Tune deep-copies configs: plain data travels best)
    constants: dict[str, float]  # objectives known before training: flops, params at the space's resolution
    key: str  # driver id and trial number: names this trial in fault injection and logs
    weights_box: str | None = None  # the driver's Ray actor that takes the trained weights of front trials
    fault: dict[str, Any] | None = None  # a planned fault (the fault-injection tests only)

    def to_config(self) -> dict[str, Any]:
        return {"nas": asdict(self)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TrialRequest:
        return cls(**config["nas"])


def _of(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: data.get(k) for k in names if k in data}


@dataclass(frozen=True)
class Where:
    """Where a report was made."""

    host: str | None = None
    node: str | None = None
    worker_pid: int | None = None


@dataclass(frozen=True)
class EpochReport:
    """The report after an epoch that is not the last (``final`` False)."""

    trial_number: int | None
    epoch: int
    accuracy: float | None
    flops: float | None = None
    params: float | None = None
    latency: float | None = None  # ms at batch 1, when measured
    #: the deployment latency measurement as JSON text (Tune flattens nested dicts in results):
    #: ``workers/deployment_latency.py::DeployedLatency.to_dict``
    latency_detail: str | None = None
    val_loss: float | None = None
    train_loss: float | None = None
    train_acc: float | None = None
    seconds: float | None = None
    eval_seconds: float | None = None
    images_per_s: float | None = None
    lr: float | None = None
    host: str | None = None
    node: str | None = None
    worker_pid: int | None = None
    final: bool = False
    status: str = "running"

    def to_result(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> Any:
        """The report (of this class: a :class:`FinalReport` reads its own fields too) from a Tune result."""
        data = _of(cls, result)
        data.setdefault("trial_number", None)
        data["epoch"] = int(data.get("epoch") or 0)
        data.setdefault("accuracy", None)
        if "curve" in {f.name for f in fields(cls)}:
            data["curve"] = list(data.get("curve") or [])
        return cls(**data)

    def curve_point(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in CURVE_KEYS}

    def latency_attrs(self) -> dict[str, Any]:
        """The trial attributes of the latency: ``latency_ms`` (batch 1) and ``latency`` (the whole
        deployment measurement: runtime, version, device, threads, dtype, resolution, every batch's
        median and spread, the reference's median), each when measured."""
        attrs: dict[str, Any] = {}
        if self.latency is not None:
            attrs["latency_ms"] = self.latency
        if self.latency_detail:
            import json

            attrs["latency"] = json.loads(self.latency_detail)
        return attrs

    def where(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("host", "node", "worker_pid") if getattr(self, k) is not None}


@dataclass(frozen=True)
class FinalReport(EpochReport):
    """The last report of a trial (``final`` True): the last epoch's metrics plus the whole run."""

    final: bool = True
    status: str = "error"  # ok, diverged, oom, timeout, error, over_latency (not trained)
    reason: str | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)
    best_accuracy: float | None = None
    epochs_completed: int | None = None
    wall_time_s: float | None = None
    device: str | None = None
    peak_memory_mb: float | None = None
    train_flops: float | None = None
    train_n_params: float | None = None
    train_activations: float | None = None
    arch_hash: str | None = None
    val_images: int | None = None

    #: What the study keeps of a final report as trial attributes (besides curve, accuracy, epochs).
    KEPT = ("best_accuracy", "wall_time_s", "images_per_s", "device", "peak_memory_mb", "train_flops",
            "train_n_params", "train_activations", "host", "node", "worker_pid", "val_images")

    def study_attrs(self) -> dict[str, Any]:
        """The trial attributes a final report becomes in the study."""
        attrs = {k: getattr(self, k) for k in self.KEPT if getattr(self, k) is not None}
        attrs.update(curve=[{k: c.get(k) for k in CURVE_KEYS} for c in self.curve], accuracy=self.accuracy,
                     epochs=self.epochs_completed)
        attrs.update(self.latency_attrs())
        return attrs


def is_final(result: Mapping[str, Any]) -> bool:
    return bool(result.get("final"))
