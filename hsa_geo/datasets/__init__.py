r"""Datasets over the real data shipped in the repository's ``datasets/``:
molecules in OGB's format (:func:`ogb_dataset`), text corpora
(:func:`text_corpus`), meshes and point clouds (:func:`read_mesh`,
:func:`read_bunny`, :func:`digits_point_clouds`); and SYNTHETIC sets: shapes
(:func:`synthetic_shapes`) and graphs with planted communities
(:func:`planted_hierarchy_graph`, :func:`planted_node_dataset`)."""
from hsa_geo.datasets.molecules import (
                                        DATA_DIR,
                                        OFFLINE_DATASETS,
                                        OfflineMolSpec,
                                        OGBMolDataset,
                                        build_ogb_layout,
                                        evaluator,
                                        murcko_scaffold,
                                        ogb_dataset,
                                        published_split,
                                        read_molecules,
                                        scaffold_split,
)
from hsa_geo.datasets.ogb_compat import allow_pyg_in_torch_load
from hsa_geo.datasets.planted import planted_hierarchy_graph, planted_node_dataset
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

__all__ = [
    'allow_pyg_in_torch_load', 'ogb_dataset', 'evaluator', 'build_ogb_layout',
    'scaffold_split', 'published_split', 'murcko_scaffold', 'read_molecules', 'OFFLINE_DATASETS',
    'OfflineMolSpec', 'OGBMolDataset', 'DATA_DIR', 'text_corpus', 'text_split',
    'news_sentence_pairs', 'split_sentences',
    'TextCorpus', 'TEXT_CORPORA', 'NEWS_FIELDS', 'minilm_dir', 'read_mesh', 'MESHES', 'read_bunny',
    'digits_point_clouds', 'synthetic_shapes', 'SYNTHETIC_SHAPES',
    'planted_hierarchy_graph', 'planted_node_dataset'
]
