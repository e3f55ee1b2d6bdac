"""Training throughput: the engine against a plain PyTorch reference loop, side by side.

Two modes:

* default -- one CIFAR-style candidate trained on ``shapes`` from the same initial weights with
  the same schedule: by ``nas.workers.engine.train`` (uint8 data on the device, vectorised
  on-device crop/flip, bf16 + channels_last on CUDA, channels_last on a CPU where the engine's
  layout rule picks it, optional compile); on a CPU also by the engine held to the contiguous
  layout (the engine before the CPU layout rule); and by a textbook loop (DataLoader over the
  tensors with per-sample CPU-side torchvision augmentation, fp32, default memory layout).
  Reports training images/s, time to a fixed validation accuracy and the final accuracy as a
  markdown table, with ratios. ``--resolution`` runs an ImageNet-style preset at another input
  size (``--config resnest50d --resolution 32``).
* ``--synthetic`` -- random uint8 data already on the device (batch 256, 224x224 by default) for
  ImageNet-style presets (``resnet50``, ``resnest50d``): the engine's steady-state training
  images/s in eager mode and with ``torch.compile``.

Imports only torch/torchvision/numpy, ``nas.workers`` and ``nas.search_spaces``, so it runs on a
bare GPU host. Examples::

    python bench/train_throughput.py --device cpu --epochs 2 --train-samples 4000
    python bench/train_throughput.py --device cpu --threads 2 --batch-size 256 --config resnest50d --resolution 32
    python bench/train_throughput.py --device cuda --epochs 15 --config resnext29_4x16d --compile
    python bench/train_throughput.py --device cuda --synthetic --models resnet50,resnest50d
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    sys.exit("error: this benchmark needs torch (pip install torch torchvision)")

_ROOT = Path(__file__).resolve().parents[1]


def _bootstrap_nas() -> None:
    """Make ``nas.*`` importable from a source checkout that was never ``pip install``-ed (a bare
    GPU host): load ``nas`` with the repository root as an extra search location, which is what
    pyproject's package-dir mapping (nas.workers -> workers/, ...) amounts to."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "nas", _ROOT / "nas" / "__init__.py", submodule_search_locations=[str(_ROOT / "nas"), str(_ROOT)])
    if spec is None or spec.loader is None:
        raise ImportError("no nas package next to bench/")
    module = importlib.util.module_from_spec(spec)
    sys.modules["nas"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["nas"]
        raise


try:
    import nas.workers  # noqa: F401
except ModuleNotFoundError as _exc:
    if not (_exc.name or "").startswith("nas"):
        sys.exit(f"error: cannot import nas.workers ({_exc}); install what is missing, or `pip install -e .`")
    for _name in [m for m in sys.modules if m == "nas" or m.startswith("nas.")]:
        del sys.modules[_name]
    try:
        _bootstrap_nas()
    except ImportError as _exc2:
        sys.exit(f"error: cannot import nas.workers ({_exc2}); run `pip install -e .` in {_ROOT} first")

from nas.workers import engine  # noqa: E402
from nas.workers.datasets import DatasetSplits, load_dataset  # noqa: E402
from nas.workers.engine import EpochRecord, Schedule, train  # noqa: E402

# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------

# A small CIFAR-style candidate that trains in seconds on a CPU (a ResNeXt-ish 3-stage net).
_CPU_CANDIDATE = {
    "name": "bench_small", "resolution": 32, "classes": 10,
    "stem": {"type": "cifar", "width": 16},
    "stages": [
        {"depth": 1, "width": 32, "cardinality": 2, "group_width": 8, "stride": 1},
        {"depth": 1, "width": 64, "cardinality": 2, "group_width": 16, "stride": 2},
        {"depth": 1, "width": 128, "cardinality": 2, "group_width": 32, "stride": 2},
    ],
}

# The smallest network of the resnext-cifar space (11 MFLOPs): CIFAR-style maps of 32, 16 and 8 px.
_CIFAR_CANDIDATE = {
    "name": "resnext_cifar_min", "resolution": 32, "classes": 10,
    "stem": {"type": "cifar", "width": 64},
    "stages": [
        {"depth": 1, "width": 64, "cardinality": 2, "group_width": 4, "stride": 1},
        {"depth": 1, "width": 128, "cardinality": 2, "group_width": 8, "stride": 2},
        {"depth": 1, "width": 256, "cardinality": 2, "group_width": 16, "stride": 2},
    ],
}


class StandInNet(nn.Module):
    """A plain conv net, for hosts where ``nas.search_spaces`` cannot be imported (``--config standin``)."""

    def __init__(self, classes: int = 10, width: int = 32, in_channels: int = 3) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True))

        self.features = nn.Sequential(block(in_channels, width, 1), block(width, width, 1),
                                      block(width, 2 * width, 2), block(2 * width, 4 * width, 2))
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def make_builder(config: str, device: str,
                 resolution: int | None = None) -> tuple[str, int, Callable[[int], nn.Module]]:
    """(label, resolution, builder(classes) -> module) for a preset name, a config file, 'small'
    (the built-in CPU-sized candidate), 'cifar' (the smallest resnext-cifar network) or 'standin'
    (no ``nas.search_spaces`` needed); ``resolution`` overrides the config's input size."""
    if config == "standin":
        return "standin (plain 4-conv net)", resolution or 32, lambda classes: StandInNet(classes)
    try:
        from nas.search_spaces import build_model, parse_config, resolve_config
    except ImportError as exc:
        sys.exit(f"error: nas.search_spaces is not importable here ({exc}); use --config standin")
    builtin = {"small": _CPU_CANDIDATE, "cifar": _CIFAR_CANDIDATE}
    cfg = parse_config(builtin[config], source="bench") if config in builtin else resolve_config(config)
    label = cfg.name or config
    if resolution:
        cfg = cfg.with_input(resolution=resolution)
        label += f" at {resolution}px"

    def build(classes: int, cfg=cfg) -> nn.Module:
        return build_model(cfg.with_input(classes=classes))

    return label, cfg.resolution, build


# --------------------------------------------------------------------------------------------
# the plain reference loop
# --------------------------------------------------------------------------------------------


class AugmentedTensors(torch.utils.data.Dataset):
    """What a textbook script does: per-sample torchvision transforms on the CPU in ``__getitem__``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean, std, augment: bool) -> None:
        from torchvision import transforms

        self.x, self.y = x, y
        steps: list[Any] = []
        if augment:
            steps += [transforms.RandomCrop(x.shape[-1], padding=4), transforms.RandomHorizontalFlip()]
        steps += [transforms.ConvertImageDtype(torch.float32), transforms.Normalize(mean, std)]
        self.tf = transforms.Compose(steps)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int):
        return self.tf(self.x[i]), self.y[i]


def reference_train(model: nn.Module, data: DatasetSplits, sch: Schedule, device: str, workers: int,
                    on_epoch: Callable[[EpochRecord], Any]) -> list[EpochRecord]:
    """fp32, default memory layout, DataLoader; same optimiser, parameter groups and per-step lr."""
    dev = torch.device(device)
    torch.manual_seed(sch.seed)
    model.to(dev).train()
    pin = dev.type == "cuda"
    train_dl = torch.utils.data.DataLoader(
        AugmentedTensors(data.train_x, data.train_y, data.mean, data.std, sch.augment),
        batch_size=sch.batch_size, shuffle=True, drop_last=True, num_workers=workers, pin_memory=pin,
        persistent_workers=workers > 0)
    val_dl = torch.utils.data.DataLoader(
        AugmentedTensors(data.val_x, data.val_y, data.mean, data.std, False),
        batch_size=sch.eval_batch_size, shuffle=False, num_workers=workers, pin_memory=pin)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": sch.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=sch.lr, momentum=sch.momentum, nesterov=sch.nesterov)
    steps_per_epoch = len(train_dl)
    total = steps_per_epoch * sch.epochs
    warmup = min(total, round(sch.warmup_epochs * steps_per_epoch))
    step = 0
    history = []
    for epoch in range(1, sch.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        lr = sch.lr
        for xb, yb in train_dl:
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            if step < warmup:
                lr = sch.lr * (step + 1) / warmup
            else:
                lr = 0.5 * sch.lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
            for g in opt.param_groups:
                g["lr"] = lr
            out = model(xb)
            loss = F.cross_entropy(out, yb, label_smoothing=sch.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item()  # the habitual per-step sync
            correct += (out.argmax(1) == yb).sum().item()
            seen += yb.numel()
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        model.eval()
        vl, vc, vn = 0.0, 0, 0
        with torch.no_grad():
            for xb, yb in val_dl:
                xb, yb = xb.to(dev), yb.to(dev)
                out = model(xb)
                vl += F.cross_entropy(out, yb, reduction="sum").item()
                vc += (out.argmax(1) == yb).sum().item()
                vn += yb.numel()
        rec = EpochRecord(epoch=epoch, train_loss=loss_sum / steps_per_epoch, train_acc=correct / seen,
                          val_loss=vl / vn, val_acc=vc / vn, images_per_s=seen / seconds, seconds=seconds,
                          eval_seconds=time.perf_counter() - t1, lr=lr)
        history.append(rec)
        on_epoch(rec)
    model.to("cpu")
    return history


# --------------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------------


class Timeline:
    """Cumulative wall time (training + evaluation) and validation accuracy at each epoch end."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.points: list[tuple[int, float, float]] = []  # (epoch, elapsed s, val acc)

    def __call__(self, rec: EpochRecord) -> None:
        self.elapsed += rec.seconds + rec.eval_seconds
        if rec.val_acc is not None:
            self.points.append((rec.epoch, self.elapsed, rec.val_acc))
        print(f"    epoch {rec.epoch}: train_loss {rec.train_loss:.3f} val_acc {rec.val_acc:.3f} "
              f"{rec.images_per_s:,.0f} img/s ({rec.seconds:.1f}s + eval {rec.eval_seconds:.1f}s)", flush=True)

    def time_to(self, target: float) -> tuple[float, int] | None:
        for epoch, t, acc in self.points:
            if acc >= target:
                return t, epoch
        return None


def _steady(history: list[EpochRecord]) -> float:
    h = history[1:] if len(history) > 1 else history
    return sum(r.images_per_s * r.seconds for r in h) / max(1e-9, sum(r.seconds for r in h))


def _fmt_t(hit: tuple[float, int] | None) -> str:
    return "not reached" if hit is None else f"{hit[0]:.1f} s (epoch {hit[1]})"


def run_comparison(args: argparse.Namespace) -> None:
    label, res, build = make_builder(args.config, args.device, args.resolution)
    data = load_dataset("shapes", resolution=res)
    data = data.take(args.train_samples, args.val_samples)
    sch = Schedule(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_epochs=args.warmup,
                   eval_batch_size=args.eval_batch_size, seed=args.seed)
    torch.manual_seed(args.seed)
    model = build(data.num_classes)
    init = copy.deepcopy(model.state_dict())
    params = sum(p.numel() for p in model.parameters())
    print(f"# train throughput: {label} ({params:,} params) on shapes {res}px, "
          f"{data.train_x.shape[0]} train / {data.val_x.shape[0]} val, {args.epochs} epochs, "
          f"batch {args.batch_size}, device {args.device}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}\n", flush=True)

    cpu = args.device == "cpu"
    rows = []  # (description, steady img/s, timeline, final val acc)

    def engine_run(what: str, schedule: Schedule, how: str) -> tuple[Any, Timeline]:
        print(f"  {what}:", flush=True)
        model.load_state_dict(init)
        timeline = Timeline()
        r = train(model, data, schedule, device=args.device, on_epoch=timeline, compile=args.compile)
        if r.status != "ok":
            print(f"  {what} run ended {r.status}: {r.reason}")
        desc = ("engine (uint8 on device, device aug, " + ("bf16" if not cpu else "fp32") + f", {r.memory_format}"
                + (f" {how}" if cpu else "") + (", compile" if args.compile else "") + ")")
        rows.append((desc, r.images_per_s_steady or 0.0, timeline,
                     r.val_acc if r.val_acc is not None else float("nan")))
        return r, timeline

    if cpu:  # the engine as it was before its CPU layout rule: contiguous on a CPU, whatever the network
        engine_run("engine, contiguous layout (before the CPU layout rule)",
                   dataclasses.replace(sch, channels_last=False), "as before")
    res_eng, _ = engine_run("engine", sch, "by the rule")
    print(f"  the engine's layout rule picked {res_eng.memory_format}", flush=True)
    if cpu and res_eng.memory_format == "contiguous":
        # show what the rule declined: the same run forced to channels_last (the rule is private)
        real_rule = engine._cpu_channels_last
        engine._cpu_channels_last = lambda model, input_shape: True
        try:
            engine_run("engine forced to channels_last (the rule declined it)", sch, "forced")
        finally:
            engine._cpu_channels_last = real_rule
        rows.insert(1, rows.pop())  # rows: as before, forced, by the rule

    print("  reference loop:", flush=True)
    model.load_state_dict(init)
    ref_t = Timeline()
    ref_hist = reference_train(model, data, sch, args.device, args.workers, ref_t)
    rows.append((f"reference (DataLoader, CPU aug, fp32, {args.workers} workers)", _steady(ref_hist), ref_t,
                 ref_hist[-1].val_acc if ref_hist else float("nan")))

    targets = [args.target_acc]
    if not all(t.time_to(args.target_acc) for _, _, t, _ in rows) and all(t.points for _, _, t, _ in rows):
        # also report a target all reached: 95% of the lowest final accuracy
        targets.append(round(0.95 * min(t.points[-1][2] for _, _, t, _ in rows), 3))
    print()
    heads = " | ".join(f"time to val acc {t:.3g}" for t in targets)
    print(f"| loop | train img/s (steady) | {heads} | final val acc | train+eval wall |")
    print("|---|---:|" + "---:|" * len(targets) + "---:|---:|")
    for desc, ips, timeline, final in rows:
        cells = " | ".join(_fmt_t(timeline.time_to(t)) for t in targets)
        print(f"| {desc} | {ips:,.0f} | {cells} | {final:.3f} | {timeline.elapsed:.1f} s |")
    print()
    eng, ref = rows[-2], rows[-1]
    if cpu:
        old = rows[0]
        compared = [("forced channels_last", rows[1])] if len(rows) == 4 else []
        for what, row in compared + [("engine", eng)]:
            print(f"throughput ratio {what}/engine-contiguous: {row[1] / max(old[1], 1e-9):.2f}x; "
                  f"wall ratio engine-contiguous/{what}: {old[2].elapsed / max(row[2].elapsed, 1e-9):.2f}x")
    print(f"throughput ratio engine/reference: {eng[1] / max(ref[1], 1e-9):.2f}x; "
          f"wall ratio reference/engine: {ref[2].elapsed / max(eng[2].elapsed, 1e-9):.2f}x")
    for t in targets:
        e, r = eng[2].time_to(t), ref[2].time_to(t)
        if e and r:
            print(f"time-to-accuracy {t:.3g} ratio reference/engine: {r[0] / e[0]:.2f}x")
        else:
            print(f"time-to-accuracy {t:.3g}: not reached by both")
    if args.device == "cuda" and res_eng.peak_memory_bytes:
        print(f"engine peak CUDA memory: {res_eng.peak_memory_bytes / 2**20:,.0f} MiB")


def run_synthetic(args: argparse.Namespace) -> None:
    """Engine images/s on random uint8 data already on the device, eager vs compiled."""
    from nas.workers.datasets import DatasetSplits

    dev = torch.device(args.device)
    res = args.resolution or 224
    bs = args.batch_size
    n_train = bs * args.steps
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    rows = []
    print(f"# synthetic training throughput: batch {bs}, {res}x{res}, {args.steps} steps/epoch, "
          f"device {args.device}, torch {torch.__version__}\n", flush=True)
    for name in names:
        if name == "standin":
            def build(classes: int) -> nn.Module:
                return StandInNet(classes)
        else:
            try:
                from nas.search_spaces import build_model, load_preset
            except ImportError as exc:
                sys.exit(f"error: presets need nas.search_spaces ({exc}); try --models standin")
            cfg = load_preset(name)

            def build(classes: int, cfg=cfg) -> nn.Module:
                return build_model(cfg.with_input(resolution=res, classes=classes))
        g = torch.Generator(device=dev).manual_seed(0)
        classes = 1000
        data = DatasetSplits(
            name="synthetic",
            train_x=torch.randint(0, 256, (n_train, 3, res, res), dtype=torch.uint8, device=dev, generator=g),
            train_y=torch.randint(0, classes, (n_train,), device=dev, generator=g),
            val_x=torch.randint(0, 256, (bs, 3, res, res), dtype=torch.uint8, device=dev, generator=g),
            val_y=torch.randint(0, classes, (bs,), device=dev, generator=g),
            num_classes=classes, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        sch = Schedule(epochs=2, batch_size=bs, lr=0.1, warmup_epochs=0.5, eval_batch_size=bs,
                       crop_padding=max(1, res // 8))
        for mode in modes:
            torch.manual_seed(0)
            model = build(classes)
            t0 = time.perf_counter()
            r = train(model, data, sch, device=args.device, compile=(mode == "compile"), keep_model=False)
            wall = time.perf_counter() - t0
            ips = r.images_per_s_steady if r.status == "ok" else None
            mem = f"{r.peak_memory_bytes / 2**30:.1f} GiB" if r.peak_memory_kind == "cuda_max_allocated" else "-"
            rows.append((name, mode, ips, r.history[0].seconds if r.history else None, mem, r.status))
            print(f"  {name} {mode}: {r.status} {ips or 0:,.0f} img/s (epoch 1 {rows[-1][3] or 0:.1f}s, "
                  f"wall {wall:.1f}s)", flush=True)
            del model, r
        del data
    print()
    print("| model | mode | train img/s (steady) | first epoch s (incl. compile) | peak memory | status |")
    print("|---|---|---:|---:|---:|---|")
    for name, mode, ips, first, mem, status in rows:
        ips_s = f"{ips:,.0f}" if ips else "-"
        first_s = f"{first:.1f}" if first is not None else "-"
        print(f"| {name} | {mode} | {ips_s} | {first_s} | {mem} | {status} |")
    by = {(n, m): ips for n, m, ips, *_ in rows}
    for name in names:
        e, c = by.get((name, "eager")), by.get((name, "compile"))
        if e and c:
            print(f"\n{name}: compile/eager = {c / e:.2f}x", end="")
    print()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--config", default=None,
                   help="preset name or config file; 'small' (default on CPU), 'cifar' (smallest resnext-cifar "
                        "network) or 'standin' (no pydantic needed)")
    p.add_argument("--epochs", type=int, default=None, help="default: 3 on CPU, 15 on CUDA")
    p.add_argument("--train-samples", type=int, default=None, help="default: 3000 on CPU, all 20000 on CUDA")
    p.add_argument("--val-samples", type=int, default=None, help="default: 1000 on CPU, all 5000 on CUDA")
    p.add_argument("--batch-size", type=int, default=None, help="default: 32 on CPU, 256 on CUDA")
    p.add_argument("--eval-batch-size", type=int, default=500)
    p.add_argument("--lr", type=float, default=None, help="peak lr; default 0.05 on CPU, 0.2 on CUDA")
    p.add_argument("--warmup", type=float, default=0.5, help="warm-up epochs")
    p.add_argument("--target-acc", type=float, default=None, help="default 0.2 on CPU, 0.9 on CUDA")
    p.add_argument("--workers", type=int, default=None, help="reference DataLoader workers (0 CPU, 8 CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the engine's training forward")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default 1 on CPU: on small shared VMs a second OpenMP "
                        "thread made small ops 10-100x slower; torch's default on CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic", action="store_true", help="synthetic on-device data, eager vs compile")
    p.add_argument("--models", default=None, help="synthetic: comma-separated presets (resnet50,resnest50d)")
    p.add_argument("--modes", default="eager,compile", help="synthetic: eager,compile")
    p.add_argument("--resolution", type=int, default=None,
                   help="input size (synthetic: default 224; otherwise the config's, e.g. 32 for an ImageNet preset)")
    p.add_argument("--steps", type=int, default=None, help="synthetic: steps per epoch (default 30 CUDA, 3 CPU)")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("error: --device cuda but CUDA is not available")
    if args.threads or not cuda:
        torch.set_num_threads(args.threads or 1)

    if args.synthetic:
        args.batch_size = args.batch_size or (256 if cuda else 8)
        args.steps = args.steps or (30 if cuda else 3)
        args.models = args.models or ("resnet50,resnest50d" if cuda else "standin")
        args.resolution = args.resolution or (224 if cuda else 64)
        run_synthetic(args)
        return
    args.config = args.config or ("resnext29_4x16d" if cuda else "small")
    args.epochs = args.epochs or (15 if cuda else 3)
    args.train_samples = args.train_samples or (20_000 if cuda else 3000)
    args.val_samples = args.val_samples or (5000 if cuda else 1000)
    args.batch_size = args.batch_size or (256 if cuda else 32)
    args.lr = args.lr or (0.2 if cuda else 0.05)
    args.target_acc = args.target_acc if args.target_acc is not None else (0.9 if cuda else 0.2)
    args.workers = args.workers if args.workers is not None else (8 if cuda else 0)
    run_comparison(args)


if __name__ == "__main__":
    main()
