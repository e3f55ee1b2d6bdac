"""``nas search``: the main job — budgeted candidates in an Optuna study, trained in parallel by Ray Tune."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="search a space under a FLOP budget: candidates trained by Ray, results in an Optuna study",
        description="Search a space under a FLOP budget. Candidates are proposed by an Optuna sampler, checked "
                    "against the budget analytically (no model built), trained in parallel by Ray Tune workers "
                    "and recorded in an Optuna study, the single source of truth. Re-running the same command "
                    "resumes the study; --trials is the study's total of trained candidates. Defaults fit the "
                    "machine: on a CPU about ten minutes of training on the built-in shapes data; on a GPU "
                    "the whole of shapes for ten epochs.",
        epilog="Examples:\n  nas search --budget 4GFLOPs --space resnest\n"
               "  nas search --space resnext-cifar --budget 600M --trials 50 --dataset cifar10:~/data\n"
               "  nas search --space my.yaml --budget 3.6-4G --storage postgresql://me@db/nas --address head:6380",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", required=True, metavar="NAME|FILE", help="built-in space name or a space .yaml")
    p.add_argument("--budget", required=True, metavar="B",
                   help="FLOPs (multiply-adds) at the space's resolution: 4GFLOPs, 600M, or a window 3.6-4GFLOPs")
    p.add_argument("--trials", type=int, metavar="N",
                   help="trained candidates in the study, in total (default 10 on a CPU, 32 on a GPU)")
    p.add_argument("--study", metavar="NAME", help="study name (default SPACE-BUDGET, e.g. resnest-4GFLOPs)")
    p.add_argument("--storage", metavar="URL",
                   help="sqlite:///FILE, a file path, postgresql://..., or journal:FILE "
                        "(default sqlite:///nas.db, or $NAS_STORAGE)")
    p.add_argument("--dataset", default="shapes", metavar="D",
                   help="shapes (default, generated locally), cifar10:PATH, cifar100:PATH, imagefolder:PATH")
    p.add_argument("--resolution", type=int, default=32, metavar="R",
                   help="resolution candidates train at (default 32); the budget stays at the space's")
    p.add_argument("--epochs", type=int, metavar="E", help="epochs per candidate (default 3 on a CPU, 10 on a GPU)")
    p.add_argument("--train-images", type=int, metavar="N",
                   help="train on the first N training images (default 2000 on a CPU, all on a GPU)")
    p.add_argument("--val-images", type=int, metavar="N",
                   help="validate on the first N validation images (default 1000 on a CPU, all on a GPU)")
    p.add_argument("--batch-size", type=int, metavar="B", help="batch size (default 64 on a CPU, 256 on a GPU)")
    p.add_argument("--lr", type=float, metavar="LR", help="peak learning rate (default 0.1 x batch size / 256)")
    p.add_argument("--sampler", metavar="S", help="tpe (default), nsga2, random or gp")
    p.add_argument("--population", action="store_true",
                   help="sample a design-space population instead of searching: uniform random inside the budget "
                        "(a window such as 20-60MFLOPs), every candidate trained at the same fidelity, no early "
                        "stopping; what nas space refine and nas space compare read")
    p.add_argument("--objectives", default="accuracy,flops", metavar="LIST",
                   help="accuracy plus any of flops, params, latency (default accuracy,flops); latency is the "
                        "deployed network's (the space's resolution and classes) at batch 1, on --latency-runtime")
    p.add_argument("--latency-runtime", metavar="NAME[:DEVICE]",
                   help="where latency is measured: torch (eager, default), torch-compile or onnxruntime (the graph "
                        "nas export --onnx writes), on :cpu or :cuda (default: where candidates train), with "
                        "--cpus-per-trial threads (default 1)")
    p.add_argument("--max-latency", metavar="T",
                   help="a latency budget at batch 1, e.g. 8ms: each candidate is timed before it trains, and one "
                        "over it is recorded infeasible, never trained (with any --objectives)")
    p.add_argument("--cpus-per-trial", type=float, metavar="C", help="CPUs per trial (default 1 on a CPU)")
    p.add_argument("--gpus-per-trial", type=float, metavar="F", help="GPUs per trial, fractions allowed (default 1)")
    p.add_argument("--max-concurrent", type=int, metavar="K", help="trials at once (default: as many as fit)")
    p.add_argument("--address", metavar="HOST:PORT",
                   help="join this Ray cluster (default $RAY_ADDRESS, else a local cluster for this search)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="sampler seed (default 0)")
    p.add_argument("--train-seed", type=int, default=0, metavar="S",
                   help="training seed: weights, batch order and augmentation (default 0)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="where candidates train (default: cuda if the "
                                                              "cluster has GPUs)")
    p.add_argument("--trial-timeout", type=float, metavar="SECONDS",
                   help="fail a candidate whose training runs longer than this (status timeout; default none)")
    p.add_argument("--trial-resources", metavar="NAME=AMOUNT,...",
                   help="custom Ray resources every trial needs, e.g. fast=1 (nodes started with "
                        "--resources '{\"fast\": 2}' then run them)")
    p.add_argument("--artifacts", metavar="DIR",
                   help="where the weights of the trials on the front are kept (default: beside an SQLite or "
                        "journal file, FILE-artifacts/; ./nas-artifacts for a database server)")
    p.add_argument("--no-early-stopping", dest="early_stopping", action="store_false",
                   help="train every candidate for its whole schedule (default: MO-ASHA stops dominated ones)")
    p.add_argument("--grace", type=int, metavar="G",
                   help="first early-stopping rung, in epochs (default a quarter of --epochs, at least 1)")
    p.add_argument("--eta", type=int, default=3, metavar="E",
                   help="rungs at grace x eta^k epochs; the top 1/eta of each rung continues (default 3)")
    p.add_argument("--rung-evidence", type=int, metavar="N",
                   help="a rung stops nothing until N candidates trained to the end show its accuracy ranks like "
                        "the final one (Kendall tau >= 0.6); 0 stops from the first candidates on (default 10)")
    p.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    from nas.search.options import SearchOptions
    from nas.search.run import run_search

    # Every option of this parser is a SearchOptions field (tests/nas/test_cli_search.py holds it):
    # one with another name fails here, loudly, instead of being dropped.
    return run_search(SearchOptions(**{k: v for k, v in vars(args).items() if k not in ("func", "command")}))
