"""How well does a proxy fidelity rank architectures? Recorded with ``nas search`` and ``nas fidelity``.

A fixed, seeded panel of candidates (``nas search --sampler random --no-early-stopping``: a sample of
the space, not a search, trained at the CPU default proxy) is retrained by ``nas fidelity --all`` at a
**reference** fidelity (8x the CPU default's images x epochs, the whole validation split) and at each
candidate proxy of :data:`PROXIES`, each with two training seeds. Every run is a study in one SQLite
file, so a recording resumes after any interruption (re-run the same command) and runs on a GPU
unchanged. ``export`` writes what the analysis needs as JSON (``bench/data/proxy_fidelity.json``),
so ``analyze`` replays in seconds, in CI too.

    python bench/proxy_fidelity.py record --panel resnest --storage sqlite:///proxy_fidelity.db  # hours on 2 cores
    python bench/proxy_fidelity.py export --storage sqlite:///proxy_fidelity.db -o bench/data/proxy_fidelity.json
    python bench/proxy_fidelity.py analyze bench/data/proxy_fidelity.json          # the table of BENCHMARKS.md

For each proxy: Kendall tau and Spearman rho against the reference, the proxy's own seed-to-seed tau
(its noise ceiling), top-25 % overlap, regret (reference accuracy of the proxy's best pick against the
reference's best) and seconds per candidate.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nas.search.fidelity import rank_agreement  # noqa: E402


@dataclass(frozen=True)
class Proxy:
    name: str
    args: tuple[str, ...]  # nas fidelity options (the panel study's own fidelity when empty)
    what: str


@dataclass(frozen=True)
class Panel:
    space: str
    budget: str
    size: int  # candidates in the panel (a re-run with a larger size resumes and adds to it)
    reference_random: int | None  # the reference retrains the front and this many others; None: all of them
    order: tuple[str, ...]  # the runs in the order they are recorded, as PROXY:SEED


#: The panels: candidates of a CIFAR-style space at a small budget, and of the main job's space as the
#: main job trains them (32 px), each trained at the CPU default proxy. The reference costs about 12 minutes
#: a resnext-cifar candidate and 11 a resnest one on one core, so the resnext-cifar reference retrains the
#: panel's front and 5 others drawn at random (seeded), and the resnest panel is 8 candidates, all retrained;
#: every proxy retrains the whole panel and is compared on the common part.
PANELS = {
    "resnext-cifar": Panel("resnext-cifar", "25MFLOPs", 16, 5, (
        "reference:0", "fresh-1x6k-lr0.1:0", "fresh-1x6k-lr0.1:1", "default:1", "fresh-1x20k-lr0.1:0",
        "fresh-1x20k-lr0.1:1", "2x8k-lr0.1:0", "2x8k-lr0.1:1")),
    # resnest candidates all reach 95-97 % at the reference, so its own seed noise is recorded second
    "resnest": Panel("resnest", "4GFLOPs", 8, None, (
        "reference:0", "fresh-1x20k-lr0.1:0", "default:1", "reference:1", "fresh-1x20k-lr0.1:1",
        "fresh-1x6k-lr0.1:0", "fresh-1x6k-lr0.1:1")),
}
#: The reference: 8x the CPU default's images x epochs, on the whole validation split.
REFERENCE = Proxy("reference", ("--epochs", "3", "--train-images", "16000"),
                  "3 epochs x 16,000 images (8x the default), all 5,000 val, lr 0.025")
PROXIES = (
    Proxy("default", (), "3 epochs x 2,000 images, 1,000 val, batch 64, lr 0.025 (the CPU default today)"),
    Proxy("fresh-1x6k-lr0.1", ("--epochs", "1", "--train-images", "6000", "--val-images", "1000", "--lr", "0.1",
                               "--any-cost"),
          "1 epoch x 6,000 images, 1,000 val, lr 0.1 (the default's cost: fresh images, not repeated epochs)"),
    Proxy("fresh-1x20k-lr0.1", ("--epochs", "1", "--train-images", "20000", "--val-images", "1000", "--lr", "0.1"),
          "1 epoch x 20,000 images, 1,000 val, lr 0.1"),
    Proxy("2x8k-lr0.1", ("--epochs", "2", "--train-images", "8000", "--val-images", "1000", "--lr", "0.1"),
          "2 epochs x 8,000 images, 1,000 val, lr 0.1"),
)
SEEDS = (0, 1)


def panel_study(space: str) -> str:
    return f"panel-{space}"


def _nas(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "nas.cli", *args]
    print("$ nas " + " ".join(args), flush=True)
    code = subprocess.call(cmd)
    if code:
        raise SystemExit(f"nas {' '.join(args)} exited {code}")


def record(args: argparse.Namespace) -> None:
    panel = PANELS[args.panel]
    study = panel_study(args.panel)
    # The panel itself is the default proxy with seed 0.
    _nas(["search", "--space", panel.space, "--budget", panel.budget, "--trials", str(panel.size), "--sampler",
          "random", "--seed", "0", "--no-early-stopping", "--storage", args.storage, "--study", study])
    by_name = {p.name: p for p in (REFERENCE, *PROXIES)}
    for run in args.runs.split(",") if args.runs else panel.order:
        name, _, seed_text = run.partition(":")
        proxy, seed = by_name[name], int(seed_text or 0)
        if not proxy.args and not seed:
            continue  # the panel study itself
        sample = ["--all"]
        if proxy is REFERENCE and panel.reference_random is not None:
            sample = ["--random", str(panel.reference_random)]
        reseed = ["--reseed", str(seed)] if seed or not proxy.args else []
        _nas(["fidelity", "--study", study, "--storage", args.storage, *sample, *proxy.args, *reseed])


def export(args: argparse.Namespace) -> None:
    import optuna

    from nas.search.fidelity import LINK_ATTR, trained_candidates
    from nas.study.records import read_settings, read_trials
    from nas.study.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(args.storage, create=False)
    out: dict = {"format": "nas-proxy-fidelity/1", "commands": {}, "panels": {}}
    for summary in storage.get_all_studies():
        name = summary.study_name
        link = summary.user_attrs.get(LINK_ATTR)
        parent = link["study"] if link else name
        if not parent.startswith("panel-"):
            continue
        study = optuna.load_study(study_name=name, storage=storage)
        s = read_settings(study)
        runs = out["panels"].setdefault(parent, {})
        out["commands"][parent] = (f"python bench/proxy_fidelity.py record --panel {parent.removeprefix('panel-')} "
                                   f"--storage {args.storage}")
        runs[name] = {
            "fidelity": {**s.fidelity, "lr": s.schedule["lr"], "seed": s.schedule.get("seed", 0)},
            "space": s.space, "budget": s.budget_text(),
            "candidates": {r.get("arch_hash"): {"accuracy": r.accuracy, "arch": r.get("arch"), "flops": r.get("flops"),
                                                 "wall_time_s": r.get("wall_time_s")}
                           for r in trained_candidates(read_trials(study))},
        }
    Path(args.output).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.output}: {sum(len(v) for v in out['panels'].values())} studies")


def _key(fid: dict) -> tuple:
    return (fid["epochs"], fid["train_images"], fid["val_images"], fid["batch_size"], round(fid["lr"], 6))


def analyze(data: dict) -> list[dict]:
    """One row per proxy fidelity and panel: agreement with the reference and between seeds."""
    rows = []
    for panel, runs in sorted(data["panels"].items()):
        by_fid: dict[tuple, dict[int, dict]] = {}
        for run in runs.values():
            by_fid.setdefault(_key(run["fidelity"]), {})[run["fidelity"]["seed"]] = run
        # the reference: REFERENCE's fidelity (3 x 16,000 images, the whole validation split) once recorded
        ref_key = next((k for k in by_fid if (k[0], k[1]) == (3, 16000) and k[2] != 1000), None)
        reference = by_fid[ref_key][min(by_fid[ref_key])]["candidates"] if ref_key else {}
        for key, seeds in sorted(by_fid.items()):
            run0 = seeds[min(seeds)]
            cands = run0["candidates"]
            common = sorted(h for h in cands if h in reference)
            row = {"panel": panel, "space": run0["space"], "epochs": key[0], "train_images": key[1],
                   "val_images": key[2], "batch_size": key[3], "lr": key[4], "reference": key == ref_key,
                   "n": len(common), "seeds": sorted(seeds)}
            secs = [c["wall_time_s"] for c in cands.values() if c.get("wall_time_s")]
            row["seconds"] = sum(secs) / len(secs) if secs else None
            accs = [cands[h]["accuracy"] for h in cands]
            row["accuracy_range"] = (min(accs), max(accs)) if accs else None
            if len(common) >= 3 and key != ref_key:
                a = rank_agreement([cands[h]["accuracy"] for h in common], [reference[h]["accuracy"] for h in common])
                row.update(tau=a.kendall_tau, tau_p=a.kendall_p, rho=a.spearman_rho, top_overlap=a.top_overlap,
                           regret=a.regret)
            if len(seeds) >= 2:
                s0, s1 = (seeds[s]["candidates"] for s in sorted(seeds)[:2])
                both = sorted(h for h in s0 if h in s1)
                if len(both) >= 3:
                    row["seed_tau"] = rank_agreement([s0[h]["accuracy"] for h in both],
                                                     [s1[h]["accuracy"] for h in both]).kendall_tau
                    row["seed_n"] = len(both)
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    f = lambda v, spec=".2f": "-" if v is None else format(v, spec)  # noqa: E731
    lines = ["| panel | epochs x images | val | batch | lr | n | tau vs ref (p) | rho | seed tau | top-25% | regret "
             "| acc range | s/candidate |", "|" + "---|" * 13]
    for r in rows:
        imgs = "all" if r["train_images"] is None else f"{r['train_images']:,}"
        lo, hi = r["accuracy_range"] or (None, None)
        tau = f(r.get("tau")) + ("" if r.get("tau_p") is None else f" ({r['tau_p']:.2g})")
        seed_tau = f(r.get("seed_tau")) + ("" if r.get("seed_n") is None else f" ({r['seed_n']})")
        lines.append(
            f"| {r['space']} | {r['epochs']} x {imgs}{' (reference)' if r['reference'] else ''} | "
            f"{'all' if r['val_images'] is None else r['val_images']} | {r['batch_size']} | {r['lr']:g} | {r['n']} | "
            f"{tau} | {f(r.get('rho'))} | {seed_tau} | {f(r.get('top_overlap'), '.0%')} | "
            f"{f(r.get('regret'), '.3f')} | {f(lo, '.3f')}-{f(hi, '.3f')} | {f(r.get('seconds'), '.0f')} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--panel", default="resnext-cifar", choices=sorted(PANELS))
    r.add_argument("--storage", default="sqlite:///proxy_fidelity.db")
    r.add_argument("--runs", help="comma-separated PROXY:SEED to record instead of the panel's order, e.g. "
                   "reference:0,default:1 (proxies: " + ", ".join(p.name for p in (REFERENCE, *PROXIES)) + ")")
    e = sub.add_parser("export")
    e.add_argument("--storage", default="sqlite:///proxy_fidelity.db")
    e.add_argument("-o", "--output", default=str(ROOT / "bench/data/proxy_fidelity.json"))
    a = sub.add_parser("analyze")
    a.add_argument("data", nargs="?", default=str(ROOT / "bench/data/proxy_fidelity.json"))
    a.add_argument("--json", action="store_true")
    a.add_argument("--write-table", action="store_true",
                   help="also write the rows the search's plan quotes (nas/search/measured_fidelity.json)")
    args = p.parse_args()
    if args.cmd == "record":
        record(args)
    elif args.cmd == "export":
        export(args)
    else:
        rows = analyze(json.loads(Path(args.data).read_text()))
        print(json.dumps(rows, indent=1) if args.json else table(rows))
        if args.write_table:
            from nas.search.measured_fidelity import TABLE

            keep = ("space", "epochs", "train_images", "val_images", "batch_size", "lr", "n", "tau", "tau_p", "rho",
                    "seed_tau", "seed_n", "top_overlap", "regret")
            TABLE.write_text(json.dumps({"format": "nas-measured-fidelity/1", "source": "bench/proxy_fidelity.py",
                                         "rows": [{k: r.get(k) for k in keep} for r in rows if not r["reference"]]},
                                        indent=1) + "\n")
            print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
