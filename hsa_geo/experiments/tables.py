r"""Summary rows as markdown tables, and what their columns mean."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from hsa_geo.experiments.results import device_name
from hsa_geo.experiments.summary import mean_std

__all__ = ['mean_std_text', 'markdown_table', 'measurement_note']


def mean_std_text(values: Sequence[float]) -> str:
    r"""The mean and standard deviation of :obj:`values` as text.

    Args:
        values (Sequence[float]): The values, e.g. one test score per seed.

    Returns:
        ``'mean ± std'`` with three decimals.
    """
    mean, std = mean_std(values)
    return f'{mean:.3f} ± {std:.3f}'


def markdown_table(rows: List[dict], keys: List[str], metrics: List[str],
                   extra: Optional[Dict[str, str]] = None) -> str:
    r"""A markdown table of the rows of
    :func:`~hsa_geo.experiments.summarise`.

    Args:
        rows (List[dict]): The summary rows.
        keys (List[str]): The group keys, one column each.
        metrics (List[str]): The metrics, one column each (``mean ± spread``;
            a row of one seed says ``(one seed)`` rather than ``± 0.000``).
        extra (Dict[str, str], optional): More columns, ``row key -> heading``,
            printed as integers. (default: :obj:`None`)

    Returns:
        The table: the group keys, ``test <metric>`` per metric, seeds,
        parameters, the :obj:`extra` columns, s/epoch and peak MiB.
    """
    extra = extra or {}
    head = keys + [f'test {m}' for m in metrics] + ['seeds', 'params'] + \
        list(extra.values()) + ['s/epoch', 'peak MiB']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        cells = [str(r[k]) for k in keys]
        for m in metrics:
            mean, half = r[m]
            # one seed has no interval: say so rather than print '± 0.000'
            cells.append(f'{mean:.3f} ± {half:.3f}' if r['seeds'] > 1 else f'{mean:.3f} (one seed)')
        cells += [str(r['seeds']), f"{r['params']:,}"]
        cells += [f'{r[key]:.0f}' for key in extra]
        cells += [f"{r['seconds_per_epoch']:.2f}", f"{r['peak_mib']:.0f}"]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def measurement_note(device) -> str:
    r"""What the s/epoch and peak MiB columns of :func:`markdown_table` mean
    for runs on :obj:`device` (measured by
    :class:`~hsa_geo.testing.PeakMemory`).

    Args:
        device (torch.device or str): The device the runs trained on.

    Returns:
        One sentence for the note under a table.
    """
    device = torch.device(device)
    if device.type == 'cuda':
        return (f's/epoch = median training epoch on {device_name(device)}; '
                f'peak MiB = peak CUDA memory allocated during training')
    return (f's/epoch = median training epoch on the {device_name(device)}; peak MiB = '
            f'largest activation memory (tensors saved for backward) of one training step')
