r"""Hierarchies over molecules: atoms -> junction-tree clusters -> molecule."""
from __future__ import annotations

from typing import List

import networkx as nx
import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData
from torch_geometric.data.datapipes import functional_transform

from hsa_geo._checks import as_bool, as_even_dim
from hsa_geo.transforms._attributes import copy_attributes, edge_index_of
from hsa_geo.transforms._base import HierarchyTransform
from hsa_geo.transforms.graph import family_laplacian_pe
from hsa_geo.transforms.sequence import grid_positions

__all__ = ['MoleculeHierarchy', 'molecule_clusters']

ATOM_POSITIONS = ('grid', 'laplacian', 'none')


def molecule_clusters(edge_index: Tensor, num_atoms: int, smiles: str = None) -> List[List[int]]:
    r"""The junction-tree clusters of a molecule (Jin et al., JT-VAE): its
    smallest rings (rings sharing more than two atoms merged into one bridged
    cluster), then its bonds outside rings, then atoms without bonds.  With
    :obj:`smiles` and rdkit installed, the cliques of PyG's
    :func:`~torch_geometric.utils.tree_decomposition`; else the same rule on the
    graph (rings from networkx's minimum cycle basis)."""
    if smiles is not None:
        try:
            from rdkit import Chem
        except ImportError:  # pragma: no cover - optional dependency
            Chem = None
        if Chem is not None:
            from torch_geometric.utils import tree_decomposition
            mol = Chem.MolFromSmiles(smiles)
            if mol is None:
                raise ValueError(f"'smiles' does not parse: {smiles!r}")
            if mol.GetNumAtoms() != num_atoms:
                raise ValueError(f"'smiles' has {mol.GetNumAtoms()} atoms but the "
                                 f"graph has {num_atoms}")
            _, atom2clique, num = tree_decomposition(mol)
            clusters: List[List[int]] = [[] for _ in range(int(num))]
            for atom, clique in atom2clique.t().tolist():
                clusters[clique].append(atom)
            # rdkit's decomposition gives atoms without bonds (NH3, ions) no clique
            covered = {a for c in clusters for a in c}
            lone = [[a] for a in range(num_atoms) if a not in covered]
            return [sorted(c) for c in clusters if c] + lone
    graph = nx.Graph()
    graph.add_nodes_from(range(num_atoms))
    graph.add_edges_from(edge_index.t().tolist())
    graph.remove_edges_from(nx.selfloop_edges(graph))
    rings = [set(c) for c in nx.minimum_cycle_basis(graph)]
    merged = True
    while merged:  # bridged compounds: rings sharing more than two atoms
        merged = False
        for i in range(len(rings)):
            for j in range(i + 1, len(rings)):
                if len(rings[i] & rings[j]) > 2:
                    rings[i] |= rings.pop(j)
                    merged = True
                    break
            if merged:
                break
    in_ring = {frozenset(e) for r in rings for e in graph.subgraph(r).edges}
    bonds = [sorted(e) for e in graph.edges if frozenset(e) not in in_ring]
    lone = [[a] for a in range(num_atoms) if graph.degree(a) == 0]
    return [sorted(r) for r in rings] + sorted(bonds) + lone


@functional_transform('molecule_hierarchy')
class MoleculeHierarchy(HierarchyTransform):
    r"""Builds the hierarchy atoms -> clusters -> molecule of a molecular graph
    (functional name: :obj:`molecule_hierarchy`), e.g. one made by
    :func:`ogb.utils.smiles2graph`.

    Clusters are the junction-tree cliques (rings, bridged ring systems, bonds
    outside rings; see :func:`molecule_clusters`).  A hierarchy gives every
    node one parent, so an atom shared by several clusters joins the first of
    them (rings before bonds); clusters left without atoms are dropped, so a
    chain bond attached to a ring holds only its outer atom.

    Returns a :class:`~torch_geometric.data.HeteroData` with leaf type
    ``'atom'`` (every node attribute of the input kept; the bonds as
    ``('atom', 'bond', 'atom')`` with their ``edge_attr``; graph-level
    attributes such as ``y`` kept globally), ``'cluster'`` and ``'molecule'``
    node types, ``('atom', 'in', 'cluster')`` and ``('cluster', 'in',
    'molecule')`` edges, ``cluster.size`` and ``cluster.is_ring``, and position
    vectors ``hsa_pos`` of size :obj:`pos_dim`: for the atoms of a cluster,
    by :obj:`atom_pos`, a cluster's Laplacian eigenvectors in the
    cluster graph (clusters joined when a bond links them), zero-padded; zeros
    for the molecule.

    Args:
        pos_dim (int, optional): Size of the position vectors. (default: 16)
        use_smiles (bool, optional): Use rdkit's tree decomposition on
            ``data.smiles`` when both exist. (default: :obj:`True`)
        atom_pos (str, optional): Positions of the atoms inside their
            cluster: ``'grid'``, the atom's index in the cluster as 1D-grid
            features (an order the molecule does not have: atoms come in the
            input's order); ``'laplacian'``, the Laplacian eigenvectors of the
            bonds inside the cluster (graph positions, the paper's Appendix C
            for graph-structured members); ``'none'``, zeros (the cluster as an
            unordered set). (default: ``'grid'``)
    """
    def __init__(self, pos_dim: int = 16, use_smiles: bool = True, atom_pos: str = 'grid'):
        self.pos_dim = as_even_dim(pos_dim)
        self.use_smiles = as_bool(use_smiles, 'use_smiles')
        if atom_pos not in ATOM_POSITIONS:
            raise ValueError(f"'atom_pos' must be one of {ATOM_POSITIONS}, got {atom_pos!r}")
        self.atom_pos = atom_pos

    def config(self):
        out = dict(pos_dim=self.pos_dim, use_smiles=self.use_smiles)
        if self.atom_pos != 'grid':  # the default stays out of cache keys
            out['atom_pos'] = self.atom_pos
        return out

    def forward(self, data: Data) -> HeteroData:
        num_atoms = self.num_nodes_of(data, 'molecule', 'atoms')
        edge_index = edge_index_of(data, num_atoms)
        smiles = getattr(data, 'smiles', None) if self.use_smiles else None
        clusters = molecule_clusters(edge_index, num_atoms, smiles)
        owner = torch.full((num_atoms, ), -1, dtype=torch.long)
        for c, atoms in enumerate(clusters):
            free = [a for a in atoms if owner[a] < 0]
            owner[free] = c
        kept = sorted(set(owner.tolist()))
        remap = {c: i for i, c in enumerate(kept)}
        owner = torch.tensor([remap[int(c)] for c in owner])
        num_clusters = len(kept)

        out = HeteroData()
        copy_attributes(data, out, 'atom', 'bond')
        out['cluster'].num_nodes = num_clusters
        out['molecule'].num_nodes = 1
        out['atom', 'in', 'cluster'].edge_index = torch.stack([torch.arange(num_atoms), owner])
        out['cluster', 'in', 'molecule'].edge_index = torch.stack(
            [torch.arange(num_clusters), torch.zeros(num_clusters, dtype=torch.long)])
        out['cluster'].size = torch.bincount(owner, minlength=num_clusters)
        out['cluster'].is_ring = torch.tensor(
            [len(clusters[c]) > 2 for c in kept], dtype=torch.bool)

        # positions: atoms inside their cluster; cluster Laplacian eigenvectors
        if self.atom_pos == 'grid':
            index = torch.zeros(num_atoms, dtype=torch.long)
            seen = torch.zeros(num_clusters, dtype=torch.long)
            for atom in range(num_atoms):
                index[atom] = seen[owner[atom]]
                seen[owner[atom]] += 1
            out['atom'].hsa_pos = grid_positions(index, self.pos_dim)
        elif self.atom_pos == 'laplacian':
            # the Laplacian of each cluster's own bonds
            out['atom'].hsa_pos = family_laplacian_pe(edge_index, owner, self.pos_dim)
        else:
            out['atom'].hsa_pos = torch.zeros(num_atoms, self.pos_dim)
        # the clusters form one family: the Laplacian of the cluster graph
        out['cluster'].hsa_pos = family_laplacian_pe(
            owner[edge_index], torch.zeros(num_clusters, dtype=torch.long), self.pos_dim)
        out['molecule'].hsa_pos = torch.zeros(1, self.pos_dim)
        return out

