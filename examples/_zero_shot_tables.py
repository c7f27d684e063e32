r"""The tables and the plot of ``zero_shot.py``'s result file: Table 3 (a row
per task), every Table 3 configuration with its intervals, the paired
differences to the original model, and the Appendix L bar plot.

Everything here reads a result file (``--report``); nothing fine-tunes or
evaluates.  ``zero_shot.py`` imports this module as ``from
_zero_shot_tables import ...``: run as ``python examples/zero_shot.py``, a
script has its own folder on the path."""
from __future__ import annotations

import os
import os.path as osp
import statistics
from typing import Dict, List, Optional, Tuple

from hsa_geo.experiments import mean_ci95, paired_comparison, provenance_note

from _zero_shot_tasks import PAPER_ACCURACY, PAPER_ROW, TASK_LABELS

#: the tables of ``--report``: the docs' Table 3 (a row per task), a row per
#: configuration with the intervals of precision and recall, the paired
#: differences of every HSA configuration to the original model, or the
#: Appendix L sweep (a row per task and hierarchy, a column per SL)
TABLES = ('table3', 'configurations', 'paired', 'sweep')


def summary(rows: List[dict], key: str) -> Tuple[float, float]:
    return mean_ci95([r[key] for r in rows])


def fmt(rows: List[dict], key: str) -> str:
    mean, half = summary(rows, key)
    return f'{mean:.3f} ± {half:.3f}' if len(rows) > 1 else f'{mean:.3f} (one seed)'


def config_rows(result: dict, name: str) -> List[dict]:
    r"""The configuration :obj:`name` of every seed of a task."""
    return [next(c for c in run['configs'] if c['name'] == name) for run in result['runs']]


def time_ratio(result: dict, names: List[str]) -> float:
    r"""The whole model's seconds with HSA against the original's on the same
    batches: the mean over the seeds and the configurations :obj:`names` of
    the sums of the batch times."""
    def seconds(config):
        return sum(config['batch_seconds']) if 'batch_seconds' in config else config['seconds']
    base = config_rows(result, 'original (softmax)')
    return statistics.fmean(seconds(r) / seconds(b) for name in names
                            for r, b in zip(config_rows(result, name), base, strict=True))


def table3_cell(rows: List[dict]) -> str:
    r"""Accuracy (mean ± 95% interval) / macro precision / macro recall
    (means)."""
    mean, half = summary(rows, 'accuracy')
    spread = '(one seed)' if len(rows) == 1 else f'± {half:.3f}' if half else '± 0'
    return (f"{mean:.3f} {spread} / {summary(rows, 'precision')[0]:.3f} / "
            f"{summary(rows, 'recall')[0]:.3f}")


def mflops(value: float) -> str:
    return f'{value:.1f}' if value >= 10 else f'{value:.2f}'


def table3(results: Dict[str, dict]) -> str:
    r"""A row per task (and one for the pair task's segment-aware forest):
    the fine-tuned model and HSA in layers 4 and 6 without and with self
    (:func:`table3_cell`), the attention MFLOPs of one impacted layer at the
    task's average length, the time ratio (:func:`time_ratio`, both HSA
    configurations) and the paper's row."""
    lines = ['| task (avg tokens) | fine-tuned (softmax) | HSA, no self | HSA, with self | '
             'FL(M) softmax / HSA | time HSA / softmax | paper row: RoBERTa → HSA (acc) |',
             '|---|---|---|---|---|---|---|']
    for i, (task, result) in enumerate(results.items()):
        flops = result['flops']
        fl = f"{mflops(flops['softmax_mflops'])} / {mflops(flops['hsa_mflops'])}"
        saved = round(100 * (1 - flops['hsa_mflops'] / flops['softmax_mflops']))
        label = TASK_LABELS.get(task, task).format(classes=result['classes'])
        variants = [('', f"{label} ({flops['avg_length']})",
                     table3_cell(config_rows(result, 'original (softmax)')),
                     f"{fl} ({saved}%{' saved' if i == 0 else ''})", PAPER_ACCURACY[task])]
        if task == 'news_pairs':
            variants.append(('segments ', 'same, segment-aware forest', '', fl, '-'))
        for infix, name, original, fl_cell, paper in variants:
            names = [f'Table 3 {infix}(2,4,8,16) self={s}' for s in (False, True)]
            cells = [name, original] + [table3_cell(config_rows(result, n)) for n in names]
            cells += [fl_cell, f'{time_ratio(result, names):.2f}x', paper]
            lines.append(('| ' + ' | '.join(cells) + ' |').replace('|  |', '| |'))
    return '\n'.join(lines)


def configurations_table(results: Dict[str, dict]) -> str:
    r"""A row per task and Table 3 configuration: accuracy, macro precision
    and recall with their 95% intervals, the MFLOPs of one impacted layer and
    the time ratio to the original."""
    lines = ['| task (paper row) | avg len | model | accuracy | precision | recall | '
             'FL(M) softmax / HSA | time / original |',
             '|---|---|---|---|---|---|---|---|']
    for task, result in results.items():
        flops = result['flops']
        names = [c['name'] for c in result['runs'][0]['configs']
                 if c['name'] == 'original (softmax)' or c.get('group') == 'table3']
        for name in names:
            rows = config_rows(result, name)
            original = name.startswith('original')
            fl = flops['softmax_mflops'] if original else flops['hsa_mflops']
            label = 'original' if original else name.replace('Table 3 ', 'HSA ')
            lines.append(f"| {task} ({PAPER_ROW[task]}) | {flops['avg_length']} | {label} | "
                         f"{fmt(rows, 'accuracy')} | {fmt(rows, 'precision')} | "
                         f"{fmt(rows, 'recall')} | {fl:.3f} | "
                         f'{time_ratio(result, [name]):.2f}x |')
    return '\n'.join(lines)



def sweep_table(results: Dict[str, dict]) -> str:
    r"""Appendix L as a table: a row per task and hierarchy, a column per SL
    (HSA without self in layer SL and every other layer after it), each cell
    the accuracy's mean ± 95% interval over the fine-tuning seeds; the first
    row of a task is the original model.  A run made with ``--no-sweep`` has
    no sweep, and the report says so in a sentence."""
    swept = {task: [c for c in result['runs'][0]['configs'] if c.get('group') == 'sweep']
             for task, result in results.items()}
    if not any(swept.values()):
        return 'No Appendix L sweep in this run (it was made with --no-sweep).'
    num_layers = max(c['sl'] for configs in swept.values() for c in configs)
    lines = ['| task (test examples) | hierarchy | ' +
             ' | '.join(f'SL = {sl}' for sl in range(1, num_layers + 1)) + ' |',
             '|---|---|' + '---|' * num_layers]
    for task, result in results.items():
        sweep = swept[task]
        original = fmt(config_rows(result, 'original (softmax)'), 'accuracy')
        lines.append(f"| {task} ({result['test']}) | original (softmax) | {original} |" +
                     ' |' * (num_layers - 1))
        for label in dict.fromkeys(c['hierarchy_label'] for c in sweep):
            cells = [fmt(config_rows(result, f'sweep {label} SL={sl}'), 'accuracy')
                     for sl in range(1, num_layers + 1)]
            lines.append(f'| | {label} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def paired_rows(result: dict, name: str) -> dict:
    r"""The accuracy of configuration :obj:`name` against the original
    model's, paired by fine-tuning seed (:func:`~hsa_geo.experiments.paired_comparison`):
    both are the same fine-tuned model on the same test examples, so the
    per-seed difference leaves out the spread between fine-tuning seeds."""
    runs = [dict(model=model, seed=run['seed'],
                 test_accuracy=next(c for c in run['configs'] if c['name'] == config)['accuracy'])
            for run in result['runs'] for model, config in (('hsa', name),
                                                           ('original', 'original (softmax)'))]
    return paired_comparison(runs, 'hsa', 'original', 'accuracy')


def paired_table(results: Dict[str, dict]) -> str:
    r"""A row per task and Table 3 configuration: the test size, the per-seed
    accuracy differences HSA - original, their mean with its 95% interval,
    HSA's wins / losses / ties, and the paired t-test's p (a run of one
    seed has none of these)."""
    lines = ['| task (test examples) | configuration | HSA - original, per seed | '
             'mean ± 95% CI | wins / losses / ties | paired t p |',
             '|---|---|---|---|---|---|']
    for task, result in results.items():
        names = [c['name'] for c in result['runs'][0]['configs'] if c.get('group') == 'table3']
        for name in names:
            if len(result['runs']) < 2:
                lines.append(f"| {task} ({result['test']}) | "
                             f"{name.replace('Table 3 ', 'HSA ')} | one seed: no paired "
                             'comparison | | | |')
                continue
            comparison = paired_rows(result, name)
            per_seed = ', '.join(f'{d:+.3f}' for d in comparison['differences'])
            p = '-' if comparison['t_p'] is None else f"{comparison['t_p']:.3f}"
            lines.append(f"| {task} ({result['test']}) | {name.replace('Table 3 ', 'HSA ')} | "
                         f"{per_seed} | {comparison['mean']:+.3f} ± {comparison['ci95']:.3f} | "
                         f"{comparison['wins']} / {comparison['losses']} / {comparison['ties']} | "
                         f'{p} |')
    return '\n'.join(lines)


def report(result: dict, path: str, table: str = 'table3') -> str:
    r"""The table :obj:`table` (:data:`TABLES`) of a result file, with the
    line of its provenance."""
    if table not in TABLES:
        raise ValueError(f"'table' must be one of {TABLES}, got {table!r}")
    make = {'table3': table3, 'configurations': configurations_table,
            'paired': paired_table, 'sweep': sweep_table}[table]
    return make(result['results']) + '\n\n' + provenance_note(result, path)


def plot_sweep(results: Dict[str, dict], path: str) -> Optional[str]:
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    tasks = list(results)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        runs = results[task]['runs']
        labels = list(dict.fromkeys(c['hierarchy_label'] for c in runs[0]['configs']
                                    if c.get('group') == 'sweep'))
        width = 0.8 / (len(labels) + 1)
        num_layers = max(c['sl'] for c in runs[0]['configs'] if c.get('group') == 'sweep')
        original = [next(c for c in run['configs'] if c['name'] == 'original (softmax)')
                    for run in runs]
        mean, half = summary(original, 'accuracy')
        ax.bar([num_layers + 1], [mean], width=0.5, yerr=[half], color='black', label='OR')
        for j, label in enumerate(labels):
            means, halves = [], []
            for sl in range(1, num_layers + 1):
                rows = [next(c for c in run['configs'] if c.get('group') == 'sweep' and
                             c['hierarchy_label'] == label and c['sl'] == sl) for run in runs]
                m, h = summary(rows, 'accuracy')
                means.append(m)
                halves.append(h)
            xs = [sl - 0.4 + width * (j + 0.5) for sl in range(1, num_layers + 1)]
            ax.bar(xs, means, width=width, yerr=halves, label=label)
        ax.set_xticks(list(range(1, num_layers + 1)) + [num_layers + 1],
                      [str(i) for i in range(1, num_layers + 1)] + ['OR'])
        ax.set_xlabel('SL (HSA in layer SL and every other layer after it)')
        ax.set_ylabel('test accuracy')
        ax.set_title(f'{task} ({len(runs)} seeds, 95% CI)', fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(axis='y', alpha=0.3)
        if ax is axes[0][0] or any('segments' in label for label in labels):
            ax.legend(fontsize=7, loc='lower left')
    fig.suptitle('Zero-shot HSA in fine-tuned MiniLM (Appendix L protocol)', fontsize=10)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
