"""``nas train``: train one candidate stand-alone (users retrain the architecture they export)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from nas.common.errors import UserError
from nas.common.files import atomic_write_text
from nas.common.units import format_flops


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train one candidate and write its weights and metrics",
        description="Train one candidate (a preset name or a config file) on a dataset and write "
                    "weights.pt (a state_dict), metrics.json and config.yaml to --out. The dataset's "
                    "number of classes and resolution replace the config's.")
    p.add_argument("config", metavar="NAME|FILE", help="preset name or path to a .yaml/.json config")
    p.add_argument("--dataset", default="shapes", metavar="D",
                   help="shapes (default, generated locally), cifar10[:PATH], cifar100[:PATH], imagefolder:PATH")
    p.add_argument("--epochs", type=int, default=10, metavar="E", help="epochs (default 10)")
    p.add_argument("--batch-size", type=int, default=128, metavar="B", help="batch size (default 128)")
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate (SGD, cosine; default 0.1)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay (default 5e-4)")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing (default 0)")
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up epochs (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--resolution", type=int, metavar="R", help="input resolution (default: the config's)")
    p.add_argument("--limit", type=int, metavar="N", help="train on the first N training images only (quick runs)")
    p.add_argument("--val-limit", type=int, metavar="N",
                   help="validate on the first N validation images only (default: all; 1,000 carry a standard error "
                        "of about 1.6 points at 50%% accuracy)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for PyTorch (default: PyTorch's choice; 1 is faster on a busy shared machine)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU runs)")
    p.add_argument("--download", action="store_true", help="download CIFAR if it is not in the data folder")
    p.add_argument("--data-root", metavar="DIR", help="folder holding CIFAR (default $NAS_DATA or the cache)")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/NAME-TIMESTAMP)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from nas.search_spaces import complexity, resolve_config
    from nas.workers import Schedule, load_dataset, measure_latency, train
    from nas.workers.datasets import DataTooLarge
    from nas.workers.trial import fit_to_data

    config = resolve_config(args.config)
    if args.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {args.epochs}")
    for flag, value in (("--limit", args.limit), ("--val-limit", args.val_limit)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA GPU is available here; use --device cpu")
    schedule = Schedule(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                        label_smoothing=args.label_smoothing, warmup_epochs=args.warmup_epochs, seed=args.seed)
    resolution = args.resolution or config.resolution
    # Split seed 0 whatever --seed is: runs with different seeds are compared on the same images.
    # Only the images --limit and --val-limit keep are made; a load that cannot fit in memory is refused.
    try:
        data = load_dataset(args.dataset, resolution=resolution, root=args.data_root, download=args.download,
                            seed=0, train_limit=args.limit, val_limit=args.val_limit)
    except DataTooLarge as exc:
        raise UserError(exc.advice("--limit", "--resolution", "--val-limit")) from None
    config = fit_to_data(config, data)
    name = config.name or Path(args.config).stem
    out = Path(args.out or f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} already exists and is not an empty folder; pick another")
    cx = complexity(config)
    print(f"training {name}: {cx.params / 1e6:.2f}M params, {format_flops(cx.flops)} at "
          f"{config.resolution}x{config.resolution}, {data.name} ({data.train_x.shape[0]} train / "
          f"{data.val_x.shape[0]} val images, {data.num_classes} classes) on {device}", file=sys.stderr)

    bar = _progress(args.epochs)

    def on_epoch(record) -> None:
        val = f"{record.val_acc:.3f}" if record.val_acc is not None else "-"
        bar.set_postfix_str(f"loss {record.train_loss:.3f} acc {record.train_acc:.3f} val_acc {val} "
                            f"{record.images_per_s:,.0f} img/s", refresh=False)
        bar.update(1)

    try:
        result = train(config, data, schedule, device=device, on_epoch=on_epoch, compile=args.compile)
    finally:
        bar.close()
    metrics = result.to_dict()
    metrics.update(config_name=name, arch_hash=config.arch_hash(), dataset=data.name, complexity=cx.to_dict())
    # Everything goes to a hidden sibling folder first, renamed into place at the end: a run that
    # dies half-way leaves no half-written --out behind.
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        atomic_write_text(staging / "config.yaml", config.to_yaml())
        if result.status == "ok":
            result.save(staging / "weights.pt")  # before the latency check, which can fail (GPU OOM)
            try:
                metrics["latency"] = measure_latency(result.model, device=device).to_dict()
            except Exception as exc:  # the trained weights matter more than a latency figure
                metrics["latency"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        atomic_write_text(staging / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # checked empty above
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if result.status != "ok":
        print(f"training {result.status}: {result.reason}; metrics in {out}/metrics.json", file=sys.stderr)
        return 1
    print(f"val_acc {result.val_acc:.4f}  val_loss {result.val_loss:.4f}  {result.images_per_s:,.0f} img/s  "
          f"{result.wall_time_s:.1f} s  -> {out}/weights.pt, metrics.json, config.yaml")
    return 0


def _progress(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="epoch", file=sys.stderr, dynamic_ncols=True, disable=None)
