import itertools

import torch
from hypothesis import given
from hypothesis import strategies as st

from hsa_geo.engine.size_classes import size_classes


def _cost(sizes, bounds, class_cost):
    return sum(class_cost + (end - start) * int(sizes[end - 1]) ** 2 for start, end in bounds)


def _best(sizes, max_classes, class_cost):
    r"""Brute force over every cut between distinct sizes."""
    cuts = [i for i in range(1, len(sizes)) if sizes[i] != sizes[i - 1]]
    best = None
    for k in range(0, min(max_classes, len(cuts) + 1)):
        for chosen in itertools.combinations(cuts, k):
            edges = [0, *chosen, len(sizes)]
            cost = _cost(sizes, list(zip(edges[:-1], edges[1:])), class_cost)
            best = cost if best is None else min(best, cost)
    return best


@given(st.lists(st.integers(2, 40), min_size=1, max_size=12), st.integers(1, 4),
       st.sampled_from([0, 16, 256, 4096]))
def test_the_cut_is_optimal_and_covers_every_family(sizes, max_classes, class_cost):
    sizes = torch.tensor(sorted(sizes))
    bounds = size_classes(sizes, max_classes, class_cost)
    assert 1 <= len(bounds) <= max_classes
    assert bounds[0][0] == 0 and bounds[-1][1] == sizes.numel()
    assert all(a[1] == b[0] for a, b in zip(bounds[:-1], bounds[1:]))
    assert all(start < end for start, end in bounds)
    assert _cost(sizes, bounds, class_cost) == _best(sizes, max_classes, class_cost)
