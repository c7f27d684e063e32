r"""Where the shipped data files live: the folder :data:`DATA_DIR` (inside
the installed package, ``hsa_geo/datasets/data/``, where
``hsa_geo/datasets/data/README.md`` gives every file's provenance and
licence) and the path of a file in it, with a clear error when it is
missing."""
from __future__ import annotations

import os
import os.path as osp

__all__ = ['DATA_DIR', 'data_path']

#: The folder holding the shipped data files: ``hsa_geo/datasets/data/``, package
#: data of the installed package (the wheel ships it); the environment variable
#: ``HSA_GEO_DATA`` overrides it.
DATA_DIR = os.environ.get('HSA_GEO_DATA', osp.join(osp.dirname(osp.abspath(__file__)), 'data'))


def data_path(file: str) -> str:
    r"""The path of a shipped data file in :data:`DATA_DIR`; a clear error
    when it is missing."""
    path = osp.join(DATA_DIR, file)
    if not osp.exists(path):
        raise FileNotFoundError(f"missing data file {path} (the data shipped in "
                                f"hsa_geo/datasets/data/; set HSA_GEO_DATA to the folder "
                                f"holding {file})")
    return path
