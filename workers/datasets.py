"""Datasets for training candidates: the procedural ``shapes`` set, CIFAR-10/100 and ImageFolder trees.

Everything is returned as uint8 tensors ``(N, C, H, W)`` plus int64 labels, because a candidate's
whole dataset then fits on the accelerator and the engine can crop, flip and normalise it there
without a host-side data loader. Nothing here touches the internet unless ``download=True`` is
asked for explicitly (CIFAR only).

A search measures candidates on a validation split carved, deterministically and per class,
from the TRAIN data; the official test split is only ever loaded on request
(``include_test=True``) so that model selection cannot leak into the reported test figure.

Only the images a run uses are made. ``train_limit``/``val_limit`` of :func:`load_dataset` pick the
first images of the seeded split order (exactly the images ``DatasetSplits.take`` keeps of a whole
load), and only those are rendered (shapes), resized (CIFAR) or decoded (ImageFolder), at the
resolution asked for. Before any image is made, the bytes the load will hold are estimated
(:class:`LoadEstimate`) and checked against the memory available (:func:`check_memory`); a load
that cannot fit is refused with one line saying what would (:class:`DataTooLarge`).
:func:`dataset_info` counts the splits and names the classes without making a single image.

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
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nas.common.errors import UserError
from nas.common.files import atomic_write

__all__ = [
    "DATASET_NAMES",
    "DATA_MEMORY_SHARE",
    "MEMORY_LIMIT_ENV",
    "SHAPES_CLASSES",
    "SHAPES_VERSION",
    "DataTooLarge",
    "DatasetInfo",
    "DatasetSplits",
    "LoadEstimate",
    "available_memory",
    "cache_dir",
    "check_memory",
    "dataset_info",
    "estimate_load",
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
#: Shapes pools up to this resolution are rendered whole once and cached (25,000 images at 64 px are
#: 307 MB); above it only the images a load uses are rendered, and only an index of the random
#: stream is cached (a few hundred KB).
SHAPES_POOL_MAX_RES = 64
#: Pixels the shapes painter works on at once (2048 images at 32 px, the chunk it always painted):
#: its float32 work arrays stay the same size whatever the resolution.
_PAINT_PIXELS = _SHAPES_CHUNK * 32 * 32
#: Peak bytes of the painters' work arrays and painted batches (measured with tracemalloc: about 57
#: bytes a pixel for one painter; painters in threads hold a few more painted batches at once).
_PAINT_WORK_BYTES = 80 * _PAINT_PIXELS
#: Pixels resized at once (CIFAR at another resolution), and the float work arrays that takes.
_RESIZE_PIXELS = 1 << 22
_RESIZE_WORK_BYTES = 3 * _RESIZE_PIXELS * 4 * 3

DATASET_NAMES = ("shapes", "cifar10", "cifar100", "imagefolder")
_CIFAR_TEST_SIZE = 10_000

# Per-dataset defaults for the validation fraction carved from train: shapes 25k -> 20k/5k,
# CIFAR 50k -> 45k/5k (the usual split).
_DEFAULT_VAL_FRACTION = {"shapes": 0.2, "cifar10": 0.1, "cifar100": 0.1, "imagefolder": 0.1}

# Standard published channel statistics (fraction of 255), computed on the CIFAR training sets.
_CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

#: The share of the available memory one dataset load may take: the rest is left for the network,
#: its activations and optimiser state, and whatever else the machine runs.
DATA_MEMORY_SHARE = 0.75
#: Set to a number of bytes to use instead of the memory the machine says is available (tests, or
#: to keep a load well inside a shared machine's memory).
MEMORY_LIMIT_ENV = "NAS_MEMORY_LIMIT_BYTES"


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
        """The first ``train``/``val`` samples (splits are already shuffled): quick runs and tests.

        ``load_dataset(..., train_limit=N, val_limit=M)`` gives the same images without making the others."""
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


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset holds, counted without making an image: split sizes (as :func:`load_dataset`
    carves them, before any limit) and classes."""

    name: str
    train: int
    val: int
    num_classes: int
    class_names: list[str]
    in_channels: int = 3


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
# memory: what a load needs, what the machine has
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadEstimate:
    """The bytes a load holds at its peak: the images it returns (uint8 pixels and int64 labels)
    plus what it holds on the way (``extra_bytes``: a cached shapes pool, CIFAR's source arrays,
    work arrays). ``pool`` is the number of source images the load reads whole (shapes: the
    pool, when cached whole; CIFAR: the pickled images)."""

    name: str
    resolution: int
    train: int
    val: int
    test: int = 0
    pool: int = 0
    channels: int = 3

    def extra_bytes(self, res: int) -> int:
        if self.name == "shapes":
            if res <= SHAPES_POOL_MAX_RES:
                return self.pool * self.channels * res * res  # the cached pool, while the used images are copied out
            # the 32 px pool for the normalisation statistics, and the painter's work arrays
            return self.pool * self.channels * 32 * 32 + _PAINT_WORK_BYTES
        if self.name in ("cifar10", "cifar100"):
            # the pickled HWC arrays and their CHW copy; resizing works in float chunks
            return 2 * self.pool * self.channels * 32 * 32 + (0 if res == 32 else _RESIZE_WORK_BYTES)
        return 0

    def image_bytes(self, res: int) -> int:
        """One image held at ``res`` (uint8) and its label."""
        return self.channels * res * res + 8

    def bytes_at(self, res: int, train: int | None = None) -> int:
        n = (self.train if train is None else train) + self.val + self.test
        return n * self.image_bytes(res) + self.extra_bytes(res)

    @property
    def total(self) -> int:
        return self.bytes_at(self.resolution)


class DataTooLarge(UserError):
    """A dataset load that would not fit in the memory available. ``str()`` says so in one line in
    neutral words; :meth:`advice` says it with a command's own flags."""

    def __init__(self, estimate: LoadEstimate, available: int, source: str) -> None:
        self.estimate, self.available, self.source = estimate, available, source
        self.budget = int(available * DATA_MEMORY_SHARE)
        super().__init__(self.advice())

    def fitting_train(self) -> int:
        """The most training images that fit at the resolution asked for (0: not even one)."""
        e = self.estimate
        per = e.image_bytes(e.resolution)
        room = self.budget - e.bytes_at(e.resolution, train=0)
        return max(0, min(e.train - 1, room // per)) if room > 0 else 0

    def fitting_resolution(self) -> int | None:
        """The highest resolution (8 or more) at which this load fits whole, if any."""
        e = self.estimate
        return next((r for r in range(e.resolution - 1, 7, -1) if e.bytes_at(r) <= self.budget), None)

    def fitting_split(self) -> tuple[int, int]:
        """Training and validation images that fit together at the resolution asked for, when the
        validation split is what does not fit: every training image asked for and fewer validation
        images if they leave room, else as many of each; (0, 0) when not one of each fits."""
        e = self.estimate
        per = e.image_bytes(e.resolution)
        room = (self.budget - e.extra_bytes(e.resolution) - e.test * per) // per
        if room < 2:
            return 0, 0
        train = e.train if e.train < room else min(e.train, room // 2)
        return train, min(e.val, room - train)

    def advice(self, limit_flag: str | None = None, resolution_flag: str | None = None,
               val_flag: str | None = None) -> str:
        e, res = self.estimate, self.estimate.resolution
        images = f"{e.train:,} train + {e.val:,} val" + (f" + {e.test:,} test" if e.test else "") + " images"
        where = f" ({self.source})" if self.source else ""
        head = (f"dataset {e.name} at {res}x{res} needs {_size(e.total)} of memory ({images}) but "
                f"{_size(self.available)} is available{where}, of which a dataset may take "
                f"{DATA_MEMORY_SHARE:.0%}")
        ways = []
        n = self.fitting_train()
        if n >= 1:
            how = f"pass {limit_flag} {n}" if limit_flag else f"a train limit of {n}"
            ways.append(f"at most {n:,} training images fit at {res}x{res} ({how})")
        t, v = self.fitting_split() if n < 1 and val_flag and limit_flag else (0, 0)
        if t == e.train and v >= 1:
            ways.append(f"the {t:,} training images and {v:,} validation images fit at {res}x{res} "
                        f"(pass {val_flag} {v})")
        elif v >= 1:
            ways.append(f"{t:,} training and {v:,} validation images fit at {res}x{res} "
                        f"(pass {limit_flag} {t} {val_flag} {v})")
        r = self.fitting_resolution()
        if r is not None:
            how = f"pass {resolution_flag} {r}" if resolution_flag else f"resolution {r}"
            every = f"{'all ' if n >= 1 else ''}{e.train + e.val + e.test:,} images"
            ways.append(f"{every} fit at {r}x{r} or below ({how})")
        if not ways:
            ways.append("not even the smallest resolution fits; free some memory")
        if e.bytes_at(res, train=0) > self.budget:
            head += f"; the {e.val + e.test:,} {'validation' if not e.test else 'validation and test'} images " \
                    f"alone do not fit at {res}x{res}"
        return f"{head}: {' or '.join(ways)}"


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def available_memory() -> tuple[int, str] | None:
    """Bytes of memory a load may count on and where the figure comes from, or ``None`` where the
    machine does not say. ``$NAS_MEMORY_LIMIT_BYTES`` overrides; otherwise the least of the
    kernel's MemAvailable and the room left under this process's cgroup memory limits."""
    env = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if env:
        try:
            value = int(float(env))
        except ValueError:
            raise UserError(f"${MEMORY_LIMIT_ENV} must be a number of bytes, got {env!r}") from None
        if value < 0:
            raise UserError(f"${MEMORY_LIMIT_ENV} must be a number of bytes, got {env!r}")
        return value, MEMORY_LIMIT_ENV
    candidates = []
    avail = _meminfo_available()
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            avail = None
    if avail is not None and avail > 0:
        candidates.append((avail, ""))
    room = _cgroup_room()
    if room is not None:
        candidates.append((room, "under this process's cgroup memory limit"))
    return min(candidates) if candidates else None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
        return None if text in ("", "max") else int(text)
    except (OSError, ValueError):
        return None


def _cgroup_room() -> int | None:
    """Room under the tightest cgroup memory limit on this process's path (v2, or v1's memory
    controller), or ``None`` where no limit is set or none can be read."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        _, controllers, rel = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        if controllers == "":  # v2: walk up from this process's group to the root
            base, names = Path("/sys/fs/cgroup"), ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            base, names = Path("/sys/fs/cgroup/memory"), ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        group = base / rel.lstrip("/")
        while True:
            limit, used = _read_int(group / names[0]), _read_int(group / names[1])
            if limit is not None and used is not None and limit < 1 << 60:
                rooms.append(max(0, limit - used))
            if group == base or base not in group.parents:
                break
            group = group.parent
    return min(rooms) if rooms else None


def check_memory(estimate: LoadEstimate) -> None:
    """Refuse (:class:`DataTooLarge`) a load that needs more than :data:`DATA_MEMORY_SHARE` of the
    memory available; silent where the machine does not say what is available."""
    known = available_memory()
    if known is None:
        return
    available, source = known
    if estimate.total > available * DATA_MEMORY_SHARE:
        raise DataTooLarge(estimate, available, source)


# --------------------------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------------------------


def _parse_spec(spec: object, resolution: object, root: object, val_fraction: float | None) -> tuple[str, str, float]:
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
    if name == "shapes" and path:
        raise UserError("the shapes dataset is generated and takes no path; use 'shapes'")
    if name == "imagefolder" and not path and root is None:
        raise UserError("imagefolder needs a path: 'imagefolder:PATH'")
    return name, path, float(val_fraction)


def _check_limit(what: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UserError(f"{what} must be a whole number of at least 1, got {value!r}")


def dataset_info(
    spec: str = "shapes",
    resolution: int | None = None,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    val_fraction: float | None = None,
) -> DatasetInfo:
    """Split sizes and classes of a dataset, as :func:`load_dataset` would carve them, without
    rendering or decoding an image (shapes: its labels only; CIFAR: the pickled files are read,
    not resized; ImageFolder: the file listing). ``resolution`` is only checked, as a load checks it."""
    name, path, vf = _parse_spec(spec, resolution, root, val_fraction)
    if name == "shapes":
        labels = torch.from_numpy(_shapes_labels(SHAPES_TRAIN_SIZE, _SHAPES_SEEDS["train"]))
        classes = list(SHAPES_CLASSES)
    elif name in ("cifar10", "cifar100"):
        _, labels, _, classes = _load_cifar(name, Path(path).expanduser() if path else _data_root(root), download,
                                            include_test=False)
    else:
        if download:
            raise UserError("imagefolder cannot be downloaded; point it at a local folder")
        folder = _imagefolder(Path(path or root).expanduser(), 32)  # type: ignore[arg-type]
        labels, classes = torch.as_tensor(folder.targets, dtype=torch.int64), list(folder.classes)
    n_train, n_val = _split_counts(labels, vf)
    return DatasetInfo(name=name, train=n_train, val=n_val, num_classes=len(classes), class_names=classes)


def estimate_load(
    spec: str = "shapes",
    resolution: int | None = None,
    root: str | os.PathLike[str] | None = None,
    val_fraction: float | None = None,
    include_test: bool = False,
    train_limit: int | None = None,
    val_limit: int | None = None,
) -> LoadEstimate:
    """The :class:`LoadEstimate` of ``load_dataset`` with the same arguments (counted, not loaded)."""
    info = dataset_info(spec, resolution=resolution, root=root, val_fraction=val_fraction)
    test = (SHAPES_TEST_SIZE if info.name == "shapes" else _CIFAR_TEST_SIZE if info.name.startswith("cifar")
            else 0) if include_test else 0
    return _estimate(info.name, resolution or 32, info.train, info.val, test, train_limit, val_limit)


def _estimate(name: str, res: int, n_train: int, n_val: int, n_test: int,
              train_limit: int | None, val_limit: int | None) -> LoadEstimate:
    train = n_train if train_limit is None else min(train_limit, n_train)
    val = n_val if val_limit is None else min(val_limit, n_val)
    pool = {"shapes": SHAPES_TRAIN_SIZE, "cifar10": n_train + n_val + n_test,
            "cifar100": n_train + n_val + n_test}.get(name, 0)
    return LoadEstimate(name=name, resolution=res, train=train, val=val, test=n_test, pool=pool)


def load_dataset(
    spec: str = "shapes",
    resolution: int | None = None,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    val_fraction: float | None = None,
    seed: int = 0,
    include_test: bool = False,
    train_limit: int | None = None,
    val_limit: int | None = None,
) -> DatasetSplits:
    """Load a dataset by spec (see the module docstring) as train/validation uint8 tensors.

    ``resolution`` resizes images to ``resolution`` x ``resolution`` (shapes is generated at that
    size directly; default 32 everywhere). The validation split is carved per class from the
    training data with ``seed`` (``val_fraction`` defaults to 0.2 for shapes, 0.1 otherwise), so the
    same arguments always give the same split. ``train_limit``/``val_limit`` keep the first images
    of each split, and only those are made: the result equals ``load_dataset(...).take(train_limit,
    val_limit)`` image for image. The normalisation statistics are those of the whole training
    split, except for limited ImageFolder loads (those of the training images loaded) and shapes
    above :data:`SHAPES_POOL_MAX_RES` (those of its whole training split at 32 px).

    The memory the load needs is checked first (:func:`check_memory`): :class:`DataTooLarge`, a
    one-line :class:`UserError`, says what would fit.
    """
    name, path, vf = _parse_spec(spec, resolution, root, val_fraction)
    _check_limit("train_limit", train_limit)
    _check_limit("val_limit", val_limit)
    res = resolution or 32

    def split(labels: torch.Tensor, n_test: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The whole training split and the images used of each split, once the load is known to fit."""
        train_all, val_all = _stratified_split(labels, vf, seed)
        check_memory(_estimate(name, res, train_all.numel(), val_all.numel(), n_test, train_limit, val_limit))
        return train_all, train_all[:train_limit], val_all[:val_limit]

    test: tuple[torch.Tensor, torch.Tensor] | None = None
    if name == "shapes":
        labels = torch.from_numpy(_shapes_labels(SHAPES_TRAIN_SIZE, _SHAPES_SEEDS["train"]))
        train_all, train_idx, val_idx = split(labels, SHAPES_TEST_SIZE if include_test else 0)
        class_names = list(SHAPES_CLASSES)
        if res <= SHAPES_POOL_MAX_RES:
            x, _ = _shapes_cached("train", res)
            mean, std = _channel_stats(x, train_all)
            train_x, val_x = x[train_idx], x[val_idx]
            del x
            test = _shapes_cached("test", res) if include_test else None
        else:
            train_x, val_x = (torch.from_numpy(a) for a in _shapes_subset("train", res, [train_idx.numpy(),
                                                                                         val_idx.numpy()]))
            x32, _ = _shapes_cached("train", 32)
            mean, std = _channel_stats(x32, train_all)
            del x32
            if include_test:
                (tx,), ty = _render_shapes(SHAPES_TEST_SIZE, res, _SHAPES_SEEDS["test"], [np.arange(SHAPES_TEST_SIZE)])
                test = torch.from_numpy(tx), torch.from_numpy(ty)
    elif name in ("cifar10", "cifar100"):
        x, labels, test, class_names = _load_cifar(name, Path(path).expanduser() if path else _data_root(root),
                                                   download, include_test)
        _, train_idx, val_idx = split(labels, 0 if test is None else int(test[1].numel()))
        mean, std = _CIFAR_STATS[name]
        if res != 32:
            train_x, val_x = _resize_uint8(x, res, train_idx), _resize_uint8(x, res, val_idx)
            test = None if test is None else (_resize_uint8(test[0], res), test[1])
        else:
            train_x, val_x = x[train_idx], x[val_idx]
        del x
    else:
        if download:
            raise UserError("imagefolder cannot be downloaded; point it at a local folder")
        folder = _imagefolder(Path(path or root).expanduser(), res)  # type: ignore[arg-type]
        labels, class_names = torch.as_tensor(folder.targets, dtype=torch.int64), list(folder.classes)
        _, train_idx, val_idx = split(labels)
        train_x, val_x = _decode(folder, train_idx, res), _decode(folder, val_idx, res)
        mean, std = _channel_stats(train_x)

    return DatasetSplits(
        name=name,
        train_x=train_x,
        train_y=labels[train_idx],
        val_x=val_x,
        val_y=labels[val_idx],
        num_classes=len(class_names),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        class_names=list(class_names),
        test_x=None if test is None else test[0],
        test_y=None if test is None else test[1],
    )


def _per_class_val(count: int, val_fraction: float) -> int:
    """How many of a class's ``count`` images go to validation (see :func:`_stratified_split`)."""
    n_val = int(round(count * val_fraction))
    return min(max(n_val, 1), count - 1) if count >= 2 else 0


def _split_counts(y: torch.Tensor, val_fraction: float) -> tuple[int, int]:
    """Sizes of the training and validation splits :func:`_stratified_split` carves from ``y``."""
    counts = torch.bincount(y).tolist() if y.numel() else []
    n_val = sum(_per_class_val(c, val_fraction) for c in counts if c)
    if n_val == 0:
        raise UserError(f"dataset has only {y.numel()} images: too few to carve a validation split")
    return int(y.numel()) - n_val, n_val


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
        n_val = _per_class_val(idx.numel(), val_fraction)
        val_parts.append(idx[:n_val])
        train_parts.append(idx[n_val:])
    train_idx = torch.cat(train_parts)
    val_idx = torch.cat(val_parts)
    if val_idx.numel() == 0:
        raise UserError(f"dataset has only {y.numel()} images: too few to carve a validation split")
    return (train_idx[torch.randperm(train_idx.numel(), generator=g)],
            val_idx[torch.randperm(val_idx.numel(), generator=g)])


def _channel_stats(x: torch.Tensor, idx: torch.Tensor | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean/std as fractions of 255 of ``x`` (or of ``x[idx]``), from a 256-bin
    histogram per channel (uint8 data: no float copy of the whole set, and about 20x faster than
    float sums), accumulated a few thousand images at a time."""
    n = x.shape[0] if idx is None else idx.numel()
    hists = torch.zeros((x.shape[1], 256), dtype=torch.int64)
    for start in range(0, n, 4096):
        part = x[start:start + 4096] if idx is None else x[idx[start:start + 4096]]
        for c in range(x.shape[1]):
            hists[c] += torch.bincount(part[:, c].reshape(-1).to(torch.int64), minlength=256)
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        hist = hists[c].to(torch.float64)
        total = hist.sum().clamp_min(1.0)
        mean = (hist * values).sum() / total
        var = (hist * values.square()).sum() / total - mean.square()
        means.append(float(mean))
        stds.append(float(var.clamp_min(1e-12).sqrt()))
    return tuple(means), tuple(stds)


def _resize_uint8(x: torch.Tensor, res: int, idx: torch.Tensor | None = None) -> torch.Tensor:
    """Resize a uint8 (N,C,H,W) tensor (or its rows ``idx``) with antialiased bilinear
    interpolation, a few million pixels at a time."""
    n = x.shape[0] if idx is None else idx.numel()
    out = torch.empty((n, x.shape[1], res, res), dtype=torch.uint8)
    step = max(1, _RESIZE_PIXELS // (res * res))
    for start in range(0, n, step):
        chunk = (x[start:start + step] if idx is None else x[idx[start:start + step]]).float()
        chunk = F.interpolate(chunk, size=(res, res), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + step] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out


# --------------------------------------------------------------------------------------------
# shapes: procedural, deterministic; rendered on demand, small pools cached
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


def _shapes_subset(split: str, res: int, targets: Sequence[np.ndarray], n: int | None = None) -> list[np.ndarray]:
    """Images ``targets[k]`` of the shapes split (indices into its ``n`` images), rendered alone:
    the same pixels as ``generate_shapes(n, res, seed)[0][targets[k]]``. The positions of the
    random stream where each image starts are cached (an index of a few hundred KB), so only the
    first subset at a resolution walks the whole stream."""
    n = n if n is not None else (SHAPES_TRAIN_SIZE if split == "train" else SHAPES_TEST_SIZE)
    index = cache_dir() / "datasets" / f"shapes-v{SHAPES_VERSION}-{res}px-{split}-{n}-stream.npz"
    return _render_shapes(n, res, _SHAPES_SEEDS[split], targets, index_path=index)[0]


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz via a temp file in the same folder and ``os.replace``, so concurrent workers
    either see the old complete file, the new complete file or none -- never a partial one."""
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))
    except OSError:
        pass  # read-only or unwritable cache: generation still works, it just is not cached


def _shapes_labels(n: int, seed: int) -> np.ndarray:
    """The labels of ``generate_shapes(n, res, seed)`` (the first draw of its stream), at any resolution."""
    return np.random.default_rng(seed).permutation(np.arange(n) % len(SHAPES_CLASSES)).astype(np.int64)


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
    stream in a fixed order: the labels, then per chunk of 2048 samples their parameters and then
    their noise, sample after sample. Work arrays are bounded (:data:`_PAINT_PIXELS`) at any
    resolution.
    """
    (x,), labels = _render_shapes(n, res, seed, [np.arange(n)])
    return x, labels


# One row of the stream index: PCG64's 128-bit state (high, low word), has_uint32, uinteger.
def _rng_state(rng: np.random.Generator) -> tuple[int, int, int, int]:
    s = rng.bit_generator.state
    st = int(s["state"]["state"])
    return st >> 64, st & 0xFFFF_FFFF_FFFF_FFFF, int(s["has_uint32"]), int(s["uinteger"])


def _set_rng_state(rng: np.random.Generator, row: Sequence[int], inc: int) -> None:
    hi, lo, has, uint = (int(v) for v in row)
    rng.bit_generator.state = {"bit_generator": "PCG64", "state": {"state": (hi << 64) | lo, "inc": inc},
                               "has_uint32": has, "uinteger": uint}


class _StaleIndex(Exception):
    """The cached stream index disagrees with the stream: rebuild it."""


@dataclass
class _StreamIndex:
    """Where in the random stream each chunk's parameters (``chunks[k]``, plus the end) and each
    sample's noise (``noise[i]``) start, so that any image can be rendered alone."""

    chunks: np.ndarray  # (n_chunks + 1, 4) uint64
    noise: np.ndarray  # (n, 4) uint64
    inc: int

    @classmethod
    def read(cls, path: Path, n: int, inc: int) -> _StreamIndex | None:
        try:
            with np.load(path, allow_pickle=False) as f:
                chunks, noise, words = f["chunks"], f["noise"], f["inc"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            return None
        n_chunks = -(-n // _SHAPES_CHUNK)
        stored_inc = (int(words[0]) << 64) | int(words[1]) if words.shape == (2,) else None
        if chunks.shape != (n_chunks + 1, 4) or noise.shape != (n, 4) or stored_inc != inc:
            return None
        return cls(chunks=chunks, noise=noise, inc=inc)

    def write(self, path: Path) -> None:
        words = np.array([self.inc >> 64, self.inc & 0xFFFF_FFFF_FFFF_FFFF], dtype=np.uint64)
        _atomic_savez(path, chunks=self.chunks, noise=self.noise, inc=words)


def _render_shapes(n: int, res: int, seed: int, targets: Sequence[np.ndarray],
                   index_path: Path | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """The images ``targets[k]`` (indices into the ``n`` images of ``generate_shapes(n, res, seed)``,
    any order) as uint8 arrays, and the ``n`` labels: only those images are painted.

    Without an index the stream is walked in order, drawing (and dropping) the noise of the images
    not wanted; with ``index_path`` the walk is recorded there, and a later call jumps straight to
    the images it wants (each jump is checked against the index; a stale index is rebuilt).
    """
    if index_path is not None:
        inc = np.random.default_rng(seed).bit_generator.state["state"]["inc"]
        index = _StreamIndex.read(index_path, n, inc) if index_path.is_file() else None
        if index is not None:
            try:
                return _walk_shapes(n, res, seed, targets, index=index)
            except _StaleIndex:
                pass
    return _walk_shapes(n, res, seed, targets, record=index_path)


def _paint_threads() -> int:
    """Threads that paint shapes (numpy releases the GIL): PyTorch's share of this process's CPUs
    (``--threads``, a trial's CPUs), at most 8; the random stream itself is drawn in one thread."""
    return max(1, min(8, torch.get_num_threads()))


def _painted(pool: ThreadPoolExecutor | None, threads: int, p: dict[str, np.ndarray], batches: list[np.ndarray],
             u: np.ndarray, v: np.ndarray, px: float, res: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(batch, its painted images)`` in order; with a pool, the next ``threads`` batches paint meanwhile."""
    def job(sel: np.ndarray) -> np.ndarray:
        return _paint({key: val[sel] for key, val in p.items()}, u, v, px, res)

    if pool is None:
        for sel in batches:
            yield sel, job(sel)
        return
    todo = iter(batches)
    pending = deque((sel, pool.submit(job, sel)) for sel in islice(todo, threads))
    while pending:
        sel, future = pending.popleft()
        following = next(todo, None)
        if following is not None:
            pending.append((following, pool.submit(job, following)))
        yield sel, future.result()


def _walk_shapes(n: int, res: int, seed: int, targets: Sequence[np.ndarray], index: _StreamIndex | None = None,
                 record: Path | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    threads = _paint_threads()
    if threads == 1:
        return _walk_shapes_with(None, 1, n, res, seed, targets, index, record)
    with ThreadPoolExecutor(threads, thread_name_prefix="nas-shapes") as pool:
        return _walk_shapes_with(pool, threads, n, res, seed, targets, index, record)


def _walk_shapes_with(pool: ThreadPoolExecutor | None, threads: int, n: int, res: int, seed: int,
                      targets: Sequence[np.ndarray], index: _StreamIndex | None,
                      record: Path | None) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(SHAPES_CLASSES)).astype(np.int64)
    targets = [np.asarray(t, dtype=np.int64).reshape(-1) for t in targets]
    outs = [np.empty((t.size, 3, res, res), dtype=np.uint8) for t in targets]
    dest: dict[int, list[tuple[int, int]]] = {}
    for k, t in enumerate(targets):
        if t.size and (t.min() < 0 or t.max() >= n):
            raise IndexError(f"shapes image index out of range 0..{n - 1}")
        for row, i in enumerate(t.tolist()):
            dest.setdefault(i, []).append((k, row))
    wanted = np.array(sorted(dest), dtype=np.int64)
    n_chunks = -(-n // _SHAPES_CHUNK)
    inc = rng.bit_generator.state["state"]["inc"]
    chunk_rows = np.zeros((n_chunks + 1, 4), dtype=np.uint64) if record is not None else None
    noise_rows = np.zeros((n, 4), dtype=np.uint64) if record is not None else None
    # the last chunk to visit: all of them when recording, else the last one holding a wanted image
    last = n_chunks if record is not None else (int(wanted[-1]) // _SHAPES_CHUNK + 1 if wanted.size else 0)

    coords = (np.arange(res, dtype=np.float32) + 0.5) / res * 2.0 - 1.0  # pixel centres in [-1, 1]
    u = coords[None, None, :]  # (1, 1, W)
    v = coords[None, :, None]  # (1, H, 1)
    px = 2.0 / res  # one pixel in [-1, 1] units (antialiasing)
    # the painters share one budget of pixels, so their work arrays stay as for one painter
    batch = max(1, _PAINT_PIXELS // (res * res) // (1 if pool is None else threads + 1))
    buf = np.empty((3, res, res), dtype=np.float32)

    def expect(row: Sequence[int]) -> None:
        if _rng_state(rng) != tuple(int(v) for v in row):
            raise _StaleIndex

    for k in range(last):
        start = k * _SHAPES_CHUNK
        lab = labels[start:start + _SHAPES_CHUNK]
        lo, hi = np.searchsorted(wanted, [start, start + lab.size])
        local = wanted[lo:hi] - start  # wanted samples of this chunk, in stream order
        if index is not None:
            if not local.size:
                continue
            _set_rng_state(rng, index.chunks[k], inc)
        elif chunk_rows is not None:
            chunk_rows[k] = _rng_state(rng)
        p = _draw_chunk(rng, lab)
        if index is not None:
            expect(index.noise[start])
        nxt = 0  # the next sample (of this chunk) whose noise comes in the stream

        for sel, img in _painted(pool, threads, p, [local[b0:b0 + batch] for b0 in range(0, local.size, batch)],
                                 u, v, px, res):
            for row, j in enumerate(sel.tolist()):
                if index is not None:
                    _set_rng_state(rng, index.noise[start + j], inc)
                else:
                    _drop_noise(rng, buf, start + nxt, start + j, noise_rows)
                    if noise_rows is not None:
                        noise_rows[start + j] = _rng_state(rng)
                rng.standard_normal(dtype=np.float32, out=buf)
                img[row] += buf * p["sigma"][j]
                if index is not None:
                    expect(index.noise[start + j + 1] if j + 1 < lab.size else index.chunks[k + 1])
                nxt = j + 1
            pixels = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
            del img
            for row, j in enumerate(sel.tolist()):
                for t, r in dest[start + j]:
                    outs[t][r] = pixels[row]
        if index is None:
            _drop_noise(rng, buf, start + nxt, start + lab.size, noise_rows)
    if record is not None and chunk_rows is not None and noise_rows is not None:
        chunk_rows[n_chunks] = _rng_state(rng)
        _StreamIndex(chunks=chunk_rows, noise=noise_rows, inc=inc).write(record)
    return outs, labels


def _drop_noise(rng: np.random.Generator, buf: np.ndarray, first: int, stop: int, rows: np.ndarray | None) -> None:
    """Draw and drop the noise of samples ``first..stop-1`` (recording where each starts in ``rows``)."""
    for i in range(first, stop):
        if rows is not None:
            rows[i] = _rng_state(rng)
        rng.standard_normal(dtype=np.float32, out=buf)


#: One pixel of the 32 x 32 design in [-1, 1] units: sizes are given in these so that the set looks
#: the same (only sharper) when generated at a higher resolution.
_U32 = 2.0 / 32


def _col(a: np.ndarray) -> np.ndarray:
    """Per-sample parameter (B,) -> (B, 1, 1) for broadcasting over pixels."""
    return a.astype(np.float32)[:, None, None]


def _soft(field_px: np.ndarray) -> np.ndarray:
    """Coverage from a signed distance in pixels (negative inside): a one-pixel antialiased edge."""
    return np.clip(0.5 - field_px, 0.0, 1.0)


def _draw_chunk(rng: np.random.Generator, lab: np.ndarray) -> dict[str, np.ndarray]:
    """Every random parameter of a chunk's samples except their pixel noise, in the stream's fixed
    order (the noise follows, sample after sample). Per-sample arrays, so any subset can be painted."""
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
    # --- distractors behind the object: a thin line segment and a small blob ---------------------
    p0 = rng.uniform(-0.9, 0.9, (b, 2)).astype(f32)
    ang = rng.uniform(0.0, np.pi, b).astype(f32)
    half = rng.uniform(0.25, 0.7, b).astype(f32)
    width = rng.uniform(0.6, 1.3, b).astype(f32) * _U32
    line_col = rng.uniform(0.0, 1.0, (b, 3)).astype(f32)
    has_line = rng.uniform(size=b) < 0.7
    blob_c = rng.uniform(-0.85, 0.85, (b, 2)).astype(f32)
    blob_r = rng.uniform(1.5, 3.0, b).astype(f32) * _U32
    blob_col = rng.uniform(0.0, 1.0, (b, 3)).astype(f32)
    has_blob = rng.uniform(size=b) < 0.5
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
    # --- sensor noise strength (the noise itself is drawn per sample, after this) ---------------
    sigma = rng.uniform(0.02, 0.10, b).astype(f32)
    return {"lab": lab, "bg": bg, "fg": fg, "grad": grad, "p0": p0, "ang": ang, "half": half, "width": width,
            "line_col": line_col, "has_line": has_line, "blob_c": blob_c, "blob_r": blob_r, "blob_col": blob_col,
            "has_blob": has_blob, "centre": centre, "scale": scale, "theta": theta, "period": period,
            "diag_sign": diag_sign, "shade": shade, "sigma": sigma}


def _paint(p: dict[str, np.ndarray], u: np.ndarray, v: np.ndarray, px: float, res: int) -> np.ndarray:
    """The float32 images ``(B, 3, res, res)`` of the samples ``p`` describes, before their noise.
    Pixel by pixel, each sample's arithmetic depends on its own parameters only."""
    lab = p["lab"]
    b = lab.size
    f32 = np.float32
    grad, bg, fg = p["grad"], p["bg"], p["fg"]
    img = bg[:, :, None, None] + (_col(grad[:, 0]) * u + _col(grad[:, 1]) * v)[:, None]  # (B,3,H,W)

    p0, ang, half = p["p0"], p["ang"], p["half"]
    dx, dy = u - _col(p0[:, 0]), v - _col(p0[:, 1])
    along = np.clip(dx * _col(np.cos(ang)) + dy * _col(np.sin(ang)), -_col(half), _col(half))
    dist = np.sqrt((dx - along * _col(np.cos(ang))) ** 2 + (dy - along * _col(np.sin(ang))) ** 2)
    a_line = _soft((dist - _col(p["width"]) / 2) / px) * _col(p["has_line"])
    img = img * (1 - a_line[:, None]) + p["line_col"][:, :, None, None] * a_line[:, None]
    del dx, dy, along, dist, a_line

    blob_c = p["blob_c"]
    r_blob = np.sqrt((u - _col(blob_c[:, 0])) ** 2 + (v - _col(blob_c[:, 1])) ** 2)
    a_blob = _soft((r_blob - _col(p["blob_r"])) / px) * _col(p["has_blob"])
    img = img * (1 - a_blob[:, None]) + p["blob_col"][:, :, None, None] * a_blob[:, None]
    del r_blob, a_blob

    centre, theta, period, diag_sign, shade = p["centre"], p["theta"], p["period"], p["diag_sign"], p["shade"]
    cu, cv = u - _col(centre[:, 0]), v - _col(centre[:, 1])
    cos_t, sin_t = _col(np.cos(theta)), _col(np.sin(theta))
    xr = cu * cos_t + cv * sin_t  # rotated coordinates, [-1, 1] units
    yr = -cu * sin_t + cv * cos_t
    del cu, cv
    s = _col(p["scale"])
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
    del xr, yr

    lighting = (_col(shade[:, 0]) * x + _col(shade[:, 1]) * y)[:, None] * (alpha[:, None] > 0)
    obj = fg[:, :, None, None] + lighting
    del lighting, x, y
    return img * (1 - alpha[:, None]) + obj * alpha[:, None]


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


def _imagefolder(path: Path, res: int):  # -> torchvision ImageFolder
    """A class-per-folder tree, listed (nothing decoded): each image, when read, is converted to RGB,
    its shorter side resized to ``res`` and centre-cropped to ``res`` x ``res``."""
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
    return ds


def _decode(ds, idx: torch.Tensor, res: int) -> torch.Tensor:
    """Decode the images ``idx`` of an ImageFolder listing into a uint8 tensor ``(len(idx), 3, res, res)``.

    Decoding happens once here (not per epoch): the point of the uint8 tensors is that the engine
    never goes back to the files. Only the images asked for are read.
    """
    rows = idx.tolist()
    x = torch.empty((len(rows), 3, res, res), dtype=torch.uint8)
    for r, i in enumerate(rows):
        try:
            x[r] = ds[i][0]
        except OSError as exc:
            raise UserError(f"imagefolder: cannot decode {ds.samples[i][0]}: {exc}") from None
    return x
