"""Datasets: shapes (determinism, cache, balance), CIFAR readers on real-format files, ImageFolder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from real_format_files import write_cifar10, write_cifar100, write_imagefolder

from nas.common.errors import UserError
from nas.workers import datasets as ds
from nas.workers.datasets import generate_shapes, load_dataset

# ---------------------------------------------------------------------------------------------
# shapes
# ---------------------------------------------------------------------------------------------


def test_shapes_default_splits(shapes):
    assert shapes.name == "shapes"
    assert shapes.num_classes == 10 and shapes.class_names == list(ds.SHAPES_CLASSES)
    assert shapes.train_x.shape == (20_000, 3, 32, 32) and shapes.train_x.dtype == torch.uint8
    assert shapes.val_x.shape == (5_000, 3, 32, 32) and shapes.val_x.dtype == torch.uint8
    assert shapes.train_y.dtype == torch.int64 and shapes.val_y.dtype == torch.int64
    assert shapes.resolution == 32 and shapes.in_channels == 3
    assert shapes.test_x is None
    # exact class balance in both splits (balanced pool, stratified carving)
    assert torch.bincount(shapes.train_y, minlength=10).tolist() == [2000] * 10
    assert torch.bincount(shapes.val_y, minlength=10).tolist() == [500] * 10
    # images use the whole range and statistics are sane fractions of 255
    assert int(shapes.train_x.min()) == 0 and int(shapes.train_x.max()) == 255
    assert all(0.3 < m < 0.7 for m in shapes.mean) and all(0.15 < s < 0.4 for s in shapes.std)


def test_shapes_colour_does_not_give_away_the_class(shapes):
    # the mean colour of an image must carry (almost) no class information
    x = shapes.train_x[:5000].float().mean(dim=(2, 3))  # (N, 3)
    y = shapes.train_y[:5000]
    per_class = torch.stack([x[y == c].mean(0) for c in range(10)])
    assert float((per_class.max(0).values - per_class.min(0).values).max()) < 12.0  # of 255


def test_shapes_generation_is_deterministic():
    a_x, a_y = generate_shapes(300, 32, seed=7)
    b_x, b_y = generate_shapes(300, 32, seed=7)
    c_x, _ = generate_shapes(300, 32, seed=8)
    assert np.array_equal(a_x, b_x) and np.array_equal(a_y, b_y)
    assert not np.array_equal(a_x, c_x)
    assert np.bincount(a_y).tolist() == [30] * 10


def test_shapes_other_resolution():
    x, y = generate_shapes(40, 48, seed=1)
    assert x.shape == (40, 3, 48, 48) and x.dtype == np.uint8 and y.shape == (40,)


def test_shapes_cache_written_atomically_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CACHE", str(tmp_path))
    x1, y1 = ds._shapes_cached("train", 32, n=120)
    files = list((tmp_path / "datasets").iterdir())
    assert [f.name for f in files] == [f"shapes-v{ds.SHAPES_VERSION}-32px-train-120.npz"]  # no temp left

    def boom(*a, **k):
        raise AssertionError("cache not used")

    monkeypatch.setattr(ds, "generate_shapes", boom)
    x2, y2 = ds._shapes_cached("train", 32, n=120)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_shapes_cache_keyed_by_version_and_recovers_from_corruption(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CACHE", str(tmp_path))
    ds._shapes_cached("train", 32, n=50)
    monkeypatch.setattr(ds, "SHAPES_VERSION", ds.SHAPES_VERSION + 1)
    calls = []
    real = ds.generate_shapes
    monkeypatch.setattr(ds, "generate_shapes", lambda *a, **k: calls.append(a) or real(*a, **k))
    ds._shapes_cached("train", 32, n=50)
    assert len(calls) == 1  # new version -> regenerated, old file ignored
    assert len(list((tmp_path / "datasets").glob("*.npz"))) == 2
    # a truncated cache file is regenerated, not an error
    path = tmp_path / "datasets" / f"shapes-v{ds.SHAPES_VERSION}-32px-train-50.npz"
    path.write_bytes(path.read_bytes()[:100])
    x, _ = ds._shapes_cached("train", 32, n=50)
    assert len(calls) == 2 and x.shape == (50, 3, 32, 32)


def test_shapes_with_test_split_and_seeded_validation(session_cache):
    a = load_dataset("shapes", include_test=True)
    assert a.test_x is not None and a.test_x.shape == (5000, 3, 32, 32)
    assert torch.bincount(a.test_y, minlength=10).tolist() == [500] * 10
    b = load_dataset("shapes", seed=0)
    c = load_dataset("shapes", seed=1)
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.train_y, b.train_y)
    assert not torch.equal(b.val_y, c.val_y)
    d = load_dataset("shapes", val_fraction=0.1)
    assert d.train_x.shape[0] == 22_500 and d.val_x.shape[0] == 2_500


def test_stratified_split_is_a_partition():
    y = torch.tensor([0] * 7 + [1] * 3 + [2] * 1)
    tr, va = ds._stratified_split(y, 0.3, seed=0)
    assert sorted(torch.cat([tr, va]).tolist()) == list(range(11))
    assert set(y[va].tolist()) == {0, 1}  # a single-sample class stays in train
    assert torch.equal(ds._stratified_split(y, 0.3, seed=0)[1], va)


@pytest.mark.parametrize(
    ("spec", "kwargs", "match"),
    [
        ("mnist", {}, "unknown dataset"),
        ("", {}, "non-empty"),
        ("shapes:/tmp/x", {}, "takes no path"),
        ("shapes", {"resolution": 0}, "resolution"),
        ("shapes", {"val_fraction": 1.5}, "val_fraction"),
        ("imagefolder", {}, "needs a path"),
    ],
)
def test_bad_specs_are_user_errors(spec, kwargs, match):
    with pytest.raises(UserError, match=match):
        load_dataset(spec, **kwargs)


# ---------------------------------------------------------------------------------------------
# CIFAR in the real python-pickle format
# ---------------------------------------------------------------------------------------------


def test_cifar10_reads_real_format(tmp_path):
    raw, labels = write_cifar10(tmp_path)
    d = load_dataset(f"cifar10:{tmp_path}", include_test=True)
    assert d.name == "cifar10" and d.num_classes == 10 and d.class_names[0] == "airplane"
    assert d.train_x.dtype == torch.uint8 and d.train_x.shape[1:] == (3, 32, 32)
    assert d.train_x.shape[0] + d.val_x.shape[0] == 30
    assert d.test_x.shape == (4, 3, 32, 32)
    assert d.mean == pytest.approx((0.4914, 0.4822, 0.4465))
    # every loaded image is one of the pickled rows, reshaped channel-planar, with its label
    lookup = {raw[i].tobytes(): labels[i] for i in range(len(labels))}
    for x, y in zip(torch.cat([d.train_x, d.val_x]), torch.cat([d.train_y, d.val_y]), strict=True):
        assert lookup[x.numpy().reshape(-1).tobytes()] == int(y)


def test_cifar10_path_forms_and_root(tmp_path):
    write_cifar10(tmp_path)
    a = load_dataset(f"cifar10:{tmp_path / 'cifar-10-batches-py'}")
    b = load_dataset("cifar10", root=tmp_path)
    assert torch.equal(a.train_x, b.train_x)
    c = load_dataset("cifar10", root=tmp_path, resolution=40)
    assert c.train_x.shape[1:] == (3, 40, 40) and c.train_x.dtype == torch.uint8


def test_cifar100_reads_fine_labels(tmp_path):
    write_cifar100(tmp_path)
    d = load_dataset(f"cifar100:{tmp_path}")
    assert d.num_classes == 100 and d.class_names[:2] == ["class_00", "class_01"]
    assert d.train_x.shape[0] + d.val_x.shape[0] == 200
    assert int(torch.cat([d.train_y, d.val_y]).max()) < 100
    assert d.std == pytest.approx((0.2673, 0.2564, 0.2762))


def test_cifar_missing_folder_says_where_and_how(tmp_path):
    with pytest.raises(UserError, match=r"looked for .*cifar-10-batches-py.*--download"):
        load_dataset(f"cifar10:{tmp_path / 'nowhere'}")
    with pytest.raises(UserError, match="cifar-100-python"):
        load_dataset("cifar100", root=tmp_path)


def test_cifar_damaged_file_is_user_error(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="could not read"):
        load_dataset(f"cifar10:{tmp_path}")


def test_cifar_default_root_from_env(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    monkeypatch.setenv("NAS_DATA", str(tmp_path))
    assert load_dataset("cifar10").num_classes == 10


# ---------------------------------------------------------------------------------------------
# ImageFolder
# ---------------------------------------------------------------------------------------------


def test_imagefolder_loads_and_resizes(tmp_path):
    write_imagefolder(tmp_path)
    d = load_dataset(f"imagefolder:{tmp_path}", resolution=24)
    assert d.class_names == ["cat", "dog", "owl"] and d.num_classes == 3
    assert d.train_x.shape[1:] == (3, 24, 24) and d.train_x.dtype == torch.uint8
    assert d.train_x.shape[0] + d.val_x.shape[0] == 12
    assert d.val_x.shape[0] == 3  # at least one per class
    # the red channel encodes the class for the RGB files
    for x, y in zip(d.train_x, d.train_y, strict=True):
        r = float(x[0].float().mean())
        if not torch.equal(x[0], x[1]):  # an RGB file (greyscale ones have equal channels)
            assert abs(r - int(y) * 80) < 20


def test_imagefolder_default_resolution(tmp_path):
    write_imagefolder(tmp_path, per_class=2)
    assert load_dataset("imagefolder", root=tmp_path).resolution == 32


def test_imagefolder_bad_paths(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}")
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "a" / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="no images"):
        load_dataset(f"imagefolder:{tmp_path / 'noimg'}")
    write_imagefolder(tmp_path / "one", classes=("only",))
    with pytest.raises(UserError, match="at least 2"):
        load_dataset(f"imagefolder:{tmp_path / 'one'}")
    f = tmp_path / "file.png"
    f.write_bytes(b"")
    with pytest.raises(UserError, match="not a folder"):
        load_dataset(f"imagefolder:{f}")
