import torch
from hypothesis import given
from hypothesis import strategies as st

from hsa_geo.engine.depth import node_depth
from hsa_geo.testing import random_forest


def _walk(parent):
    depth = []
    for node in range(parent.numel()):
        steps, up = 0, int(parent[node])
        while up >= 0:
            steps, up = steps + 1, int(parent[up])
        depth.append(steps)
    return torch.tensor(depth)


@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(1, 5))
def test_depth_equals_walking_up(seed, trees, max_depth):
    parent, _ = random_forest(seed, trees, max_depth, 4)
    depth, stuck = node_depth(parent)
    assert torch.equal(depth, _walk(parent)) and not bool(stuck.any())


def test_a_chain_deeper_than_a_power_of_two():
    parent = torch.arange(1, 1026)
    parent[-1] = -1                     # 0 -> 1 -> ... -> 1024 (the root)
    depth, stuck = node_depth(parent)
    assert torch.equal(depth, torch.arange(1024, -1, -1)) and not bool(stuck.any())


def test_nodes_on_or_below_a_cycle_are_stuck():
    parent = torch.tensor([1, 2, 1, -1, 3])   # 1 <-> 2, 0 below them; 4 -> 3 the root
    _, stuck = node_depth(parent)
    assert stuck.tolist() == [True, True, True, False, False]
