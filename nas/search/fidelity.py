"""Proxy fidelity: how well a study's accuracies rank its candidates, checked by retraining them.

Every decision of a search (the sampler's next proposal, early stopping, the front, the exported
"best") rests on one accuracy per candidate at the proxy fidelity. ``nas fidelity`` retrains a
sample of a finished study's candidates at a higher fidelity (more images or epochs) or with
another training seed, as a *linked study* in the same storage, and compares the two rankings:

* Kendall's tau-b and Spearman's rho between the study's and the linked study's accuracies;
* the top-k overlap (k a quarter of the sample): how many of the reference's best the proxy found;
* regret: the reference accuracy of the proxy's best pick against the reference's best.

The linked study is an ordinary study made by the search driver (:func:`nas.search.run.run_search`)
with the parent's space, budget and dataset and the new fidelity; the sample is queued into it
(:func:`nas.study.enqueue_architectures`), so it trains through Ray like any search, resumes
after any interruption and a second run reuses what is done.
"""

from __future__ import annotations

import random
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from nas.common.errors import UserError
from nas.common.units import plural
from nas.study.agreement import (  # noqa: F401  (the fidelity check's public names)
    GOOD_TAU,
    LINK_ATTR,
    MIN_CANDIDATES,
    FidelityReport,
    RankAgreement,
    compare,
    rank_agreement,
    trained_candidates,
)

#: The reference fidelity ``nas fidelity`` retrains at by default: 8x the CPU default's images x
#: epochs (3 x 2,000), on the whole validation split (BENCHMARKS.md, "Proxy fidelity").
REFERENCE_EPOCHS, REFERENCE_TRAIN_IMAGES = 3, 16000


# ---- the linked study --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """The fidelity a study's candidates are retrained at."""

    epochs: int
    train_images: int | None  # None: the whole training split
    val_images: int | None
    batch_size: int
    lr: float | None
    train_seed: int

    def tag(self) -> str:
        imgs = lambda n: "all" if n is None else str(n)  # noqa: E731
        lr = "" if self.lr is None else f"-lr{self.lr:g}"
        return (f"e{self.epochs}-n{imgs(self.train_images)}-v{imgs(self.val_images)}-b{self.batch_size}{lr}"
                f"-s{self.train_seed}")


def image_epochs(epochs: int, train_images: int | None, n_train: int) -> int:
    return epochs * (n_train if train_images is None else min(train_images, n_train))


def choose_sample(records: Sequence[Any], objectives: Sequence[str], k_random: int | None,
                  seed: int = 0) -> list[Any]:
    """The front plus ``k_random`` other trained candidates (all of them when ``None``), the same on
    every run with the same study (seeded), front first."""
    from nas.study.records import front

    done = trained_candidates(records)
    members = {r.number for r in front(records, objectives)}
    first = [r for r in done if r.number in members]
    rest = [r for r in done if r.number not in members]
    if k_random is not None:
        rest = sorted(random.Random(seed).sample(rest, min(k_random, len(rest))), key=lambda r: r.number)
    return first + rest


def linked_name(parent: str, ref: Reference) -> str:
    return f"{parent}@fidelity-{ref.tag()}"


def _space_option(settings: Any, source: str | None, folder: Path) -> str:
    """A ``--space`` value that reads back as the parent's exact space: its built-in name when the
    text matches, else the stored text written to a file in ``folder``."""
    from nas.search_spaces.registry import load_space
    from nas.study.lifecycle import fingerprint

    try:
        load_space(settings.space)
        from importlib import resources

        text = (resources.files("nas.search_spaces.spaces") / f"{settings.space}.yaml").read_text()
        if fingerprint(text) == settings.space_fingerprint:
            return settings.space
    except (UserError, FileNotFoundError, OSError):
        pass
    if source is None:
        raise UserError(f"the study's space {settings.space!r} is not stored with it and no longer matches the "
                        f"built-in one: it cannot be rebuilt")
    path = folder / f"{settings.space}.yaml"
    path.write_text(source)
    return str(path)


def _budget_option(settings: Any) -> str:
    if settings.budget_low > 0:
        return f"{int(settings.budget_low)}-{int(settings.budget_high)}"
    return str(int(settings.budget_high))


def check_fidelity(study: Any, args: Any) -> tuple[Any, Reference, list[Any], int]:
    """Everything ``nas fidelity`` checks before it trains: the parent's settings, the sample, and a
    reference above the study's fidelity (or another seed). One-line errors, nothing written."""
    from nas.study.records import read_settings, read_trials

    settings = read_settings(study)
    if settings is None:
        raise UserError(f"study {study.study_name!r} was not made by 'nas search'")
    link = study.user_attrs.get(LINK_ATTR)
    if link:
        raise UserError(f"study {study.study_name!r} is itself a fidelity check of {link.get('study')!r}; "
                        f"run nas fidelity on that study")
    if args.random is not None and args.random < 0:
        raise UserError(f"--random must be 0 or more, got {args.random}")
    records = read_trials(study)
    sample = choose_sample(records, settings.objectives, None if args.all else args.random)
    done = len(trained_candidates(records))
    if done < MIN_CANDIDATES:
        raise UserError(f"study {study.study_name!r} has {plural(done, 'completely trained candidate')}; "
                        f"a fidelity check needs at least {MIN_CANDIDATES}")
    if len(sample) < MIN_CANDIDATES:
        raise UserError(f"the sample holds {plural(len(sample), 'candidate')} (the front and --random {args.random}); "
                        f"raise --random to at least {MIN_CANDIDATES - len(sample) + (args.random or 0)}")
    # --reseed alone retrains at the study's own fidelity (its seed noise), its learning rate included;
    # otherwise what is not given comes from the reference of BENCHMARKS.md's fidelity table.
    from nas.search.options import default_lr

    own = args.reseed is not None and args.epochs is None and args.train_images is None
    batch_size = args.batch_size or settings.batch_size
    lr = args.lr
    study_lr = float(settings.schedule.get("lr") or default_lr(settings.batch_size))
    if lr is None and own and batch_size == settings.batch_size and abs(study_lr - default_lr(batch_size)) > 1e-12:
        lr = study_lr  # the study's own --lr (the default one stays implicit, as the linked study's name has it)
    ref = Reference(epochs=args.epochs or (settings.epochs if own else REFERENCE_EPOCHS),
                    train_images=args.train_images if args.train_images is not None
                    else (settings.train_images if own else REFERENCE_TRAIN_IMAGES),
                    val_images=args.val_images if args.val_images is not None
                    else (settings.val_images if own else None),
                    batch_size=batch_size, lr=lr,
                    train_seed=args.reseed if args.reseed is not None else int(settings.schedule.get("seed", 0)))
    for name, value in (("epochs", args.epochs), ("train-images", args.train_images), ("val-images", args.val_images),
                        ("batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise UserError(f"--{name} must be at least 1, got {value}")
    return settings, ref, sample, done


def _split_sizes(settings: Any) -> tuple[int, int]:
    """Training and validation images of the study's dataset (counted: no image is made)."""
    from nas.workers.datasets import dataset_info

    info = dataset_info(settings.dataset, resolution=settings.train_resolution)
    return info.train, info.val


def run_fidelity(args: Any, out: TextIO | None = None) -> int:
    """``nas fidelity``: retrain a study's sample at the reference fidelity, then compare."""
    import optuna

    from nas.search.options import SearchOptions
    from nas.search.run import run_search
    from nas.study.lifecycle import resolve_study_name
    from nas.study.records import SPACE_SOURCE_ATTR
    from nas.study.storage import open_storage, parse_storage

    out = out or sys.stdout
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage_url = parse_storage(args.storage)
    storage = open_storage(storage_url, create=False)
    name = resolve_study_name(storage, args.study)
    study = optuna.load_study(study_name=name, storage=storage)
    settings, ref, sample, _ = check_fidelity(study, args)
    n_train, n_val = _split_sizes(settings)
    ours = image_epochs(settings.epochs, settings.train_images, n_train)
    theirs = image_epochs(ref.epochs, ref.train_images, n_train)
    reseeded = ref.train_seed != int(settings.schedule.get("seed", 0))
    if not (theirs > ours or (reseeded and theirs == ours) or getattr(args, "any_cost", False)):
        raise UserError(f"the reference fidelity ({plural(ref.epochs, 'epoch')} of "
                        f"{ref.train_images or n_train:,} images) is not above the study's "
                        f"({plural(settings.epochs, 'epoch')} of {settings.train_images or n_train:,}); "
                        f"raise --epochs or --train-images, give --reseed SEED to retrain at the same fidelity "
                        f"with another seed, or --any-cost to compare with another proxy of no higher cost")
    linked = linked_name(name, ref)
    with tempfile.TemporaryDirectory(prefix="nas-fidelity-") as folder:
        opts = SearchOptions(
            space=_space_option(settings, storage.get_study_system_attrs(study._study_id).get(SPACE_SOURCE_ATTR),
                                Path(folder)),
            budget=_budget_option(settings), trials=len(sample), study=linked, storage=storage_url.text,
            dataset=settings.dataset, resolution=settings.train_resolution, epochs=ref.epochs,
            # the whole validation split, said explicitly: a search left to itself validates on its default
            train_images=ref.train_images, val_images=ref.val_images or n_val, batch_size=ref.batch_size, lr=ref.lr,
            sampler="random", objectives=",".join(settings.objectives), cpus_per_trial=args.cpus_per_trial,
            max_concurrent=args.max_concurrent, address=args.address, train_seed=ref.train_seed,
            device=args.device, early_stopping=False, artifacts=args.artifacts,
            # latency measured as the parent measured it (its budget is not applied again: these are its front)
            latency_runtime=(f"{settings.latency['runtime']}:{settings.latency['device']}"
                             if settings.latency and "latency" in settings.objectives else None))
        queue = [(dict(r.params), r.get("arch_hash"), {LINK_ATTR: r.number}) for r in sample]
        link = {"study": name, "reference": asdict(ref), "trials": {r.get("arch_hash"): r.number for r in sample}}
        code = run_search(opts, out=out, queue=queue, study_attrs={LINK_ATTR: link})
    if code:
        return code
    report = compare(storage, name, linked)
    print_report(report, out)
    return 0


def print_report(report: FidelityReport, out: TextIO) -> None:
    from nas.common.text_table import render_table

    print(f"\nfidelity check of study {report.study} (reference: study {report.linked})", file=out)
    if report.rows:
        print(render_table(("trial", "proxy acc", "reference acc", "architecture"),
                           [(r["number"], f"{r['proxy']:.3f}", f"{r['reference']:.3f}", r["arch"] or "")
                            for r in report.rows]), file=out)
    a = report.agreement
    if a is not None:
        print(f"kendall tau {a.kendall_tau:.2f} (p {a.kendall_p:.2g})  spearman rho {a.spearman_rho:.2f}  "
              f"top-{a.top_k} overlap {a.top_overlap:.0%}  regret {a.regret:.3f} (reference accuracy lost by "
              f"taking the proxy's best)", file=out)
    print(f"verdict: {report.verdict()}", file=out, flush=True)


def reference_accuracies(storage: Any, study_name: str, arch_hash: str) -> list[dict[str, Any]]:
    """What the fidelity checks of ``study_name`` measured for one architecture: one entry per linked
    study that retrained it (``nas export`` puts these in a config's provenance)."""
    import optuna

    from nas.study.records import read_trials

    out = []
    for summary in storage.get_all_studies():
        link = summary.user_attrs.get(LINK_ATTR) or {}
        if link.get("study") != study_name or arch_hash not in (link.get("trials") or {}):
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for r in trained_candidates(read_trials(study)):
            if r.get("arch_hash") == arch_hash:
                out.append({"study": summary.study_name, "trial": r.number, "accuracy": r.accuracy,
                            "accuracy_se": r.accuracy_se, "fidelity": link.get("reference")})
    return out
