"""The statistics behind the dashboards: bootstrap best range, EDFs, NDS weights, KS, hypervolume history."""

from __future__ import annotations

import numpy as np
import pytest

from nas.common.pareto import hypervolume, pareto_front
from nas.dashboards.analysis import (
    best_range,
    bootstrap_best,
    edf,
    hypervolume_history,
    ks_statistic,
    nds_weights,
    shared_range,
)


def test_best_range_finds_the_sweet_spot():
    """Accuracy peaks at choice 2 of 0..4 (with noise): the band holds 2 and not the far ends."""
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 5, size=400)
    acc = 0.8 - 0.03 * np.abs(codes - 2) + rng.normal(0, 0.005, size=400)
    band = best_range(codes, bootstrap_best(acc, seed=1), 5)
    assert band.low <= 2 <= band.high and band.median == 2
    assert band.low >= 1 and band.high <= 3
    assert band.share.sum() == pytest.approx(1.0) and band.share.argmax() == 2


def test_best_range_of_an_irrelevant_parameter_is_wide():
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 4, size=400)
    acc = rng.normal(0.7, 0.02, size=400)  # the parameter does nothing
    band = best_range(codes, bootstrap_best(acc, seed=3), 4)
    assert band.low == 0 and band.high == 3


def test_bootstrap_is_seeded_and_picks_sample_maxima():
    acc = np.array([0.1, 0.5, 0.9, 0.3])
    a, b = bootstrap_best(acc, draws=300, seed=7), bootstrap_best(acc, draws=300, seed=7)
    assert (a == b).all() and len(a) == 300
    assert set(a) <= {0, 1, 2, 3}
    # A draw of a quarter of 4 models is one model: every model is the best of some draws.
    assert set(a) == {0, 1, 2, 3}
    big = bootstrap_best(np.arange(1000.0), draws=50, share=0.5, seed=0)
    assert big.min() > 900  # the best of 500 draws from 0..999 is near the top
    assert len(bootstrap_best([], draws=10)) == 0


def test_edf_is_the_share_of_models_at_or_below():
    x, y = edf([0.3, 0.1, 0.2, 0.4])
    assert list(x) == [0.1, 0.2, 0.3, 0.4] and list(y) == [0.25, 0.5, 0.75, 1.0]
    x, y = edf([0.1, 0.2], weights=[3, 1])
    assert list(y) == [0.75, 1.0]
    assert len(edf([])[0]) == 0


def test_nds_weights_give_every_occupied_bin_the_same_total():
    # Space A samples mostly small models, B mostly large ones, over the same range.
    flops = np.array([1e8] * 8 + [3e8] * 2 + [9e8] * 10)  # log bins: 1e8, 2.2e8, 4.6e8, 1e9
    w = nds_weights(flops, 1e8, 1e9, bins=3)
    assert w.sum() == pytest.approx(1.0)
    edges = np.geomspace(1e8, 1e9, 4)
    totals = [w[(flops >= lo) & (flops <= hi)].sum() for lo, hi in zip(edges, edges[1:])]
    assert totals == pytest.approx([1 / 3] * 3)
    # outside the shared range: weight 0
    w2 = nds_weights(np.array([5e7, 2e8, 3e9]), 1e8, 1e9)
    assert w2[0] == 0 and w2[2] == 0 and w2[1] == 1.0


def test_shared_range():
    assert shared_range([np.array([1.0, 5.0]), np.array([3.0, 9.0])]) == (3.0, 5.0)
    assert shared_range([np.array([1.0, 2.0]), np.array([3.0, 9.0])]) is None
    assert shared_range([np.array([]), np.array([3.0, 9.0])]) == (3.0, 9.0)


def test_normalisation_removes_a_complexity_advantage():
    """Two spaces with the same error-vs-FLOPs law, one sampling bigger models: their raw EDFs
    differ, their complexity-normalised EDFs nearly agree (the point of NDS)."""
    rng = np.random.default_rng(0)
    f_a = 10 ** rng.uniform(8, 9, 4000)
    f_b = 10 ** (8 + rng.uniform(0, 1, 4000) ** 0.3)  # skewed towards large models
    err = lambda f: 0.5 - 0.1 * (np.log10(f) - 8) + rng.normal(0, 0.01, len(f))  # noqa: E731
    e_a, e_b = err(f_a), err(f_b)
    raw = ks_statistic(e_a, e_b)
    lo, hi = shared_range([f_a, f_b])
    norm = ks_statistic(e_a, e_b, nds_weights(f_a, lo, hi, bins=20), nds_weights(f_b, lo, hi, bins=20))
    assert raw > 0.3 and norm < 0.1


def test_ks_matches_scipy_and_is_symmetric():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, 300), rng.normal(0.3, 1.2, 200)
    assert ks_statistic(a, b) == pytest.approx(ks_2samp(a, b).statistic)
    assert ks_statistic(a, b) == pytest.approx(ks_statistic(b, a))
    assert ks_statistic(a, a) == 0.0
    assert np.isnan(ks_statistic([], a))


def test_hypervolume_history_is_monotone_and_ends_at_the_fronts_volume():
    rng = np.random.default_rng(5)
    pts = [tuple(p) for p in rng.uniform(0, 1, size=(300, 2))]
    seq = [p if i % 7 else None for i, p in enumerate(pts)]  # some trials count for nothing
    ref = (1.0, 1.0)
    hv = hypervolume_history(seq, ref)
    assert len(hv) == len(seq) and all(b >= a for a, b in zip(hv, hv[1:]))
    kept = [p for p in seq if p is not None]
    assert hv[-1] == pytest.approx(hypervolume([kept[i] for i in pareto_front(kept)], ref))
    assert hypervolume_history([None, (2.0, 0.5)], ref) == [0.0, 0.0]  # outside the reference: nothing
