r"""Node subsets of a hierarchy as hierarchies, and mini-batches of subtrees."""
import pytest
import torch
from torch_geometric.data import Data, HeteroData

from hsa_geo import Hierarchy
from hsa_geo.datasets import planted_hierarchy_graph
from hsa_geo.functional import hsa
from hsa_geo.loader import HierarchyLoader, SubtreeLoader, top_subtrees
from hsa_geo.reference import hsa_dense
from hsa_geo.testing import hetero_forest
from hsa_geo.transforms import GraphHierarchy
from hsa_geo.utils import hierarchy_subgraph


def _graph_hierarchy(num_nodes=600, parts=(6, 4), seed=0):
    edge_index, planted = planted_hierarchy_graph(num_nodes, 8, parts, (0.6, 0.3), seed=seed)
    graph = Data(x=torch.randn(num_nodes, 5), edge_index=edge_index, y=planted[1],
                 edge_attr=torch.arange(edge_index.size(1)).float().view(-1, 1))
    return GraphHierarchy(method='metis', num_parts=parts, pos_dim=4)(graph)


def _ancestors(data, leaf_type='node'):
    r"""Brute force: the set of (type, index) above each leaf."""
    up = {}
    for child, rel, parent in data.edge_types:
        if rel == 'in':
            for c, p in data[child, rel, parent].edge_index.t().tolist():
                up[(child, c)] = (parent, p)
    out = []
    for leaf in range(data[leaf_type].num_nodes):
        node, chain = (leaf_type, leaf), []
        while node in up:
            node = up[node]
            chain.append(node)
        out.append(chain)
    return out


@pytest.mark.parametrize('seed', range(3))
def test_subgraph_of_a_random_leaf_subset_is_the_pruned_tree(seed):
    data = _graph_hierarchy(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    keep = torch.rand(600, generator=gen) < 0.1
    sub = hierarchy_subgraph(data, keep)
    assert torch.equal(sub['node'].n_id, keep.nonzero().view(-1))
    assert torch.equal(sub['node'].x, data['node'].x[keep])
    assert torch.equal(sub['node'].y, data['node'].y[keep])
    # exactly the clusters above a kept leaf survive, none is left childless
    chains = _ancestors(data)
    expected = {node for i in keep.nonzero().view(-1).tolist() for node in chains[i]}
    found = {(t, int(i)) for t in ('community1', 'community2', 'root')
             for i in sub[t].n_id}
    assert found == expected
    h = Hierarchy.from_hetero(sub)
    assert h.num_leaves == int(keep.sum()) and h.num_roots == 1
    # the parent links are the original ones, relabelled
    for child, rel, parent in sub.edge_types:
        if rel != 'in':
            continue
        c, p = sub[child, rel, parent].edge_index
        original = data[child, rel, parent].edge_index
        assert torch.equal(original[1][sub[child].n_id[c]], sub[parent].n_id[p])
    # graph edges: those between kept nodes, with their attributes
    a, b = data['node', 'to', 'node'].edge_index
    inside = keep[a] & keep[b]
    assert sub['node', 'to', 'node'].edge_index.size(1) == int(inside.sum())
    assert torch.equal(sub['node', 'to', 'node'].edge_attr.view(-1),
                       data['node', 'to', 'node'].edge_attr.view(-1)[inside])
    assert torch.equal(sub['node', 'to', 'node'].e_id, inside.nonzero().view(-1))


@pytest.mark.parametrize('seed', range(3))
def test_hsa_on_a_subgraph_matches_the_dense_reference(seed):
    data = hetero_forest(seed, pos_channels=2)
    n = data['leaf'].num_nodes
    keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max(n // 2, 1)]
    sub = hierarchy_subgraph(data, keep)
    h = Hierarchy.from_hetero(sub)
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(h.num_leaves, 2, 3, generator=gen, dtype=torch.float64,
                           requires_grad=True) for _ in range(3))
    assert torch.allclose(hsa(q, k, v, h), hsa_dense(q.detach(), k.detach(), v.detach(), h),
                          atol=1e-10)
    # gradients: finite differences (the dense reference is not differentiable)
    assert torch.autograd.gradcheck(lambda q, k, v: hsa(q, k, v, h), (q, k, v))


def test_several_leaf_types_and_errors():
    data = HeteroData()
    data['atom'].x = torch.randn(4, 2)
    data['token'].x = torch.randn(3, 2)
    data['ring'].num_nodes = 2
    data['mol'].num_nodes = 1
    data['atom', 'in', 'ring'].edge_index = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1]])
    data['ring', 'in', 'mol'].edge_index = torch.tensor([[0, 1], [0, 0]])
    data['token', 'in', 'mol'].edge_index = torch.tensor([[0, 1, 2], [0, 0, 0]])
    sub = hierarchy_subgraph(data, {'atom': torch.tensor([2])})
    assert sub['ring'].n_id.tolist() == [1] and sub['token'].num_nodes == 0
    assert Hierarchy.from_hetero(sub).num_leaves == 1
    with pytest.raises(TypeError, match="pass 'leaves' as a dict"):
        hierarchy_subgraph(data, torch.tensor([0]))
    with pytest.raises(ValueError, match="not a leaf type"):
        hierarchy_subgraph(data, {'ring': torch.tensor([0])})
    with pytest.raises(ValueError, match="outside 0..3"):
        hierarchy_subgraph(data, {'atom': torch.tensor([4])})
    with pytest.raises(ValueError, match="a mask of 2 entries"):
        hierarchy_subgraph(data, {'atom': torch.tensor([True, False])})
    with pytest.raises(TypeError, match="'data' must be a hierarchy HeteroData"):
        hierarchy_subgraph(Data(), torch.tensor([0]))


def test_subtree_loader_covers_every_leaf_once():
    data = _graph_hierarchy(num_nodes=800, parts=(8, 4))
    top = top_subtrees(data)
    assert torch.equal(top['community2'], torch.arange(8))
    assert (top['root'] == -1).all()
    loader = SubtreeLoader(data, batch_size=3, shuffle=True)
    assert len(loader) == 3 and repr(loader) == 'SubtreeLoader(num_subtrees=8, batch_size=3)'
    seen = []
    for batch in loader:
        h = batch.hierarchy
        assert h.num_leaves == batch['node'].num_nodes and h.num_roots == 1
        # whole subtrees: every leaf of a drawn subtree is in the batch
        drawn = batch['community2'].n_id
        assert int(torch.isin(top['node'], drawn).sum()) == batch['node'].num_nodes
        # the graph's edges inside the batch, none leaving it
        a, b = batch['node', 'to', 'node'].edge_index
        assert a.max() < batch['node'].num_nodes and b.max() < batch['node'].num_nodes
        seen.append(batch['node'].n_id)
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(800))
    with pytest.raises(TypeError, match="takes no 'collate_fn'"):
        SubtreeLoader(data, collate_fn=list)
    with pytest.raises(TypeError, match="takes no 'collate_fn'"):
        HierarchyLoader([data], collate_fn=list)
    with pytest.raises(ValueError, match="'batch_size'"):
        SubtreeLoader(data, batch_size=0)


@pytest.mark.parametrize('seed', [0, 1])
def test_root_sharing_its_type_with_clusters(seed):
    # hetero_forest stores the root and every cluster as type 'node' (edges
    # ('node', 'in', 'node')): the root must be found at the node level
    data = hetero_forest(seed)
    whole = Hierarchy.from_hetero(data)
    root = int(whole.roots[0]) - whole.num_leaves
    children = data['node', 'in', 'node'].edge_index
    top_nodes = children[0][children[1] == root].sort().values
    leaf_children = data['leaf', 'in', 'node'].edge_index
    top_leaves = leaf_children[0][leaf_children[1] == root].sort().values
    top = top_subtrees(data)
    assert int(top['node'][root]) == -1
    # the subtrees are numbered in the compiled tree's node order (leaves first)
    assert top['leaf'][top_leaves].tolist() == list(range(top_leaves.numel()))
    assert top['node'][top_nodes].tolist() == list(range(top_leaves.numel(),
                                                         top_leaves.numel() +
                                                         top_nodes.numel()))
    loader = SubtreeLoader(data, batch_size=1)
    assert len(loader) == top_leaves.numel() + top_nodes.numel()
    for index, batch in enumerate(loader):
        # the batch is exactly the leaves below its top-level node
        expected = (top['leaf'] == index).nonzero().view(-1)
        assert torch.equal(batch['leaf'].n_id, expected)
        h = batch.hierarchy
        assert h.num_roots == 1 and h.num_leaves == expected.numel()
        assert torch.equal(batch['leaf'].x, data['leaf'].x[expected])


def test_top_subtrees_in_the_compiled_order_across_types():
    # the root's children are of two types, leaf type listed last among the
    # edge types: numbered leaves first, then clusters (the compiled order)
    data = HeteroData()
    data['tok'].x = torch.randn(10, 2)
    data['grp'].num_nodes, data['root'].num_nodes = 3, 1
    data['grp', 'in', 'root'].edge_index = torch.tensor([[0, 1, 2], [0, 0, 0]])
    data['tok', 'in', 'grp'].edge_index = torch.tensor([[0, 1, 2, 3, 4, 5],
                                                        [0, 0, 1, 1, 2, 2]])
    data['tok', 'in', 'root'].edge_index = torch.tensor([[6, 7, 8, 9], [0, 0, 0, 0]])
    top = top_subtrees(data)
    assert top['tok'].tolist() == [4, 4, 5, 5, 6, 6, 0, 1, 2, 3]
    assert top['grp'].tolist() == [4, 5, 6] and top['root'].tolist() == [-1]


def _deep_one_type():
    r"""Two subtrees, each a chain of three clusters, under one root: all four
    levels of clusters of the one type ``'node'``."""
    data = HeteroData()
    data['leaf'].x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0),
                                 dtype=torch.float64)
    data['node'].num_nodes = 7
    data['leaf', 'in', 'node'].edge_index = torch.tensor([[0, 1, 2, 3], [0, 0, 3, 3]])
    data['node', 'in', 'node'].edge_index = torch.tensor([[0, 1, 2, 3, 4, 5],
                                                          [1, 2, 6, 4, 5, 6]])
    return data


def test_subtrees_of_a_type_nested_in_itself():
    # hierarchy_subgraph walked up as many levels as there are node types and
    # dropped the root of a type nested in itself more deeply
    from hsa_geo.distributed import shard_hierarchy
    data = _deep_one_type()
    top = top_subtrees(data)
    assert top['leaf'].tolist() == [0, 0, 1, 1]
    assert top['node'].tolist() == [0, 0, 0, 1, 1, 1, -1]
    part, sharded = shard_hierarchy(data, 0, 1)        # both subtrees under the root
    assert sharded.subtrees.num_roots == 2
    batch = next(iter(SubtreeLoader(data, batch_size=2)))
    assert batch['node'].n_id.tolist() == list(range(7))
