"""What the proxy-fidelity benchmark measured, shipped with the package: a search states how well its
own fidelity was measured to rank candidates, when its space and fidelity match a recorded one.

``measured_fidelity.json`` is written by ``python bench/proxy_fidelity.py analyze --write-table`` from the
recorded panels (BENCHMARKS.md, "Proxy fidelity"); a fidelity matches on epochs, training and
validation images, batch size and learning rate.
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
    for row in _load():
        if (row["space"], row["epochs"], row["train_images"], row["val_images"], row["batch_size"]) == \
                (space, epochs, train_images, val_images, batch_size) and abs(row["lr"] - lr) < 1e-9:
            return row
    return None


def describe(row: dict[str, Any] | None) -> str:
    """The plan's ``signal`` line."""
    if row is None:
        return ("not measured for this space and fidelity; after the search, nas fidelity --study S says whether "
                "its ranking holds")
    parts = []
    if row.get("tau") is not None:
        parts.append(f"Kendall tau {row['tau']:.2f} against a reference 8x longer (over {row['n']})")
    if row.get("seed_tau") is not None:
        parts.append(f"{row['seed_tau']:.2f} between two training seeds (over {row['seed_n']})")
    if not parts:
        return "recorded for this space and fidelity, without a reference yet"
    return f"measured on a {row['space']} panel at this fidelity: " + "; ".join(parts) + \
        " (BENCHMARKS.md, Proxy fidelity)"
