"""Record the learning curves the early-stopping replay runs on, with ``nas search`` itself.

Trains candidates of a space under one budget to their full schedule (no early stopping, the
random sampler: a sample of the space, not a search), then writes every completely trained
candidate's per-epoch validation accuracy, FLOPs, params and measured seconds per epoch as a
``nas-curves/1`` file (the format is in ``bench/early_stopping_replay.py``).

    python bench/record_curves.py bench/data/resnext_cifar_curves.json            # train, then write
    python bench/record_curves.py OUT.json --storage sqlite:///curves.db --export-only

The search's own command is printed and stored in the file's description. Fidelity matters:
resnext-cifar on 1,000 ``shapes`` images for 9 epochs at batch 64 and the default learning rate
stayed near chance (0.15-0.17, measured), curves too flat to rank anything. The defaults (2,000
images, batch 32, peak learning rate 0.05, candidates within 25 MFLOPs: about 560 steps each; a
12 MFLOPs candidate reached 0.25 in a 4-epoch run) take about 2.5 minutes a candidate with one
thread here, about an hour for 48 on 2 cores. (Within 15 MFLOPs, 300 random proposals in a row
were all over budget: the search stops proposing then.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nas.study.records import read_settings, read_trials  # noqa: E402
from nas.study.storage import open_storage  # noqa: E402


def search_args(args: argparse.Namespace) -> list[str]:
    return ["search", "--space", args.space, "--budget", args.budget, "--trials", str(args.trials), "--sampler",
            "random", "--seed", str(args.seed), "--no-early-stopping", "--epochs", str(args.epochs),
            "--train-images", str(args.train_images), "--val-images", str(args.val_images), "--batch-size",
            str(args.batch_size), "--lr", str(args.lr), "--storage", args.storage, "--study", args.study]


def export(storage: str, study_name: str, command: str) -> dict:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage, create=False))
    settings = read_settings(study)
    candidates = []
    for r in read_trials(study):
        if r.outcome != "complete" or len(r.curve) != settings.epochs:
            continue
        seconds = [c.get("seconds") for c in r.curve if c.get("seconds")]
        candidates.append({"arch_hash": r.get("arch_hash"), "arch": r.get("arch"), "flops": r.get("flops"),
                           "params": r.get("n_params"), "accuracy": [c["accuracy"] for c in r.curve],
                           "epoch_seconds": sum(seconds) / len(seconds) if seconds else None})
    fid = settings.fidelity
    return {
        "format": "nas-curves/1", "synthetic": False,
        "description": (f"{len(candidates)} {settings.space} candidates under {settings.budget_text()} (random "
                        f"sample), trained on {settings.dataset} ({fid['train_images']} train / {fid['val_images']} "
                        f"val images, {settings.epochs} epochs, batch {settings.batch_size}, lr "
                        f"{settings.schedule['lr']}) on the CPU; recorded with: {command}"),
        "max_epochs": settings.epochs,
        "candidates": candidates,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="curves file to write (JSON)")
    p.add_argument("--space", default="resnext-cifar")
    p.add_argument("--budget", default="25M")
    p.add_argument("--trials", type=int, default=48)
    p.add_argument("--epochs", type=int, default=9)
    p.add_argument("--train-images", type=int, default=2000)
    p.add_argument("--val-images", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--storage", default="sqlite:///bench-curves.db")
    p.add_argument("--study", default="curves")
    p.add_argument("--export-only", action="store_true", help="write the file from an existing study")
    args = p.parse_args(argv)
    cmd = ["nas", *search_args(args)]
    if not args.export_only:
        print(" ".join(cmd), flush=True)
        subprocess.run([sys.executable, "-m", "nas.cli", *search_args(args)], check=True)
    data = export(args.storage, args.study, " ".join(cmd))
    Path(args.out).write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {len(data['candidates'])} curves of {data['max_epochs']} epochs to {args.out}")


if __name__ == "__main__":
    main()
