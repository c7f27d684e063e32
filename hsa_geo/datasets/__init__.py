r"""Datasets over the real data shipped in the repository's ``datasets/``:
molecules in OGB's format (:func:`ogb_dataset`) and text corpora
(:func:`text_corpus`)."""
from hsa_geo.datasets.ogb_compat import allow_pyg_in_torch_load
from hsa_geo.datasets.molecules import (DATA_DIR, OFFLINE_DATASETS, OGBMolDataset,
                                        OfflineMolSpec, build_ogb_layout, evaluator,
                                        murcko_scaffold, ogb_dataset, published_split,
                                        read_molecules, scaffold_split)
from hsa_geo.datasets.text import (TEXT_CORPORA, TextCorpus, minilm_dir, text_corpus,
                                   text_split)

allow_pyg_in_torch_load()

__all__ = [
    'allow_pyg_in_torch_load', 'ogb_dataset', 'evaluator', 'build_ogb_layout',
    'scaffold_split', 'published_split', 'murcko_scaffold', 'read_molecules', 'OFFLINE_DATASETS',
    'OfflineMolSpec', 'OGBMolDataset', 'DATA_DIR', 'text_corpus', 'text_split',
    'TextCorpus', 'TEXT_CORPORA', 'minilm_dir'
]
