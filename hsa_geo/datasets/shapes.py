r"""Meshes and point clouds for the point-cloud and mesh hierarchies
(:class:`~hsa_geo.transforms.VoxelHierarchy`,
:class:`~hsa_geo.transforms.MeshHierarchy`).

==============================  ===========================================  ==============
function                        what                                         size
==============================  ===========================================  ==============
:func:`read_mesh`               real triangle meshes shipped in              airplane 2,452
                                ``data/`` (pyvista 0.49.1's examples)        faces, ant 912,
                                                                             nut 1,046
:func:`read_bunny`              the Stanford bunny as a point cloud          2,503 points
                                (pygsp 0.6.1's ``bunny.mat``)
:func:`digits_point_clouds`     scikit-learn's 8x8 handwritten digits as     1,797 clouds,
                                2D point clouds, 10 classes                  16-42 points
:func:`synthetic_shapes`        **synthetic** primitives (sphere, box, ...)  7 classes, any
                                as meshes and noisy surface samples          number
==============================  ===========================================  ==============

The shipped files are the packages' own, copied unchanged; ``hsa_geo/datasets/data/README.md``
gives their provenance and licences.  Nothing is downloaded.
"""
from __future__ import annotations

from functools import lru_cache
from typing import List, Tuple

import numpy as np
import torch
from torch_geometric.data import Data

from hsa_geo.datasets.files import data_path

__all__ = ['MESHES', 'read_mesh', 'read_bunny', 'digits_point_clouds', 'SYNTHETIC_SHAPES',
           'synthetic_shapes']

#: The meshes :func:`read_mesh` loads (``hsa_geo/datasets/data/{name}.ply``).
MESHES = ('airplane', 'ant', 'nut')

#: The primitive classes of :func:`synthetic_shapes`; ``y`` and ``face_part``
#: index this tuple.
SYNTHETIC_SHAPES = ('sphere', 'box', 'cylinder', 'capsule', 'cone', 'torus', 'annulus')


def read_mesh(name: str) -> Data:
    r"""Loads one of the real triangle meshes :data:`MESHES` shipped in
    ``hsa_geo/datasets/data/`` (pyvista 0.49.1's built-in examples, read with trimesh
    without any processing) as ``Data(pos=[V, 3], face=[3, F])``.

    =========  ========  =======  ==========================================
    name       vertices  faces    notes
    =========  ========  =======  ==========================================
    airplane   1,335     2,452    not watertight; coordinates span ~1,500
    ant        486       912      watertight
    nut        523       1,046    watertight
    =========  ========  =======  ==========================================

    Coordinates are the files' own (not centred or scaled; apply
    :class:`torch_geometric.transforms.NormalizeScale` for the unit ball).

    Args:
        name (str): ``'airplane'``, ``'ant'`` or ``'nut'``.
    """
    if name not in MESHES:
        raise ValueError(f"'name' must be one of {MESHES}, got {name!r}")
    import trimesh
    mesh = trimesh.load(data_path(f'{name}.ply'), process=False, force='mesh')
    return Data(pos=torch.as_tensor(mesh.vertices, dtype=torch.float),
                face=torch.as_tensor(mesh.faces, dtype=torch.long).t().contiguous())


def read_bunny() -> Data:
    r"""The Stanford bunny as a point cloud, ``Data(pos=[2503, 3])``: the
    variable ``bunny`` of pygsp 0.6.1's ``bunny.mat`` (float32, about 0.15
    units across), read with :func:`scipy.io.loadmat`.  It holds points only,
    no faces."""
    from scipy.io import loadmat
    points = loadmat(data_path('bunny.mat'))['bunny']
    return Data(pos=torch.as_tensor(points, dtype=torch.float))


def digits_point_clouds(threshold: float = 0.0) -> List[Data]:
    r"""scikit-learn's handwritten digits (:func:`sklearn.datasets.load_digits`:
    1,797 images of 8x8 pixels with intensities 0-16, classes 0-9, about 180
    per class; shipped inside scikit-learn) as 2D point clouds: one point per
    pixel brighter than :obj:`threshold`, with ``pos = (column, 7 - row)``
    (``[n, 2]``, so the digit stands upright), ``x = intensity / 16``
    (``[n, 1]``) and ``y`` the digit (``[1]``).

    With the default threshold (every pixel that is not black) a cloud has
    16 to 42 points, 32.7 on average; with ``threshold=4`` 16 to 34 (25.1).

    Args:
        threshold (float, optional): Pixels with intensity above it become
            points; must be below 16. (default: ``0.0``)
    """
    if not threshold < 16:
        raise ValueError(f"'threshold' must be below 16 (the maximum pixel intensity), "
                         f"got {threshold}")
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float)           # [1797, 8, 8]
    out = []
    for image, label in zip(images, digits.target.tolist()):
        row, col = (image > threshold).nonzero(as_tuple=True)
        if row.numel() == 0:
            raise ValueError(f"'threshold' {threshold} leaves a digit without points")
        out.append(Data(pos=torch.stack([col, 7 - row], -1).float(),
                        x=(image[row, col] / 16).unsqueeze(-1),
                        y=torch.tensor([label])))
    return out


@lru_cache(maxsize=None)
def _primitive(name: str) -> Tuple[np.ndarray, np.ndarray]:
    r"""The vertices and faces of one class of :data:`SYNTHETIC_SHAPES` in its
    own frame (at most 384 faces, all watertight)."""
    from trimesh import creation
    mesh = {
        'sphere': lambda: creation.icosphere(subdivisions=2),
        'box': lambda: creation.box(extents=(1.4, 1.4, 1.4)),
        'cylinder': lambda: creation.cylinder(radius=0.6, height=1.6, sections=24),
        'capsule': lambda: creation.capsule(height=1.0, radius=0.5, count=[12, 12]),
        'cone': lambda: creation.cone(radius=0.8, height=1.6, sections=24),
        'torus': lambda: creation.torus(major_radius=0.7, minor_radius=0.28,
                                        major_sections=24, minor_sections=8),
        'annulus': lambda: creation.annulus(r_min=0.4, r_max=0.8, height=0.5, sections=24),
    }[name]()
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def _transformed(name: str, rng: np.random.Generator):
    r"""A primitive under a random per-axis stretch in [0.6, 1.4] (in its own
    frame) and a uniformly random rotation, as a ``trimesh.Trimesh``."""
    import trimesh
    vertices, faces = _primitive(name)
    rotation = trimesh.transformations.random_rotation_matrix(rand=rng.random(3))[:3, :3]
    vertices = (vertices * rng.uniform(0.6, 1.4, size=3)) @ rotation.T
    return trimesh.Trimesh(vertices, faces, process=False)


def _bisect(vertices: np.ndarray, faces: np.ndarray, part: np.ndarray,
            num_faces: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Refines a triangle mesh by longest-edge bisection until it has at
    least :obj:`num_faces` faces (at most one more): each round splits, at
    its midpoint, every edge that is the longest edge of all its faces (the
    longest first, as many as needed), so the mesh stays conforming (no
    T-junctions, a watertight mesh stays watertight) and its shape does not
    change.  :obj:`part` (one value per face) is inherited by the halves."""
    while len(faces) < num_faces:
        num_vertices = len(vertices)
        ends = np.sort(np.stack([faces, np.roll(faces, -1, axis=1)], -1), -1)
        edges, edge_of = np.unique(ends[..., 0] * num_vertices + ends[..., 1],
                                   return_inverse=True)               # edge k of a face:
        edge_of = edge_of.reshape(-1, 3)                               # corners k, k + 1
        a, b = edges // num_vertices, edges % num_vertices
        length = np.linalg.norm(vertices[a] - vertices[b], axis=1)
        rank = np.empty(len(edges), dtype=np.int64)                    # 0 = longest
        rank[np.lexsort((np.arange(len(edges)), -length))] = np.arange(len(edges))
        local = rank[edge_of].argmin(1)                                # each face's longest
        longest = edge_of[np.arange(len(faces)), local]
        incident = np.bincount(edge_of.ravel(), minlength=len(edges))
        split = np.flatnonzero(np.bincount(longest, minlength=len(edges)) == incident)
        split = split[np.argsort(rank[split])]
        added = np.cumsum(incident[split])
        split = split[:np.searchsorted(added, num_faces - len(faces)) + 1]
        midpoint = np.full(len(edges), -1)
        midpoint[split] = num_vertices + np.arange(len(split))
        vertices = np.concatenate([vertices, (vertices[a[split]] + vertices[b[split]]) / 2])
        hit = np.flatnonzero(midpoint[longest] >= 0)
        k = local[hit]
        p, q = faces[hit, k], faces[hit, (k + 1) % 3]
        r, m = faces[hit, (k + 2) % 3], midpoint[longest[hit]]
        faces = faces.copy()
        faces[hit] = np.stack([p, m, r], -1)
        faces = np.concatenate([faces, np.stack([m, q, r], -1)])
        part = np.concatenate([part, part[hit]])
    return vertices, faces, part


def _union(main: int, rng: np.random.Generator):
    r"""2-3 transformed primitives, the first of class :obj:`main` at the
    origin with the largest area, the others smaller and placed around it."""
    import trimesh
    classes = [main] + rng.integers(len(SYNTHETIC_SHAPES), size=rng.integers(1, 3)).tolist()
    meshes = [_transformed(SYNTHETIC_SHAPES[c], rng) for c in classes]
    for mesh in meshes[1:]:
        scale = min(rng.uniform(0.4, 0.8), np.sqrt(0.7 * meshes[0].area / mesh.area))
        direction = rng.normal(size=3)
        offset = direction / np.linalg.norm(direction) * rng.uniform(0.6, 1.2)
        mesh.vertices = mesh.vertices * scale + offset
    part = np.repeat(classes, [len(mesh.faces) for mesh in meshes])
    return trimesh.util.concatenate(meshes), part


def synthetic_shapes(num_per_class: int, seed: int = 0, num_points: int = 1024,
                     union: bool = False, noise: float = 0.01,
                     num_faces: Tuple[int, int] = (400, 2000)) -> List[Data]:
    r"""A **synthetic** shape-classification set (not real data): random
    instances of the primitives :data:`SYNTHETIC_SHAPES` (trimesh's icosphere,
    box, cylinder, capsule, cone, torus and annulus), each as a triangle mesh
    and as noisy points sampled on its surface.

    Every instance is stretched by a random factor in [0.6, 1.4] along each of
    its own axes, rotated uniformly at random (SO(3)), centred (bounding box),
    scaled to the unit ball and then by a random factor in [0.7, 1].  The mesh
    is then refined by longest-edge bisection (conforming, it does not change
    the shape) to a face count drawn uniformly from :obj:`num_faces`,
    independently of the class, so that the number of faces does not reveal
    the class.  (The number of vertices still tells genus 1, torus and
    annulus, from genus 0: ``V = F / 2`` versus ``F / 2 + 2``.)
    :obj:`num_points` points are sampled uniformly on the surface
    (:func:`trimesh.sample.sample_surface`) and moved by Gaussian noise of
    standard deviation :obj:`noise`.

    Each sample is ``Data(pos=[V, 3], face=[3, F], points=[num_points, 3],
    y=[1])``: ``pos``/``face`` feed :class:`~hsa_geo.transforms.MeshHierarchy`,
    ``Data(pos=data.points)`` feeds :class:`~hsa_geo.transforms.VoxelHierarchy`.
    Sample ``i`` has class ``i % 7``: the list is balanced and interleaved.

    With :obj:`union` every sample is a *surface soup* of 2-3 primitives
    (:func:`trimesh.util.concatenate`, **not** a boolean union: the surfaces
    may pass through each other and hidden parts are kept).  The first
    primitive, of class ``i % 7``, sits at the origin; 1-2 primitives of
    random classes, scaled by [0.4, 0.8] and shrunk further so that each has
    at most 0.7 times its area, sit at a random distance of 0.6-1.2 from it;
    then the whole is normalised as above.  ``y`` is the class of that
    first, largest-area primitive, ``face_part`` (``[F]``) the class of the
    primitive each face belongs to and ``point_part`` (``[num_points]``) the
    class of each point's face.  A union has at least as many faces as its
    primitives' base meshes together (at most 3 x 384 = 1,152).

    A sample depends only on :obj:`seed`, :obj:`union` and its index (the
    first ``7 * n`` samples are the same for every ``num_per_class >= n``).

    Args:
        num_per_class (int): Samples per class (``7 * num_per_class`` in all).
        seed (int, optional): Random seed. (default: ``0``)
        num_points (int, optional): Surface samples per shape.
            (default: ``1024``)
        union (bool, optional): Surface soups of 2-3 primitives with
            per-face and per-point part labels. (default: :obj:`False`)
        noise (float, optional): Standard deviation of the Gaussian noise
            on the sampled points. (default: ``0.01``)
        num_faces (Tuple[int, int], optional): Range ``[low, high)`` of the
            face counts; ``low`` must be at least 384 (the largest base
            mesh). (default: ``(400, 2000)``)
    """
    import trimesh
    low, high = num_faces
    if not 384 <= low < high:
        raise ValueError(f"'num_faces' must be a range (low, high) with 384 <= low < high, "
                         f"got {num_faces}")
    if num_per_class < 0 or num_points < 1 or noise < 0:
        raise ValueError(f"'num_per_class' must be >= 0, 'num_points' >= 1 and 'noise' >= 0, "
                         f"got {num_per_class}, {num_points} and {noise}")
    out = []
    for i in range(len(SYNTHETIC_SHAPES) * num_per_class):
        label = i % len(SYNTHETIC_SHAPES)
        rng = np.random.default_rng([seed, int(union), i])
        if union:
            mesh, part = _union(label, rng)
        else:
            mesh = _transformed(SYNTHETIC_SHAPES[label], rng)
            part = np.full(len(mesh.faces), label)
        vertices = mesh.vertices - mesh.bounds.mean(0)
        vertices *= rng.uniform(0.7, 1.0) / np.linalg.norm(vertices, axis=1).max()
        vertices, faces, part = _bisect(vertices, mesh.faces, part,
                                        int(rng.integers(low, high)))
        points, index = trimesh.sample.sample_surface(
            trimesh.Trimesh(vertices, faces, process=False), num_points, seed=rng)
        points = points + rng.normal(scale=noise, size=points.shape)
        data = Data(pos=torch.as_tensor(vertices, dtype=torch.float),
                    face=torch.as_tensor(faces, dtype=torch.long).t().contiguous(),
                    points=torch.as_tensor(points, dtype=torch.float),
                    y=torch.tensor([label]))
        if union:
            data.face_part = torch.as_tensor(part, dtype=torch.long)
            data.point_part = torch.as_tensor(part[index], dtype=torch.long)
        out.append(data)
    return out
