"""Budget-constrained sampling: in budget, distinct, deterministic, refused when impossible."""

import pytest

from nas.search_spaces import UserError, build_model, complexity, measure
from nas.search_spaces.registry import load_space, space_names
from nas.search_spaces.sampler import flops_range, sample


def _budget_inside(name):
    lo, hi, _ = flops_range(load_space(name))
    return lo + 0.25 * (hi - lo)


@pytest.mark.parametrize("name", space_names())
def test_every_space_samples_100_distinct_in_budget_candidates(name):
    space = load_space(name)
    high = _budget_inside(name)
    result = sample(space, high=high, n=100, seed=0)
    assert len(result.candidates) == 100
    assert len({c.arch_hash for c in result.candidates}) == 100
    for c in result.candidates:
        assert c.flops <= high
        assert complexity(c.config).flops == c.flops
        assert space.decode(c.values).arch_hash() == c.arch_hash
    assert 0 < result.acceptance_rate <= 1


def test_window_budget_keeps_every_candidate_inside():
    result = sample(load_space("resnest"), high=4e9, low=3.6e9, n=50, seed=3)
    assert len(result.candidates) == 50
    assert all(3.6e9 <= c.flops <= 4e9 for c in result.candidates)
    assert result.out_of_budget > 0


def test_analytic_budget_check_agrees_with_the_built_model():
    result = sample(load_space("resnest-cifar"), high=300e6, n=5, seed=1)
    for c in result.candidates:
        assert measure(build_model(c.config, device="meta"), c.config.resolution).flops == c.flops <= 300e6


def test_sampling_is_deterministic_and_seed_dependent():
    space = load_space("seresnext")
    a = [c.arch_hash for c in sample(space, high=4e9, n=20, seed=7).candidates]
    b = [c.arch_hash for c in sample(space, high=4e9, n=20, seed=7).candidates]
    c = [c.arch_hash for c in sample(space, high=4e9, n=20, seed=8).candidates]
    assert a == b and a != c


@pytest.mark.parametrize("low, high", [(0, 100e6), (100e9, 200e9)])
def test_a_budget_outside_the_space_is_refused_at_once_naming_its_range(low, high):
    with pytest.raises(UserError, match=r"FLOPs range from 818 MFLOPs to 43.8 GFLOPs"):
        sample(load_space("resnest"), high=high, low=low, n=5)


def test_flops_range_is_exact_for_the_built_in_spaces():
    space = load_space("resnext-cifar")
    lo, hi, exact = flops_range(space)
    assert exact
    flops = [complexity(c.config).flops for c in sample(space, high=hi, n=300, seed=0).candidates]
    assert lo <= min(flops) and max(flops) <= hi


def test_small_space_is_exhausted_gracefully():
    space = load_space("resnest-cifar")
    lo, _, _ = flops_range(space)
    result = sample(space, high=lo * 1.05, n=50, seed=0, max_draws=5000)
    assert 0 < len(result.candidates) < 50
    assert result.draws == 5000


def test_sampling_stops_when_the_space_is_exhausted():
    space = load_space("resnest-cifar")
    result = sample(space, high=1e12, n=100_000, seed=0)
    assert len(result.candidates) == space.count() == 6912
