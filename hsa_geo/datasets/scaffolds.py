r"""Splits of molecular sets: the scaffold split as OGB made it (Bemis-Murcko
scaffolds with RDKit) and a published train/test split with a validation
part carved out."""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch

__all__ = ['scaffold_split', 'published_split', 'murcko_scaffold']


def scaffold_split(smiles: Sequence[str], frac_train: float = 0.8,
                   frac_valid: float = 0.1) -> Dict[str, List[int]]:
    r"""The deterministic scaffold split OGB used for its molecule datasets
    (Hu et al., "Strategies for Pre-training Graph Neural Networks", 2020):
    molecules are grouped by their Bemis-Murcko scaffold (rdkit, chirality
    included); groups are taken largest first (ties: the group whose first
    molecule comes later first), filling train up to :obj:`frac_train` of the
    molecules, then valid up to :obj:`frac_train` + :obj:`frac_valid`, the
    rest going to test.  No scaffold is shared between the parts.

    Returns:
        ``{'train': [...], 'valid': [...], 'test': [...]}`` indices.
    """
    if not 0 < frac_train < 1 or not 0 <= frac_valid < 1 - frac_train + 1e-12:
        raise ValueError(f"'frac_train' and 'frac_valid' must be fractions summing to "
                         f"at most 1, got {frac_train} and {frac_valid}")
    groups: Dict[str, List[int]] = {}
    for i, s in enumerate(smiles):
        groups.setdefault(murcko_scaffold(s), []).append(i)
    ordered = sorted(groups.values(), key=lambda g: (len(g), g[0]), reverse=True)
    train_cutoff = frac_train * len(smiles)
    valid_cutoff = (frac_train + frac_valid) * len(smiles)
    split = {'train': [], 'valid': [], 'test': []}
    for group in ordered:
        if len(split['train']) + len(group) > train_cutoff:
            if len(split['train']) + len(split['valid']) + len(group) > valid_cutoff:
                split['test'] += group
            else:
                split['valid'] += group
        else:
            split['train'] += group
    return split


def published_split(assigned: Sequence[str], valid_fraction: float = 0.1,
                    seed: int = 0) -> Dict[str, List[int]]:
    r"""The published train/test split of a dataset given per molecule as
    ``'train'``/``'test'``, with a fixed random :obj:`valid_fraction` of the
    training molecules (drawn with :obj:`seed`) held out as validation."""
    train = [i for i, a in enumerate(assigned) if a == 'train']
    test = [i for i, a in enumerate(assigned) if a == 'test']
    if len(train) + len(test) != len(assigned):
        raise ValueError("'assigned' must hold only 'train' and 'test'")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    num_valid = round(valid_fraction * len(train))
    valid = sorted(train[i] for i in order[:num_valid].tolist())
    train = sorted(train[i] for i in order[num_valid:].tolist())
    return {'train': train, 'valid': valid, 'test': test}


def murcko_scaffold(smiles: str) -> str:
    r"""The Bemis-Murcko scaffold of a molecule as SMILES (chirality kept);
    the empty string for molecules without rings."""
    from rdkit.Chem.Scaffolds import MurckoScaffold
    return MurckoScaffold.MurckoScaffoldSmiles(smiles=smiles, includeChirality=True)
