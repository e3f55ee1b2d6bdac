"""Inference latency of a candidate at batch 1 and at a larger batch, on a given device.

Latency is a search objective next to FLOPs because FLOPs do not predict wall time across block
types (grouped convs, split attention and SE gating are memory-bound on GPUs). The measurement
is: model in eval mode, ``inference_mode``, warm-up calls (cudnn autotuning, allocator), then
the median of timed repeats, each bracketed by ``torch.cuda.synchronize`` on a GPU so the time
is the kernels' and not the launch queue's. On CUDA it uses the same bf16 autocast and
``channels_last`` layout as training, so the figure matches how the network would be deployed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn

from nas.common.errors import UserError
from nas.workers.engine import _resolve_device

__all__ = ["LatencyPoint", "LatencyResult", "measure_latency"]


@dataclass
class LatencyPoint:
    batch_size: int
    median_ms: float  # per batch
    min_ms: float
    images_per_s: float  # batch_size / median time
    repeats: int


@dataclass
class LatencyResult:
    device: str
    resolution: int
    dtype: str  # "bfloat16" (autocast) or "float32"
    channels_last: bool
    points: list[LatencyPoint] = field(default_factory=list)

    def at(self, batch_size: int) -> LatencyPoint:
        """The measurement for ``batch_size``."""
        for p in self.points:
            if p.batch_size == batch_size:
                return p
        raise KeyError(f"no latency measured at batch size {batch_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    model_or_config: Any,
    device: str | torch.device = "cpu",
    batch_sizes: Sequence[int] = (1, 64),
    resolution: int | None = None,
    in_channels: int | None = None,
    warmup: int | None = None,
    repeats: int | None = None,
    amp: bool = True,
    channels_last: bool = True,
) -> LatencyResult:
    """Median forward time per batch for each of ``batch_sizes`` (ms) and the matching images/s.

    ``model_or_config`` is an ``nn.Module`` or an architecture config (built with ``build_model``).
    The input size defaults to the config's ``resolution``/``in_channels`` -- also for a module
    with a ``config`` attribute, as ``build_model``'s networks have -- else 32 x 32 x 3. ``warmup``/``repeats``
    default to 10/30 on CUDA and 2/5 on a CPU, where a run must stay cheap. bf16 autocast and
    ``channels_last`` apply on CUDA only. The model is put in eval mode and left on ``device``
    in its original train/eval state for a module passed in.
    """
    device = _resolve_device(device)
    if isinstance(model_or_config, nn.Module):
        model = model_or_config
        cfg = getattr(model, "config", None)  # networks from build_model carry their config
    else:
        from nas.search_spaces.builder import build_model

        model = build_model(model_or_config)
        cfg = model_or_config
    resolution = resolution or getattr(cfg, "resolution", None)
    in_channels = in_channels or getattr(cfg, "in_channels", None)
    resolution = int(resolution or 32)
    in_channels = int(in_channels or 3)
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise UserError(f"latency batch sizes must be positive integers, got {list(batch_sizes)}")
    is_cuda = device.type == "cuda"
    warmup = (10 if is_cuda else 2) if warmup is None else warmup
    repeats = (30 if is_cuda else 5) if repeats is None else repeats
    if repeats < 1 or warmup < 0:
        raise UserError("latency needs repeats >= 1 and warmup >= 0")
    use_cl = channels_last and is_cuda
    use_amp = amp and is_cuda
    fmt = torch.channels_last if use_cl else torch.contiguous_format

    was_training = model.training
    model.eval().to(device)
    if use_cl:
        model.to(memory_format=torch.channels_last)
    prev_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = is_cuda or prev_benchmark
    result = LatencyResult(device=str(device), resolution=resolution,
                           dtype="bfloat16" if use_amp else "float32", channels_last=use_cl)
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            for bs in batch_sizes:
                x = torch.randn(int(bs), in_channels, resolution, resolution, device=device)
                x = x.contiguous(memory_format=fmt)
                for _ in range(warmup):
                    model(x)
                times = []
                for _ in range(repeats):
                    _sync(device)
                    t0 = time.perf_counter()
                    model(x)
                    _sync(device)
                    times.append((time.perf_counter() - t0) * 1e3)
                med = statistics.median(times)
                result.points.append(LatencyPoint(batch_size=int(bs), median_ms=med, min_ms=min(times),
                                                  images_per_s=int(bs) / (med / 1e3), repeats=repeats))
                del x
    finally:
        model.train(was_training)
        torch.backends.cudnn.benchmark = prev_benchmark
        if is_cuda:
            torch.cuda.empty_cache()
    return result
