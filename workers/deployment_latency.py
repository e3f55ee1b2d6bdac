"""Deployment latency: the network as it will be deployed, timed on a named runtime.

What a search ranks and budgets by (``--objectives ...,latency``, ``--max-latency``) is the latency of
the *deployed* network: the space's resolution and classes (the config ``nas export`` writes), not
the proxy a candidate trains as. It is measured:

* on a named runtime (:data:`~nas.workers.contract.LATENCY_RUNTIMES`): PyTorch eager, PyTorch compiled
  (``torch.compile``, static shapes), or ONNX Runtime on the graph ``nas export --onnx`` writes
  (:func:`nas.search_spaces.onnx_export.export_onnx`, one code path), with the CPU execution
  provider, or CUDA's on a GPU;
* with the intra-op threads fixed (``threads``; ONNX Runtime with one inter-op thread), at batch 1 and
  a throughput batch, ``float32`` (PyTorch on CUDA: bf16 autocast and ``channels_last``, as it trains);
* after a warm-up (at least two calls and ``warmup_s``: the allocator, cuDNN's autotuning, compilation),
  then timed repeats until at least ``min_repeats`` and ``budget_s`` are spent (at most ``max_repeats``);
* **interleaved with a reference network** (:data:`REFERENCE`, the same for every candidate, at the same
  input size, on the same runtime): candidate and reference calls alternate, so a machine that slows
  down mid-run slows both, and the report gives both medians. The spread is the interquartile range
  relative to the median.

A figure is a median with its spread and the reference's median beside it: on a shared machine, compare
``median_ms / reference_ms`` across runs rather than absolute times.
"""

from __future__ import annotations

import gc
import importlib.util
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nas.common.errors import UserError
from nas.workers.contract import LATENCY_RUNTIMES

__all__ = ["REFERENCE", "DeployedLatency", "DeployedPoint", "check_runtime", "device_name", "measure_deployed",
           "runtime_version"]

#: The reference network timed beside every candidate (its stem, stages and head at the candidate's
#: input size and classes): small, so it adds little to a measurement, and fixed, so its median tracks
#: the machine's state from run to run.
REFERENCE: dict[str, Any] = {
    "name": "reference",
    "stem": {"type": "basic", "width": 16},
    "stages": [{"depth": 1, "width": 64, "group_width": 16, "stride": 1},
               {"depth": 1, "width": 128, "group_width": 32, "stride": 2}],
}


@dataclass
class DeployedPoint:
    batch_size: int
    median_ms: float  # per batch
    p25_ms: float
    p75_ms: float
    min_ms: float
    spread: float  # (p75 - p25) / median
    repeats: int
    images_per_s: float
    reference_ms: float | None  # the reference network's median, timed interleaved with this point


@dataclass
class DeployedLatency:
    runtime: str  # torch, torch-compile, onnxruntime
    runtime_version: str
    device: str  # cpu or cuda
    device_name: str  # the CPU model or the GPU's name
    threads: int
    dtype: str
    resolution: int
    classes: int | None
    points: list[DeployedPoint] = field(default_factory=list)
    reference: str = "reference"

    def at(self, batch_size: int) -> DeployedPoint:
        for p in self.points:
            if p.batch_size == batch_size:
                return p
        raise KeyError(f"no latency measured at batch size {batch_size}")

    @property
    def batch1_ms(self) -> float:
        return self.at(1).median_ms

    def describe(self, batch_size: int = 1) -> str:
        """``3.21 ms (IQR ±4 %, reference 0.80 ms) on onnxruntime 1.32.0, cpu (Intel Xeon), 1 thread, 224 px``."""
        p = self.at(batch_size)
        ref = f", reference {p.reference_ms:.2f} ms" if p.reference_ms is not None else ""
        return (f"{p.median_ms:.2f} ms at batch {batch_size} (IQR ±{50 * p.spread:.0f} %{ref}) on {self.runtime} "
                f"{self.runtime_version}, {self.device} ({self.device_name}), {self.threads} thread"
                f"{'s' if self.threads != 1 else ''}, {self.resolution}x{self.resolution}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeployedLatency:
        return cls(**{**data, "points": [DeployedPoint(**p) for p in data.get("points", [])]})


# ---- runtimes: installed, versions, devices --------------------------------------------------------


def check_runtime(runtime: str, device: str) -> str:
    """The runtime's version, or a one-line error saying how to install it (or why it cannot run on
    ``device`` here)."""
    if runtime not in LATENCY_RUNTIMES:
        raise UserError(f"unknown latency runtime {runtime!r}; choose from {', '.join(LATENCY_RUNTIMES)}")
    if runtime == "onnxruntime":
        if importlib.util.find_spec("onnxruntime") is None:
            package = "onnxruntime-gpu" if device == "cuda" else "onnxruntime"
            raise UserError(f"latency runtime onnxruntime is not installed; install it with: pip install {package} "
                            f"(or pip install 'nas[onnxruntime]')")
        import onnxruntime as ort

        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UserError("latency runtime onnxruntime:cuda: this onnxruntime has no CUDA execution provider; "
                            "install it with: pip install onnxruntime-gpu")
        return ort.__version__
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"latency runtime {runtime}:cuda but this machine has no CUDA device; use :cpu")
    return torch.__version__


def runtime_version(runtime: str) -> str:
    if runtime == "onnxruntime":
        import onnxruntime as ort

        return ort.__version__
    import torch

    return torch.__version__


def device_name(device: str) -> str:
    """The GPU's name, or the CPU model (``/proc/cpuinfo``'s model name where there is one)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


# ---- what is timed ------------------------------------------------------------------------------------


class _Runner:
    """One network on one runtime: ``call(batch)`` returns a zero-argument function that runs one
    synchronised forward pass at that batch size."""

    dtype = "float32"

    def call(self, batch: int) -> Callable[[], None]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _TorchRunner(_Runner):
    def __init__(self, model: Any, device: str, resolution: int, in_channels: int, compiled: bool) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.model = model.eval().to(self.device)
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.dtype = "bfloat16"
        if compiled:
            # Static shapes: each batch size gets its own graph, as a deployment compiled for it would.
            self.model = torch.compile(self.model, dynamic=False)
        self.resolution, self.in_channels = resolution, in_channels

    def call(self, batch: int) -> Callable[[], None]:
        torch = self.torch
        x = torch.randn(batch, self.in_channels, self.resolution, self.resolution, device=self.device)
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        model, device, cuda = self.model, self.device, self.cuda

        def run() -> None:
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                model(x)
            if cuda:
                torch.cuda.synchronize(device)

        return run


class _OrtRunner(_Runner):
    def __init__(self, path: Path, device: str, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # not an ONNX file, or one this runtime cannot run
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{path}: ONNX Runtime cannot load it ({first})") from None
        self.ort, self.device = ort, device
        inp = self.session.get_inputs()[0]
        self.input_name, self.shape = inp.name, inp.shape
        self.output_name = self.session.get_outputs()[0].name

    @property
    def resolution(self) -> int:
        side = self.shape[-1]
        return side if isinstance(side, int) else 0

    @property
    def in_channels(self) -> int:
        c = self.shape[1]
        return c if isinstance(c, int) else 3

    def call(self, batch: int) -> Callable[[], None]:
        import numpy as np

        fixed = self.shape[0]
        if isinstance(fixed, int) and fixed != batch:
            raise UserError(f"the ONNX graph takes batch {fixed} only, not {batch}")
        x = np.random.default_rng(0).standard_normal(
            (batch, self.in_channels, self.resolution, self.resolution)).astype(np.float32)
        session = self.session
        if self.device != "cuda":
            feed = {self.input_name: x}
            return lambda: session.run(None, feed) and None
        # On a GPU the input lives on the device (as a deployment's would), bound once; the run returns
        # when the outputs are ready.
        value = self.ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
        binding = session.io_binding()
        binding.bind_ortvalue_input(self.input_name, value)
        binding.bind_output(self.output_name, "cuda")
        return lambda: session.run_with_iobinding(binding)


def _build(target: Any, resolution: int | None, classes: int | None) -> tuple[Any, Any]:
    """(model, config or None) for a config, a config dict or file, or a module."""
    import torch.nn as nn

    from nas.search_spaces.builder import build_model
    from nas.search_spaces.registry import resolve_config

    if isinstance(target, nn.Module):
        return target, getattr(target, "config", None)
    config = resolve_config(target)
    if resolution is not None or classes is not None:
        config = config.with_input(resolution=resolution, classes=classes)
    return build_model(config), config


def _runner(model: Any, runtime: str, device: str, threads: int, resolution: int, in_channels: int,
            folder: Path) -> _Runner:
    if runtime == "onnxruntime":
        from nas.search_spaces.onnx_export import export_onnx

        path = folder / f"net-{len(list(folder.iterdir()))}.onnx"
        export_onnx(model, path, resolution, in_channels)
        return _OrtRunner(path, device, threads)
    return _TorchRunner(model, device, resolution, in_channels, compiled=runtime == "torch-compile")


#: Reference runners kept per process (a worker measures many candidates): exported or compiled once.
_REFERENCES: dict[tuple[Any, ...], _Runner] = {}
_REFERENCE_DIR: tempfile.TemporaryDirectory[str] | None = None


def _reference(runtime: str, device: str, threads: int, resolution: int, in_channels: int,
               classes: int | None) -> _Runner:
    global _REFERENCE_DIR
    key = (runtime, device, threads, resolution, in_channels, classes)
    if key not in _REFERENCES:
        from nas.search_spaces.builder import build_model
        from nas.search_spaces.config import parse_config

        cfg = parse_config({**REFERENCE, "resolution": resolution, "in_channels": in_channels,
                            "classes": classes or 10}, source="reference network")
        if _REFERENCE_DIR is None:
            _REFERENCE_DIR = tempfile.TemporaryDirectory(prefix="nas-latency-reference-")
        _REFERENCES[key] = _runner(build_model(cfg), runtime, device, threads, resolution, in_channels,
                                   Path(_REFERENCE_DIR.name))
    return _REFERENCES[key]


# ---- timing -----------------------------------------------------------------------------------------


def _quartiles(times: list[float]) -> tuple[float, float, float]:
    if len(times) < 2:
        return times[0], times[0], times[0]
    q1, q2, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return q1, q2, q3


def _time_interleaved(run: Callable[[], None], ref: Callable[[], None] | None, warmup_s: float, min_repeats: int,
                      max_repeats: int, budget_s: float) -> tuple[list[float], list[float]]:
    calls = [run] + ([ref] if ref is not None else [])
    start = time.perf_counter()
    done = 0
    while done < 2 or time.perf_counter() - start < warmup_s:
        for f in calls:
            f()
        done += 1
    mine: list[float] = []
    theirs: list[float] = []
    start = time.perf_counter()
    i = 0
    while len(mine) < max_repeats and (len(mine) < min_repeats or time.perf_counter() - start < budget_s):
        # Alternate the order too: neither network always runs right after the other.
        for f in (calls if i % 2 == 0 else calls[::-1]):
            t0 = time.perf_counter()
            f()
            (mine if f is run else theirs).append((time.perf_counter() - t0) * 1e3)
        i += 1
    return mine, theirs


def measure_deployed(target: Any, runtime: str = "torch", device: str = "cpu", threads: int = 1,
                     batch_sizes: Sequence[int] = (1, 8), *, resolution: int | None = None,
                     classes: int | None = None, in_channels: int | None = None, reference: bool = True,
                     warmup_s: float = 0.2, min_repeats: int = 5, max_repeats: int = 50,
                     budget_s: float = 1.0, max_ms: float | None = None) -> DeployedLatency:
    """Time ``target`` as deployed on ``runtime`` (see the module's doc): median, quartiles, minimum and
    repeats per batch size, each with the reference network's median measured interleaved.

    ``target``: an architecture config (an ``ArchConfig``, a dict, a preset name or a config file, at its
    own resolution and classes unless ``resolution``/``classes`` say otherwise), a built ``nn.Module``
    (its ``config`` gives the input size, else ``resolution``), or, for ``onnxruntime``, the path of an
    ``.onnx`` file (``nas export --onnx``'s). ``threads`` is fixed for the measurement (PyTorch's
    intra-op threads are restored afterwards). With ``max_ms`` (a budget at batch 1), a network whose
    first batch size's median is over it is not timed at the other batch sizes: it will not be deployed."""
    check_runtime(runtime, device)
    if device == "cuda":
        from nas.workers.engine import _resolve_device

        device = str(_resolve_device(device))
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise UserError(f"latency batch sizes must be positive integers, got {list(batch_sizes)}")
    if threads < 1 or min_repeats < 1 or max_repeats < min_repeats:
        raise UserError("latency needs threads >= 1 and 1 <= min_repeats <= max_repeats")
    import torch

    before_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    was_gc = gc.isenabled()
    model = None
    with tempfile.TemporaryDirectory(prefix="nas-latency-") as tmp:
        try:
            if isinstance(target, (str, Path)) and str(target).endswith(".onnx"):
                if runtime != "onnxruntime":
                    raise UserError(f"{target}: an ONNX file is timed on the onnxruntime runtime, not {runtime}")
                if not Path(target).exists():
                    raise UserError(f"{target}: no such file")
                runner: _Runner = _OrtRunner(Path(target), device, threads)
                res, chans, cls = runner.resolution, runner.in_channels, None  # type: ignore[attr-defined]
                out_shape = runner.session.get_outputs()[0].shape  # type: ignore[attr-defined]
                cls = out_shape[-1] if isinstance(out_shape[-1], int) else None
            else:
                model, cfg = _build(target, resolution, classes)
                res = int(resolution or getattr(cfg, "resolution", None) or 32)
                chans = int(in_channels or getattr(cfg, "in_channels", None) or 3)
                cls = getattr(cfg, "classes", None) if classes is None else classes
                was_training = model.training
                runner = _runner(model, runtime, device, threads, res, chans, Path(tmp))
            ref = _reference(runtime, device, threads, res, chans, cls) if reference else None
            result = DeployedLatency(runtime=runtime, runtime_version=runtime_version(runtime),
                                     device=device.split(":")[0], device_name=device_name(device), threads=threads,
                                     dtype=runner.dtype, resolution=res, classes=cls,
                                     reference=f"{REFERENCE['name']} ({_reference_text()})")
            gc.collect()
            gc.disable()
            for bs in batch_sizes:
                bs = int(bs)
                mine, theirs = _time_interleaved(runner.call(bs), ref.call(bs) if ref is not None else None,
                                                 warmup_s, min_repeats, max_repeats, budget_s)
                q1, med, q3 = _quartiles(mine)
                result.points.append(DeployedPoint(
                    batch_size=bs, median_ms=med, p25_ms=q1, p75_ms=q3, min_ms=min(mine),
                    spread=(q3 - q1) / med if med > 0 else 0.0, repeats=len(mine), images_per_s=bs / (med / 1e3),
                    reference_ms=statistics.median(theirs) if theirs else None))
                if max_ms is not None and med > max_ms:
                    break
        except UserError:
            raise
        except Exception as exc:  # the runtime cannot run this network: one line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise UserError(f"latency on {runtime}:{device.split(':')[0]} failed: {type(exc).__name__}: {first}") \
                from None
        finally:
            if was_gc:
                gc.enable()
            torch.set_num_threads(before_threads)
            if model is not None and isinstance(target, torch.nn.Module):
                model.train(was_training)
    return result


def _reference_text() -> str:
    st = REFERENCE["stages"]
    return (f"{REFERENCE['stem']['type']} stem {REFERENCE['stem']['width']}, "
            + ", ".join(f"{s['depth']}x w{s['width']} g{s['group_width']}/{s['stride']}" for s in st))
