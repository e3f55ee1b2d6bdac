"""What the proxy-fidelity benchmark measured, shipped with the package: a search states how well its
own fidelity was measured to rank candidates, when its space and fidelity match a recorded one.

``measured_fidelity.json`` is written by ``python bench/proxy_fidelity.py analyze --write-table`` from the
recorded panels (BENCHMARKS.md, "Proxy fidelity"); a fidelity matches on epochs, training images, batch
size and learning rate, and on validation images or more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TABLE = Path(__file__).with_name("measured_fidelity.json")


def _load() -> list[dict[str, Any]]:
    try:
        return list(json.loads(TABLE.read_text())["rows"])
    except (OSError, ValueError, KeyError):
        return []


def lookup(space: str, epochs: int, train_images: int | None, val_images: int | None, batch_size: int,
           lr: float) -> dict[str, Any] | None:
    """The recorded row of this fidelity. A run that validates on more images than a recorded row (``None``:
    the whole split) matches it too, marked ``more_val``: its accuracies are less noisy, so the
    recorded rank agreement is what it can expect at least."""
    near = None
    for row in _load():
        if (row["space"], row["epochs"], row["train_images"], row["batch_size"]) != \
                (space, epochs, train_images, batch_size) or abs(row["lr"] - lr) >= 1e-9:
            continue
        if row["val_images"] == val_images:
            return row
        if row["val_images"] is not None and (val_images is None or val_images > row["val_images"]):
            near = {**row, "more_val": True}
    return near


def describe(row: dict[str, Any] | None) -> str:
    """The plan's ``signal`` line."""
    if row is None:
        return ("not measured for this space and fidelity; after the search, nas fidelity --study S says whether "
                "its ranking holds")
    parts = []
    if row.get("tau") is not None:
        parts.append(f"Kendall tau {row['tau']:.2f} against the reference, 8x the CPU default's training "
                     f"(over {row['n']})")
    if row.get("seed_tau") is not None:
        parts.append(f"{row['seed_tau']:.2f} between two training seeds (over {row['seed_n']})")
    if not parts:
        return "recorded for this space and fidelity, without a reference yet"
    where = (f"on {row['val_images']:,} validation images (this run validates on more: its ranking should hold at "
             "least as well)" if row.get("more_val") else "at this fidelity")
    grade = ""
    if row.get("tau") is not None and row.get("tau_p") is not None:
        from nas.study.agreement import agreement_grade

        grade = agreement_grade(row["tau"], row["tau_p"]) + ", as "
    return (f"{grade}measured on a {row['space']} panel {where}: " + "; ".join(parts)
            + " (BENCHMARKS.md, Proxy fidelity)")


def _image_epochs(row: dict[str, Any]) -> float | None:
    return None if row["train_images"] is None else row["epochs"] * row["train_images"]


def advice(row: dict[str, Any] | None) -> str | None:
    """A note for a run whose measured fidelity does not rank like the reference, when the same space's
    panel measured one that does: its flags, its tau and its cost against this one's. The cheapest such
    fidelity is named (on a tie, the one with the higher tau)."""
    from nas.study.agreement import GOOD_TAU

    if row is None or row.get("tau") is None or row["tau"] >= GOOD_TAU:
        return None
    good = [r for r in _load() if r["space"] == row["space"] and (r.get("tau") or -1.0) >= GOOD_TAU]
    if not good:
        return None
    best = min(good, key=lambda r: (_image_epochs(r) or float("inf"), -r["tau"]))
    flags = [f"--epochs {best['epochs']}", f"--train-images {best['train_images'] or 'all'}"]
    if best["val_images"] != row["val_images"] and best["val_images"] is not None:
        flags.append(f"--val-images {best['val_images']}")
    if best["batch_size"] != row["batch_size"]:
        flags.append(f"--batch-size {best['batch_size']}")
    if abs(best["lr"] - row["lr"]) >= 1e-9:
        flags.append(f"--lr {best['lr']:g}")
    mine, theirs = _image_epochs(row), _image_epochs(best)
    cost = f" at {theirs / mine:.1f}x the training images" if mine and theirs else ""
    return (f"on the measured {row['space']} panel, {' '.join(flags)} ranks like the reference (Kendall tau "
            f"{best['tau']:.2f} over {best['n']}; this fidelity {row['tau']:.2f}){cost}: use it when the ranking "
            f"matters more than the time")
