import networkx as nx
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.utils import from_networkx

from hsa_geo import Hierarchy, HSAConv
from hsa_geo.transforms import GraphHierarchy, family_laplacian_pe


def _karate():
    data = from_networkx(nx.karate_club_graph())
    return Data(x=torch.eye(34), edge_index=data.edge_index, y=torch.tensor([0]))


def test_karate_club_hierarchy():
    out = GraphHierarchy(num_levels=2, pos_dim=4)(_karate())
    assert out.node_types == ['node', 'community1', 'community2', 'root']
    h = Hierarchy.from_hetero(out)
    assert h.num_leaves == 34 and h.num_roots == 1
    c1, c2 = out['community1'].num_nodes, out['community2'].num_nodes
    assert 1 <= c2 <= c1 < 34
    assert out['node', 'to', 'node'].edge_index.size(1) == 156
    assert out['node'].hsa_pos.shape == (34, 4)
    # deterministic given the seed
    again = GraphHierarchy(num_levels=2, pos_dim=4)(_karate())
    assert torch.equal(again['node', 'in', 'community1'].edge_index,
                       out['node', 'in', 'community1'].edge_index)


def test_disconnected_graphs_and_batching():
    two = Data(x=torch.randn(6, 3), edge_index=torch.tensor([[0, 1, 1, 2, 3, 4, 4, 5],
                                                            [1, 0, 2, 1, 4, 3, 5, 4]]))
    samples = [GraphHierarchy(num_levels=3)(d) for d in (two, _karate_small())]
    batch = next(iter(DataLoader(samples, batch_size=2)))
    h = Hierarchy.from_hetero(batch)
    assert h.num_roots == 2
    conv = HSAConv(3, 4, pos_channels=8)
    pos = {t: batch[t].hsa_pos for t in batch.node_types}
    assert conv(batch['node'].x, h, pos=pos).shape == (12, 4)


def _karate_small():
    g = nx.path_graph(6)
    data = from_networkx(g)
    return Data(x=torch.randn(6, 3), edge_index=data.edge_index)


def test_family_laplacian_pe_of_a_path():
    # one family holding a path of 3 nodes: the Fiedler vector is (-1, 0, 1)/sqrt(2)-like
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    pe = family_laplacian_pe(edge_index, torch.zeros(3, dtype=torch.long), 4)
    assert pe.shape == (3, 4) and torch.allclose(pe[:, 2:], torch.zeros(3, 2))
    assert abs(float(pe[1, 0])) < 1e-6 and float(pe[0, 0]) * float(pe[2, 0]) < 0


def test_bad_input():
    with pytest.raises(ValueError, match='empty graph'):
        GraphHierarchy()(Data(x=torch.zeros(0, 2), edge_index=torch.zeros(2, 0).long()))
    with pytest.raises(ValueError, match="'num_levels'"):
        GraphHierarchy(num_levels=0)


def test_spectral_method_is_balanced_and_local():
    # a 2D grid: spectral windows should be balanced and mostly connected
    g = nx.grid_2d_graph(16, 16)
    data = from_networkx(nx.convert_node_labels_to_integers(g))
    data = Data(x=torch.randn(256, 2), edge_index=data.edge_index)
    out = GraphHierarchy(method='spectral', branching=(8, 4))(data)
    assert out.node_types == ['node', 'community1', 'community2', 'root']
    sizes = torch.bincount(out['node', 'in', 'community1'].edge_index[1])
    assert sizes.tolist() == [8] * 32
    # most edges stay inside a community1 window far more often than at random
    label = out['node', 'in', 'community1'].edge_index[1]
    row, col = data.edge_index
    inside = (label[row] == label[col]).float().mean()
    assert inside > 0.2          # random windows of 8 out of 256 would give ~0.03
    h = Hierarchy.from_hetero(out)
    assert h.num_leaves == 256 and h.num_roots == 1
    with pytest.raises(ValueError, match="'method' must be one of"):
        GraphHierarchy(method='leiden')


def test_metis_recovers_planted_nested_communities():
    from sklearn.metrics import adjusted_rand_score

    from hsa_geo.datasets import planted_hierarchy_graph
    from hsa_geo.utils import metis_levels
    edge_index, planted = planted_hierarchy_graph(4000, 16, (4, 4), (0.6, 0.3), seed=1)
    found = metis_levels(edge_index, 4000, (4, 4))
    assert [int(f.max()) + 1 for f in found] == [16, 4]
    for f, p in zip(found, planted):
        assert adjusted_rand_score(p.numpy(), f.numpy()) > 0.9
    # nested: a finest cluster sits inside one coarse cluster
    up = torch.zeros(16, dtype=torch.long)
    up[found[0]] = found[1]
    assert torch.equal(up[found[0]], found[1])
    # the spectral windows do not follow the communities
    spectral = GraphHierarchy(method='spectral', branching=(250, 4))(
        Data(edge_index=edge_index, num_nodes=4000))
    window = spectral['node', 'in', 'community1'].edge_index[1]
    assert adjusted_rand_score(planted[0].numpy(), window.numpy()) < 0.5


def test_metis_graph_hierarchy():
    from hsa_geo.datasets import planted_hierarchy_graph
    edge_index, _ = planted_hierarchy_graph(600, 8, (3, 4), (0.7, 0.2))
    builder = GraphHierarchy(method='metis', num_parts=(3, 4), pos_dim=4)
    assert repr(builder) == ("GraphHierarchy(method='metis', num_parts=(3, 4), pos_dim=4, "
                             "seed=0, leaf_type='node')")
    data = builder(Data(x=torch.randn(600, 5), edge_index=edge_index))
    assert data['community1'].num_nodes == 12 and data['community2'].num_nodes == 3
    h = Hierarchy.from_hetero(data)
    assert h.num_leaves == 600 and h.depth == 3
    out = HSAConv(5, 4, pos_channels=4)(data['node'].x, h,
                                         pos={t: data[t].hsa_pos for t in data.node_types})
    assert out.shape == (600, 4) and torch.isfinite(out).all()
    # a part smaller than the parts asked of it splits into single nodes
    tiny = GraphHierarchy(method='metis', num_parts=(2, 4))(
        Data(edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]), num_nodes=5))
    assert Hierarchy.from_hetero(tiny).num_leaves == 5
    with pytest.raises(ValueError, match="'num_parts\\[0\\]'"):
        GraphHierarchy(method='metis', num_parts=(1, 4))


def test_metis_needs_pymetis(monkeypatch):
    import sys

    from hsa_geo.utils import metis_levels
    monkeypatch.setitem(sys.modules, 'pymetis', None)
    with pytest.raises(ModuleNotFoundError, match='pip install pymetis'):
        metis_levels(torch.tensor([[0], [1]]), 2, (2, ))


def test_plm_recovers_planted_nested_communities():
    from sklearn.metrics import adjusted_rand_score

    from hsa_geo.datasets import planted_hierarchy_graph
    from hsa_geo.utils import plm_levels
    edge_index, planted = planted_hierarchy_graph(4000, 16, (16, 16), (0.6, 0.3), seed=0)
    found = plm_levels(edge_index, 4000, 2)
    for f, p in zip(found, planted):
        assert adjusted_rand_score(p.numpy(), f.numpy()) > 0.9
        assert torch.equal(torch.unique(f), torch.arange(int(f.max()) + 1))  # contiguous
    assert int(found[1].max()) + 1 == 16
    up = torch.zeros(int(found[0].max()) + 1, dtype=torch.long)
    up[found[0]] = found[1]
    assert torch.equal(up[found[0]], found[1])                               # nested
    # one thread: the same graph gives the same levels
    assert all(torch.equal(a, b) for a, b in zip(found, plm_levels(edge_index, 4000, 2)))
    # Louvain finds two scales here: asked for more, the coarsest repeats
    three = plm_levels(edge_index, 4000, 3)
    assert torch.equal(three[0], found[0]) and torch.equal(three[1], three[2])
    assert torch.equal(plm_levels(edge_index, 4000, 1)[0], found[1])
    with pytest.raises(ValueError, match="'edge_index' holds node indices in \\[0, 7\\]"):
        plm_levels(torch.tensor([[0], [7]]), 5, 2)
    with pytest.raises(ValueError, match="'num_levels' must be at least 1"):
        plm_levels(edge_index, 4000, 0)
    with pytest.raises(TypeError, match="'edge_index' must be an integer tensor"):
        plm_levels(edge_index.float(), 4000, 2)
    # no edges: every node its own community
    alone = plm_levels(torch.zeros(2, 0, dtype=torch.long), 3, 2)
    assert all(torch.equal(a, torch.arange(3)) for a in alone)


def test_plm_graph_hierarchy():
    from hsa_geo.datasets import planted_hierarchy_graph
    edge_index, _ = planted_hierarchy_graph(2000, 16, (8, 8), (0.6, 0.3))
    builder = GraphHierarchy(method='plm', num_levels=2, pos_dim=4)
    assert repr(builder) == ("GraphHierarchy(method='plm', num_levels=2, resolution=1.0, "
                             "pos_dim=4, seed=0, leaf_type='node')")
    data = builder(Data(x=torch.randn(2000, 5), edge_index=edge_index))
    assert data['community2'].num_nodes == 8
    h = Hierarchy.from_hetero(data)
    assert h.num_leaves == 2000 and h.depth == 3
    out = HSAConv(5, 4, pos_channels=4)(data['node'].x, h,
                                         pos={t: data[t].hsa_pos for t in data.node_types})
    assert out.shape == (2000, 4) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="'resolution'"):
        GraphHierarchy(method='plm', resolution=0.0)


def test_plm_needs_networkit(monkeypatch):
    import sys

    from hsa_geo.utils import plm_levels
    monkeypatch.setitem(sys.modules, 'networkit', None)
    with pytest.raises(ModuleNotFoundError, match='pip install networkit'):
        plm_levels(torch.tensor([[0], [1]]), 2, 2)


def test_family_laplacian_pe_large_families_by_lobpcg(monkeypatch):
    import hsa_geo.transforms.graph as graph
    gen = torch.Generator().manual_seed(0)
    # families: shuffled paths with a few chords (distinct eigenvalues)
    sizes = [30, 50, 50, 80]
    parent = torch.cat([torch.full((size, ), i) for i, size in enumerate(sizes)])
    edges, start = [], 0
    for size in sizes:
        edges += [torch.stack([torch.arange(start, start + size - 1),
                               torch.arange(start + 1, start + size)]),
                  torch.randint(start, start + size, (2, 3), generator=gen)]
        start += size
    perm = torch.randperm(start, generator=gen)
    new_id = torch.empty_like(perm)
    new_id[perm] = torch.arange(start)
    edge_index, parent = new_id[torch.cat(edges, 1)], parent[perm]
    dense = family_laplacian_pe(edge_index, parent, 6)
    monkeypatch.setattr(graph, 'DENSE_FAMILY_MAX', 40)      # 50 and 80: LOBPCG
    assert torch.allclose(family_laplacian_pe(edge_index, parent, 6), dense, atol=1e-5)
    monkeypatch.setattr(graph, 'DENSE_FAMILY_MAX', 512)
    monkeypatch.setattr(graph, 'DENSE_CHUNK_ENTRIES', 1)    # one family per chunk
    assert torch.equal(family_laplacian_pe(edge_index, parent, 6), dense)
    # each vector is an eigenvector of its family's normalised Laplacian
    members = (parent == 3).nonzero().view(-1)
    local = torch.full((start, ), -1)
    local[members] = torch.arange(80)
    inside = (parent[edge_index[0]] == 3) & (parent[edge_index[1]] == 3)
    a, b = local[edge_index[:, inside]]
    adj = torch.zeros(80, 80, dtype=torch.float64)
    adj[a, b] = adj[b, a] = 1
    adj.fill_diagonal_(0)
    inv = adj.sum(1).rsqrt()
    lap = torch.eye(80, dtype=torch.float64) - inv[:, None] * adj * inv[None]
    vec = dense[members].double()
    ratio = (lap @ vec) / vec
    assert torch.allclose(lap @ vec, vec * ratio.median(0).values, atol=1e-5)


def test_planted_graph_is_nested_and_follows_its_mixing():
    from hsa_geo.datasets import planted_hierarchy_graph
    edge_index, (fine, coarse) = planted_hierarchy_graph(2000, 20, (5, 4), (0.5, 0.3))
    assert edge_index.shape == (2, 20000)
    assert torch.bincount(coarse).tolist() == [400] * 5
    assert torch.bincount(fine).tolist() == [100] * 20
    up = torch.zeros(20, dtype=torch.long)
    up[fine] = coarse
    assert torch.equal(up[fine], coarse)
    same = (fine[edge_index[0]] == fine[edge_index[1]]).float().mean()
    # 0.5 inside the finest block, plus the share of the others that lands there
    assert same == pytest.approx(0.5 + 0.3 * 100 / 400 + 0.2 * 100 / 2000, abs=0.02)
    with pytest.raises(ValueError, match="'within'"):
        planted_hierarchy_graph(100, 4, (2, 2), (0.7, 0.5))


def test_planted_node_dataset():
    from hsa_geo.datasets import planted_node_dataset
    data = planted_node_dataset(2000, avg_degree=10, num_parts=(4, 5), within=(0.6, 0.2),
                                num_classes=3, num_features=6, split=(0.2, 0.1), seed=4)
    assert data.x.shape == (2000, 6) and data.planted.shape == (2000, 2)
    assert int(data.train_mask.sum()) == 400 and int(data.val_mask.sum()) == 200
    masks = data.train_mask.long() + data.val_mask.long() + data.test_mask.long()
    assert torch.equal(masks, torch.ones(2000, dtype=torch.long))    # disjoint, complete
    # one class per block of the label level (1: the coarser one here)
    for block in data.planted[:, 1].unique():
        assert data.y[data.planted[:, 1] == block].unique().numel() == 1
    # undirected, no self-loops, no repeats
    row, col = data.edge_index
    assert bool((row != col).all())
    key = row * 2000 + col
    assert key.unique().numel() == key.numel()
    assert torch.equal((col * 2000 + row).sort().values, key.sort().values)
    # the class signal is there: each class's mean feature points at its prototype
    means = torch.stack([data.x[data.y == c].mean(0) for c in range(3)])
    assert (means.norm(dim=1) > 0.4).all()
    assert torch.equal(planted_node_dataset(300, seed=1).x, planted_node_dataset(300, seed=1).x)
    with pytest.raises(ValueError, match="'split'"):
        planted_node_dataset(300, split=(0.6, 0.5))
    with pytest.raises(ValueError, match="'label_level' must be at most 2"):
        planted_node_dataset(300, label_level=3)


def test_family_laplacian_pe_repeated_eigenvalues_by_lobpcg(monkeypatch):
    # three cycles in one family: eigenvalue 0 three times, then pairs; a
    # single-vector Lanczos would find one vector per distinct eigenvalue
    import hsa_geo.transforms.graph as graph
    size, count = 60, 3
    ring = torch.arange(size)
    edge_index = torch.cat([torch.stack([ring + i * size, (ring + 1) % size + i * size])
                            for i in range(count)], 1)
    parent = torch.zeros(size * count, dtype=torch.long)
    adj = torch.zeros(size * count, size * count, dtype=torch.float64)
    adj[edge_index[0], edge_index[1]] = adj[edge_index[1], edge_index[0]] = 1
    lap = torch.eye(size * count, dtype=torch.float64) - adj / 2      # every degree is 2
    expected = torch.linalg.eigvalsh(lap)[1:7]
    monkeypatch.setattr(graph, 'DENSE_FAMILY_MAX', 100)
    vec = family_laplacian_pe(edge_index, parent, 6).double()
    vec = vec / vec.norm(dim=0)
    rayleigh = ((vec * (lap @ vec)).sum(0)).sort().values
    assert torch.allclose(rayleigh, expected, atol=1e-5)
    assert torch.allclose(vec.t() @ vec, torch.eye(6, dtype=torch.float64), atol=1e-4)



def test_each_method_reads_only_its_arguments():
    # a num_levels that agrees with the levels num_parts / branching set is
    # accepted and changes nothing; an argument of another method is refused
    assert repr(GraphHierarchy(method='metis', num_levels=3, num_parts=(2, 2, 2))) == \
        repr(GraphHierarchy(method='metis', num_parts=(2, 2, 2)))
    assert repr(GraphHierarchy(method='spectral', num_levels=2)) == \
        repr(GraphHierarchy(method='spectral'))
    assert GraphHierarchy(method='spectral', branching=(4, 4, 4)).num_levels == 3
    for method, extra in (('louvain', dict(branching=(4, ))), ('plm', dict(num_parts=(2, ))),
                          ('spectral', dict(resolution=0.5)), ('metis', dict(resolution=0.5)),
                          ('metis', dict(branching=(4, )))):
        with pytest.raises(ValueError, match=f"not used by method='{method}'"):
            GraphHierarchy(method=method, **extra)
    with pytest.raises(ValueError, match="'num_levels' \\(3\\) conflicts with 'num_parts'"):
        GraphHierarchy(method='metis', num_levels=3, num_parts=(2, 2))
