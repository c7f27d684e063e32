r"""Datasets over the real data shipped in the repository's ``datasets/``."""
from hsa_geo.datasets.ogb_compat import allow_pyg_in_torch_load
from hsa_geo.datasets.molecules import (DATA_DIR, OFFLINE_DATASETS, OGBMolDataset,
                                        OfflineMolSpec, build_ogb_layout, evaluator,
                                        murcko_scaffold, ogb_dataset, published_split,
                                        read_molecules, scaffold_split)

allow_pyg_in_torch_load()

__all__ = [
    'allow_pyg_in_torch_load', 'ogb_dataset', 'evaluator', 'build_ogb_layout',
    'scaffold_split', 'published_split', 'murcko_scaffold', 'read_molecules', 'OFFLINE_DATASETS',
    'OfflineMolSpec', 'OGBMolDataset', 'DATA_DIR'
]
