r"""A standing fuzz suite over the public entry points: every malformed input
raises a TypeError or ValueError whose message names the argument.

Each case is ``(id, call, exception type, words the message must contain)``;
the words name the argument (and usually the expectation).  Add a case for
every new entry point and every bug report about an unclear error."""
import numpy as np
import pytest
import torch
from torch_geometric.data import Data, HeteroData

from hsa_geo import Hierarchy, HSAConv, hsa
from hsa_geo.functional import LoneLeaves
from hsa_geo.loader import HierarchyLoader
from hsa_geo.nn import HSAEncoderLayer, HSAGPSConv, HSAPointTransformer, HSATransformer
from hsa_geo.transforms import (FlatHierarchy, FPSHierarchy, GraphHierarchy, MeshHierarchy,
                                MoleculeHierarchy, MultiModalHierarchy, SequenceHierarchy,
                                TextHierarchy, VoxelHierarchy)
from hsa_geo.utils import knn_graph
from hsa_geo.weights import hsa_weights

PAIR = torch.tensor([2, 2, -1])           # two leaves under one root


def pair():
    return Hierarchy.from_parent(PAIR, 2)


def qkv(n=2, heads=1, d=4, dv=4):
    return torch.randn(n, heads, d), torch.randn(n, heads, d), torch.randn(n, heads, dv)


def hetero(edge_index, num_tokens=3, num_roots=1, relation='in'):
    data = HeteroData()
    data['token'].num_nodes = num_tokens
    data['root'].num_nodes = num_roots
    if edge_index is not None:
        data['token', relation, 'root'].edge_index = edge_index
    return data


def cloud(pos):
    return Data(pos=pos)


def nan_cloud():
    pos = torch.rand(6, 3)
    pos[2, 1] = float('nan')
    return Data(pos=pos)


def inf_cloud():
    pos = torch.rand(6, 3)
    pos[0, 0] = float('inf')
    return Data(pos=pos)


q, k, v = qkv()
CASES = [
    # ---- Hierarchy.from_parent
    ('parent float', lambda: Hierarchy.from_parent(torch.tensor([2., 2, -1]), 2),
     TypeError, ["'parent'", 'integer']),
    ('parent 2-d', lambda: Hierarchy.from_parent(torch.zeros(2, 2, dtype=torch.long), 2),
     ValueError, ["'parent'", 'one-dimensional']),
    ('parent string', lambda: Hierarchy.from_parent('abc', 2), TypeError, ["'parent'"]),
    ('parent out of range', lambda: Hierarchy.from_parent(torch.tensor([5, 2, -1]), 2),
     ValueError, ["'parent'", 'out of range']),
    ('parent below -1', lambda: Hierarchy.from_parent(torch.tensor([-2, 2, -1]), 2),
     ValueError, ["'parent'", 'out of range']),
    ('parent cycle', lambda: Hierarchy.from_parent(torch.tensor([2, 2, 3, 2]), 2),
     ValueError, ["'parent'", 'cycle']),
    ('leaf with child', lambda: Hierarchy.from_parent(torch.tensor([1, -1]), 2),
     ValueError, ['leaf', "'parent'"]),
    ('childless internal', lambda: Hierarchy.from_parent(torch.tensor([2, 2, -1, -1]), 2),
     ValueError, ['internal node 3', 'no children']),
    ('num_leaves float', lambda: Hierarchy.from_parent(PAIR, 2.0), TypeError,
     ["'num_leaves'", 'integer']),
    ('num_leaves bool', lambda: Hierarchy.from_parent(PAIR, True), TypeError,
     ["'num_leaves'"]),
    ('num_leaves zero', lambda: Hierarchy.from_parent(PAIR, 0), ValueError,
     ["'num_leaves'", 'at least 1']),
    ('num_leaves too large', lambda: Hierarchy.from_parent(PAIR, 4), ValueError,
     ["'num_leaves'", 'larger']),
    ('num_leaves tensor of two', lambda: Hierarchy.from_parent(PAIR, torch.tensor([1, 2])),
     TypeError, ["'num_leaves'"]),
    # ---- Hierarchy.to
    ('to dtype', lambda: pair().to(torch.float64), TypeError, ["'device'", 'dtype']),
    ('to nonsense', lambda: pair().to('gpu-please'), TypeError, ["'device'"]),
    # ---- Hierarchy.from_batch
    ('batch float', lambda: Hierarchy.from_batch(torch.tensor([0., 1.]), 2), TypeError,
     ["'batch'", 'integer']),
    ('batch negative', lambda: Hierarchy.from_batch(torch.tensor([0, -1]), 2), ValueError,
     ["'batch'", '>= 0']),
    ('batch wrong length', lambda: Hierarchy.from_batch(torch.tensor([0, 1, 1]), 2),
     ValueError, ["'batch'", 'shape']),
    ('batch list', lambda: Hierarchy.from_batch([0, 1], 2), TypeError, ["'batch'"]),
    ('batch num_nodes float', lambda: Hierarchy.from_batch(None, 2.5), TypeError,
     ["'num_nodes'"]),
    # ---- Hierarchy.from_hetero
    ('hetero no edges', lambda: Hierarchy.from_hetero(hetero(None)), ValueError,
     ["'data'", "'in'"]),
    ('hetero other relation', lambda: Hierarchy.from_hetero(
        hetero(torch.tensor([[0, 1, 2], [0, 0, 0]]), relation='of')), ValueError,
     ["'data'", "'in'"]),
    ('hetero child out of range', lambda: Hierarchy.from_hetero(
        hetero(torch.tensor([[0, 1, 5], [0, 0, 0]]))), ValueError,
     ["'edge_index'", 'child index 5', "'token'"]),
    ('hetero parent -1', lambda: Hierarchy.from_hetero(
        hetero(torch.tensor([[0, 1, 2], [0, 0, -1]]))), ValueError,
     ["'edge_index'", 'parent index -1']),
    ('hetero float edges', lambda: Hierarchy.from_hetero(
        hetero(torch.tensor([[0., 1, 2], [0, 0, 0]]))), TypeError,
     ["'edge_index'", 'integer']),
    ('hetero 1-d edges', lambda: Hierarchy.from_hetero(hetero(torch.tensor([0, 1, 2]))),
     ValueError, ["'edge_index'", '[2, num_edges]']),
    ('hetero reversed', lambda: Hierarchy.from_hetero(_reversed()), ValueError,
     ['parent edges', 'reversed']),
    ('hetero orphan leaf', lambda: Hierarchy.from_hetero(
        hetero(torch.tensor([[0, 1], [0, 0]]))), ValueError,
     ["'token'", 'without a parent edge', 'root_leaves']),
    ('hetero childless cluster', lambda: Hierarchy.from_hetero(
        hetero(torch.tensor([[0, 1, 2], [0, 0, 0]]), num_roots=2)), ValueError,
     ["node 1 of type 'root'", 'no children']),
    ('hetero dict without counts', lambda: Hierarchy.from_hetero(
        {('token', 'in', 'root'): torch.tensor([[0], [0]])}), ValueError,
     ["'num_nodes_dict'"]),
    ('hetero tensor', lambda: Hierarchy.from_hetero(torch.tensor([[0], [0]])), TypeError,
     ["'data'", 'HeteroData']),
    ('hetero root_leaves string', lambda: Hierarchy.from_hetero(
        hetero(torch.tensor([[0, 1, 2], [0, 0, 0]])), root_leaves='yes'), TypeError,
     ["'root_leaves'"]),
    # ---- hsa
    ('hsa hierarchy tensor', lambda: hsa(q, k, v, PAIR), TypeError, ["'hierarchy'"]),
    ('hsa q 2-d', lambda: hsa(q[:, 0], k[:, 0], v[:, 0], pair()), ValueError, ["'q'"]),
    ('hsa q list', lambda: hsa([1.0], k, v, pair()), TypeError, ["'q'"]),
    ('hsa q integer', lambda: hsa(q.long(), k.long(), v.long(), pair()), TypeError,
     ["'q'", 'floating-point']),
    ('hsa rows', lambda: hsa(*qkv(3), pair()), ValueError, ["'q'", '3 rows', '2 leaves']),
    ('hsa d = 0', lambda: hsa(*qkv(d=0), pair()), ValueError, ['channels of q = 0']),
    ('hsa heads = 0', lambda: hsa(*qkv(heads=0), pair()), ValueError, ['heads = 0']),
    ('hsa d_v = 0', lambda: hsa(*qkv(dv=0), pair()), ValueError, ['channels of v = 0']),
    ('hsa k shape', lambda: hsa(q, k[:, :, :2], v, pair()), ValueError, ["'k'"]),
    ('hsa v heads', lambda: hsa(q, k, torch.randn(2, 2, 4), pair()), ValueError, ["'v'"]),
    ('hsa dtypes', lambda: hsa(q, k, v.double(), pair()), TypeError, ['share a dtype']),
    ('hsa scale nan', lambda: hsa(q, k, v, pair(), scale=float('nan')), ValueError,
     ["'scale'", 'finite']),
    ('hsa scale inf', lambda: hsa(q, k, v, pair(), scale=float('inf')), ValueError,
     ["'scale'", 'finite']),
    ('hsa scale string', lambda: hsa(q, k, v, pair(), scale='1'), TypeError, ["'scale'"]),
    ('hsa include_self string', lambda: hsa(q, k, v, pair(), include_self='no'), TypeError,
     ["'include_self'", 'True or False']),
    ('hsa causal int', lambda: hsa(q, k, v, pair(), causal=1), TypeError, ["'causal'"]),
    ('hsa dropout 1', lambda: hsa(q, k, v, pair(), dropout=1.0), ValueError, ["'dropout'"]),
    ('hsa dropout nan', lambda: hsa(q, k, v, pair(), dropout=float('nan')), ValueError,
     ["'dropout'"]),
    ('hsa pos rows', lambda: hsa(q, k, v, pair(), pos=torch.randn(2, 3)), ValueError,
     ["'pos'", 'num_nodes=3']),
    ('hsa pos integer', lambda: hsa(q, k, v, pair(), pos=torch.zeros(3, 2).long()),
     TypeError, ["'pos'"]),
    ('hsa bias rows', lambda: hsa(q, k, v, pair(), bias=torch.randn(5)), ValueError,
     ["'bias'", 'num_pairs=2']),
    ('hsa bias list', lambda: hsa(q, k, v, pair(), bias=[0.0, 1.0]), TypeError, ["'bias'"]),
    # ---- hsa_weights
    ('weights hierarchy', lambda: hsa_weights(q, k, PAIR), TypeError, ["'hierarchy'"]),
    ('weights rows', lambda: hsa_weights(*qkv(3)[:2], pair()), ValueError, ["'q'"]),
    ('weights include_self', lambda: hsa_weights(q, k, pair(), include_self='yes'),
     TypeError, ["'include_self'"]),
    ('weights scale', lambda: hsa_weights(q, k, pair(), scale=float('nan')), ValueError,
     ["'scale'"]),
    # ---- HSAConv
    ('conv heads 0', lambda: HSAConv(4, 4, heads=0), ValueError, ["'heads'"]),
    ('conv bipartite', lambda: HSAConv(4, 4)((torch.randn(2, 4), torch.randn(3, 4)), pair()),
     TypeError, ['bipartite', 'HeteroConv']),
    ('conv hetero data', lambda: HSAConv(4, 4)(torch.randn(2, 4), {('a', 'in', 'b'): PAIR}),
     TypeError, ['HierarchyLoader']),
    ('loader data', lambda: next(iter(HierarchyLoader([Data(x=torch.randn(2, 1))]))),
     TypeError, ['HeteroData']),
    ('point blocks string', lambda: HSAPointTransformer(2, 8, 2, attention='none'),
     TypeError, ["'attention'", 'Module']),
    ('lone leaves pos', lambda: hsa(*qkv(2), LoneLeaves(pair()), pos=torch.randn(3, 2)),
     ValueError, ["'pos'", 'LoneLeaves']),
    ('conv out 0', lambda: HSAConv(4, 0), ValueError, ["'out_channels'"]),
    ('conv rows', lambda: HSAConv(4, 4)(torch.randn(3, 4), pair()), ValueError,
     ["'x'", '3 rows']),
    ('conv hierarchy tensor', lambda: HSAConv(4, 4)(torch.randn(2, 4), PAIR), TypeError,
     ["'hierarchy'"]),
    ('conv pos width', lambda: HSAConv(4, 4, pos_channels=8)(
        torch.randn(2, 4), pair(), pos=torch.randn(3, 16)), ValueError,
     ["'pos'", 'size 16', 'pos_channels=8']),
    ('conv pos without projection', lambda: HSAConv(4, 4)(
        torch.randn(2, 4), pair(), pos=torch.randn(3, 8)), ValueError,
     ["'pos'", 'pos_channels']),
    ('conv dict x for single type', lambda: HSAConv(4, 4)({'a': torch.randn(2, 4)}, pair()),
     TypeError, ["'x'"]),
    # ---- HSAGPSConv / encoder blocks
    ('gps heads', lambda: HSAGPSConv(6, conv=None, heads=4), ValueError,
     ["'channels'", "'heads'"]),
    ('encoder style', lambda: HSAEncoderLayer(8, 8, style='post'), ValueError, ["'style'"]),
    ('encoder heads', lambda: HSAEncoderLayer(8, 6, heads=4), ValueError,
     ["'channels'", "'heads'"]),
    ('transformer layers', lambda: HSATransformer(8, 8, num_layers=0), ValueError,
     ["'num_layers'"]),
    # ---- transforms
    ('sequence branching float', lambda: SequenceHierarchy((2.5, )), TypeError,
     ["'branching[0]'", 'integer']),
    ('sequence branching 1', lambda: SequenceHierarchy((2, 1)), ValueError,
     ["'branching[1]'", 'at least 2']),
    ('sequence branching empty', lambda: SequenceHierarchy(()), ValueError, ["'branching'"]),
    ('sequence branching int', lambda: SequenceHierarchy(4), ValueError, ["'branching'"]),
    ('sequence pos_dim odd', lambda: SequenceHierarchy((2, ), pos_dim=3), ValueError,
     ["'pos_dim'", 'even']),
    ('sequence pos_kind', lambda: SequenceHierarchy((2, ), pos_kind='rope'), ValueError,
     ["'pos_kind'"]),
    ('sequence empty', lambda: SequenceHierarchy((2, ))(Data(x=torch.randn(0, 3))),
     ValueError, ["'data'", 'no nodes']),
    ('sequence hetero input', lambda: SequenceHierarchy((2, ))(HeteroData()), TypeError,
     ["'data'"]),
    ('voxel depth 70', lambda: VoxelHierarchy(70), ValueError, ["'depth'", 'at most 20']),
    ('voxel depth 0', lambda: VoxelHierarchy(0), ValueError, ["'depth'"]),
    ('voxel depth float', lambda: VoxelHierarchy(2.5), TypeError, ["'depth'"]),
    ('voxel nan', lambda: VoxelHierarchy(2)(nan_cloud()), ValueError,
     ["'data.pos'", 'finite']),
    ('voxel inf', lambda: VoxelHierarchy(2)(inf_cloud()), ValueError,
     ["'data.pos'", 'finite']),
    ('voxel no pos', lambda: VoxelHierarchy(2)(Data(x=torch.randn(3, 2))), ValueError,
     ["'data.pos'"]),
    ('voxel 4-d pos', lambda: VoxelHierarchy(2)(cloud(torch.rand(5, 4))), ValueError,
     ["'data.pos'", '2 or 3']),
    ('voxel integer pos', lambda: VoxelHierarchy(2)(cloud(torch.ones(5, 3).long())),
     TypeError, ["'data.pos'", 'floating-point']),
    ('fps nan', lambda: FPSHierarchy()(nan_cloud()), ValueError, ["'data.pos'", 'finite']),
    ('fps ratio 1', lambda: FPSHierarchy((1.0, )), ValueError, ['ratio']),
    ('fps ratio nan', lambda: FPSHierarchy((float('nan'), )), ValueError, ["'ratios[0]'"]),
    ('fps ratios empty', lambda: FPSHierarchy(()), ValueError, ["'ratios'"]),
    ('graph method', lambda: GraphHierarchy(method='metis-ish'), ValueError, ["'method'"]),
    ('graph levels 0', lambda: GraphHierarchy(num_levels=0), ValueError, ["'num_levels'"]),
    ('graph branching 1', lambda: GraphHierarchy(method='spectral', branching=(1, )),
     ValueError, ["'branching[0]'"]),
    ('graph resolution nan', lambda: GraphHierarchy(resolution=float('nan')), ValueError,
     ["'resolution'"]),
    ('graph edges out of range', lambda: GraphHierarchy()(
        Data(num_nodes=3, edge_index=torch.tensor([[0], [5]]))), ValueError,
     ["'data.edge_index'", 'node index 5', '3 nodes']),
    ('graph edges negative', lambda: GraphHierarchy(method='spectral')(
        Data(num_nodes=3, edge_index=torch.tensor([[0], [-1]]))), ValueError,
     ["'data.edge_index'", '-1']),
    ('graph float edges', lambda: GraphHierarchy()(
        Data(num_nodes=3, edge_index=torch.tensor([[0.], [1.]]))), TypeError,
     ["'data.edge_index'", 'integer']),
    ('graph empty', lambda: GraphHierarchy()(Data(num_nodes=0)), ValueError,
     ["'data'", 'no nodes']),
    ('graph hetero input', lambda: GraphHierarchy()(HeteroData()), TypeError, ["'data'"]),
    ('molecule pos_dim odd', lambda: MoleculeHierarchy(pos_dim=5), ValueError,
     ["'pos_dim'"]),
    ('molecule use_smiles str', lambda: MoleculeHierarchy(use_smiles='yes'), TypeError,
     ["'use_smiles'"]),
    ('molecule edges out of range', lambda: MoleculeHierarchy(use_smiles=False)(
        Data(x=torch.randn(2, 3), edge_index=torch.tensor([[0], [2]]))), ValueError,
     ["'data.edge_index'", 'node index 2']),
    ('molecule no atoms', lambda: MoleculeHierarchy()(Data(x=torch.randn(0, 3))), ValueError,
     ["'data'", 'no atoms']),
    ('mesh method', lambda: MeshHierarchy(method='voxels'), ValueError, ["'method'"]),
    ('mesh faces out of range', lambda: MeshHierarchy()(
        Data(pos=torch.rand(3, 3), face=torch.tensor([[0], [1], [5]]))), ValueError,
     ["'face'", 'vertex index 5', '3 vertices']),
    ('mesh faces method out of range', lambda: MeshHierarchy(method='faces')(
        Data(pos=torch.rand(3, 3), face=torch.tensor([[0], [1], [-1]]))), ValueError,
     ["'face'", '-1']),
    ('mesh nan vertices', lambda: MeshHierarchy()(
        Data(pos=torch.tensor([[0., 0, 0], [1, 0, 0], [0, float('nan'), 0]]),
             face=torch.tensor([[0], [1], [2]]))), ValueError, ["'pos'", 'finite']),
    ('mesh no faces', lambda: MeshHierarchy()(Data(pos=torch.rand(3, 3))), ValueError,
     ["'face'"]),
    ('mesh face shape', lambda: MeshHierarchy()(
        Data(pos=torch.rand(3, 3), face=torch.tensor([[0, 1, 2]]))), ValueError,
     ["'face'", '[3, num_faces']),
    ('flat on Data', lambda: FlatHierarchy()(Data(x=torch.randn(3, 2))), TypeError,
     ["'data'", 'HeteroData']),
    ('flat max_leaves 0', lambda: FlatHierarchy(max_leaves=0), ValueError,
     ["'max_leaves'"]),
    ('flat no relation', lambda: FlatHierarchy()(hetero(None)), ValueError, ["'data'"]),
    ('text no string', lambda: TextHierarchy()(Data(text=3)), ValueError, ["'data.text'"]),
    ('text empty', lambda: TextHierarchy()(Data(text='   ')), ValueError, ["'data.text'"]),
    ('text tokenizer', lambda: TextHierarchy(tokenizer='bert'), TypeError, ["'tokenizer'"]),
    ('multimodal empty', lambda: MultiModalHierarchy({}, 4), ValueError, ["'builders'"]),
    ('multimodal not callable', lambda: MultiModalHierarchy({'a': 3}, 4), TypeError,
     ["'builders['"]),
    ('multimodal pos_dim', lambda: MultiModalHierarchy({'a': TextHierarchy(),
                                                        'b': TextHierarchy()}, 1),
     ValueError, ["'pos_dim'"]),
    ('knn k 0', lambda: knn_graph(torch.rand(5, 3), 0), ValueError, ["'k'"]),
    ('knn method', lambda: knn_graph(torch.rand(5, 3), 2, method='ball'), ValueError,
     ["'method'"]),
    ('knn unsorted batch', lambda: knn_graph(torch.rand(4, 3), 2, torch.tensor([1, 0, 0, 1])),
     ValueError, ["'batch'"]),
]


def _reversed():
    data = HeteroData()
    data['token'].num_nodes = 4
    data['sentence'].num_nodes = 2
    data['sentence', 'in', 'token'].edge_index = torch.tensor([[0, 0, 1, 1], [0, 1, 2, 3]])
    return data


def _zero_shot_cases():
    from torch.nn import MultiheadAttention

    from hsa_geo.zero_shot import inject
    attention = MultiheadAttention(8, 2, batch_first=True)
    injected = inject(MultiheadAttention(8, 2, batch_first=True), hierarchy='flat')
    x, y = torch.randn(2, 3, 8), torch.randn(3, 8)
    return [
        ('inject no attention', lambda: inject(torch.nn.Linear(2, 2)), TypeError, ["'model'"]),
        ('inject layers', lambda: inject(attention, layers=[3]), ValueError, ["'layers'"]),
        ('inject hierarchy', lambda: inject(attention, hierarchy=(1, 2)), ValueError,
         ['hierarchy']),
        ('injected unbatched', lambda: injected(y, y, y), ValueError,
         ["'query'", 'batched']),
        ('injected cross attention', lambda: injected(x, x.clone(), x), ValueError,
         ['same tensor']),
    ]


def _dataset_cases():
    from hsa_geo.datasets import (digits_point_clouds, ogb_dataset, planted_hierarchy_graph,
                                  read_mesh, synthetic_shapes, text_corpus, text_split)
    return [
        ('ogb name', lambda: ogb_dataset('ogbg-nothing'), ValueError, ["'name'"]),
        ('ogb kwargs', lambda: ogb_dataset('ogbg-molfreesolv', 'data', pre_filter=None),
         TypeError, ['pre_filter']),
        ('text corpus name', lambda: text_corpus('imdb'), ValueError, ["'name'"]),
        ('text split fractions', lambda: text_split(torch.arange(10), valid=0.6, test=0.6),
         ValueError, ["'valid'", "'test'"]),
        ('mesh name', lambda: read_mesh('teapot'), ValueError, ["'name'"]),
        ('digits threshold', lambda: digits_point_clouds(threshold=20), ValueError,
         ["'threshold'"]),
        ('shapes count', lambda: synthetic_shapes(-1), ValueError, ["'num_per_class'"]),
        ('planted parts', lambda: planted_hierarchy_graph(100, 4, (1, 2), (0.5, 0.2)),
         ValueError, ["'num_parts[0]'"]),
        ('planted within', lambda: planted_hierarchy_graph(100, 4, (2, 2), (0.5, )),
         ValueError, ["'within'", 'one probability per level']),
    ]


def _paper_config_cases():
    from hsa_geo.transforms import MoleculeHierarchy
    from hsa_geo.utils import hierarchy_subgraph, metis_levels
    tree = HeteroData()
    tree['leaf'].num_nodes, tree['top'].num_nodes = 3, 1
    tree['leaf', 'in', 'top'].edge_index = torch.tensor([[0, 1, 2], [0, 0, 0]])
    return [
        ('text pos kind', lambda: TextHierarchy(pos_kind='rff'), ValueError,
         ["'pos_kind'", 'sinusoidal']),
        ('flat pos kind', lambda: FlatHierarchy(pos_kind=1), ValueError, ["'pos_kind'"]),
        ('atom positions', lambda: MoleculeHierarchy(atom_pos='random'), ValueError,
         ["'atom_pos'", 'laplacian']),
        ('metis parts', lambda: GraphHierarchy(method='metis', num_parts=()), ValueError,
         ["'num_parts'"]),
        ('metis levels parts', lambda: metis_levels(torch.zeros(2, 0).long(), 3, [2.5]),
         (TypeError, ValueError), ["'num_parts[0]'"]),
        ('pos groups twice', lambda: HSAConv(4, 4, pos_channels={('a', 'b'): 2, ('b', ): 2}),
         ValueError, ["'pos_channels'", "'b'"]),
        ('head channels prenorm', lambda: HSAEncoderLayer(8, 8, 2, style='prenorm',
                                                          head_channels=4),
         ValueError, ["'head_channels'", 'hte']),
        ('subgraph leaves', lambda: hierarchy_subgraph(tree, torch.tensor([9])),
         ValueError, ["'leaves"]),
    ]


ALL_CASES = CASES + _zero_shot_cases() + _dataset_cases() + _paper_config_cases()


@pytest.mark.parametrize('name,call,error,words', ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_malformed_input_gets_a_clear_error(name, call, error, words):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    missing = [w for w in words if w not in message]
    assert not missing, f'{name}: {missing} not in {message!r}'


def test_integral_scalars_are_accepted():
    for count in (np.int64(2), torch.tensor(2), 2):
        assert Hierarchy.from_parent(PAIR, count) == pair()
