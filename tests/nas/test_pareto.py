"""Non-dominated sorting and hypervolume against brute force on random points with many ties."""

import itertools
import math
import random

import pytest

from nas.common.pareto import (
    crowding_distance,
    dominates,
    hypervolume,
    non_dominated_sort,
    pareto_front,
    to_minimisation,
)


def _brute_fronts(points):
    remaining, fronts = list(range(len(points))), []
    while remaining:
        front = [i for i in remaining if not any(dominates(points[j], points[i]) for j in remaining)]
        fronts.append(sorted(front))
        remaining = [i for i in remaining if i not in front]
    return fronts


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_non_dominated_sort_matches_brute_force(dims):
    rng = random.Random(dims)
    for _ in range(400):
        # Small integer grids: many equal coordinates and identical points, the hard cases.
        points = [tuple(float(rng.randint(0, 4)) for _ in range(dims)) for _ in range(rng.randint(0, 25))]
        assert non_dominated_sort(points) == _brute_fronts(points)
        assert pareto_front(points) == (_brute_fronts(points)[0] if points else [])


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_hypervolume_counts_dominated_cells(dims):
    # On integer points with reference 5, the hypervolume is the number of unit cells dominated.
    rng = random.Random(10 + dims)
    for _ in range(150):
        points = [tuple(float(rng.randint(0, 4)) for _ in range(dims)) for _ in range(rng.randint(1, 8))]
        cells = sum(any(all(p[k] <= c[k] for k in range(dims)) for p in points)
                    for c in itertools.product(range(5), repeat=dims))
        assert hypervolume(points, (5.0,) * dims) == pytest.approx(cells)


def test_hypervolume_ignores_points_outside_the_reference():
    assert hypervolume([(6.0, 0.0), (0.0, 5.0)], (5.0, 5.0)) == 0.0
    assert hypervolume([(1.0, 1.0), (6.0, 0.0)], (5.0, 5.0)) == pytest.approx(16.0)


def test_to_minimisation_negates_maximised_objectives():
    assert to_minimisation([(0.9, 4e9)], [True, False]) == [(-0.9, 4e9)]


def test_crowding_distance_extremes_are_infinite():
    d = crowding_distance([(0.0, 3.0), (1.0, 2.0), (2.0, 1.0), (3.0, 0.0)])
    assert math.isinf(d[0]) and math.isinf(d[3])
    assert d[1] == pytest.approx(2 / 3 + 2 / 3) and d[2] == pytest.approx(4 / 3)
