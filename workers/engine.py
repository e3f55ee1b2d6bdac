"""The training engine: train one candidate on a :class:`DatasetSplits` and measure it.

Design choices, and why:

- The dataset stays uint8 and, on a GPU, lives on the device (when it fits). Cropping with
  padding and flipping are one vectorised ``gather`` per batch on the device, normalisation is
  one fused op: no DataLoader, no host-side per-sample work, no host->device copy per step.
- bf16 autocast, ``channels_last`` and ``cudnn.benchmark`` on CUDA; optional ``torch.compile``
  of the training forward (evaluation runs eagerly, so varying eval batch shapes do not
  recompile). On a CPU the same code runs in fp32, so CI exercises the real path, and in
  ``channels_last`` where the network does most of its convolution work on large maps (see
  :func:`_cpu_channels_last`: measured 1.3-1.8x faster there, no reliable gain elsewhere).
- No host synchronisation per step: loss and accuracy accumulate on the device; the loss is
  checked for NaN/inf every ``Schedule.nan_check_every`` steps and at the end of every epoch,
  so divergence is detected within a bounded number of steps without stalling the pipeline.
- Failures are results, not crashes: ``diverged`` (non-finite loss) and ``oom`` (CUDA out of
  memory, including one raised inside ``torch.compile``) return a :class:`TrainResult` after
  freeing device memory; any other exception (a broken model, a bad callback) propagates.
- Per-epoch callback: ``on_epoch(record)`` returns ``True`` (or raises :class:`StopTraining`)
  to stop early; the result's status is then ``stopped``. This is how the search prunes.

Nothing here touches study storage: :func:`train` returns a JSON-serialisable result.
"""

from __future__ import annotations

import gc
import math
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas.common.errors import UserError
from nas.common.files import atomic_write
from nas.workers.contract import Schedule
from nas.workers.datasets import DatasetSplits

__all__ = [
    "EpochRecord",
    "Schedule",
    "StopTraining",
    "TrainResult",
    "augment_batch",
    "evaluate",
    "save_weights",
    "train",
]

Status = Literal["ok", "diverged", "oom", "stopped", "timeout"]
MemoryFormat = Literal["channels_last", "contiguous"]


class StopTraining(Exception):  # noqa: N818 -- a control-flow signal, not an error
    """Raise from an ``on_epoch`` callback to stop training; the message becomes the result's reason."""


@dataclass
class EpochRecord:
    """One epoch's metrics; the callback receives exactly what ends up in ``TrainResult.history``.

    Accuracies are top-1 fractions in [0, 1]; ``train_*`` are over the epoch's (augmented)
    batches; ``val_*`` are ``None`` on epochs skipped by ``eval_every``; ``seconds`` is the
    epoch's training time (evaluation excluded) and ``images_per_s`` its training throughput.
    """

    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    images_per_s: float
    seconds: float
    eval_seconds: float
    lr: float  # learning rate at the end of the epoch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """What one training run produced. ``to_dict()`` is JSON-serialisable (the model is not in it).

    - ``status``: ``ok`` | ``diverged`` (non-finite loss) | ``oom`` (CUDA out of memory) |
      ``stopped`` (the callback asked); ``reason`` says more for all but ``ok``.
    - ``val_acc``/``val_loss``: from the last evaluated epoch (``None`` if none was).
      ``best_val_acc``: the best over evaluated epochs.
    - ``images_per_s``: training images / training seconds over all epochs;
      ``images_per_s_steady`` excludes epoch 1 (cudnn autotuning, compilation) when there are more.
    - ``peak_memory_bytes``: on CUDA ``torch.cuda.max_memory_allocated`` during the run
      (``peak_memory_kind = "cuda_max_allocated"``); on CPU the process's peak resident set size
      (``"process_max_rss"``), which covers the whole process lifetime, not just this run.
    - ``memory_format``: the layout training and evaluation ran in, ``channels_last`` or
      ``contiguous`` (see ``Schedule.channels_last``).
    - ``model``: the trained module, moved back to the CPU in the default (contiguous) layout
      (``None`` when ``keep_model=False``).
    """

    status: Status
    reason: str | None
    val_acc: float | None
    val_loss: float | None
    best_val_acc: float | None
    train_loss: float | None
    train_acc: float | None
    epochs_completed: int
    epochs_planned: int
    steps: int
    wall_time_s: float
    train_time_s: float
    images_per_s: float | None
    images_per_s_steady: float | None
    peak_memory_bytes: int | None
    peak_memory_kind: str | None
    params: int
    device: str
    compiled: bool
    memory_format: MemoryFormat = "contiguous"
    history: list[EpochRecord] = field(default_factory=list)
    schedule: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: non-finite floats become ``None`` (JSON has no NaN)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "model":
                continue
            value = getattr(self, f.name)
            if f.name == "history":
                value = [{k: _finite_or_none(v) for k, v in r.to_dict().items()} for r in value]
            out[f.name] = _finite_or_none(value)
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the trained weights (see :func:`save_weights`)."""
        if self.model is None:
            raise ValueError("this result holds no model (keep_model=False)")
        return save_weights(self.model, path)


def _finite_or_none(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Save ``model``'s state_dict as plain CPU tensors, atomically (temp file + ``os.replace``).

    Loads back with ``torch.load(path, weights_only=True)``; a ``torch.compile`` wrapper is
    unwrapped so the keys match the plain model.
    """
    path = Path(path)
    model = getattr(model, "_orig_mod", model)
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda f: torch.save(state, f))


# --------------------------------------------------------------------------------------------
# device-side data handling
# --------------------------------------------------------------------------------------------


def augment_batch(x: torch.Tensor, padding: int, generator: torch.Generator | None) -> torch.Tensor:
    """Random crop (zero padding) + horizontal flip of a uint8 batch ``(B, C, H, W)``, on its device.

    One ``gather`` for the whole batch: pad once, then each output pixel reads the padded pixel at
    its sample's random offset, with the column index mirrored for the flipped samples. Matches
    torchvision's ``RandomCrop(size, padding, fill=0)`` + ``RandomHorizontalFlip()`` in distribution.
    """
    b, c, h, w = x.shape
    dev = x.device
    p = padding
    flip = torch.rand(b, device=dev, generator=generator) < 0.5
    if p > 0:
        xp = F.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (b,), device=dev, generator=generator)
        ox = torch.randint(0, 2 * p + 1, (b,), device=dev, generator=generator)
    else:
        xp = x
        oy = ox = torch.zeros(b, dtype=torch.long, device=dev)
    wp = w + 2 * p
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    cols = torch.where(flip[:, None], w - 1 - ar_w, ar_w) + ox[:, None]  # (B, W)
    rows = ar_h + oy[:, None]  # (B, H)
    idx = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(xp.reshape(b, c, -1), 2, idx).view(b, c, h, w)


class _Normalizer:
    """uint8 -> normalised float on the device in one fused multiply-add (``x * a + b``)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
                 channels_last: bool) -> None:
        m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * s)
        self.shift = -m / s
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.addcmul(self.shift, x.float(), self.scale)
        return x.contiguous(memory_format=self.memory_format)


def _resolve_device(device: str | torch.device) -> torch.device:
    """``cuda`` -> ``cuda:N`` (the current device): tensors report an index, and a bare ``cuda``
    device compares unequal to ``cuda:0``, which would send on-device data down the host path."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError("device 'cuda' requested but CUDA is not available; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def _place(x: torch.Tensor, device: torch.device, on_device: bool) -> torch.Tensor:
    if on_device:
        return x.to(device, non_blocking=True)
    x = x.cpu()
    return x.pin_memory() if device.type == "cuda" else x


def _fetch(store: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Index a batch out of the stored tensor and bring it to the device (no-op when already there)."""
    if store.device == device:
        return store.index_select(0, idx)
    batch = store.index_select(0, idx.cpu())
    if device.type == "cuda":
        batch = batch.pin_memory()
    return batch.to(device, non_blocking=True)


def _fits_on_device(data: DatasetSplits, device: torch.device) -> bool:
    """Keep the uint8 dataset on the GPU when it takes under a quarter of the free memory."""
    if device.type != "cuda":
        return True
    nbytes = sum(t.numel() * t.element_size() for t in (data.train_x, data.val_x, data.train_y, data.val_y))
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes < 0.25 * free


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up from base/warmup to base over ``warmup`` steps, then cosine to zero."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1.0 + math.cos(math.pi * min(1.0, t)))


def _param_groups(model: nn.Module, weight_decay: float, decay_all: bool) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if decay_all or p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _sgd(model: nn.Module, sch: Schedule, fused: bool) -> torch.optim.Optimizer:
    """SGD + Nesterov; the fused CUDA kernel when available (one launch for all parameters)."""
    kwargs: dict[str, Any] = dict(lr=sch.lr, momentum=sch.momentum, nesterov=sch.nesterov)
    if fused:
        try:
            groups = _param_groups(model, sch.weight_decay, sch.decay_norm_and_bias)
            return torch.optim.SGD(groups, fused=True, **kwargs)
        except (TypeError, RuntimeError, ValueError):
            pass  # older torch or unsupported parameter types: the default (foreach) path
    return torch.optim.SGD(_param_groups(model, sch.weight_decay, sch.decay_norm_and_bias), **kwargs)


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=amp and device.type == "cuda")


# channels_last on a CPU pays where most of the convolution work is on large maps. Measured with
# this engine (2 threads, batch 256, 32 x 32 input; BENCHMARKS.md): CIFAR-style networks, whose
# maps are 32, 16 and 8 px (58-85% of the multiply-adds on >= 16 x 16), train 1.3-1.8x faster;
# ImageNet-style ones run at 32 px, whose maps are 8 px down to 1 px after the stride-4 stem
# (5-37%), anywhere from 0.4x to 1.2x (resnest50d 0.86x). A static rule rather than timing a few
# steps of each layout per candidate: such a probe mis-ranked the layouts under a busy neighbour
# on these shared 2-core machines, and a layout that depends on load would make seeded runs differ.
_CL_LARGE_MAP = 16 * 16  # pixels
_CL_MIN_SHARE = 0.5  # of the convolution multiply-adds


def _cpu_channels_last(model: nn.Module, input_shape: tuple[int, ...]) -> bool:
    """Whether ``model`` (on the CPU) runs in ``channels_last`` on ``(C, H, W)`` inputs: at least
    half of its convolution multiply-adds produce maps of 16 x 16 pixels or more.

    One batch-1 forward of zeros in eval mode under ``inference_mode``, with hooks on the ``Conv2d``
    layers; parameters, batch-norm statistics, the train/eval mode and the CPU RNG are left as they were.
    """
    macs = [0, 0]  # all, on large maps

    def count(conv: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        n = out[0].numel() * (conv.in_channels // conv.groups) * math.prod(conv.kernel_size)
        macs[0] += n
        if out.shape[-2] * out.shape[-1] >= _CL_LARGE_MAP:
            macs[1] += n

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return macs[0] > 0 and macs[1] >= _CL_MIN_SHARE * macs[0]


def _use_channels_last(allowed: bool, model: nn.Module, device: torch.device, input_shape: tuple[int, ...]) -> bool:
    """The layout rule behind ``Schedule.channels_last``: when allowed, always on CUDA; on a CPU
    where :func:`_cpu_channels_last` says; never on other devices (not measured)."""
    if not allowed or device.type not in ("cuda", "cpu"):
        return False
    return device.type == "cuda" or _cpu_channels_last(model, input_shape)


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: str | torch.device = "cpu",
    batch_size: int = 1024,
    amp: bool = True,
    channels_last: bool = True,
) -> tuple[float, float]:
    """Top-1 accuracy (fraction) and mean cross-entropy of ``model`` on uint8 images ``x``.

    ``model.eval()`` + ``inference_mode``; one host sync at the end. The model's train/eval mode
    is restored afterwards. ``channels_last`` allows that layout for the batches, as
    ``Schedule.channels_last`` does: always on CUDA, on a CPU where :func:`_cpu_channels_last` says.
    """
    device = _resolve_device(device)
    channels_last = _use_channels_last(channels_last, model, device, tuple(x.shape[1:]))
    return _evaluate(model, x, y, mean, std, device, batch_size, amp, channels_last)


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: tuple[float, ...],
              std: tuple[float, ...], device: torch.device, batch_size: int, amp: bool,
              channels_last: bool) -> tuple[float, float]:
    """:func:`evaluate` with the layout already decided (the engine decides once per run)."""
    norm = _Normalizer(mean, std, device, channels_last)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    n = int(x.shape[0])
    try:
        with torch.inference_mode(), _autocast(device, amp):
            for start in range(0, n, batch_size):
                xb = norm(x[start:start + batch_size].to(device, non_blocking=True))
                yb = y[start:start + batch_size].to(device, non_blocking=True)
                logits = model(xb).float()
                loss_sum += F.cross_entropy(logits, yb, reduction="sum")
                correct += (logits.argmax(1) == yb).sum()
    finally:
        model.train(was_training)
    n = max(n, 1)
    return correct.item() / n, loss_sum.item() / n


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


def _build(model_or_config: Any, data: DatasetSplits) -> nn.Module:
    """The module to train; a config (or a built network's ``config``) must match the data.

    A built network is only checked for classes and input channels (it runs at any resolution);
    a config also for resolution, because its declared complexity is at that resolution.
    """
    if isinstance(model_or_config, nn.Module):
        cfg = getattr(model_or_config, "config", None)
        checks = ("classes", "in_channels")
    else:
        cfg = model_or_config
        checks = ("classes", "resolution", "in_channels")
    have = {"classes": data.num_classes, "resolution": data.resolution, "in_channels": data.in_channels}
    for attr in checks:
        want = getattr(cfg, attr, None)
        if isinstance(want, int) and want != have[attr]:
            what = attr.replace("in_channels", "input channels")
            raise UserError(f"config has {want} {what} but dataset '{data.name}' has {have[attr]}; "
                            f"adapt the config (with_input) or the dataset")
    if isinstance(model_or_config, nn.Module):
        return model_or_config
    from nas.search_spaces.builder import build_model  # lazy: the engine also trains plain modules

    return build_model(cfg)


def _is_oom(exc: BaseException) -> bool:
    """CUDA OOM, also when wrapped (torch.compile re-raises backend failures with a cause)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, torch.OutOfMemoryError):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


class _Diverged(Exception):  # noqa: N818 -- internal control flow
    pass


class _TimedOut(Exception):  # noqa: N818 -- internal control flow
    pass


class _Stop(Exception):  # noqa: N818 -- internal control flow
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _peak_memory(device: torch.device) -> tuple[int | None, str | None]:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    try:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(rss if sys.platform == "darwin" else rss * 1024), "process_max_rss"
    except (OSError, ValueError):
        return None, None


def train(
    model_or_config: Any,
    data: DatasetSplits,
    schedule: Schedule | None = None,
    device: str | torch.device = "cpu",
    on_epoch: Callable[[EpochRecord], bool | None] | None = None,
    compile: bool = False,
    keep_model: bool = True,
    save_path: str | os.PathLike[str] | None = None,
    time_limit_s: float | None = None,
) -> TrainResult:
    """Train a model (an ``nn.Module``, or an architecture config built with ``build_model``) on
    ``data.train_*`` and evaluate on ``data.val_*``.

    ``on_epoch(record)`` is called after each epoch (after evaluation on evaluated epochs); a
    truthy return or a :class:`StopTraining` raised from it stops training (status ``stopped``);
    any other exception propagates. ``compile`` wraps the training forward in ``torch.compile``.
    ``time_limit_s`` bounds the run (checked after every step; status ``timeout`` when exceeded: a
    cooperative limit, so a single step that never returns is not interrupted).
    ``save_path`` writes the final weights when the status is ``ok`` or ``stopped``. The global
    torch RNG is seeded with ``schedule.seed`` (model init when building from a config, dropout).

    The model is moved to ``device`` for training and back to the CPU afterwards, and device
    memory taken by the run is released, whatever the outcome.
    """
    schedule = schedule or Schedule()
    device = _resolve_device(device)
    n_train = int(data.train_x.shape[0])
    if n_train == 0 or int(data.val_x.shape[0]) == 0:
        raise UserError(f"dataset '{data.name}' has an empty train or validation split")
    if min(schedule.batch_size, n_train) < 2:
        raise UserError(f"a training batch needs at least 2 images (batch norm); got batch size "
                        f"{schedule.batch_size} and {n_train} training images")

    torch.manual_seed(schedule.seed)
    model = _build(model_or_config, data)
    params = sum(p.numel() for p in model.parameters())
    is_cuda = device.type == "cuda"
    channels_last = False  # decided once the model is on the device
    if is_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    prev_benchmark = torch.backends.cudnn.benchmark

    wall0 = time.perf_counter()
    history: list[EpochRecord] = []
    status: Status = "ok"
    reason: str | None = None
    steps_done = 0
    state: dict[str, Any] = {}  # everything that holds device memory, dropped in one place
    try:
        torch.backends.cudnn.benchmark = is_cuda or prev_benchmark
        model.to(device)
        channels_last = _use_channels_last(schedule.channels_last, model, device, tuple(data.train_x.shape[1:]))
        if channels_last:
            model.to(memory_format=torch.channels_last)
        model.train()
        on_dev = _fits_on_device(data, device)
        state["train_x"] = _place(data.train_x, device, on_dev)
        state["train_y"] = _place(data.train_y, device, on_dev)
        state["val_x"] = _place(data.val_x, device, on_dev)
        state["val_y"] = _place(data.val_y, device, on_dev)
        state["opt"] = _sgd(model, schedule, fused=is_cuda)
        if compile:
            # A fresh start per run: a long-lived worker trains many models whose blocks share
            # forward code objects; stale guards would pile up and hit dynamo's recompile limit,
            # after which it silently falls back to eager.
            torch._dynamo.reset()
        state["fwd"] = torch.compile(model, dynamic=False) if compile else model
        if time_limit_s is not None:
            state["deadline"] = time.monotonic() + time_limit_s
        steps_done = _loop(model, data, schedule, device, state, history, on_epoch, channels_last)
    except _Diverged as exc:
        status, reason = "diverged", str(exc)
    except _TimedOut as exc:
        status, reason = "timeout", str(exc)
    except _Stop as exc:
        status, reason = "stopped", exc.reason
    except Exception as exc:
        if not _is_oom(exc):
            raise
        status = "oom"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        reason = first if "out of memory" in first.lower() else f"CUDA out of memory ({first})"
    finally:
        # Drop every reference to device memory (the exception and its frames are already gone
        # when we get here from an except clause), then hand the cache back to the driver.
        steps_done = state.pop("steps", steps_done)
        state.clear()
        peak, peak_kind = _peak_memory(device)
        for p in model.parameters():
            p.grad = None
        model.to("cpu")
        if channels_last:  # hand back the default layout: latency, export or another run start from it
            model.to(memory_format=torch.contiguous_format)
        gc.collect()
        if is_cuda:
            torch.cuda.empty_cache()
        torch.backends.cudnn.benchmark = prev_benchmark

    wall = time.perf_counter() - wall0
    evaluated = [r for r in history if r.val_acc is not None]
    last_eval = evaluated[-1] if evaluated else None
    train_time = sum(r.seconds for r in history)
    images = sum(r.images_per_s * r.seconds for r in history)
    steady = history[1:] if len(history) > 1 else history
    steady_time = sum(r.seconds for r in steady)
    result = TrainResult(
        status=status,
        reason=reason,
        val_acc=last_eval.val_acc if last_eval else None,
        val_loss=last_eval.val_loss if last_eval else None,
        best_val_acc=max(r.val_acc for r in evaluated) if evaluated else None,  # type: ignore[type-var]
        train_loss=history[-1].train_loss if history else None,
        train_acc=history[-1].train_acc if history else None,
        epochs_completed=len(history),
        epochs_planned=schedule.epochs,
        steps=steps_done,
        wall_time_s=wall,
        train_time_s=train_time,
        images_per_s=images / train_time if train_time > 0 else None,
        images_per_s_steady=(sum(r.images_per_s * r.seconds for r in steady) / steady_time
                             if steady_time > 0 else None),
        peak_memory_bytes=peak,
        peak_memory_kind=peak_kind,
        params=params,
        device=str(device),
        compiled=compile,
        memory_format="channels_last" if channels_last else "contiguous",
        history=history,
        schedule=schedule.to_dict(),
        model=model if keep_model else None,
    )
    if save_path is not None and status in ("ok", "stopped"):
        save_weights(model, save_path)
    return result


def _loop(
    model: nn.Module,
    data: DatasetSplits,
    sch: Schedule,
    device: torch.device,
    state: dict[str, Any],
    history: list[EpochRecord],
    on_epoch: Callable[[EpochRecord], bool | None] | None,
    channels_last: bool,
) -> int:
    """The epoch loop. Raises ``_Diverged``/``_Stop``; returns the number of optimiser steps."""
    train_x, train_y = state["train_x"], state["train_y"]
    opt: torch.optim.Optimizer = state["opt"]
    fwd: nn.Module = state["fwd"]
    norm = _Normalizer(data.mean, data.std, device, channels_last)
    n = int(train_x.shape[0])
    bs = min(sch.batch_size, n)
    steps_per_epoch = n // bs  # drop the last partial batch: static shapes for compile/cudnn
    total = steps_per_epoch * sch.epochs
    warmup = min(total, round(sch.warmup_epochs * steps_per_epoch))
    # Separate, seeded streams: data order on the CPU (same on every device), augmentation on the device.
    order_gen = torch.Generator().manual_seed(sch.seed)
    aug_gen = torch.Generator(device=device).manual_seed(sch.seed + 1)
    step = 0
    deadline = state.get("deadline")

    def check_time(epoch: int) -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise _TimedOut(f"over its time limit in epoch {epoch}, after {step} steps")

    for epoch in range(1, sch.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=order_gen)[: steps_per_epoch * bs].to(train_x.device)
        loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        lr = sch.lr
        for i in range(steps_per_epoch):
            idx = perm[i * bs:(i + 1) * bs]
            xb = _fetch(train_x, idx, device)
            yb = _fetch(train_y, idx, device)
            if sch.augment:
                xb = augment_batch(xb, sch.crop_padding, aug_gen)
            xb = norm(xb)
            lr = _lr_at(step, total, warmup, sch.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            with _autocast(device, sch.amp):
                logits = fwd(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=sch.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            state["steps"] = step
            check_time(epoch)
            loss_sum += loss.detach()
            correct += (logits.detach().argmax(1) == yb).sum()
            if (i + 1) % sch.nan_check_every == 0 and not torch.isfinite(loss_sum).item():
                raise _Diverged(f"loss became non-finite in epoch {epoch}, by step {step}")
        train_loss = loss_sum.item() / steps_per_epoch  # syncs: the epoch's timing is complete
        train_acc = correct.item() / (steps_per_epoch * bs)
        seconds = time.perf_counter() - t0
        if not math.isfinite(train_loss):
            raise _Diverged(f"loss became non-finite in epoch {epoch}, by step {step}")
        del xb, yb, logits, loss  # free the last batch's activations before evaluating

        val_acc = val_loss = None
        t1 = time.perf_counter()
        if epoch % sch.eval_every == 0 or epoch == sch.epochs:
            val_acc, val_loss = _evaluate(model, state["val_x"], state["val_y"], data.mean, data.std, device,
                                          sch.eval_batch_size, sch.amp, channels_last)
            if not math.isfinite(val_loss):
                raise _Diverged(f"validation loss is non-finite after epoch {epoch}")
        record = EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            train_acc=train_acc,
            val_loss=val_loss,
            val_acc=val_acc,
            images_per_s=steps_per_epoch * bs / seconds if seconds > 0 else float("inf"),
            seconds=seconds,
            eval_seconds=time.perf_counter() - t1,
            lr=lr,
        )
        history.append(record)
        if on_epoch is not None:
            try:
                stop = on_epoch(record)
            except StopTraining as exc:
                raise _Stop(str(exc) or f"stopped by callback after epoch {epoch}") from None
            if stop:
                raise _Stop(f"stopped by callback after epoch {epoch}")
    return step
