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
from hsa_geo.distributed import ShardedHierarchy, distributed_hsa, shard_forest, shard_hierarchy
from hsa_geo.functional import LoneLeaves
from hsa_geo.loader import HierarchyLoader, SubtreeLoader, top_subtrees
from hsa_geo.nn import HSAEncoderLayer, HSAGPSConv, HSAPointTransformer, HSATransformer
from hsa_geo.transforms import (
    FlatHierarchy,
    FPSHierarchy,
    GraphHierarchy,
    MeshHierarchy,
    MoleculeHierarchy,
    MultiModalHierarchy,
    SequenceHierarchy,
    TextHierarchy,
    VoxelHierarchy,
)
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
    from hsa_geo.datasets import (
        digits_point_clouds,
        ogb_dataset,
        planted_hierarchy_graph,
        read_mesh,
        synthetic_shapes,
        text_corpus,
        text_split,
    )
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


def _new_surface_cases():
    r"""Issue 25 ("Unclear errors") and the surfaces around it: the GPS layer
    and graph transformer, hierarchy_subgraph, the large-graph builders, the
    loaders and the planted graphs."""
    from torch_geometric.nn import SAGEConv

    from hsa_geo.datasets import planted_hierarchy_graph
    from hsa_geo.loader import SubtreeLoader
    from hsa_geo.nn import HSAGraphTransformer, HTEPredictor
    from hsa_geo.utils import hierarchy_subgraph, metis_levels, plm_levels
    tree = HeteroData()
    tree['leaf'].num_nodes, tree['top'].num_nodes = 3, 1
    tree['leaf', 'in', 'top'].edge_index = torch.tensor([[0, 1, 2], [0, 0, 0]])
    linked = tree.clone()
    linked['leaf', 'near', 'leaf'].edge_index = torch.tensor([[0], [1]])
    triangle = torch.tensor([[0, 1, 2], [1, 2, 0]])
    gen = torch.Generator().manual_seed(0)
    graph = Data(x=torch.randn(20, 4, generator=gen),
                 edge_index=torch.randint(0, 20, (2, 60), generator=gen))
    graph_tree = GraphHierarchy(method='spectral', branching=(2, 2))(graph)
    h20 = Hierarchy.from_hetero(graph_tree)
    sequence = SequenceHierarchy((2, ))(Data(x=torch.randn(4, 3)))
    communities = GraphHierarchy(num_levels=1)(Data(x=torch.randn(4, 3), edge_index=triangle))
    gps = HSAGPSConv(8, None)
    transformer = HSAGraphTransformer(4, 8, 2, heads=2)
    return [
        # ---- HSAGPSConv: constructor
        ('gps heads 0', lambda: HSAGPSConv(8, None, heads=0), ValueError,
         ["'heads'", 'at least 1']),
        ('gps heads negative', lambda: HSAGPSConv(8, None, heads=-2), ValueError,
         ["'heads'", 'at least 1']),
        ('gps heads float', lambda: HSAGPSConv(8, None, heads=2.0), TypeError,
         ["'heads'", 'integer']),
        ('gps heads bool', lambda: HSAGPSConv(8, None, heads=True), TypeError, ["'heads'"]),
        ('gps channels 0', lambda: HSAGPSConv(0, None), ValueError,
         ["'channels'", 'at least 1']),
        ('gps channels negative', lambda: HSAGPSConv(-4, None, heads=2), ValueError,
         ["'channels'", 'at least 1']),
        ('gps channels float', lambda: HSAGPSConv(8.0, None), TypeError,
         ["'channels'", 'integer']),
        ('gps channels string', lambda: HSAGPSConv('8', None), TypeError, ["'channels'"]),
        ('gps conv string', lambda: HSAGPSConv(8, 'gin'), TypeError,
         ["'conv'", 'torch.nn.Module', 'None', "'gin'"]),
        ('gps conv class', lambda: HSAGPSConv(8, SAGEConv), TypeError,
         ["'conv'", 'instance', 'SAGEConv']),
        ('gps dropout 1.5', lambda: HSAGPSConv(8, None, dropout=1.5), ValueError,
         ["'dropout'", '[0, 1)']),
        ('gps dropout nan', lambda: HSAGPSConv(8, None, dropout=float('nan')), ValueError,
         ["'dropout'", 'finite']),
        ('gps dropout string', lambda: HSAGPSConv(8, None, dropout='0.1'), TypeError,
         ["'dropout'"]),
        ('gps norm name', lambda: HSAGPSConv(8, None, norm='nonorm'), ValueError,
         ["'norm'", "'nonorm'"]),
        ('gps act name', lambda: HSAGPSConv(8, None, act='nonact'), ValueError,
         ["'act'", "'nonact'"]),
        ('gps attn_kwargs list', lambda: HSAGPSConv(8, None, attn_kwargs=[1]), TypeError,
         ["'attn_kwargs'", 'dict']),
        ('gps attn_kwargs heads', lambda: HSAGPSConv(8, None, attn_kwargs={'heads': 2}),
         TypeError, ["'attn_kwargs'", "'heads'"]),
        ('gps norm_kwargs list', lambda: HSAGPSConv(8, None, norm_kwargs=[1]), TypeError,
         ["'norm_kwargs'", 'dict']),
        ('gps act_kwargs list', lambda: HSAGPSConv(8, None, act_kwargs=[1]), TypeError,
         ["'act_kwargs'", 'dict']),
        # ---- HSAGPSConv: forward
        ('gps x 3-d', lambda: gps(torch.randn(2, 3, 8), triangle), ValueError,
         ["'x'", '[num_nodes, channels]', '[2, 3, 8]']),
        ('gps x 3-d with local layer', lambda: HSAGPSConv(8, SAGEConv(8, 8))(
            torch.randn(2, 3, 8), triangle), ValueError, ["'x'", '[num_nodes, channels]']),
        ('gps x 1-d', lambda: gps(torch.randn(8), triangle), ValueError,
         ["'x'", '[num_nodes, channels]']),
        ('gps x width', lambda: gps(torch.randn(5, 4), triangle), ValueError,
         ["'x'", '4 channels', 'channels=8']),
        ('gps x list', lambda: gps([[1.0] * 8], triangle), TypeError, ["'x'", 'Tensor']),
        ('gps x integer', lambda: gps(torch.ones(3, 8).long(), triangle), TypeError,
         ["'x'", 'floating-point']),
        ('gps rows vs hierarchy', lambda: HSAGPSConv(8, SAGEConv(8, 8))(
            torch.randn(15, 8), graph.edge_index, hierarchy=h20), ValueError,
         ["'x'", '15 rows', '20 leaves']),
        # ---- HSAGraphTransformer
        ('transformer heads 0', lambda: HSAGraphTransformer(4, 8, 2, heads=0), ValueError,
         ["'heads'", 'at least 1']),
        ('transformer heads not dividing', lambda: HSAGraphTransformer(4, 8, 2, heads=3),
         ValueError, ["'hidden_channels'", "'heads'", 'divisible']),
        ('transformer hidden 0', lambda: HSAGraphTransformer(4, 0, 2), ValueError,
         ["'hidden_channels'", 'at least 1']),
        ('transformer hidden float', lambda: HSAGraphTransformer(4, 8.0, 2), TypeError,
         ["'hidden_channels'", 'integer']),
        ('transformer out 0', lambda: HSAGraphTransformer(4, 8, 0), ValueError,
         ["'out_channels'", 'at least 1']),
        ('transformer out float', lambda: HSAGraphTransformer(4, 8, 2.0), TypeError,
         ["'out_channels'", 'integer']),
        ('transformer in 0', lambda: HSAGraphTransformer(0, 8, 2), ValueError,
         ["'in_channels'", '-1']),
        ('transformer in -2', lambda: HSAGraphTransformer(-2, 8, 2), ValueError,
         ["'in_channels'", '-1']),
        ('transformer dropout', lambda: HSAGraphTransformer(4, 8, 2, dropout=2.0), ValueError,
         ["'dropout'"]),
        ('transformer conv class', lambda: HSAGraphTransformer(4, 8, 2, conv=SAGEConv),
         TypeError, ["'conv'", 'instance']),
        ('transformer rows', lambda: transformer(torch.randn(15, 4), graph.edge_index, h20),
         ValueError, ["'x'", '15 rows', '20 leaves']),
        ('transformer x 3-d', lambda: transformer(torch.randn(20, 1, 4), graph.edge_index, h20),
         ValueError, ["'x'", '[num_nodes, in_channels]', '[20, 1, 4]']),
        ('transformer x width', lambda: transformer(torch.randn(20, 5), graph.edge_index, h20),
         ValueError, ["'x'", '5 channels', 'in_channels=4']),
        ('transformer x list', lambda: transformer([[0.0] * 4] * 20, graph.edge_index, h20),
         TypeError, ["'x'", 'Tensor']),
        ('transformer x integer', lambda: transformer(torch.ones(20, 4).long(),
                                                      graph.edge_index, h20),
         TypeError, ["'x'", 'floating-point']),
        ('transformer hierarchy tensor', lambda: transformer(
            torch.randn(20, 4), graph.edge_index, triangle), TypeError, ["'hierarchy'"]),
        # ---- HTEPredictor
        ('predictor heads 0', lambda: HTEPredictor(4, 8, 2, heads=0), ValueError,
         ["'heads'", 'at least 1']),
        ('predictor channels float', lambda: HTEPredictor(4, 8.0, 2), TypeError,
         ["'channels'", 'integer']),
        ('predictor out 0', lambda: HTEPredictor(4, 8, 0), ValueError,
         ["'out_channels'", 'at least 1']),
        ('predictor out float', lambda: HTEPredictor(4, 8, 2.5), TypeError,
         ["'out_channels'", 'integer']),
        ('predictor dropout nan', lambda: HTEPredictor(4, 8, 2, dropout=float('nan')),
         ValueError, ["'dropout'", 'finite']),
        # ---- hierarchy_subgraph
        ('subgraph leaves None', lambda: hierarchy_subgraph(tree, None), TypeError,
         ["'leaves'", 'Tensor', 'bool mask', 'dict', 'NoneType']),
        ('subgraph leaves string', lambda: hierarchy_subgraph(tree, 'leaf'), TypeError,
         ["'leaves'", 'str']),
        ('subgraph leaves int', lambda: hierarchy_subgraph(tree, 1), TypeError,
         ["'leaves'", 'int']),
        ('subgraph leaves empty', lambda: hierarchy_subgraph(tree, torch.tensor([],
                                                                                dtype=torch.long)),
         ValueError, ["'leaves'", 'selects no leaf']),
        ('subgraph leaves empty list', lambda: hierarchy_subgraph(tree, []), ValueError,
         ["'leaves'", 'selects no leaf']),
        ('subgraph empty mask', lambda: hierarchy_subgraph(tree, torch.zeros(3, dtype=torch.bool)),
         ValueError, ["'leaves'", 'selects no leaf']),
        ('subgraph empty dict', lambda: hierarchy_subgraph(tree, {}), ValueError,
         ["'leaves'", 'selects no leaf']),
        ('subgraph duplicates', lambda: hierarchy_subgraph(tree, torch.tensor([0, 2, 2])),
         ValueError, ["'leaves['leaf']'", 'index 2', 'more than once']),
        ('subgraph 2-d', lambda: hierarchy_subgraph(tree, torch.tensor([[0, 1]])), ValueError,
         ["'leaves['leaf']'", 'one-dimensional', '[1, 2]']),
        ('subgraph mask 2-d', lambda: hierarchy_subgraph(tree, torch.ones(3, 1, dtype=torch.bool)),
         ValueError, ["'leaves['leaf']'", 'one-dimensional', '[3, 1]']),
        ('subgraph mask as integers', lambda: hierarchy_subgraph(tree, torch.tensor([1, 0, 1])),
         ValueError, ["'leaves['leaf']'", 'bool mask']),
        ('subgraph mask short', lambda: hierarchy_subgraph(tree, torch.tensor([True, False])),
         ValueError, ["'leaves['leaf']'", 'mask of 2 entries']),
        ('subgraph float indices', lambda: hierarchy_subgraph(tree, [0.5]), TypeError,
         ["'leaves['leaf']'", 'float32']),
        ('subgraph ragged list', lambda: hierarchy_subgraph(tree, [[0], [1, 2]]), TypeError,
         ["'leaves['leaf']'"]),
        ('subgraph dict None value', lambda: hierarchy_subgraph(tree, {'leaf': None}),
         TypeError, ["'leaves['leaf']'", 'NoneType']),
        ('subgraph dict string value', lambda: hierarchy_subgraph(tree, {'leaf': 'a'}),
         TypeError, ["'leaves['leaf']'", 'str']),
        ('subgraph negative', lambda: hierarchy_subgraph(tree, torch.tensor([-1])), ValueError,
         ["'leaves['leaf']'", 'outside 0..2']),
        ('subgraph relation int', lambda: hierarchy_subgraph(tree, [0], relation=3), TypeError,
         ["'relation'", 'string']),
        # ---- metis_levels / plm_levels
        ('metis bool edges', lambda: metis_levels(triangle.bool(), 3, [2]), TypeError,
         ["'edge_index'", 'integer', 'torch.bool']),
        ('metis seed float', lambda: metis_levels(triangle, 3, [2], seed=0.5), TypeError,
         ["'seed'", 'integer']),
        ('metis seed negative', lambda: metis_levels(triangle, 3, [2], seed=-1), ValueError,
         ["'seed'", 'at least 0']),
        ('metis edges list', lambda: metis_levels([[0, 1], [1, 2]], 3, [2]), TypeError,
         ["'edge_index'", 'list']),
        ('plm resolution 0', lambda: plm_levels(triangle, 3, 1, resolution=0), ValueError,
         ["'resolution'", 'positive']),
        ('plm resolution negative', lambda: plm_levels(triangle, 3, 1, resolution=-1.0),
         ValueError, ["'resolution'", 'positive']),
        ('plm resolution nan', lambda: plm_levels(triangle, 3, 1, resolution=float('nan')),
         ValueError, ["'resolution'", 'finite']),
        ('plm resolution string', lambda: plm_levels(triangle, 3, 1, resolution='1'),
         TypeError, ["'resolution'"]),
        ('plm seed negative', lambda: plm_levels(triangle, 3, 1, seed=-1), ValueError,
         ["'seed'", 'at least 0']),
        ('plm seed float', lambda: plm_levels(triangle, 3, 1, seed=0.5), TypeError,
         ["'seed'", 'integer']),
        ('plm numpy edges', lambda: plm_levels(triangle.numpy(), 3, 1), TypeError,
         ["'edge_index'", 'ndarray']),
        ('plm levels float', lambda: plm_levels(triangle, 3, 1.5), TypeError,
         ["'num_levels'"]),
        # ---- GraphHierarchy: arguments its method does not use
        ('graph metis num_levels', lambda: GraphHierarchy(method='metis', num_levels=5),
         ValueError, ["'num_levels'", "'num_parts'", '5']),
        ('graph spectral num_levels', lambda: GraphHierarchy(method='spectral', num_levels=3),
         ValueError, ["'num_levels'", "'branching'"]),
        ('graph spectral resolution', lambda: GraphHierarchy(method='spectral',
                                                             resolution=2.0),
         ValueError, ["'resolution'", "'spectral'"]),
        ('graph metis resolution', lambda: GraphHierarchy(method='metis', resolution=2.0),
         ValueError, ["'resolution'", "'metis'"]),
        ('graph plm branching', lambda: GraphHierarchy(method='plm', branching=(2, 2)),
         ValueError, ["'branching'", "'plm'"]),
        ('graph metis branching', lambda: GraphHierarchy(method='metis', branching=(2, 2)),
         ValueError, ["'branching'", "'metis'"]),
        ('graph louvain num_parts', lambda: GraphHierarchy(num_parts=(2, 2)), ValueError,
         ["'num_parts'", "'louvain'"]),
        ('graph spectral num_parts', lambda: GraphHierarchy(method='spectral',
                                                            num_parts=(2, 2)),
         ValueError, ["'num_parts'", "'spectral'"]),
        ('graph leaf_type int', lambda: GraphHierarchy(leaf_type=3), TypeError,
         ["'leaf_type'", 'string']),
        ('graph leaf_type root', lambda: GraphHierarchy(leaf_type='root'), ValueError,
         ["'leaf_type'", "'root'"]),
        ('graph leaf_type cluster', lambda: GraphHierarchy(leaf_type='community1'),
         ValueError, ["'leaf_type'", "'community1'"]),
        ('graph seed negative', lambda: GraphHierarchy(method='plm', seed=-1), ValueError,
         ["'seed'", 'at least 0']),
        # ---- HierarchyLoader
        ('loader node types differ', lambda: next(iter(HierarchyLoader(
            [sequence, communities], batch_size=2))), ValueError,
         ['sample 1', 'node types', "'window1'", "'community1'"]),
        ('loader edge types differ', lambda: next(iter(HierarchyLoader(
            [tree, linked], batch_size=2))), ValueError,
         ['sample 1', 'edge types', "('leaf', 'near', 'leaf')"]),
        ('loader Data among HeteroData', lambda: next(iter(HierarchyLoader(
            [tree, Data(x=torch.randn(2, 1))], batch_size=2))), TypeError,
         ['sample 1', 'HeteroData', 'Data']),
        ('loader None sample', lambda: next(iter(HierarchyLoader([None]))), TypeError,
         ['sample 0', 'HeteroData', 'NoneType']),
        ('loader batch_size 0', lambda: HierarchyLoader([tree], batch_size=0), ValueError,
         ["'batch_size'", 'at least 1']),
        ('loader batch_size float', lambda: HierarchyLoader([tree], batch_size=1.5), TypeError,
         ["'batch_size'", 'integer']),
        ('loader batch_size None', lambda: HierarchyLoader([tree], batch_size=None),
         TypeError, ["'batch_size'"]),
        ('loader shuffle string', lambda: HierarchyLoader([tree], shuffle='yes'), TypeError,
         ["'shuffle'", 'True or False']),
        ('loader dataset None', lambda: HierarchyLoader(None), TypeError,
         ["'dataset'", 'NoneType']),
        ('loader dataset int', lambda: HierarchyLoader(3), TypeError, ["'dataset'", 'int']),
        ('loader follow_batch string', lambda: HierarchyLoader([tree], follow_batch='x'),
         TypeError, ["'follow_batch'", 'list']),
        ('loader exclude_keys string', lambda: HierarchyLoader([tree], exclude_keys='x'),
         TypeError, ["'exclude_keys'", 'list']),
        # ---- SubtreeLoader (constructor arguments)
        ('subtree batch_size 0', lambda: SubtreeLoader(graph_tree, batch_size=0), ValueError,
         ["'batch_size'", 'at least 1']),
        ('subtree batch_size float', lambda: SubtreeLoader(graph_tree, batch_size=1.5),
         TypeError, ["'batch_size'", 'integer']),
        ('subtree batch_size bool', lambda: SubtreeLoader(graph_tree, batch_size=True),
         TypeError, ["'batch_size'"]),
        ('subtree data', lambda: SubtreeLoader(graph), TypeError, ["'data'", 'HeteroData']),
        ('subtree collate_fn', lambda: SubtreeLoader(graph_tree, collate_fn=list), TypeError,
         ["'collate_fn'"]),
        # ---- planted graphs
        ('planted nodes float', lambda: planted_hierarchy_graph(10.5, 4, (2, ), (0.5, )),
         TypeError, ["'num_nodes'", 'integer']),
        ('planted nodes 1', lambda: planted_hierarchy_graph(1, 4, (2, ), (0.5, )),
         ValueError, ["'num_nodes'", 'at least 2']),
        ('planted degree 0', lambda: planted_hierarchy_graph(10, 0, (2, ), (0.5, )),
         ValueError, ["'avg_degree'"]),
        ('planted within negative', lambda: planted_hierarchy_graph(10, 4, (2, ), (-0.5, )),
         ValueError, ["'within'"]),
        ('planted within sum', lambda: planted_hierarchy_graph(10, 4, (2, 2), (0.7, 0.7)),
         ValueError, ["'within'", 'at most 1']),
    ]


# ---- hsa_geo.distributed and SubtreeLoader
def _dist_forest() -> Hierarchy:
    r"""Three top-level subtrees: two pairs of leaves and a lone leaf."""
    return Hierarchy.from_parent(torch.tensor([5, 5, 6, 6, -1, -1, -1]), 5)


def _dist_tree(relation: str = 'in') -> HeteroData:
    r"""Six tokens in three groups under one root."""
    data = HeteroData()
    data['tok'].x = torch.randn(6, 2)
    data['grp'].num_nodes, data['root'].num_nodes = 3, 1
    data['tok', relation, 'grp'].edge_index = torch.tensor([[0, 1, 2, 3, 4, 5],
                                                           [0, 0, 1, 1, 2, 2]])
    data['grp', relation, 'root'].edge_index = torch.tensor([[0, 1, 2], [0, 0, 0]])
    return data


def _dist_two_trees() -> HeteroData:
    r"""Two independent trees (two roots) of two groups each."""
    data = HeteroData()
    data['tok'].x = torch.randn(8, 2)
    data['grp'].num_nodes, data['root'].num_nodes = 4, 2
    data['tok', 'in', 'grp'].edge_index = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7],
                                                        [0, 0, 1, 1, 2, 2, 3, 3]])
    data['grp', 'in', 'root'].edge_index = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1]])
    return data


def _dist_reversed_tree() -> HeteroData:
    r""":func:`tree` with the group-to-root edges written parent to child."""
    data = _dist_tree()
    data['grp', 'in', 'root'].edge_index = torch.tensor([[0, 0, 0], [0, 1, 2]])
    return data


def _dist_forest_share_alone():
    r"""One of two shares given to distributed_hsa in a single process."""
    local, _, _ = shard_forest(_dist_forest(), 2)[0]
    q = torch.randn(local.num_leaves, 1, 2)
    return distributed_hsa(q, q, q, local)


def _dist_sharded_share_alone():
    r"""Rank 1's ShardedHierarchy of two used in a single process."""
    part, sharded = shard_hierarchy(_dist_tree(), 1, 2)
    q = torch.randn(sharded.num_leaves, 1, 2)
    return hsa(q, q, q, sharded)


def _distributed_cases():
        return [
        # ---- shard_forest
        ('shard_forest tensor', lambda: shard_forest(torch.tensor([2, 2, -1]), 2), TypeError,
         ["'hierarchy'", 'Hierarchy', 'Tensor']),
        ('shard_forest HeteroData', lambda: shard_forest(_dist_tree(), 2), TypeError,
         ["'hierarchy'", 'Hierarchy', 'HeteroData']),
        ('shard_forest num_shards float', lambda: shard_forest(_dist_forest(), 2.0), TypeError,
         ["'num_shards'", 'integer']),
        ('shard_forest num_shards zero', lambda: shard_forest(_dist_forest(), 0), ValueError,
         ["'num_shards'", 'at least 1']),
        ('shard_forest num_shards too many', lambda: shard_forest(_dist_forest(), 4), ValueError,
         ["'num_shards'", 'exceeds', '3']),
        # ---- shard_hierarchy
        ('shard_hierarchy Data', lambda: shard_hierarchy(Data(x=torch.randn(3, 2)), 0, 1),
         TypeError, ["'data'", 'HeteroData', 'Data']),
        ('shard_hierarchy forest', lambda: shard_hierarchy(_dist_two_trees(), 0, 2), ValueError,
         ["'data'", '2 roots', 'one tree']),
        ('shard_hierarchy forest one rank', lambda: shard_hierarchy(_dist_two_trees(), 0, 1),
         ValueError, ["'data'", '2 roots', 'one tree']),
        ('shard_hierarchy relation bogus',
         lambda: shard_hierarchy(_dist_tree(), 0, 1, relation='bogus'),
         ValueError, ["'relation'", "'bogus'"]),
        ('shard_hierarchy relation int', lambda: shard_hierarchy(_dist_tree(), 0, 1, relation=3),
         TypeError, ["'relation'", 'str']),
        ('shard_hierarchy reversed edges', lambda: shard_hierarchy(_dist_reversed_tree(), 0, 1),
         ValueError, ["'data'", 'child', 'parent']),
        ('shard_hierarchy world_size float', lambda: shard_hierarchy(_dist_tree(), 0, 2.0),
         TypeError,
         ["'world_size'", 'integer']),
        ('shard_hierarchy rank negative', lambda: shard_hierarchy(_dist_tree(), -1, 2), ValueError,
         ["'rank'", 'at least 0']),
        # ---- ShardedHierarchy / distributed_hsa
        ('ShardedHierarchy of a forest',
         lambda: ShardedHierarchy(Hierarchy.from_parent(torch.tensor([2, 3, -1, -1]), 2)),
         ValueError, ["'hierarchy'", 'one tree', '2 roots']),
        ('distributed_hsa share of two ranks alone', _dist_forest_share_alone, ValueError,
         ["'hierarchy'", 'share 0', '2 ranks', '1 rank']),
        ('ShardedHierarchy share of two ranks alone', _dist_sharded_share_alone, ValueError,
         ["'hierarchy'", 'share 1', '2 ranks', '1 rank']),
        # ---- SubtreeLoader / top_subtrees
        ('SubtreeLoader relation bogus', lambda: SubtreeLoader(_dist_tree(), relation='bogus'),
         ValueError, ["'relation'", "'bogus'", "('tok', 'in', 'grp')"]),
        ('SubtreeLoader relation int', lambda: SubtreeLoader(_dist_tree(), relation=3), TypeError,
         ["'relation'", 'str']),
        ('SubtreeLoader reversed edges', lambda: SubtreeLoader(_dist_reversed_tree()), ValueError,
         ["'data'", 'child', 'parent']),
        ('top_subtrees Data', lambda: top_subtrees(Data(x=torch.randn(3, 2))), TypeError,
         ["'data'", 'HeteroData']),
    ]


def _layer_cases():
    from torch_geometric.explain import Explainer
    from torch_geometric.explain.algorithm import AttentionExplainer

    class Readout(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = HSAConv(4, 4)

        def forward(self, x, edge_index, hierarchy):
            return self.conv(x, hierarchy)

    def node_level():
        h = Hierarchy.from_parent(torch.tensor([4, 4, 5, 5, 6, 6, -1]), 4)
        explainer = Explainer(Readout(), AttentionExplainer(), explanation_type='model',
                              edge_mask_type='object',
                              model_config=dict(mode='regression', task_level='node',
                                                return_type='raw'))
        return explainer(torch.randn(4, 4), h.sibling_index, hierarchy=h, index=0)

    return [
        ('conv in_channels 0', lambda: HSAConv(0, 8), ValueError,
         ["'in_channels'", 'positive', '-1']),
        ('conv in_channels pair', lambda: HSAConv((-1, -1), 8), TypeError,
         ["'in_channels'", 'one hierarchy', 'bipartite']),
        ('conv in_channels float', lambda: HSAConv(4.0, 8), TypeError, ["'in_channels'"]),
        ('conv in_channels empty dict', lambda: HSAConv({}, 8), ValueError,
         ["'in_channels'", 'leaf node type']),
        ('conv in_channels dict entry', lambda: HSAConv({'a': -3}, 8), ValueError,
         ["'in_channels['a']'"]),
        ('conv heads float', lambda: HSAConv(4, 4, heads=2.5), TypeError, ["'heads'"]),
        ('conv dropout 1', lambda: HSAConv(4, 4, dropout=1.0), ValueError, ["'dropout'"]),
        ('conv pos missing', lambda: HSAConv(4, 4, pos_channels=3)(torch.randn(2, 4), pair()),
         ValueError, ["pos_channels=3", "'pos' was not given"]),
        ('explain node level', node_level, ValueError,
         ['node-level', 'sibling_index', "task_level='graph'"]),
        ('hierarchy edited in place', _edited_in_place, ValueError,
         ['modified in place', 'immutable']),
        ('node types not covering', lambda: pair().with_node_types({'a': (0, 2)}),
         ValueError, ["'node_slices'", 'covers nodes 0..1', '3 nodes']),
        ('node types list', lambda: pair().with_node_types([('a', 0, 3)]), TypeError,
         ["'node_slices'", 'dict']),
        ('node types bounds', lambda: pair().with_node_types({'a': (0, 'x'), 'b': (2, 3)}),
         TypeError, ["'node_slices['a']'", 'pair of ints']),
    ]


def _edited_in_place():
    h = pair()
    h.parent[0] = 2
    return hsa(*qkv(), h)


ALL_CASES = (CASES + _zero_shot_cases() + _dataset_cases() + _paper_config_cases()
             + _new_surface_cases() + _distributed_cases() + _layer_cases())


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


def test_leaf_selections_like_pygs_are_accepted():
    # PyG's subgraph utilities take a Tensor or a list of ints; so does
    # hierarchy_subgraph (and tuples, numpy arrays, masks as lists of bools)
    from hsa_geo.utils import hierarchy_subgraph
    tree = HeteroData()
    tree['leaf'].num_nodes, tree['top'].num_nodes = 3, 1
    tree['leaf', 'in', 'top'].edge_index = torch.tensor([[0, 1, 2], [0, 0, 0]])
    for leaves in ([0, 2], (2, 0), np.array([0, 2]), [True, False, True],
                   torch.tensor([2, 0], dtype=torch.int32), {'leaf': [0, 2]}):
        assert hierarchy_subgraph(tree, leaves)['leaf'].n_id.tolist() == [0, 2]
