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


# ---------------------------------------------------------------------------------------------
# only the images a run uses, and loads that cannot fit
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def small_pool(tmp_path, monkeypatch):
    """A 1,000-image shapes pool (800 train / 200 val) in an empty cache: the real code paths, quickly."""
    monkeypatch.setenv("NAS_CACHE", str(tmp_path))
    monkeypatch.delenv(ds.MEMORY_LIMIT_ENV, raising=False)
    monkeypatch.setattr(ds, "SHAPES_TRAIN_SIZE", 1000)
    return tmp_path


def _before(n: int, res: int, split_seed: int = 0, val_fraction: float = 0.2):
    """The whole pool from the generator as it was, split as before."""
    import shapes_before

    x, y = shapes_before.generate_shapes(n, res, seed=ds._SHAPES_SEEDS["train"])
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    tr, va = ds._stratified_split(y, val_fraction, split_seed)
    return x, y, tr, va


@pytest.mark.parametrize(("n", "res", "threads"), [(300, 32, 1), (2100, 40, 1), (300, 72, 1), (2100, 40, 3)])
def test_shapes_rendered_alone_are_the_images_of_the_old_generator(tmp_path, monkeypatch, n, res, threads):
    import shapes_before

    monkeypatch.setattr(ds, "_paint_threads", lambda: threads)  # painters in threads, the stream in one

    old_x, old_y = shapes_before.generate_shapes(n, res, seed=11)
    new_x, new_y = generate_shapes(n, res, seed=11)
    assert np.array_equal(old_x, new_x) and np.array_equal(old_y, new_y)
    pick = np.random.default_rng(0).choice(n, 25, replace=False)  # any order, across the 2048-image chunks
    index = tmp_path / "stream.npz"
    (walked, reversed_), labels = ds._render_shapes(n, res, 11, [pick, pick[::-1]], index_path=index)
    assert index.is_file() and np.array_equal(labels, old_y)
    assert np.array_equal(walked, old_x[pick]) and np.array_equal(reversed_, old_x[pick[::-1]])
    (jumped,), _ = ds._render_shapes(n, res, 11, [pick[:5]], index_path=index)  # from the index
    assert np.array_equal(jumped, old_x[pick[:5]])


@pytest.mark.parametrize("res", [32, 80])  # the cached-pool path and the render-alone path
def test_limited_load_is_the_first_images_of_a_whole_load(small_pool, res):
    x, y, tr, va = _before(1000, res)
    d = load_dataset("shapes", resolution=res, train_limit=60, val_limit=25)
    assert torch.equal(d.train_x, x[tr[:60]]) and torch.equal(d.train_y, y[tr[:60]])
    assert torch.equal(d.val_x, x[va[:25]]) and torch.equal(d.val_y, y[va[:25]])
    whole = load_dataset("shapes", resolution=res)
    assert torch.equal(whole.take(60, 25).train_x, d.train_x) and torch.equal(whole.val_x[:25], d.val_x)
    assert d.mean == whole.mean and d.std == whole.std  # one normalisation whatever the limit
    if res <= ds.SHAPES_POOL_MAX_RES:  # exactly the statistics of the old whole load
        assert d.mean == ds._channel_stats(x[tr])[0]
    limits_above = load_dataset("shapes", resolution=res, train_limit=5000, val_limit=5000)
    assert limits_above.train_x.shape[0] == 800 and limits_above.val_x.shape[0] == 200


def test_load_at_224_with_a_limit_makes_only_those_images(small_pool, monkeypatch):
    import tracemalloc

    tracemalloc.start()  # numpy's allocations: the pixels painted, drawn and kept
    try:
        d = load_dataset("shapes", resolution=224, train_limit=200, val_limit=50)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert d.train_x.shape == (200, 3, 224, 224) and d.val_x.shape == (50, 3, 224, 224)
    assert d.train_x.dtype == torch.uint8 and d.resolution == 224
    image_bytes = (200 + 50) * 3 * 224 * 224  # 38 MB; the 1,000-image pool at 224 px would be 150 MB
    assert peak < image_bytes + ds._PAINT_WORK_BYTES + 1000 * 3 * 32 * 32 + (16 << 20)
    est = ds.estimate_load("shapes", resolution=224, train_limit=200, val_limit=50)
    assert (est.train, est.val, est.test) == (200, 50, 0) and est.total >= peak
    # nothing at 224 px but the stream index is cached; the next load jumps through it
    names = sorted(p.name for p in (small_pool / "datasets").iterdir())
    assert names == [f"shapes-v{ds.SHAPES_VERSION}-224px-train-1000-stream.npz",
                     f"shapes-v{ds.SHAPES_VERSION}-32px-train-1000.npz"]

    def no_walk(*a, **k):
        raise AssertionError("walked the stream again")

    monkeypatch.setattr(ds, "_drop_noise", no_walk)
    again = load_dataset("shapes", resolution=224, train_limit=20, val_limit=5)
    assert torch.equal(again.train_x, d.train_x[:20]) and torch.equal(again.val_x, d.val_x[:5])


def test_stale_stream_index_is_rebuilt(small_pool):
    first = load_dataset("shapes", resolution=80, train_limit=10, val_limit=3)
    index = small_pool / "datasets" / f"shapes-v{ds.SHAPES_VERSION}-80px-train-1000-stream.npz"
    with np.load(index) as f:
        arrays = dict(f)
    arrays["noise"][:, 1] += np.uint64(1)  # points into the wrong place of the stream
    np.savez(index, **arrays)
    again = load_dataset("shapes", resolution=80, train_limit=10, val_limit=3)
    assert torch.equal(first.train_x, again.train_x) and torch.equal(first.val_x, again.val_x)
    with np.load(index) as f:
        assert not np.array_equal(f["noise"], arrays["noise"])  # rewritten


def test_dataset_info_counts_what_a_load_holds(shapes, tmp_path):
    info = ds.dataset_info("shapes")
    assert (info.train, info.val) == (shapes.train_x.shape[0], shapes.val_x.shape[0])
    assert info.num_classes == shapes.num_classes and info.class_names == shapes.class_names
    tenth = ds.dataset_info("shapes", val_fraction=0.1)
    assert (tenth.train, tenth.val) == (22_500, 2_500)
    write_cifar10(tmp_path / "c10")
    write_cifar100(tmp_path / "c100")
    write_imagefolder(tmp_path / "folder")
    for spec in (f"cifar10:{tmp_path / 'c10'}", f"cifar100:{tmp_path / 'c100'}", f"imagefolder:{tmp_path / 'folder'}"):
        for fraction in (None, 0.3):
            d, i = load_dataset(spec, val_fraction=fraction), ds.dataset_info(spec, val_fraction=fraction)
            assert (i.train, i.val, i.num_classes) == (d.train_x.shape[0], d.val_x.shape[0], d.num_classes), spec
            assert i.class_names == d.class_names


def test_dataset_info_makes_no_image(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("an image was made")

    monkeypatch.setattr(ds, "_render_shapes", boom)
    monkeypatch.setattr(ds, "_shapes_cached", boom)
    assert ds.dataset_info("shapes", resolution=224).train == 20_000
    with pytest.raises(UserError, match="resolution"):
        ds.dataset_info("shapes", resolution=4096)


def test_limited_cifar_and_imagefolder_loads_are_the_first_images(tmp_path):
    write_cifar10(tmp_path / "c10", per_batch=20)
    spec = f"cifar10:{tmp_path / 'c10'}"
    for res in (32, 40):
        whole, part = load_dataset(spec, resolution=res), load_dataset(spec, resolution=res, train_limit=7, val_limit=3)
        assert torch.equal(part.train_x, whole.train_x[:7]) and torch.equal(part.val_x, whole.val_x[:3])
        assert torch.equal(part.train_y, whole.train_y[:7]) and part.mean == whole.mean
    write_imagefolder(tmp_path / "folder", per_class=6)
    spec = f"imagefolder:{tmp_path / 'folder'}"
    whole, part = load_dataset(spec, resolution=24), load_dataset(spec, resolution=24, train_limit=5, val_limit=2)
    assert torch.equal(part.train_x, whole.train_x[:5]) and torch.equal(part.val_y, whole.val_y[:2])
    assert part.mean == ds._channel_stats(part.train_x)[0]  # normalised with what it loaded


def test_load_that_cannot_fit_is_refused_in_one_line_before_any_image(small_pool, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("an image was made")

    monkeypatch.setattr(ds, "_render_shapes", boom)
    monkeypatch.setattr(ds, "_shapes_cached", boom)
    monkeypatch.setenv(ds.MEMORY_LIMIT_ENV, str(300 << 20))  # 315 MB, of which 236 MB for data
    with pytest.raises(ds.DataTooLarge) as caught:
        load_dataset("shapes", resolution=224)  # 1,000 images at 224 px (151 MB) and the painter's work arrays
    exc = caught.value
    text = str(exc)
    assert "\n" not in text and isinstance(exc, UserError)
    assert exc.estimate.total > exc.budget == int(0.75 * (300 << 20))
    assert f"needs {exc.estimate.total / 1e6:.0f} MB" in text and "315 MB is available (NAS_MEMORY_LIMIT_BYTES)" in text
    n = exc.fitting_train()
    assert 0 < n < 800 and f"at most {n:,} training images fit at 224x224" in text
    est = exc.estimate
    assert est.bytes_at(224, train=n) <= exc.budget < est.bytes_at(224, train=n + 1)
    r = exc.fitting_resolution()
    assert r is not None and est.bytes_at(r) <= exc.budget < est.bytes_at(r + 1)
    advice = exc.advice("--limit", "--resolution")
    assert f"pass --limit {n}" in advice and f"pass --resolution {r}" in advice and "\n" not in advice
    # validation alone too big: only a lower resolution helps
    monkeypatch.setenv(ds.MEMORY_LIMIT_ENV, str(30 << 20))
    with pytest.raises(ds.DataTooLarge) as caught:
        load_dataset("shapes", resolution=224, train_limit=10)
    assert caught.value.fitting_train() == 0 and "training images fit" not in str(caught.value)
    assert "fit at " in str(caught.value)
    # room for 20 MB of images, where the 200 validation images need 30 MB: fewer validation images too
    # (nas train's --val-limit), as many of each as fit together
    est = caught.value.estimate
    monkeypatch.setenv(ds.MEMORY_LIMIT_ENV, str(int((est.extra_bytes(224) + 20e6) / 0.75) + 1))
    with pytest.raises(ds.DataTooLarge) as caught:
        load_dataset("shapes", resolution=224, train_limit=10)
    exc, per = caught.value, 3 * 224 * 224 + 8
    t, v = exc.fitting_split()
    assert exc.fitting_train() == 0 and "validation images alone do not fit" in str(exc)
    assert t == 10 and (t + v) * per <= exc.budget - est.extra_bytes(224) < (t + v + 1) * per and 1 <= v < est.val
    advice = exc.advice("--limit", "--resolution", "--val-limit")
    assert f"the 10 training images and {v:,} validation images fit at 224x224 (pass --val-limit {v})" in advice
    # all 800 training images asked for do not fit either: as many of each as fit together
    with pytest.raises(ds.DataTooLarge) as caught:
        load_dataset("shapes", resolution=224)
    t, v = caught.value.fitting_split()
    assert t == v == 66 and "(pass --limit 66 --val-limit 66)" in caught.value.advice(
        "--limit", "--resolution", "--val-limit")
    assert "--val-limit" not in str(caught.value)  # a caller without such a flag is not told to pass it


def test_available_memory_and_its_override(monkeypatch):
    monkeypatch.delenv(ds.MEMORY_LIMIT_ENV, raising=False)
    known = ds.available_memory()
    assert known is None or known[0] > 0
    monkeypatch.setenv(ds.MEMORY_LIMIT_ENV, "2e9")
    assert ds.available_memory() == (2_000_000_000, ds.MEMORY_LIMIT_ENV)
    monkeypatch.setenv(ds.MEMORY_LIMIT_ENV, "lots")
    with pytest.raises(UserError, match="number of bytes"):
        ds.available_memory()


@pytest.mark.parametrize("limit", [0, -3, 2.5])
def test_bad_limits_are_user_errors(limit):
    with pytest.raises(UserError, match="train_limit"):
        load_dataset("shapes", train_limit=limit)
