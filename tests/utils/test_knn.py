import pytest
import torch

from hsa_geo.utils import knn, knn_graph


def test_knn_graph_exact_and_morton():
    gen = torch.Generator().manual_seed(7)
    pos = torch.rand(300, 3, generator=gen)
    batch = torch.tensor([0] * 120 + [1] * 177 + [2] * 3)
    edges = knn_graph(pos, 5, batch)
    for cloud in range(3):
        idx = (batch == cloud).nonzero().view(-1)
        dist = torch.cdist(pos[idx], pos[idx]).fill_diagonal_(float('inf'))
        k = min(5, len(idx) - 1)
        expected = dist.topk(k, largest=False).indices.sort(1).values + idx[0]
        got = edges[0][batch[edges[1]] == cloud].view(-1, k).sort(1).values
        assert torch.equal(got, expected)
    assert torch.equal(edges[1], torch.sort(edges[1]).values)
    with_loop = knn_graph(pos[:50], 4, loop=True)
    assert (with_loop[0] == with_loop[1]).sum() == 50
    approx = knn_graph(pos, 8, method='morton')
    exact = knn_graph(pos, 8)
    assert approx.shape == exact.shape and (approx[0] != approx[1]).all()
    # every point gets k distinct neighbours, most of them the true ones
    assert all(len(set(approx[0, i * 8:(i + 1) * 8].tolist())) == 8 for i in range(300))
    recall = len(set(map(tuple, approx.t().tolist())) & set(map(tuple, exact.t().tolist())))
    assert recall / exact.size(1) > 0.6
    with pytest.raises(ValueError, match="'batch'"):
        knn_graph(pos, 3, torch.tensor([1] * 150 + [0] * 150))
    with pytest.raises(ValueError, match="'method'"):
        knn_graph(pos, 3, method='kd')


def test_exact_hands_off_to_pyg_when_pyg_lib_has_knn(monkeypatch):
    import torch_geometric.nn
    calls = []

    def pyg_knn_graph(pos, k, batch, loop, flow):
        calls.append((k, loop, flow))
        src, dst = knn._knn_exact(pos, k, loop, 64)
        return torch.stack([src, dst]).flip(1)  # PyG's order need not be by centre

    monkeypatch.setattr(knn, '_pyg_knn_available', lambda: True)
    monkeypatch.setattr(torch_geometric.nn, 'knn_graph', pyg_knn_graph)
    pos = torch.rand(40, 3, generator=torch.Generator().manual_seed(1))
    edges = knn_graph(pos, 4)
    assert calls == [(4, False, 'source_to_target')]
    assert torch.equal(edges[1], torch.sort(edges[1]).values)  # sorted by centre again
    monkeypatch.setattr(knn, '_pyg_knn_available', lambda: False)
    own = knn_graph(pos, 4)
    assert set(map(tuple, own.t().tolist())) == set(map(tuple, edges.t().tolist()))
    # the approximate method is always the library's own
    knn_graph(pos, 4, method='morton')
    assert len(calls) == 1
