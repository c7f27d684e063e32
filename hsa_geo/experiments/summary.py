r"""Mean and spread of a metric over seeds, and runs grouped into summary
rows."""
from __future__ import annotations

import math
import statistics
from typing import Dict, List, Sequence, Tuple

__all__ = ['mean_std', 'mean_ci95', 'SPREADS', 'summarise']


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    r"""Mean and sample standard deviation of :obj:`values`.

    Args:
        values (Sequence[float]): The values, e.g. one test score per seed.

    Returns:
        ``(mean, std)``; the standard deviation of a single value is 0.
    """
    values = [float(v) for v in values]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_ci95(values: Sequence[float]) -> Tuple[float, float]:
    r"""Mean and half-width of its 95% confidence interval: Student's t over
    the values, ``t(0.975, n - 1) * std / sqrt(n)``, the quantile from
    :obj:`scipy.stats.t` (scipy comes with scikit-learn, which OGB
    requires).

    Args:
        values (Sequence[float]): The values, e.g. one test score per seed.

    Returns:
        ``(mean, half_width)``; the half-width of a single value is 0.

    Raises:
        ValueError: If :obj:`values` is empty.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("'values' is empty")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return mean, 0.0
    from scipy.stats import t
    quantile = float(t.ppf(0.975, len(values) - 1))
    return mean, quantile * statistics.stdev(values) / math.sqrt(len(values))


#: The spreads :func:`summarise` can give, ``name -> (function, the note a
#: table prints under it)``.
SPREADS = {'ci95': (mean_ci95, '± = 95% interval over seeds (Student t)'),
           'std': (mean_std, '± = standard deviation over seeds')}


def summarise(results: List[dict], keys: List[str], metrics: List[str],
              extra: Sequence[str] = (), spread: str = 'ci95') -> List[dict]:
    r"""Groups runs by :obj:`keys` and summarises every group over its
    seeds.

    Every run is a dictionary with the group keys, ``'test_<metric>'`` for
    each metric, ``'params'``, ``'seconds_per_epoch'`` and ``'peak_mib'``.

    Args:
        results (List[dict]): The runs, one per model and seed.
        keys (List[str]): The keys that name a group (e.g. dataset, model).
        metrics (List[str]): The metrics summarised (``'accuracy'`` reads
            ``'test_accuracy'``).
        extra (Sequence[str], optional): Keys copied from a group's first run,
            the same for every seed (e.g. leaves per sample). (default: ``()``)
        spread (str, optional): ``'ci95'`` or ``'std'`` (:data:`SPREADS`).
            (default: ``'ci95'``)

    Returns:
        One row per group, in the order groups first appear: the group keys,
        ``'seeds'``, ``(mean, spread)`` per metric, the first run's
        ``'params'``, the median ``'seconds_per_epoch'``, the largest
        ``'peak_mib'`` and the :obj:`extra` keys.
    """
    if spread not in SPREADS:
        raise ValueError(f"'spread' must be one of {tuple(SPREADS)}, got {spread!r}")
    groups: Dict[tuple, List[dict]] = {}
    for r in results:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    rows = []
    for group_key, runs in groups.items():
        row = dict(zip(keys, group_key, strict=True))
        row['seeds'] = len(runs)
        for m in metrics:
            row[m] = SPREADS[spread][0]([r[f'test_{m}'] for r in runs])
        row['params'] = runs[0]['params']
        row['seconds_per_epoch'] = statistics.median(r['seconds_per_epoch'] for r in runs)
        row['peak_mib'] = max(r['peak_mib'] for r in runs)
        for key in extra:  # the same for every seed, e.g. leaves per sample
            row[key] = runs[0][key]
        rows.append(row)
    return rows
