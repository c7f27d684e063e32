r"""The three models of ``ogbg_mol.py``: GIN with a virtual node, PyG's GPS
(dense multi-head attention) and the HSA graph transformer over each
molecule's junction tree, sharing the atom and bond encoders, the local GINE
message passing, the readout and the head.

``ogbg_mol.py`` imports this module as ``from _molecules import ...``: run
as ``python examples/ogbg_mol.py`` (or under ``torchrun``), a script has its
own folder on the path."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from ogb.graphproppred.mol_encoder import AtomEncoder, BondEncoder
from torch import Tensor
from torch.nn import BatchNorm1d, Linear, Module, ModuleList, ReLU, Sequential
from torch_geometric.loader import DataLoader
from torch_geometric.nn import GINEConv, GPSConv, global_add_pool, global_mean_pool

from hsa_geo.loader import HierarchyLoader
from hsa_geo.nn import HSAGPSConv

#: the kinds of :class:`MolModel`
KINDS = ('gin', 'gps', 'hsa')


def _gine(channels: int) -> GINEConv:
    # OGB's GIN: MLP((1 + eps) x_i + sum_j relu(x_j + bond_j)), bonds embedded per layer
    mlp = Sequential(Linear(channels, 2 * channels), BatchNorm1d(2 * channels), ReLU(),
                     Linear(2 * channels, channels))
    return GINEConv(mlp, train_eps=True)


class MolModel(Module):
    r"""Atom encoder -> ``layers`` blocks -> mean pooling -> MLP head.

    ``kind='gin'``: GINE message passing with a virtual node (OGB's GIN-VN);
    ``kind='gps'``: :class:`torch_geometric.nn.GPSConv` (GINE + dense
    multi-head attention over each molecule); ``kind='hsa'``:
    :class:`hsa_geo.nn.HSAGPSConv` (GINE + HSA over the junction tree, with
    the tree's position vectors).
    """
    def __init__(self, kind: str, hidden: int, layers: int, out_channels: int,
                 heads: int = 4, dropout: float = 0.2, pos_dim: int = 16):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"'kind' must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.atom_encoder = AtomEncoder(hidden)
        self.bond_encoders = ModuleList([BondEncoder(hidden) for _ in range(layers)])
        self.dropout = dropout
        if kind == 'gin':
            self.convs = ModuleList([_gine(hidden) for _ in range(layers)])
            self.norms = ModuleList([BatchNorm1d(hidden) for _ in range(layers)])
            self.virtual_node = torch.nn.Embedding(1, hidden)
            torch.nn.init.zeros_(self.virtual_node.weight)
            self.virtual_mlps = ModuleList([
                Sequential(Linear(hidden, 2 * hidden), BatchNorm1d(2 * hidden), ReLU(),
                           Linear(2 * hidden, hidden), BatchNorm1d(hidden), ReLU())
                for _ in range(layers - 1)
            ])
        elif kind == 'gps':
            self.convs = ModuleList([
                GPSConv(hidden, _gine(hidden), heads=heads, dropout=dropout)
                for _ in range(layers)
            ])
        else:
            self.use_pos = pos_dim > 0
            self.convs = ModuleList([
                HSAGPSConv(hidden, _gine(hidden), heads=heads, dropout=dropout,
                           attn_kwargs=dict(pos_channels=pos_dim if self.use_pos else None))
                for _ in range(layers)
            ])
        self.head = Sequential(Linear(hidden, hidden), ReLU(), Linear(hidden, out_channels))

    def forward(self, batch) -> Tensor:
        atom = batch['atom']
        bonds = batch['atom', 'bond', 'atom']
        x = self.atom_encoder(atom.x)
        graph = atom.batch
        if self.kind == 'gin':
            vn = self.virtual_node.weight.expand(batch.num_graphs, -1)
            for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
                x = x + vn[graph]
                h = norm(conv(x, bonds.edge_index, self.bond_encoders[i](bonds.edge_attr)))
                if i < len(self.convs) - 1:
                    h = F.relu(h)
                    vn = vn + F.dropout(self.virtual_mlps[i](global_add_pool(x, graph) + vn),
                                        self.dropout, self.training)
                x = x + F.dropout(h, self.dropout, self.training)
        elif self.kind == 'gps':
            for conv, bond_encoder in zip(self.convs, self.bond_encoders, strict=True):
                x = conv(x, bonds.edge_index, graph,
                         edge_attr=bond_encoder(bonds.edge_attr))
        else:
            hierarchy = batch.hierarchy  # compiled once by the loader, used by every layer
            pos = ({t: batch[t].hsa_pos for t in ('atom', 'cluster', 'molecule')}
                   if self.use_pos else None)
            for conv, bond_encoder in zip(self.convs, self.bond_encoders, strict=True):
                x = conv(x, bonds.edge_index, graph, hierarchy=hierarchy, pos=pos,
                         edge_attr=bond_encoder(bonds.edge_attr))
        return self.head(global_mean_pool(x, graph, size=batch.num_graphs))


def loader_for(kind: str):
    r"""HSA batches carry their compiled hierarchy (``batch.hierarchy``);
    the baselines do not need one."""
    return HierarchyLoader if kind == 'hsa' else DataLoader

