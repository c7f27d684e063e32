r"""Point-cloud and mesh transformers built on Hierarchical Self-Attention."""
from __future__ import annotations

import copy
from typing import Dict, Optional, Union

import torch
from torch import Tensor
from torch.nn import Dropout, LayerNorm, ModuleList, Sequential
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import reset

from hsa_geo.hierarchy import Hierarchy
from hsa_geo.nn.encoder import HSAEncoderLayer
from hsa_geo.nn.models.default import DEFAULT
from hsa_geo.nn.point_block import mlp
from hsa_geo.nn.pool import root_pool

__all__ = ['HSAPointTransformer', 'HSAMeshTransformer']

TASKS = ('classification', 'segmentation')
POOLS = ('mean', 'max', 'sum')


class _FeedForward(torch.nn.Module):
    r"""The pre-norm feed-forward half of a transformer block,
    :math:`\mathbf{x} + \mathrm{FFN}(\mathrm{LN}(\mathbf{x}))`: what is left of
    a block when attention is switched off (a PointNet layer)."""
    def __init__(self, channels: int, act: str, dropout: float):
        super().__init__()
        self.norm = LayerNorm(channels)
        self.ffn = Sequential(mlp(channels, 2 * channels, channels, act, dropout),
                              Dropout(dropout))

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        return x + self.ffn(self.norm(x))


def _copies(block: torch.nn.Module, count: int) -> ModuleList:
    r""":obj:`count` copies of :obj:`block`, one per layer; the model's
    :meth:`reset_parameters` then gives each its own fresh parameters."""
    return ModuleList([copy.deepcopy(block) for _ in range(count)])


class HSAPointTransformer(torch.nn.Module):
    r"""A point-cloud transformer whose global attention is Hierarchical
    Self-Attention (`"Hierarchical Self-Attention: Generalizing Neural
    Attention Mechanics to Multi-Scale Problems"
    <https://arxiv.org/abs/2509.15448>`_, Amizadeh et al., NeurIPS 2025) over
    an octree (3D) or quadtree (2D) of the points, as built by
    :class:`~hsa_geo.transforms.VoxelHierarchy`.

    Each point :math:`i` is embedded from its features and coordinates,
    :math:`\mathbf{h}_i = W [\mathbf{x}_i \Vert \mathbf{c}_i]`, and passes
    :obj:`num_layers` pre-norm blocks

    .. math::
        \mathbf{h} \leftarrow \mathrm{Local}(\mathbf{h}, \mathbf{c}, E)
        \;\text{(optional)}, \qquad
        \mathbf{h} \leftarrow \mathbf{h} + \mathrm{HSA}(\mathrm{LN}(\mathbf{h})),
        \qquad
        \mathbf{h} \leftarrow \mathbf{h} + \mathrm{FFN}(\mathrm{LN}(\mathbf{h})),

    where HSA (by default a pre-norm :class:`HSAEncoderLayer`) lets every
    point attend to every other point of its cloud in time linear in the
    number of points: sibling voxels compare the means of their points'
    queries and keys plus the dot product of their projected relative-centroid
    offsets (the hierarchy's position vectors ``pos``), and the dynamic program
    spreads the attention over the octree.  A local block (e.g.
    :class:`PointTransformerBlock` over a :math:`k`-nearest-neighbour graph)
    refines the points before each attention block.

    The blocks are modules, as :class:`~torch_geometric.nn.conv.GPSConv` takes
    its ``conv``: each is copied once per layer, with fresh parameters.  The
    usual baselines differ in them alone: ``attention=None`` drops the global
    attention (leaving the feed-forward half: with ``local=None`` a PointNet,
    with ``local=PointTransformerBlock(...)`` a Point Transformer network);
    the leaves under one flat root per cloud (see
    :class:`~hsa_geo.transforms.FlatHierarchy`, without ``pos``) give dense
    softmax attention over all points.

    The heads: ``'classification'`` pools the points of each cloud
    (:obj:`pool`) and applies an MLP, ``[num_clouds, out_channels]``;
    ``'segmentation'`` applies an MLP to every point, ``[num_points,
    out_channels]``.

    Args:
        in_channels (int): Point feature size (:obj:`0` when the points have
            no features besides their coordinates).
        channels (int): Hidden size, a multiple of :obj:`heads`.
        out_channels (int): Classes (or targets) per cloud or per point.
        num_layers (int, optional): Blocks. (default: :obj:`4`)
        heads (int, optional): Attention heads of the default attention
            block. (default: :obj:`4`)
        dim (int, optional): Spatial dimension of the points, 2 or 3; also
            the size of the position vectors ``pos`` the default attention
            block projects. (default: :obj:`3`)
        task (str, optional): ``'classification'`` or ``'segmentation'``.
            (default: ``'classification'``)
        attention (torch.nn.Module, optional): The attention block, called as
            ``block(h, hierarchy, pos=pos)``; :obj:`None` switches attention
            off. (default: :obj:`DEFAULT`, ``HSAEncoderLayer(channels,
            channels, heads, style='prenorm', pos_channels=dim, dropout=dropout,
            act=act)``)
        local (torch.nn.Module, optional): The local block before each
            attention block, called as ``block(h, coords, edge_index)``, e.g.
            :class:`PointTransformerBlock`. (default: :obj:`None`)
        pool (str, optional): Per-cloud pooling for classification,
            ``'mean'``, ``'max'`` or ``'sum'``. (default: ``'mean'``)
        dropout (float, optional): Dropout in the blocks and the head.
            (default: :obj:`0.0`)
        act (str, optional): Activation. (default: ``'gelu'``)
    """
    def __init__(self, in_channels: int, channels: int, out_channels: int,
                 num_layers: int = 4, heads: int = 4, dim: int = 3,
                 task: str = 'classification',
                 attention: Optional[torch.nn.Module] = DEFAULT,
                 local: Optional[torch.nn.Module] = None, pool: str = 'mean',
                 dropout: float = 0.0, act: str = 'gelu'):
        super().__init__()
        for name, value, allowed in (('task', task, TASKS), ('pool', pool, POOLS)):
            if value not in allowed:
                raise ValueError(f"'{name}' must be one of {allowed}, got {value!r}")
        for name, value in (('attention', attention), ('local', local)):
            if value is not None and value is not DEFAULT and \
                    not isinstance(value, torch.nn.Module):
                raise TypeError(f"'{name}' must be a torch.nn.Module or None (no "
                                f"{name} block), got {value!r}")
        if local is DEFAULT:
            raise TypeError("'local' has no default block: pass a module (e.g. "
                            "PointTransformerBlock(channels, dim)) or None")
        if dim not in (2, 3):
            raise ValueError(f"'dim' must be 2 or 3, got {dim}")
        if in_channels < 0:
            raise ValueError(f"'in_channels' must be >= 0, got {in_channels}")
        if num_layers < 1:
            raise ValueError(f"'num_layers' must be at least 1, got {num_layers}")
        if channels % heads != 0:
            raise ValueError(f"'channels' ({channels}) must be divisible by 'heads' "
                             f"({heads})")
        self.in_channels, self.channels, self.out_channels = in_channels, channels, out_channels
        self.num_layers, self.heads, self.dim = num_layers, heads, dim
        self.task, self.pool = task, pool

        self.embed = Linear(in_channels + dim, channels)
        self.local_blocks = _copies(local, num_layers) if local is not None else ModuleList()
        if attention is DEFAULT:
            attention = HSAEncoderLayer(channels, channels, heads, style='prenorm',
                                        pos_channels=dim, dropout=dropout, act=act)
        if attention is None:  # the feed-forward half of each block alone
            attention = _FeedForward(channels, act, dropout)
        self.attends = not isinstance(attention, _FeedForward)
        self.blocks = _copies(attention, num_layers)
        self.norm = LayerNorm(channels)
        self.head = mlp(channels, channels, out_channels, act, dropout)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for child in self.children():
            reset(child)

    def encode(self, x: Optional[Tensor], coords: Tensor, hierarchy: Hierarchy,
               pos: Optional[Union[Tensor, Dict[str, Tensor]]] = None,
               edge_index: Optional[Tensor] = None) -> Tensor:
        r"""The per-point features after the blocks (and the final LayerNorm),
        ``[num_points, channels]``.

        Args:
            x (Tensor, optional): Point features ``[num_points, in_channels]``
                (:obj:`None` when :obj:`in_channels` is 0).
            coords (Tensor): Point coordinates ``[num_points, dim]`` (normalise
                them per cloud, e.g. with
                :class:`~torch_geometric.transforms.NormalizeScale`); a
                builder's input ``pos``.
            hierarchy (Hierarchy): The (batched) compiled hierarchy whose
                leaves are the points, in the same order (``batch.hierarchy``
                of a :class:`~hsa_geo.loader.HierarchyLoader`).
            pos (Tensor or Dict[str, Tensor], optional): Position vectors of
                the hierarchy's nodes, as everywhere in the library
                (``batch.hsa_pos_dict`` of a
                :class:`~hsa_geo.transforms.VoxelHierarchy` output); without
                them every family is an unordered set (zero positions).
            edge_index (LongTensor, optional): The neighbourhood graph of the
                points, needed by a local block (see
                :func:`~hsa_geo.utils.knn_graph`).
        """
        if not isinstance(hierarchy, Hierarchy):
            raise TypeError(f"'hierarchy' must be a compiled Hierarchy, got "
                            f"{type(hierarchy).__name__}; batch the samples with "
                            f"hsa_geo.loader.HierarchyLoader and pass batch.hierarchy")
        if coords.dim() != 2 or coords.size(1) != self.dim:
            raise ValueError(f"'coords' must have shape [num_points, {self.dim}], got "
                             f"{list(coords.shape)}")
        if not torch.compiler.is_compiling() and coords.size(0) != hierarchy.num_leaves:
            raise ValueError(f"'coords' has {coords.size(0)} rows but the hierarchy has "
                             f"{hierarchy.num_leaves} leaves")
        if self.in_channels == 0:
            if x is not None and x.numel() > 0:
                raise ValueError("'x' was given but this model has in_channels=0")
            h = coords
        else:
            if x is None or x.dim() != 2 or x.size(1) != self.in_channels:
                found = None if x is None else list(x.shape)
                raise ValueError(f"'x' must have shape [num_points, {self.in_channels}], "
                                 f"got {found}")
            h = torch.cat([x, coords.to(x.dtype)], dim=-1)
        if len(self.local_blocks) and edge_index is None:
            raise ValueError("a local block needs 'edge_index' (a neighbourhood graph "
                             "of the points, e.g. hsa_geo.utils.knn_graph)")
        h = self.embed(h)
        if pos is None and len(self.blocks):
            # no positions: every family an unordered set, eps = 0 (the
            # attention blocks are built with a position projection)
            pos = coords.new_zeros(hierarchy.num_nodes, self.dim)
        for i, block in enumerate(self.blocks):
            if len(self.local_blocks):
                h = self.local_blocks[i](h, coords, edge_index)
            h = block(h, hierarchy, pos=pos)
        return self.norm(h)

    def forward(self, x: Optional[Tensor], coords: Tensor, hierarchy: Hierarchy,
                pos: Optional[Union[Tensor, Dict[str, Tensor]]] = None,
                edge_index: Optional[Tensor] = None) -> Tensor:
        r"""Returns ``[num_clouds, out_channels]`` (classification, clouds in
        the order of the hierarchy's roots: a batch's samples in order) or
        ``[num_points, out_channels]`` (segmentation); arguments as in
        :meth:`encode`."""
        h = self.encode(x, coords, hierarchy, pos, edge_index)
        if self.task == 'classification':
            h = root_pool(h, hierarchy, reduce=self.pool)
        return self.head(h)

    def __repr__(self) -> str:
        attention = self.blocks[0] if self.attends else None
        local = self.local_blocks[0] if len(self.local_blocks) else None
        return (f'{self.__class__.__name__}({self.in_channels}, {self.channels}, '
                f'{self.out_channels}, num_layers={self.num_layers}, task={self.task!r}, '
                f'attention={attention}, local={local})')


class HSAMeshTransformer(HSAPointTransformer):
    r"""A mesh transformer whose tokens are the triangles of the mesh:
    :class:`HSAPointTransformer` over the faces of
    :class:`~hsa_geo.transforms.MeshHierarchy` (faces grouped by an octree over
    their centroids, or by spectral windows of the face-adjacency graph), with
    each face's features ``[centroid, unit normal, area]`` (7 values, the
    ``x`` that :class:`~hsa_geo.transforms.MeshHierarchy` writes) and its
    centroid as position.

    Meshes are not sampled uniformly by their faces (a flat region may be two
    triangles, a curved one hundreds), so the classification head pools the
    faces of each mesh weighted by their area (``pool='area'``, the default):
    the surface mean :math:`\sum_f a_f \mathbf{h}_f / \sum_f a_f`, which does
    not change when a face is subdivided.  ``'segmentation'`` labels every
    face (part segmentation).  With a local block (e.g.
    :class:`~hsa_geo.nn.PointTransformerBlock`), pass the face-adjacency graph
    (``MeshHierarchy(method='faces')`` stores it as
    ``('face', 'to', 'face')`` edges, :func:`~hsa_geo.transforms.face_adjacency`
    computes it) or a :math:`k`-NN graph of the centroids as :obj:`edge_index`.

    Args:
        out_channels (int): Classes (or targets) per mesh or per face.
        channels (int, optional): Hidden size. (default: :obj:`64`)
        in_channels (int, optional): Face feature size. (default: :obj:`7`)
        pool (str, optional): ``'area'``, ``'mean'``, ``'max'`` or ``'sum'``.
            (default: ``'area'``)
        **kwargs: Further arguments of :class:`HSAPointTransformer`
            (``num_layers``, ``heads``, ``task``, ``attention``, ``local``,
            ``dropout``, ``act``).
    """
    def __init__(self, out_channels: int, channels: int = 64, in_channels: int = 7,
                 pool: str = 'area', **kwargs):
        if kwargs.pop('dim', 3) != 3:
            raise ValueError("meshes are 3D: 'dim' must be 3")
        if pool not in ('area', ) + POOLS:
            raise ValueError(f"'pool' must be one of {('area', ) + POOLS}, got {pool!r}")
        super().__init__(in_channels, channels, out_channels, dim=3,
                         pool='sum' if pool == 'area' else pool, **kwargs)
        self.pool = pool

    def forward(self, x: Tensor, coords: Tensor, hierarchy: Hierarchy,
                pos: Optional[Union[Tensor, Dict[str, Tensor]]] = None,
                edge_index: Optional[Tensor] = None,
                area: Optional[Tensor] = None) -> Tensor:
        r"""As :meth:`HSAPointTransformer.forward` with faces for points
        (:obj:`coords` their centroids); :obj:`area` (``[num_faces]``) is
        needed for ``pool='area'``."""
        if self.pool != 'area' or self.task == 'segmentation':
            return super().forward(x, coords, hierarchy, pos, edge_index)
        if area is None or area.dim() != 1 or area.numel() != coords.size(0):
            found = None if area is None else list(area.shape)
            raise ValueError(f"pool='area' needs 'area' of shape [{coords.size(0)}], got "
                             f"{found}")
        h = self.encode(x, coords, hierarchy, pos, edge_index)
        weight = area.to(h.dtype).unsqueeze(-1)
        total = root_pool(weight, hierarchy, reduce='sum').clamp(min=1e-12)
        return self.head(root_pool(h * weight, hierarchy, reduce='sum') / total)
