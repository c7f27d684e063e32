r"""The one place where hsa_geo makes OGB's datasets load under torch >= 2.6.

OGB 1.3.6 reads its processed files with a bare ``torch.load(path)``.  Since
torch 2.6 that means ``weights_only=True``, which refuses to unpickle PyG's data
classes (snap-stanford/ogb#497), so ``PygGraphPropPredDataset`` fails on every
dataset, downloaded or built offline.  Rather than patching OGB or turning the
safe loader off, :func:`allow_pyg_in_torch_load` adds PyG's data and storage
classes to torch's list of safe globals: only those classes become loadable.
Importing :mod:`hsa_geo.datasets` calls it.
"""
from __future__ import annotations

import torch

__all__ = ['allow_pyg_in_torch_load']


def allow_pyg_in_torch_load() -> None:
    r"""Lets ``torch.load(..., weights_only=True)`` read the ``(data, slices)``
    files of PyG's ``InMemoryDataset`` (homogeneous and heterogeneous), as OGB
    1.3.6 writes and reads them.  Idempotent; a no-op on torch < 2.4."""
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:  # pragma: no cover - old torch loads everything
        return
    from torch_geometric.data import Data, HeteroData
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.feature_store import TensorAttr
    from torch_geometric.data.graph_store import EdgeAttr, EdgeLayout
    from torch_geometric.data.storage import BaseStorage, EdgeStorage, GlobalStorage, NodeStorage
    add_safe_globals([Data, HeteroData, DataEdgeAttr, DataTensorAttr, BaseStorage,
                      GlobalStorage, NodeStorage, EdgeStorage, TensorAttr, EdgeAttr,
                      EdgeLayout])
