r"""Datasets over the real data shipped in the package (``hsa_geo/datasets/data/``):
molecules in OGB's format (:func:`ogb_dataset`, which needs the ``ogb`` extra),
text corpora (:func:`text_corpus`), meshes and point clouds (:func:`read_mesh`,
:func:`read_bunny`, :func:`digits_point_clouds`); and SYNTHETIC sets: shapes
(:func:`synthetic_shapes`) and graphs with planted communities
(:func:`planted_hierarchy_graph`, :func:`planted_node_dataset`)."""
from hsa_geo.datasets.files import DATA_DIR, data_path
from hsa_geo.datasets.molecule_sets import OFFLINE_DATASETS, OfflineMolSpec, read_molecules
from hsa_geo.datasets.ogb_compat import allow_pyg_in_torch_load
from hsa_geo.datasets.ogb_writer import build_ogb_layout
from hsa_geo.datasets.planted import planted_hierarchy_graph, planted_node_dataset
from hsa_geo.datasets.scaffolds import murcko_scaffold, published_split, scaffold_split
from hsa_geo.datasets.shapes import (
    MESHES,
    SYNTHETIC_SHAPES,
    digits_point_clouds,
    read_bunny,
    read_mesh,
    synthetic_shapes,
)
from hsa_geo.datasets.text import (
    NEWS_FIELDS,
    TEXT_CORPORA,
    TextCorpus,
    minilm_dir,
    news_sentence_pairs,
    split_sentences,
    text_corpus,
    text_split,
)

allow_pyg_in_torch_load()

# OGB's dataset classes come with the optional ``ogb`` extra: imported on first use
_NEED_OGB = ('OGBMolDataset', 'ogb_dataset', 'evaluator')


def __getattr__(name: str):
    if name in _NEED_OGB:
        from hsa_geo.datasets import molecules
        return getattr(molecules, name)
    raise AttributeError(f"module 'hsa_geo.datasets' has no attribute {name!r}")


__all__ = [
    'allow_pyg_in_torch_load', 'ogb_dataset', 'evaluator', 'build_ogb_layout',
    'scaffold_split', 'published_split', 'murcko_scaffold', 'read_molecules', 'OFFLINE_DATASETS',
    'OfflineMolSpec', 'OGBMolDataset', 'DATA_DIR', 'data_path', 'text_corpus', 'text_split',
    'news_sentence_pairs', 'split_sentences', 'TextCorpus', 'TEXT_CORPORA', 'NEWS_FIELDS',
    'minilm_dir', 'read_mesh', 'MESHES', 'read_bunny', 'digits_point_clouds',
    'synthetic_shapes', 'SYNTHETIC_SHAPES', 'planted_hierarchy_graph', 'planted_node_dataset',
]
