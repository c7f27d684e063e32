import pytest
import torch
from torch_geometric.data import Data

from hsa_geo import Hierarchy
from hsa_geo.loader import HierarchyLoader
from hsa_geo.nn import (
    HSAMeshTransformer,
    HSAPointTransformer,
    PointTransformerBlock,
    leaf_tree,
    root_pool,
)
from hsa_geo.nn.models import DEFAULT
from hsa_geo.reference import hsa_dense
from hsa_geo.transforms import FlatHierarchy, MeshHierarchy, VoxelHierarchy
from hsa_geo.utils import knn_graph


def _clouds(dim=3, sizes=(23, 40, 7, 31), depth=3, features=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i, n in enumerate(sizes):
        pos = torch.rand(n, dim, generator=gen)
        data = Data(pos=pos, x=torch.randn(n, features, generator=gen),
                    edge_index=knn_graph(pos, 6), y=torch.tensor([i % 3]))
        out.append(VoxelHierarchy(depth)(data))
    return out


def _inputs(data):
    return (data['point'].x, data['point'].pos, Hierarchy.from_hetero(data),
            data.hsa_pos_dict, data['point', 'to', 'point'].edge_index)


def _batch(clouds):
    return next(iter(HierarchyLoader(clouds, batch_size=len(clouds))))


@pytest.mark.parametrize('attention', [DEFAULT, None])
@pytest.mark.parametrize('local', [None, 'point_transformer'])
@pytest.mark.parametrize('task', ['classification', 'segmentation'])
def test_batch_equals_samples(attention, local, task):
    clouds = _clouds()
    torch.manual_seed(0)
    local = PointTransformerBlock(16, 3) if local else None
    model = HSAPointTransformer(2, 16, 5, num_layers=2, attention=attention, local=local,
                                task=task).eval()
    out = model(*_inputs(_batch(clouds)))
    alone = torch.cat([model(*_inputs(c)) for c in clouds])
    rows = len(clouds) if task == 'classification' else sum(c['point'].num_nodes
                                                             for c in clouds)
    assert out.shape == (rows, 5)
    assert torch.allclose(out, alone, atol=1e-5)


def _manual_encoding(model, x, pos, h, hsa_pos, attention):
    r"""The model's blocks written out by hand, with the dense reference in
    place of the dynamic program (or softmax attention when ``attention`` is
    'softmax')."""
    out = model.embed(torch.cat([x, pos], -1))
    node_pos = torch.zeros(h.num_nodes, model.dim, dtype=x.dtype)
    for node_type, vectors in (hsa_pos or {}).items():
        start, end = h.node_slices[node_type]
        node_pos[start:end] = vectors
    for block in model.blocks:
        conv, heads = block.attn, model.heads
        d = model.channels // heads
        inp = block.norm1(out)
        q = conv.lin_query['_leaf'](inp).view(-1, heads, d)
        k = conv.lin_key['_leaf'](inp).view(-1, heads, d)
        v = conv.lin_value['_leaf'](inp).view(-1, heads, d)
        if attention == 'softmax':  # one cloud, one flat family, no positions
            scores = torch.einsum('ihd,jhd->hij', q, k) / d ** 0.5
            scores = scores.masked_fill(torch.eye(len(x), dtype=torch.bool), float('-inf'))
            att = torch.einsum('hij,jhd->ihd', scores.softmax(-1), v)
        else:
            eps = conv.lin_pos(node_pos).view(-1, heads, d) * d ** -0.25 if hsa_pos else None
            att = hsa_dense(q, k, v, h, pos=eps)
        out = out + conv.lin_out(att.reshape(len(x), -1))
        out = out + block.ffn(block.norm2(out))
    return model.norm(out)


def test_encoder_matches_dense_reference_on_octrees():
    torch.manual_seed(3)
    clouds = _clouds(sizes=(17, 30, 9), depth=3)
    batch = _batch(clouds)
    x, pos, h, hsa_pos, _ = _inputs(batch)
    x, pos = x.double(), pos.double()
    hsa_pos = {t: p.double() for t, p in hsa_pos.items()}
    model = HSAPointTransformer(2, 16, 4, num_layers=2, task='segmentation').double().eval()
    expected = _manual_encoding(model, x, pos, h, hsa_pos, 'hsa')
    encoded = model.encode(x, pos, h, hsa_pos)
    assert (encoded - expected).abs().max() < 1e-10
    logits = model(x, pos, h, hsa_pos)
    assert torch.allclose(logits, model.head(expected), atol=1e-10)


def test_flat_hierarchy_is_dense_softmax_attention():
    cloud = _clouds(sizes=(25, ), depth=2)[0]
    flat = FlatHierarchy(pos_dim=2)(cloud)  # grid positions unused: a set
    h = Hierarchy.from_hetero(flat)
    torch.manual_seed(4)
    model = HSAPointTransformer(2, 16, 3, num_layers=2, pool='max').double().eval()
    x, pos = flat['point'].x.double(), flat['point'].pos.double()
    encoded = model.encode(x, pos, h)
    expected = _manual_encoding(model, x, pos, h, None, 'softmax')
    assert (encoded - expected).abs().max() < 1e-10
    assert torch.allclose(model(x, pos, h), model.head(expected.max(0).values), atol=1e-10)


def test_without_attention_points_are_independent():
    cloud = _clouds(sizes=(30, ))[0]
    x, pos, h, hsa_pos, edges = _inputs(cloud)
    torch.manual_seed(5)
    pointnet = HSAPointTransformer(2, 16, 3, attention=None, task='segmentation').eval()
    hybrid = HSAPointTransformer(2, 16, 3, num_layers=1, attention=None,
                                 local=PointTransformerBlock(16, 3),
                                 task='segmentation').eval()
    moved = x.clone()
    moved[0] += 5.0
    for model, changed in ((pointnet, torch.tensor([0])),
                           (hybrid, torch.unique(torch.cat([torch.tensor([0]),
                                                            edges[1][edges[0] == 0]])))):
        diff = (model(moved, pos, h, hsa_pos, edges) - model(x, pos, h, hsa_pos, edges))
        touched = diff.abs().sum(-1) > 1e-6
        # PointNet: only the moved point; one local block: it and the points it is a neighbour of
        assert set(touched.nonzero().view(-1).tolist()) == set(changed.tolist())
    full = HSAPointTransformer(2, 16, 3, task='segmentation').eval()
    diff = full(moved, pos, h, hsa_pos) - full(x, pos, h, hsa_pos)
    assert (diff.abs().sum(-1) > 1e-6).all()  # global attention reaches every point


def test_two_dimensional_points_and_no_features():
    clouds = _clouds(dim=2, features=0, sizes=(12, 20))
    for c in clouds:
        del c['point'].x
    batch = _batch(clouds)
    model = HSAPointTransformer(0, 8, 10, num_layers=1, heads=2, dim=2, pool='sum')
    out = model(None, batch['point'].pos, batch.hierarchy, batch.hsa_pos_dict)
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_root_pool_and_leaf_tree_follow_the_batch():
    batch = _batch(_clouds())
    h = Hierarchy.from_hetero(batch)
    assert torch.equal(leaf_tree(h), batch['point'].batch)
    x = torch.randn(h.num_leaves, 4)
    for reduce, fn in (('max', lambda t: t.max(0).values), ('mean', lambda t: t.mean(0)),
                       ('sum', lambda t: t.sum(0))):
        expected = torch.stack([fn(x[batch['point'].batch == i]) for i in range(4)])
        assert torch.allclose(root_pool(x, h, reduce), expected, atol=1e-6)
    with pytest.raises(ValueError, match="'reduce'"):
        root_pool(x, h, 'median')


def _mesh_batch():
    import trimesh
    meshes = [trimesh.creation.icosphere(1), trimesh.creation.box(),
              trimesh.creation.cylinder(0.5, 1.0, sections=8)]
    return _batch([MeshHierarchy(depth=2)(m) for m in meshes])


def test_mesh_transformer_area_pooling():
    pytest.importorskip('trimesh')
    batch = _mesh_batch()
    face = batch['face']
    torch.manual_seed(6)
    model = HSAMeshTransformer(4, channels=16, num_layers=1).eval()
    assert model.pool == 'area'
    out = model(face.x, face.pos, batch.hierarchy, batch.hsa_pos_dict, area=face.area)
    encoded = model.encode(face.x, face.pos, batch.hierarchy, batch.hsa_pos_dict)
    expected = torch.stack([
        (encoded[face.batch == i] * face.area[face.batch == i, None]).sum(0)
        / face.area[face.batch == i].sum() for i in range(3)])
    assert torch.allclose(out, model.head(expected), atol=1e-5)
    parts = HSAMeshTransformer(7, channels=16, num_layers=1, task='segmentation')
    assert parts(face.x, face.pos, batch.hierarchy, batch.hsa_pos_dict).shape == (face.num_nodes, 7)
    with pytest.raises(ValueError, match="'area'"):
        model(face.x, face.pos, batch.hierarchy, batch.hsa_pos_dict)


def test_errors():
    x, pos, h, hsa_pos, _ = _inputs(_clouds(sizes=(10, ))[0])
    with pytest.raises(ValueError, match="'task'"):
        HSAPointTransformer(2, 8, 2, task='detection')
    with pytest.raises(TypeError, match="'local' must be a torch.nn.Module or None"):
        HSAPointTransformer(2, 8, 2, local='point_transformer')
    with pytest.raises(TypeError, match="'attention' must be a torch.nn.Module or None"):
        HSAPointTransformer(2, 8, 2, attention='none')
    with pytest.raises(ValueError, match="'dim'"):
        HSAPointTransformer(2, 8, 2, dim=4)
    with pytest.raises(ValueError, match="'channels'"):
        HSAPointTransformer(2, 10, 2, heads=4)
    model = HSAPointTransformer(2, 8, 2, local=PointTransformerBlock(8, 3))
    with pytest.raises(ValueError, match="'edge_index'"):
        model(x, pos, h, hsa_pos)
    with pytest.raises(ValueError, match="'coords'"):
        model(x, pos[:, :2], h, hsa_pos)
    with pytest.raises(TypeError, match="compiled Hierarchy"):
        model(x, pos, _batch(_clouds(sizes=(10, ))), hsa_pos)
    with pytest.raises(ValueError, match="'coords' has 9 rows"):
        model(x[:9], pos[:9], h, hsa_pos)
    with pytest.raises(ValueError, match="'x' must have shape"):
        model(x[:, :1], pos, h, hsa_pos)
    with pytest.raises(ValueError, match="'dim' must be 3"):
        HSAMeshTransformer(3, dim=2)
    with pytest.raises(ValueError, match="'pool' must be one of \\('area'"):
        HSAMeshTransformer(3, pool='median')
    assert repr(HSAPointTransformer(2, 8, 2)) == (
        "HSAPointTransformer(2, 8, 2, num_layers=4, task='classification', "
        "attention=HSAEncoderLayer(8, 8, heads=4, style='prenorm'), local=None)")
    assert repr(HSAPointTransformer(2, 8, 2, attention=None,
                                    local=PointTransformerBlock(8, 3))).endswith(
        "attention=None, local=PointTransformerBlock(8, dim=3))")


@pytest.mark.slow
def test_compile_fullgraph_without_breaks():
    x, pos, h, hsa_pos, _ = _inputs(_batch(_clouds(sizes=(20, 30), depth=2)))
    model = HSAPointTransformer(2, 16, 3, num_layers=1, pool='max').eval()
    assert torch._dynamo.explain(model)(x, pos, h, hsa_pos).graph_break_count == 0
    compiled = torch.compile(model, fullgraph=True)
    assert torch.allclose(compiled(x, pos, h, hsa_pos), model(x, pos, h, hsa_pos), atol=1e-5)
