"""``nas fidelity``: check how well a finished study's accuracies rank its candidates, by retraining
a sample of them at a higher fidelity (or with another seed) in a linked study."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fidelity", help="retrain a study's candidates at a higher fidelity and say whether its ranking holds",
        description="Retrain the front and --random K other candidates of a finished study at a higher fidelity "
                    "(--epochs, --train-images) or with another training seed (--reseed), through Ray, as a linked "
                    "study in the same storage; then print Kendall's tau, Spearman's rho, the top-k overlap and the "
                    "regret between the study's accuracies and the reference's, with a verdict. Re-running resumes "
                    "and reuses what is done.",
        epilog="Examples:\n  nas fidelity --study resnest-4GFLOPs\n"
               "  nas fidelity --study resnext-cifar-20MFLOPs --random 12 --epochs 3 --train-images 16000\n"
               "  nas fidelity --study resnext-cifar-20MFLOPs --reseed 1      # the proxy's own seed noise",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", metavar="NAME", help="the study to check (may be left out when the storage holds one)")
    p.add_argument("--storage", metavar="URL", help="study storage (default sqlite:///nas.db, or $NAS_STORAGE)")
    p.add_argument("--random", type=int, default=8, metavar="K",
                   help="trained candidates to retrain besides the front, drawn at random (default 8)")
    p.add_argument("--all", action="store_true", help="retrain every completely trained candidate")
    p.add_argument("--epochs", type=int, metavar="E", help="reference epochs (default 3)")
    p.add_argument("--train-images", type=int, metavar="N",
                   help="reference training images (default 16000: 8x the CPU default's images x epochs)")
    p.add_argument("--val-images", type=int, metavar="N", help="reference validation images (default: all)")
    p.add_argument("--batch-size", type=int, metavar="B", help="reference batch size (default: the study's)")
    p.add_argument("--lr", type=float, metavar="LR",
                   help="reference peak learning rate (default 0.1 x batch / 256; --reseed alone: the study's)")
    p.add_argument("--reseed", type=int, metavar="SEED",
                   help="training seed of the retrained candidates; alone, retrain at the study's own fidelity, its "
                        "learning rate included (the proxy's seed-to-seed noise)")
    p.add_argument("--any-cost", action="store_true",
                   help="retrain at the given fidelity even if it costs no more than the study's (another proxy of "
                        "the same cost, to compare two proxies rather than check against a reference)")
    p.add_argument("--cpus-per-trial", type=float, metavar="C", help="CPUs per trial (default 1 on a CPU)")
    p.add_argument("--max-concurrent", type=int, metavar="K", help="trials at once (default: as many as fit)")
    p.add_argument("--address", metavar="HOST:PORT", help="join this Ray cluster (default $RAY_ADDRESS, else local)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="where candidates train (default: cuda if any)")
    p.add_argument("--artifacts", metavar="DIR", help="where the reference study keeps front weights")
    p.set_defaults(func=cmd_fidelity)


def cmd_fidelity(args: argparse.Namespace) -> int:
    from nas.search.fidelity import run_fidelity

    return run_fidelity(args)
