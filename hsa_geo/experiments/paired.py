r"""Paired comparisons of two models over the same seeds: the per-seed
difference of a test score, its mean with a 95% interval, and the tests that
say whether the difference is told apart from zero.

The pairing is by seed: two runs with the same seed are compared with each
other.  What the runs of one seed share is up to the script that made them
(in ``examples/hierarchical_text.py`` every seed uses the same fixed split,
and the seed sets each model's own initialisation and batch order), so the
pairing removes only what the seed's runs have in common; with models that
share nothing but the test set the paired tests are still valid, with no
more power than comparing two independent samples.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

from hsa_geo.experiments.summary import mean_ci95

__all__ = ['paired_comparison', 'paired_table']


def paired_comparison(results: List[dict], a: str, b: str, metric: str,
                      key: str = 'model', where: Dict[str, object] = None) -> dict:
    r"""Compares model :obj:`a` with model :obj:`b` seed by seed on the test
    score ``'test_<metric>'``: ``d_s = score_a(s) - score_b(s)`` over the
    seeds both have.

    Args:
        results (List[dict]): The runs, each with :obj:`key`, ``'seed'`` and
            ``'test_<metric>'``.
        a (str): The model whose lead is measured (e.g. ``'hsa'``).
        b (str): The model it is compared with.
        metric (str): The metric (``'accuracy'`` reads ``'test_accuracy'``).
        key (str, optional): The run field naming the model.
            (default: ``'model'``)
        where (Dict[str, object], optional): Only runs with these field
            values (e.g. ``{'corpus': 'news_fields'}``). (default: all)

    Returns:
        A dictionary: ``'a'``, ``'b'``, ``'metric'``, ``'seeds'`` (the paired
        seeds), ``'differences'`` (one per seed), ``'mean'`` and ``'ci95'``
        (Student t half-width), ``'wins'`` / ``'losses'`` / ``'ties'`` of
        :obj:`a`, ``'t_p'`` (two-sided paired t-test; :obj:`None` when the
        differences do not vary) and ``'wilcoxon_p'``
        (two-sided Wilcoxon signed-rank test of the nonzero differences,
        scipy's ``method='auto'``: exact for few differences without ties;
        :obj:`None` when every difference is zero).

    Differences are rounded to 6 decimals, so scores stored in single
    precision tie where they are equal (the rank test needs the ties).

    Raises:
        ValueError: If fewer than two seeds have both models, or if a model
            has two runs with the same seed among the selected runs (narrow
            them with :obj:`where`).
    """
    where = where or {}
    scores: Dict[str, Dict[int, float]] = {a: {}, b: {}}
    for run in results:
        if run.get(key) in scores and all(run.get(k) == v for k, v in where.items()):
            if run['seed'] in scores[run[key]]:
                raise ValueError(f"'results' holds two runs of {run[key]!r} with seed "
                                 f"{run['seed']}{' for ' + str(where) if where else ''}: "
                                 f"select one group with 'where'")
            scores[run[key]][run['seed']] = float(run[f'test_{metric}'])
    seeds = sorted(set(scores[a]) & set(scores[b]))
    if len(seeds) < 2:
        raise ValueError(f"'results' must hold at least two seeds of both {a!r} and {b!r}"
                         f"{' with ' + str(where) if where else ''}, found {len(seeds)}")
    diffs = [round(scores[a][s] - scores[b][s], 6) for s in seeds]
    mean, half = mean_ci95(diffs)
    from scipy.stats import ttest_1samp, wilcoxon
    # the paired t-test is the one-sample test of the differences; undefined
    # when they do not vary
    varies = max(diffs) - min(diffs) > 1e-9
    t_p = float(ttest_1samp(diffs, 0.0).pvalue) if varies else None
    nonzero = [d for d in diffs if d != 0]
    # exact for small samples without ties, the normal approximation with them
    wilcoxon_p = float(wilcoxon(nonzero, method='auto').pvalue) if nonzero else None
    return {'a': a, 'b': b, 'metric': metric, 'seeds': seeds, 'differences': diffs,
            'mean': mean, 'ci95': half, 't_p': t_p, 'wilcoxon_p': wilcoxon_p,
            'wins': sum(d > 0 for d in diffs), 'losses': sum(d < 0 for d in diffs),
            'ties': sum(d == 0 for d in diffs)}


def paired_table(rows: Sequence[dict]) -> str:
    r"""Markdown table of :func:`paired_comparison` results, one row each."""
    def p(value):
        return '-' if value is None else f'{value:.3f}'

    lines = ['| comparison | metric | seeds | per-seed difference | mean ± 95% CI | '
             'wins / losses | paired t p | Wilcoxon p |', '|---|---|---|---|---|---|---|---|']
    for r in rows:
        diffs = ', '.join(f'{d:+.3f}' for d in r['differences'])
        lines.append(f"| {r['a']} - {r['b']} | {r['metric']} | {len(r['seeds'])} | {diffs} | "
                     f"{r['mean']:+.3f} ± {r['ci95']:.3f} | {r['wins']} / {r['losses']} | "
                     f"{p(r['t_p'])} | {p(r['wilcoxon_p'])} |")
    return '\n'.join(lines)
