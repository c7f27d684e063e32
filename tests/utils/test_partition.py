import torch
from hypothesis import given
from hypothesis import strategies as st

from hsa_geo.utils import symmetric_csr


@given(st.integers(1, 30), st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29)),
                                    max_size=80))
def test_symmetric_csr_is_the_simple_undirected_graph(num_nodes, pairs):
    pairs = [(a % num_nodes, b % num_nodes) for a, b in pairs]
    edge_index = torch.tensor(pairs, dtype=torch.long).view(-1, 2).t()
    rowptr, col = symmetric_csr(edge_index, num_nodes)
    expected = sorted({(a, b) for a, b in pairs if a != b} | {(b, a) for a, b in pairs if a != b})
    assert rowptr.tolist()[0] == 0 and rowptr.numel() == num_nodes + 1
    got = [(row, int(c)) for row in range(num_nodes)
           for c in col[rowptr[row]:rowptr[row + 1]]]
    assert got == expected
