"""Small dataset files in their real formats (CIFAR's python pickles, an ImageFolder tree of PNGs),
for the tests of the real readers. ``tests/`` is on the test path (pyproject: pytest pythonpath)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def _batch(rng: np.random.Generator, n: int, label_key: str, classes: int, name: str) -> dict:
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)  # rows: R plane, G plane, B plane
    labels = [int(v) for v in rng.integers(0, classes, n)]
    labels[: min(n, classes)] = list(range(min(n, classes)))
    out = {"batch_label": name, "data": data, label_key: labels,
           "filenames": [f"img_{i}.png" for i in range(n)]}
    if label_key == "fine_labels":
        out["coarse_labels"] = [v % 20 for v in labels]
    return out


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 6) -> tuple[np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for i in range(1, 6):
        b = _batch(rng, per_batch, "labels", 10, f"training batch {i} of 5")
        _dump(folder / f"data_batch_{i}", b)
        xs.append(b["data"])
        ys += b["labels"]
    _dump(folder / "test_batch", _batch(rng, 4, "labels", 10, "testing batch 1 of 1"))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072})
    return np.concatenate(xs), ys


def write_cifar100(root: Path, n: int = 200) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    _dump(folder / "train", _batch(rng, n, "fine_labels", 100, "training batch 1 of 1"))
    _dump(folder / "test", _batch(rng, 10, "fine_labels", 100, "testing batch 1 of 1"))
    _dump(folder / "meta", {"fine_label_names": [f"class_{i:02d}" for i in range(100)],
                            "coarse_label_names": [f"super_{i:02d}" for i in range(20)]})


def write_imagefolder(root: Path, classes=("cat", "dog", "owl"), per_class: int = 4) -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    sizes = [(40, 30), (17, 23), (64, 64), (33, 50)]
    for ci, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            w, h = sizes[i % len(sizes)]
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            arr[..., 0] = ci * 80  # a class-dependent channel, to check labels line up
            mode = "L" if i == 1 else "RGB"  # a greyscale file must be converted to RGB
            img = Image.fromarray(arr).convert(mode)
            img.save(root / name / f"{i}.{'png' if i % 2 == 0 else 'jpg'}")

