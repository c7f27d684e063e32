r"""Learning curves of runs, mean over seeds."""
from __future__ import annotations

import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import torch

__all__ = ['plot_curves']


def plot_curves(results: List[dict], panel_keys: List[str], line_key: str, metric: str,
                path: str, title: str, series: Optional[Sequence[str]] = None
                ) -> Optional[str]:
    r"""Draws per-epoch curves, the mean over seeds with a band of one
    standard deviation when there are several, to a PNG file.

    Every run is a dictionary with the keys named below and a ``'history'``:
    one dictionary per epoch holding the :obj:`series` keys.

    Args:
        results (List[dict]): The runs.
        panel_keys (List[str]): One panel (per series) for every value of
            these keys (``[]``: one for all runs).
        line_key (str): One line per value of this key (e.g. ``'model'``).
        metric (str): The metric of the default series.
        path (str): The PNG file (folders are created).
        title (str): The figure's title.
        series (Sequence[str], optional): The history keys drawn, one panel
            each (a ``'loss'`` panel on a log scale). (default:
            ``('valid_<metric>', )``)

    Returns:
        :obj:`path`, or :obj:`None` when matplotlib is not installed.
    """
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series = tuple(series or (f'valid_{metric}', ))
    panels: Dict[tuple, Dict[str, List[dict]]] = {}
    for r in results:
        panels.setdefault(tuple(r[k] for k in panel_keys), {}).setdefault(
            r[line_key], []).append(r['history'])
    columns = [(panel, key) for panel in panels for key in series]
    fig, axes = plt.subplots(1, len(columns), figsize=(4.6 * len(columns), 3.6), squeeze=False)
    for ax, (panel, key) in zip(axes[0], columns, strict=True):
        for name, histories in panels[panel].items():
            length = min(len(h) for h in histories)
            curves = torch.tensor([[row[key] for row in h[:length]] for h in histories])
            mean = curves.mean(0)
            epochs = range(1, length + 1)
            line, = ax.plot(epochs, mean.tolist(), label=name)
            if len(histories) > 1:
                std = curves.std(0)
                ax.fill_between(epochs, (mean - std).tolist(), (mean + std).tolist(),
                                color=line.get_color(), alpha=0.2)
        if key == 'loss':
            ax.set_yscale('log')
        ax.set_title(' / '.join(str(p) for p in panel + (key.replace('_', ' '), )),
                     fontsize=9)
        ax.set_xlabel('epoch')
        ax.set_ylabel(key.replace('_', ' '))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
