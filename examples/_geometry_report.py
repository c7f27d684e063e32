r"""The result file of the point-cloud and mesh examples and their tables as
the docs show them (``docs/experiments/points_meshes.md``), computed from the
runs of the file, one per model and seed.

A table gives per group (dataset or task) and model the test scores as mean
± standard deviation over the seeds (the best mean of a column in bold within
its group), and the runs' parameters, median seconds per epoch and peak
memory (:func:`hsa_geo.experiments.summarise`)."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from hsa_geo.experiments import provenance, provenance_note, save_json, summarise

#: the resource columns a table can show: heading -> the summary row's cell
RESOURCES = {'params': lambda r: f"{r['params']:,}",
             's/epoch': lambda r: f"{r['seconds_per_epoch']:.2f}",
             'peak MiB': lambda r: f"{r['peak_mib']:.0f}"}


def save_result(args, runs: List[dict], path: str, **extra) -> dict:
    r"""Writes the finished run's result file: the arguments, the runs (per
    seed scores, times, memory and learning curves), the :obj:`extra` facts
    and the provenance, taken now; returns what it wrote."""
    result = {'args': vars(args), **extra, 'runs': runs,
              'provenance': provenance(args.device)}
    save_json(result, path)
    return result


def _score(mean: float, spread: float, seeds: int) -> str:
    # one seed has no spread: say so rather than print '± 0.000'
    return f'{mean:.3f} ± {spread:.3f}' if seeds > 1 else f'{mean:.3f} (one seed)'


def _bold_best(cells: List[str], means: List[float]) -> List[str]:
    r"""The cells whose mean is the best shown (highest at three decimals) in
    bold; none where under two are compared or all tie."""
    shown = [round(m, 3) for m in means]
    if len(shown) < 2 or min(shown) == max(shown):
        return cells
    return [f'**{c}**' if s == max(shown) else c for c, s in zip(cells, shown)]


def geometry_table(runs: List[dict], key: str, scores: Dict[str, Optional[str]],
                   resources: Sequence[str], label=str) -> str:
    r"""The markdown table of :obj:`runs`.

    Args:
        runs (List[dict]): One run per model and seed, with :obj:`key`,
            ``'model'`` and ``'test_<metric>'``.
        key (str): The group of a run, the first column (``'dataset'``,
            ``'task'``).
        scores (Dict[str, str or None]): Heading -> metric of each score
            column (higher is better); :obj:`None`: not measured (``-``).
        resources (Sequence[str]): Columns of :data:`RESOURCES` after them.
        label (callable, optional): The group's name in the first column.
    """
    metrics = [m for m in scores.values() if m]
    rows = summarise(runs, [key, 'model'], metrics, spread='std')
    head = [key, 'model', *scores, *resources]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    groups: Dict[object, List[dict]] = {}
    for r in rows:
        groups.setdefault(r[key], []).append(r)
    for group, members in groups.items():
        columns = []
        for metric in scores.values():
            if metric is None:
                columns.append(['-'] * len(members))
                continue
            columns.append(_bold_best([_score(*r[metric], r['seeds']) for r in members],
                                      [r[metric][0] for r in members]))
        for i, r in enumerate(members):
            cells = [label(group), r['model'], *(c[i] for c in columns),
                     *(RESOURCES[name](r) for name in resources)]
            lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def with_note(table: str, result: dict, path: str) -> str:
    r"""The table, a blank line and the line saying where it comes from."""
    return table + '\n\n' + provenance_note(result, path)
