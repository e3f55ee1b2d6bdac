"""Datasets for training candidates: the procedural ``shapes`` set, CIFAR-10/100 and ImageFolder trees.

Everything is returned as uint8 tensors ``(N, C, H, W)`` plus int64 labels, because a candidate's
whole dataset then fits on the accelerator and the engine can crop, flip and normalise it there
without a host-side data loader. Nothing here touches the internet unless ``download=True`` is
asked for explicitly (CIFAR only).

A search measures candidates on a validation split carved, deterministically and per class,
from the TRAIN data; the official test split is only ever loaded on request
(``include_test=True``) so that model selection cannot leak into the reported test figure.

Dataset specs (the ``spec`` argument of :func:`load_dataset`):

- ``shapes`` -- the default; generated procedurally, cached under ``$NAS_CACHE`` (or ``~/.cache/nas``).
- ``cifar10`` / ``cifar100`` -- read from ``root`` (or ``$NAS_DATA``, or ``<cache>/data``).
- ``cifar10:PATH`` / ``cifar100:PATH`` -- read from PATH (the folder holding ``cifar-10-batches-py``,
  or that folder itself).
- ``imagefolder:PATH`` -- any class-per-folder tree of images, resized to ``resolution``.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nas.common.errors import UserError
from nas.common.files import atomic_write

__all__ = [
    "DATASET_NAMES",
    "SHAPES_CLASSES",
    "SHAPES_VERSION",
    "DatasetSplits",
    "cache_dir",
    "generate_shapes",
    "load_dataset",
]

#: Bump whenever the shapes generator changes in any way that alters pixels: it is part of the
#: cache key, so stale caches are never read.
SHAPES_VERSION = 1
SHAPES_CLASSES = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "horizontal_stripes",
    "vertical_stripes",
    "checkerboard",
    "diagonal_stripes",
    "dots",
)
#: The train pool (20k train + 5k validation with the default fraction) and a separate test split.
SHAPES_TRAIN_SIZE = 25_000
SHAPES_TEST_SIZE = 5_000
_SHAPES_SEEDS = {"train": 0x5EED_0001, "test": 0x5EED_0002}
_SHAPES_CHUNK = 2048  # part of the generated stream's identity: changing it changes the data

DATASET_NAMES = ("shapes", "cifar10", "cifar100", "imagefolder")

# Per-dataset defaults for the validation fraction carved from train: shapes 25k -> 20k/5k,
# CIFAR 50k -> 45k/5k (the usual split).
_DEFAULT_VAL_FRACTION = {"shapes": 0.2, "cifar10": 0.1, "cifar100": 0.1, "imagefolder": 0.1}

# Standard published channel statistics (fraction of 255), computed on the CIFAR training sets.
_CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclass
class DatasetSplits:
    """A dataset held as uint8 image tensors ``(N, C, H, W)`` and int64 labels.

    ``mean``/``std`` are per-channel normalisation statistics as fractions of 255 (the engine
    normalises on the device). ``test_x``/``test_y`` are only present when asked for.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str] = field(default_factory=list)
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None

    @property
    def resolution(self) -> int:
        return int(self.train_x.shape[-1])

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    def take(self, train: int | None = None, val: int | None = None) -> DatasetSplits:
        """The first ``train``/``val`` samples (splits are already shuffled): quick runs and tests."""
        return replace(
            self,
            train_x=self.train_x[:train],
            train_y=self.train_y[:train],
            val_x=self.val_x[:val],
            val_y=self.val_y[:val],
        )

    def summary(self) -> dict[str, object]:
        """JSON-serialisable description (sizes, not data) for logs and trial attributes."""
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "resolution": self.resolution,
            "in_channels": self.in_channels,
            "train": int(self.train_x.shape[0]),
            "val": int(self.val_x.shape[0]),
            "test": None if self.test_x is None else int(self.test_x.shape[0]),
            "mean": list(self.mean),
            "std": list(self.std),
        }


def cache_dir() -> Path:
    """Where generated data is cached: ``$NAS_CACHE`` or ``~/.cache/nas``."""
    env = os.environ.get("NAS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nas"


def _data_root(root: str | os.PathLike[str] | None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("NAS_DATA")
    return Path(env).expanduser() if env else cache_dir() / "data"


# --------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------


def load_dataset(
    spec: str = "shapes",
    resolution: int | None = None,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    val_fraction: float | None = None,
    seed: int = 0,
    include_test: bool = False,
) -> DatasetSplits:
    """Load a dataset by spec (see the module docstring) as train/validation uint8 tensors.

    ``resolution`` resizes images to ``resolution`` x ``resolution`` (shapes is generated at that
    size directly; default 32 everywhere). The validation split is carved per class from the
    training data with ``seed`` (``val_fraction`` defaults to 0.2 for shapes, 0.1 otherwise), so the
    same arguments always give the same split.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise UserError("dataset spec must be a non-empty string, e.g. 'shapes' or 'cifar10:PATH'")
    name, _, path = spec.strip().partition(":")
    name = name.lower()
    if name not in DATASET_NAMES:
        raise UserError(f"unknown dataset '{name}'; choose one of {', '.join(DATASET_NAMES)} "
                        "(e.g. shapes, cifar10:PATH)")
    if resolution is not None and (not isinstance(resolution, int) or not 8 <= resolution <= 1024):
        raise UserError(f"resolution must be an integer between 8 and 1024, got {resolution!r}")
    if val_fraction is None:
        val_fraction = _DEFAULT_VAL_FRACTION[name]
    if not 0.0 < float(val_fraction) < 1.0:
        raise UserError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}")
    if path and root is not None:
        raise UserError(f"give the {name} folder either in the spec ('{name}:PATH') or as root, not both")

    if name == "shapes":
        if path:
            raise UserError("the shapes dataset is generated and takes no path; use 'shapes'")
        res = resolution or 32
        x, y = _shapes_cached("train", res)
        test = _shapes_cached("test", res) if include_test else None
        class_names = list(SHAPES_CLASSES)
        mean = std = None
    elif name in ("cifar10", "cifar100"):
        x, y, test, class_names = _load_cifar(name, Path(path).expanduser() if path else _data_root(root),
                                              download, include_test)
        mean, std = _CIFAR_STATS[name]
        if resolution is not None and resolution != 32:
            x = _resize_uint8(x, resolution)
            test = None if test is None else (_resize_uint8(test[0], resolution), test[1])
    else:
        if not path and root is None:
            raise UserError("imagefolder needs a path: 'imagefolder:PATH'")
        if download:
            raise UserError("imagefolder cannot be downloaded; point it at a local folder")
        x, y, class_names = _load_imagefolder(Path(path or root).expanduser(), resolution or 32)  # type: ignore[arg-type]
        test = None
        mean = std = None

    train_idx, val_idx = _stratified_split(y, float(val_fraction), seed)
    train_x, train_y = x[train_idx], y[train_idx]
    if mean is None or std is None:
        mean, std = _channel_stats(train_x)
    return DatasetSplits(
        name=name,
        train_x=train_x,
        train_y=train_y,
        val_x=x[val_idx],
        val_y=y[val_idx],
        num_classes=len(class_names),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        class_names=list(class_names),
        test_x=None if test is None else test[0],
        test_y=None if test is None else test[1],
    )


def _stratified_split(y: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic per-class split so the validation set has the training class balance.

    Each class with at least two samples gives at least one to validation and keeps at least
    one for training; both index sets are shuffled with the same seeded generator.
    """
    g = torch.Generator().manual_seed(int(seed))
    train_parts, val_parts = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        n_val = int(round(idx.numel() * val_fraction))
        if idx.numel() >= 2:
            n_val = min(max(n_val, 1), idx.numel() - 1)
        else:
            n_val = 0
        val_parts.append(idx[:n_val])
        train_parts.append(idx[n_val:])
    train_idx = torch.cat(train_parts)
    val_idx = torch.cat(val_parts)
    if val_idx.numel() == 0:
        raise UserError(f"dataset has only {y.numel()} images: too few to carve a validation split")
    return (train_idx[torch.randperm(train_idx.numel(), generator=g)],
            val_idx[torch.randperm(val_idx.numel(), generator=g)])


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean/std as fractions of 255, from a 256-bin histogram per channel
    (uint8 data: no float copy of the whole set, and about 20x faster than float sums)."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        hist = torch.bincount(x[:, c].reshape(-1).to(torch.int64), minlength=256).to(torch.float64)
        n = hist.sum().clamp_min(1.0)
        mean = (hist * values).sum() / n
        var = (hist * values.square()).sum() / n - mean.square()
        means.append(float(mean))
        stds.append(float(var.clamp_min(1e-12).sqrt()))
    return tuple(means), tuple(stds)


def _resize_uint8(x: torch.Tensor, res: int) -> torch.Tensor:
    """Resize a uint8 (N,C,H,W) tensor with antialiased bilinear interpolation, in chunks."""
    out = torch.empty((x.shape[0], x.shape[1], res, res), dtype=torch.uint8)
    for start in range(0, x.shape[0], 1024):
        chunk = x[start:start + 1024].float()
        chunk = F.interpolate(chunk, size=(res, res), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + 1024] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out


# --------------------------------------------------------------------------------------------
# shapes: procedural, deterministic, cached
# --------------------------------------------------------------------------------------------


def _shapes_cached(split: str, res: int, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The shapes split from the cache, generating and writing it (atomically) when absent."""
    n = n if n is not None else (SHAPES_TRAIN_SIZE if split == "train" else SHAPES_TEST_SIZE)
    path = cache_dir() / "datasets" / f"shapes-v{SHAPES_VERSION}-{res}px-{split}-{n}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                x, y = f["x"], f["y"]
            if x.shape == (n, 3, res, res) and x.dtype == np.uint8 and y.shape == (n,):
                return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            pass  # unreadable or truncated cache: regenerate and overwrite it
    x, y = generate_shapes(n, res, seed=_SHAPES_SEEDS[split])
    _atomic_savez(path, x=x, y=y)
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz via a temp file in the same folder and ``os.replace``, so concurrent workers
    either see the old complete file, the new complete file or none -- never a partial one."""
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))
    except OSError:
        pass  # read-only or unwritable cache: generation still works, it just is not cached


def generate_shapes(n: int, res: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` shapes images ``(n, 3, res, res)`` uint8 and labels ``(n,)`` int64.

    Ten classes: five filled shapes (circle, square, triangle, cross, ring) and five textures
    (horizontal / vertical / diagonal stripes, checkerboard, dots) inside a patch. What makes it
    learnable but not trivial: foreground and background colours are random per sample (colour
    says nothing about the class), with a brightness gradient on the background, random position,
    scale and rotation, random texture period, a distractor line and blob behind the object, and
    per-sample Gaussian noise. Labels are exactly balanced (``arange(n) % 10``, shuffled).

    Vectorised over samples and pixels (a Python loop runs only over chunks and classes);
    deterministic for a given ``(n, res, seed)`` because every draw comes from one seeded PCG64
    stream in a fixed order.
    """
    rng = np.random.default_rng(seed)
    n_classes = len(SHAPES_CLASSES)
    labels = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    out = np.empty((n, 3, res, res), dtype=np.uint8)
    coords = (np.arange(res, dtype=np.float32) + 0.5) / res * 2.0 - 1.0  # pixel centres in [-1, 1]
    u = coords[None, None, :]  # (1, 1, W)
    v = coords[None, :, None]  # (1, H, 1)
    px = 2.0 / res  # one pixel in [-1, 1] units (antialiasing)
    for start in range(0, n, _SHAPES_CHUNK):
        lab = labels[start:start + _SHAPES_CHUNK]
        out[start:start + lab.size] = _render_chunk(rng, lab, u, v, px, res)
    return out, labels


#: One pixel of the 32 x 32 design in [-1, 1] units: sizes are given in these so that the set looks
#: the same (only sharper) when generated at a higher resolution.
_U32 = 2.0 / 32


def _col(a: np.ndarray) -> np.ndarray:
    """Per-sample parameter (B,) -> (B, 1, 1) for broadcasting over pixels."""
    return a.astype(np.float32)[:, None, None]


def _soft(field_px: np.ndarray) -> np.ndarray:
    """Coverage from a signed distance in pixels (negative inside): a one-pixel antialiased edge."""
    return np.clip(0.5 - field_px, 0.0, 1.0)


def _render_chunk(rng: np.random.Generator, lab: np.ndarray, u: np.ndarray, v: np.ndarray,
                  px: float, res: int) -> np.ndarray:
    b = lab.size
    f32 = np.float32
    # --- colours: random background and foreground, kept apart so the object is visible --------
    bg = rng.uniform(0.0, 1.0, (b, 3)).astype(f32)
    fg = rng.uniform(0.0, 1.0, (b, 3)).astype(f32)
    for _ in range(16):  # vectorised rejection: redraw the foregrounds too close to their background
        close = np.linalg.norm(fg - bg, axis=1) < 0.45
        if not close.any():
            break
        fg[close] = rng.uniform(0.0, 1.0, (int(close.sum()), 3))
    grad = rng.uniform(-0.2, 0.2, (b, 2)).astype(f32)
    img = bg[:, :, None, None] + (_col(grad[:, 0]) * u + _col(grad[:, 1]) * v)[:, None]  # (B,3,H,W)

    # --- distractors behind the object: a thin line segment and a small blob ---------------------
    p0 = rng.uniform(-0.9, 0.9, (b, 2)).astype(f32)
    ang = rng.uniform(0.0, np.pi, b).astype(f32)
    half = rng.uniform(0.25, 0.7, b).astype(f32)
    width = rng.uniform(0.6, 1.3, b).astype(f32) * _U32
    line_col = rng.uniform(0.0, 1.0, (b, 3)).astype(f32)
    has_line = rng.uniform(size=b) < 0.7
    dx, dy = u - _col(p0[:, 0]), v - _col(p0[:, 1])
    along = np.clip(dx * _col(np.cos(ang)) + dy * _col(np.sin(ang)), -_col(half), _col(half))
    dist = np.sqrt((dx - along * _col(np.cos(ang))) ** 2 + (dy - along * _col(np.sin(ang))) ** 2)
    a_line = _soft((dist - _col(width) / 2) / px) * _col(has_line)
    img = img * (1 - a_line[:, None]) + line_col[:, :, None, None] * a_line[:, None]

    blob_c = rng.uniform(-0.85, 0.85, (b, 2)).astype(f32)
    blob_r = rng.uniform(1.5, 3.0, b).astype(f32) * _U32
    blob_col = rng.uniform(0.0, 1.0, (b, 3)).astype(f32)
    has_blob = rng.uniform(size=b) < 0.5
    r_blob = np.sqrt((u - _col(blob_c[:, 0])) ** 2 + (v - _col(blob_c[:, 1])) ** 2)
    a_blob = _soft((r_blob - _col(blob_r)) / px) * _col(has_blob)
    img = img * (1 - a_blob[:, None]) + blob_col[:, :, None, None] * a_blob[:, None]

    # --- the object --------------------------------------------------------------------------
    centre = rng.uniform(-0.3, 0.3, (b, 2)).astype(f32)
    scale = rng.uniform(0.38, 0.68, b).astype(f32)  # object radius, in [-1, 1] units
    theta_full = rng.uniform(0.0, 2 * np.pi, b)
    theta_small = rng.uniform(-0.26, 0.26, b)  # +-15 degrees: stripes keep their orientation
    is_texture = lab >= 5
    theta = np.where(is_texture, theta_small, theta_full).astype(f32)
    period = rng.uniform(3.5, 6.5, b).astype(f32) * _U32  # texture period: 3.5-6.5 pixels at 32 px
    diag_sign = np.where(rng.uniform(size=b) < 0.5, -1.0, 1.0).astype(f32)
    shade = rng.uniform(-0.12, 0.12, (b, 2)).astype(f32)  # lighting across the object

    cu, cv = u - _col(centre[:, 0]), v - _col(centre[:, 1])
    cos_t, sin_t = _col(np.cos(theta)), _col(np.sin(theta))
    xr = cu * cos_t + cv * sin_t  # rotated coordinates, [-1, 1] units
    yr = -cu * sin_t + cv * cos_t
    s = _col(scale)
    x, y = xr / s, yr / s  # object units: the object spans about [-1, 1]
    to_px = s / px  # object units -> pixels

    alpha = np.zeros((b, res, res), dtype=f32)
    for c in range(len(SHAPES_CLASSES)):
        m = lab == c
        if not m.any():
            continue
        xs, ys, tp = x[m], y[m], to_px[m]
        if c == 0:  # circle
            d = np.sqrt(xs**2 + ys**2) - 1.0
        elif c == 1:  # square
            d = np.maximum(np.abs(xs), np.abs(ys)) - 0.8
        elif c == 2:  # equilateral triangle, circumradius 1.1
            d = np.full_like(xs, -np.inf)
            for k in range(3):
                a = np.pi / 2 + k * 2 * np.pi / 3
                d = np.maximum(d, xs * np.cos(a) + ys * np.sin(a) - 0.55)
        elif c == 3:  # cross (plus sign)
            d = np.minimum(np.maximum(np.abs(xs) - 0.28, np.abs(ys) - 1.0),
                           np.maximum(np.abs(ys) - 0.28, np.abs(xs) - 1.0))
        elif c == 4:  # ring
            d = np.abs(np.sqrt(xs**2 + ys**2) - 0.72) - 0.25
        else:  # textures inside a square patch
            patch = _soft((np.maximum(np.abs(xs), np.abs(ys)) - 1.0) * tp)
            per = _col(period[m])
            xp, yp = xr[m], yr[m]  # textures use unscaled coordinates: period is in pixels
            two_pi = np.float32(2 * np.pi)
            if c == 5:
                t = np.sin(two_pi * yp / per)
            elif c == 6:
                t = np.sin(two_pi * xp / per)
            elif c == 7:
                t = np.sin(two_pi * xp / per) * np.sin(two_pi * yp / per)
            elif c == 8:
                t = np.sin(two_pi * (xp + _col(diag_sign[m]) * yp) / (per * np.float32(np.sqrt(2))))
            else:  # dots on a lattice
                t = (np.cos(two_pi * xp / per) + np.cos(two_pi * yp / per) - 0.9) / 2.0
            # sin slope near zero is 2*pi/period per unit -> value * period/(2*pi) is ~pixels
            alpha[m] = patch * np.clip(0.5 + t * (per / px) / (2 * np.pi), 0.0, 1.0)
            continue
        alpha[m] = _soft(d * tp)

    lighting = (_col(shade[:, 0]) * x + _col(shade[:, 1]) * y)[:, None] * (alpha[:, None] > 0)
    obj = fg[:, :, None, None] + lighting
    img = img * (1 - alpha[:, None]) + obj * alpha[:, None]

    # --- sensor noise ------------------------------------------------------------------------
    sigma = rng.uniform(0.02, 0.10, b).astype(f32)
    img = img + rng.standard_normal(img.shape, dtype=f32) * sigma[:, None, None, None]
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# CIFAR-10/100: the standard python-pickle distribution, read via torchvision
# --------------------------------------------------------------------------------------------


def _cifar_classes(name: str):  # -> type
    """torchvision's CIFAR readers with the per-file md5 checks turned into existence checks.

    The data are local files the user pointed at (possibly a re-packed copy); hashing 170 MB on
    every worker start buys nothing, and a damaged pickle still fails loudly when it is read.
    """
    from torchvision.datasets import CIFAR10, CIFAR100

    base = CIFAR10 if name == "cifar10" else CIFAR100

    class _LocalCIFAR(base):  # type: ignore[misc, valid-type]
        train_list = [[f, None] for f, _ in base.train_list]
        test_list = [[f, None] for f, _ in base.test_list]
        meta = {**base.meta, "md5": None}

    return _LocalCIFAR


def _load_cifar(name: str, where: Path, download: bool, include_test: bool):
    cls = _cifar_classes(name)
    # Accept either the parent folder (torchvision's root) or the extracted folder itself.
    root = where.parent if where.name == cls.base_folder else where
    folder = root / cls.base_folder
    missing = [f for f, _ in cls.train_list + cls.test_list + [[cls.meta["filename"], None]]
               if not (folder / f).is_file()]
    if missing and not download:
        raise UserError(
            f"{name} not found: looked for {folder} (missing {', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}); pass --download or a path ({name}:PATH)"
        )
    try:
        train = cls(root=str(root), train=True, download=download)
        test = cls(root=str(root), train=False, download=False) if include_test else None
    except (RuntimeError, OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as exc:
        what = "download failed" if download and missing else "could not read"
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{name}: {what} in {folder}: {detail}") from None

    def tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))  # HWC -> CHW
        return x, torch.as_tensor(ds.targets, dtype=torch.int64)

    x, y = tensors(train)
    return x, y, (tensors(test) if test is not None else None), list(train.classes)


# --------------------------------------------------------------------------------------------
# ImageFolder
# --------------------------------------------------------------------------------------------


def _load_imagefolder(path: Path, res: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode a class-per-folder tree into uint8 tensors: shorter side resized to ``res``, centre crop.

    Decoding happens once here (not per epoch): the point of the uint8 tensors is that the
    engine never goes back to the files.
    """
    if not path.exists():
        raise UserError(f"imagefolder: {path} does not exist")
    if not path.is_dir():
        raise UserError(f"imagefolder: {path} is not a folder")
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    tf = transforms.Compose([
        transforms.Lambda(lambda im: im.convert("RGB")),
        transforms.Resize(res, antialias=True),
        transforms.CenterCrop(res),
        transforms.PILToTensor(),
    ])
    try:
        ds = ImageFolder(str(path), transform=tf)
    except (FileNotFoundError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"imagefolder: no images found under {path} "
                        f"(expected one sub-folder of images per class): {detail}") from None
    if len(ds.classes) < 2:
        raise UserError(f"imagefolder: {path} has {len(ds.classes)} class folder(s); need at least 2")
    x = torch.empty((len(ds), 3, res, res), dtype=torch.uint8)
    for i in range(len(ds)):
        try:
            x[i] = ds[i][0]
        except OSError as exc:
            raise UserError(f"imagefolder: cannot decode {ds.samples[i][0]}: {exc}") from None
    y = torch.as_tensor(ds.targets, dtype=torch.int64)
    return x, y, list(ds.classes)

