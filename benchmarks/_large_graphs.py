r"""What ``bench_large_graphs.py`` measures with and what it reports: the
models of its training-step section, and its three tables, computed from the
raw numbers of a result file (every graph, every timed round).

Each table is what the docs show (``docs/experiments/large_graphs.md``):
powers of ten written ``10^k``, medians of the times, means of the
agreement, the best value of a column in bold within a size (all that tie
with it, unless every row does)."""
from __future__ import annotations

import math
import statistics
from typing import Dict, List, Optional

from hsa_geo.experiments import provenance_note

SECTIONS = ('builders', 'step', 'distributed')
STEP_MODELS = ('HSA', 'SGFormer', 'Polynormer', 'GPS + Performer')


# ------------------------------------------------------------------- models
def step_models(hidden: int = 64, layers: int = 2, heads: int = 4, features: int = 32,
                classes: int = 8, pos_dim: int = 8) -> Dict[str, object]:
    r"""The four models of the step section, by their names in the table."""
    import torch
    from torch_geometric.nn import GPSConv, SAGEConv
    from torch_geometric.nn.models import Polynormer, SGFormer

    from hsa_geo.nn import HSAGraphTransformer

    class GPSPerformer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin_in = torch.nn.Linear(features, hidden)
            self.layers = torch.nn.ModuleList([
                GPSConv(hidden, SAGEConv(hidden, hidden), heads=heads,
                        attn_type='performer') for _ in range(layers)])
            self.lin_out = torch.nn.Linear(hidden, classes)

        def forward(self, x, edge_index):
            h = self.lin_in(x)
            for layer in self.layers:
                h = layer(h, edge_index)
            return self.lin_out(h)

    polynormer = Polynormer(features, hidden, classes, local_layers=layers, global_layers=1,
                            heads=1)
    polynormer._global = True     # PyG's switch from local warm-up to global attention
    return {
        'HSA': HSAGraphTransformer(features, hidden, classes, num_layers=layers, heads=heads,
                                   pos_channels=pos_dim),
        'SGFormer': SGFormer(features, hidden, classes, trans_num_layers=1,
                             trans_num_heads=heads, gnn_num_layers=layers),
        'Polynormer': polynormer,
        'GPS + Performer': GPSPerformer(),
    }


# ---------------------------------------------------------------- formatting
def power(n: int) -> str:
    r"""``'10^k'`` for a power of ten, else the number with thousands commas."""
    k = round(math.log10(n)) if n > 0 else 0
    return f'10^{k}' if k >= 1 and 10 ** k == n else f'{n:,}'


def bold_best(cells: List[Optional[str]], lower: bool) -> List[str]:
    r"""The cells with the best shown value in bold (the lowest with
    :obj:`lower`); :obj:`None` cells (not measured) become ``''``.  Nothing
    is bold where under two cells are measured or all of them tie."""
    values = [None if c is None else float(c.replace(',', '').rstrip('x')) for c in cells]
    shown = [v for v in values if v is not None]
    if len(shown) < 2 or min(shown) == max(shown):
        return [c or '' for c in cells]
    best = min(shown) if lower else max(shown)
    return ['' if c is None else f'**{c}**' if v == best else c
            for c, v in zip(cells, values)]


def _groups(rows: List[dict], key: str) -> Dict[object, List[dict]]:
    out: Dict[object, List[dict]] = {}
    for r in rows:
        out.setdefault(r[key], []).append(r)
    return out


# -------------------------------------------------------------------- tables
def builders_table(result: dict) -> str:
    r"""Per size and builder: median partition and hierarchy seconds over
    the graphs, and the mean ARI with the planted blocks per level."""
    lines = ['| nodes / edges | builder | partition s | hierarchy s | ARI per level (finest '
             'first) |', '|---|---|---|---|---|']
    for runs in _groups(result['builders'], 'nodes').values():
        per_builder = _groups(runs, 'builder')
        names = list(per_builder)
        partition = bold_best([f"{statistics.median(r['partition_s'] for r in per_builder[b]):.2f}"
                               for b in names], lower=True)
        whole = bold_best([f"{statistics.median(r['hierarchy_s'] for r in per_builder[b]):.2f}"
                           for b in names], lower=True)
        levels = len(runs[0]['ari'])
        ari = [bold_best([f"{statistics.fmean(r['ari'][i] for r in per_builder[b]):.3f}"
                          for b in names], lower=False) for i in range(levels)]
        size = f"{power(runs[0]['nodes'])} / {power(runs[0]['edges'])}"
        for j, b in enumerate(names):
            lines.append(f"| {size} | {b} | {partition[j]} | {whole[j]} | "
                         f"{' / '.join(ari[i][j] for i in range(levels))} |")
    return '\n'.join(lines)


def _seconds(x: float) -> str:
    return f'{x:.3f}' if x < 100 else f'{x:.1f}'


def step_table(result: dict) -> str:
    r"""Per size and model: the median step time over the rounds, the
    activation memory and the ratio to HSA's median step."""
    lines = ['| nodes | model | step s | activation GB | step / HSA step |',
             '|---|---|---|---|---|']
    for n, runs in _groups(result['step'], 'nodes').items():
        measured = [r for r in runs if 'times' in r]
        median = {r['model']: statistics.median(r['times']) for r in measured}
        steps = dict(zip([r['model'] for r in measured],
                         bold_best([_seconds(median[r['model']]) for r in measured], True)))
        memory = dict(zip([r['model'] for r in measured],
                          bold_best([f"{r['activation_bytes'] / 2**30:.2f}" for r in measured],
                                    True)))
        for r in runs:
            name = r['model']
            if name not in median:
                lines.append(f"| {power(n)} | {name} | not run (about "
                             f"{r['predicted_gb']:.0f} GB of activations) | | |")
                continue
            ratio = f"{median[name] / median['HSA']:.2f}x" if 'HSA' in median else '-'
            lines.append(f'| {power(n)} | {name} | {steps[name]} | {memory[name]} | {ratio} |')
    return '\n'.join(lines)


def _three_digits(x: float) -> str:
    r"""Three significant digits, at most three decimals: 0.032, 0.310, 5.60."""
    decimals = 3 if x <= 0 else max(0, min(3, 2 - math.floor(math.log10(x))))
    return f'{x:.{decimals}f}'


def distributed_table(result: dict) -> str:
    r"""Per tree: median seconds of one process and of the 2 ranks, the
    speed-up, the bytes a rank receives per layer and the bytes of the
    leaves' q, k, v (float32)."""
    lines = ["| leaves | top-level subtrees | 1 process s | 2 ranks s | speed-up | bytes per "
             "layer | the leaves' q, k, v |", '|---|---|---|---|---|---|---|']
    for r in result['distributed']:
        single, sharded = statistics.median(r['single_times']), statistics.median(
            r['sharded_times'])
        times = bold_best([_three_digits(single), _three_digits(sharded)], lower=True)
        mb = r['leaves'] * r['heads'] * 3 * r['dim'] * 4 / 1e6
        lines.append(f"| {power(r['leaves'])} | {r['top_level']} | {times[0]} | {times[1]} | "
                     f"{single / sharded:.2f}x | {r['bytes_per_layer']:,} | "
                     f"{mb:.{1 if mb < 10 else 0}f} MB |")
    return '\n'.join(lines)


TABLES = {'builders': builders_table, 'step': step_table, 'distributed': distributed_table}


def caption(result: dict, section: str) -> str:
    r"""What the measuring run prints above a table (the report does not)."""
    args = result['args']
    if section == 'builders':
        return (f"SYNTHETIC planted graphs: blocks {' x '.join(map(str, args['parts']))} "
                f"(top-down), {args['degree']} mean degree, within-block shares "
                f"{args['within']} (finest first); one thread; median times and mean "
                f"agreement over {args['seeds']} graph(s) per size.")
    if section == 'step':
        setup = '; '.join(f"{s['nodes']:,} nodes: PLM hierarchy with positions and compile "
                          f"{s['setup_s']:.1f} s, widest family {s['widest_family']}"
                          for s in result.get('step_setup', []))
        return (f"One training step (forward, backward, AdamW), full batch, SYNTHETIC planted "
                f"graphs ({args['degree']} mean degree), one thread, median of "
                f"{args['repeats']} interleaved rounds; GB = activation memory of a step "
                f"(2^30 bytes). Untimed setup: {setup}.")
    return ('Exact HSA over a regular tree (families of 16), float32: forward + backward, one '
            f"process against 2 gloo ranks (one thread each), median of {args['repeats']} "
            'interleaved rounds. Bytes: what each rank receives per layer in the forward pass '
            '(the backward sends as much back).')


def report(result: dict, path: str, table: Optional[str] = None) -> str:
    r"""The table :obj:`table` of a result file (the only one it holds where
    :obj:`None`), and the line saying where it comes from.

    Raises:
        ValueError: If the file does not hold that table, or holds several
            and none is named.
    """
    held = [name for name in SECTIONS if result.get(name)]
    if table is None:
        if len(held) != 1:
            raise ValueError(f'{path} holds the tables {held}: name one with --table')
        table = held[0]
    if table not in held:
        raise ValueError(f'{path} holds no {table!r} table (it holds {held})')
    return TABLES[table](result) + '\n\n' + provenance_note(result, path)
