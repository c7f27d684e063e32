r"""Every builder's repr shows every argument that changes its output: the
processed caches of PyG datasets are keyed on it."""
import pytest
import torch
from torch_geometric.data import Data

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
from hsa_geo.transforms._base import config_digest, describe

# each builder: a list of configurations that give different outputs
VARIANTS = {
    'graph': [GraphHierarchy(), GraphHierarchy(num_levels=1), GraphHierarchy(num_levels=3),
              GraphHierarchy(resolution=2.0), GraphHierarchy(pos_dim=4),
              GraphHierarchy(seed=1), GraphHierarchy(leaf_type='atom'),
              GraphHierarchy(method='spectral'),
              GraphHierarchy(method='spectral', branching=(8, 8)),
              GraphHierarchy(method='spectral', seed=3)],
    'sequence': [SequenceHierarchy((2, 4)), SequenceHierarchy((2, 8)),
                 SequenceHierarchy((2, 4), pos_dim=8),
                 SequenceHierarchy((2, 4), pos_kind='fourier'),
                 SequenceHierarchy((2, 4), pos_kind='fourier', seed=1),
                 SequenceHierarchy((2, 4), leaf_type='word')],
    'molecule': [MoleculeHierarchy(), MoleculeHierarchy(pos_dim=8),
                 MoleculeHierarchy(use_smiles=False), MoleculeHierarchy(atom_pos='laplacian'),
                 MoleculeHierarchy(atom_pos='none')],
    'voxel': [VoxelHierarchy(3), VoxelHierarchy(4), VoxelHierarchy(3, leaf_type='face')],
    'fps': [FPSHierarchy(), FPSHierarchy((0.5, )), FPSHierarchy(seed=2),
            FPSHierarchy(leaf_type='face')],
    'flat': [FlatHierarchy(), FlatHierarchy(8), FlatHierarchy(max_leaves=512),
             FlatHierarchy(relation='of'), FlatHierarchy(pos_kind='fourier')],
    'mesh': [MeshHierarchy(), MeshHierarchy(3), MeshHierarchy(method='faces'),
             MeshHierarchy(method='faces', branching=(4, 4))],
    'text': [TextHierarchy(), TextHierarchy(pos_dim=8), TextHierarchy(words=False),
             TextHierarchy(paragraph_sentences=3), TextHierarchy(pos_kind='fourier'),
             TextHierarchy(tokenizer=lambda text: ([text], [(0, len(text))]))],
    'multimodal': [MultiModalHierarchy({'mol': MoleculeHierarchy()}, 16),
                   MultiModalHierarchy({'mol': MoleculeHierarchy(pos_dim=8)}, 16),
                   MultiModalHierarchy({'mol': MoleculeHierarchy()}, 4),
                   MultiModalHierarchy({'graph': MoleculeHierarchy()}, 16)],
}


@pytest.mark.parametrize('name', list(VARIANTS))
def test_every_output_changing_argument_changes_the_repr(name):
    reprs = [repr(t) for t in VARIANTS[name]]
    assert len(set(reprs)) == len(reprs), reprs
    assert len({config_digest(t) for t in VARIANTS[name]}) == len(reprs)
    for text in reprs:
        assert ' at 0x' not in text


@pytest.mark.parametrize('name', ['graph', 'sequence', 'molecule', 'voxel', 'fps', 'flat',
                                  'mesh'])
def test_repr_rebuilds_the_same_builder(name):
    import hsa_geo.transforms as transforms
    for t in VARIANTS[name]:
        assert repr(eval(repr(t), vars(transforms))) == repr(t)


def test_graph_repr_in_pyg_style():
    assert repr(GraphHierarchy(method='spectral', branching=(16, 16), pos_dim=8)) == (
        "GraphHierarchy(method='spectral', branching=(16, 16), pos_dim=8, seed=0, "
        "leaf_type='node')")


def test_functions_are_described_by_their_code():
    def first(text):
        return [text], [(0, len(text))]

    def second(text):
        return [text.lower()], [(0, len(text))]

    one, two = describe(first), describe(second)
    assert one != two and 'first' in one
    assert describe(first) == one  # stable
    scale = 2.0
    assert describe(lambda d: d * scale) != describe(lambda d: d * 3.0)


def test_builders_refuse_bad_configuration():
    with pytest.raises(TypeError, match=r"'branching\[0\]' must be an integer, got 2.5"):
        SequenceHierarchy((2.5, ))
    with pytest.raises(ValueError, match="'depth' must be at most 20, got 70"):
        VoxelHierarchy(70)
    with pytest.raises(TypeError, match="'data' must be a hierarchy HeteroData"):
        FlatHierarchy()(Data(x=torch.randn(3, 2)))
