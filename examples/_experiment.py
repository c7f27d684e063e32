r"""What the from-scratch experiments (hierarchical_text.py, multimodal.py)
share: one training run with model selection on validation, the metrics, the
results table and the learning-curve plot."""
from __future__ import annotations

import copy
import json
import os
import os.path as osp
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from hsa_geo import Hierarchy
from hsa_geo.testing import PeakMemory, mean_ci95


# ------------------------------------------------------------------------ metrics
def macro_f1(pred: Tensor, target: Tensor, num_classes: int) -> float:
    r"""Unweighted mean over classes of the F1 score (a class absent from both
    prediction and target counts as 0, as scikit-learn's default does)."""
    scores = []
    for c in range(num_classes):
        tp = ((pred == c) & (target == c)).sum().item()
        fp = ((pred == c) & (target != c)).sum().item()
        fn = ((pred != c) & (target == c)).sum().item()
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / num_classes


class Task:
    r"""Classification (cross entropy; accuracy, macro-F1; selected on
    accuracy), regression (MSE on the standardised target; RMSE in the
    original unit; selected on RMSE) or segmentation (a class per leaf, read
    by :obj:`target` from the batch; cross entropy; accuracy over leaves and
    mean IoU over classes; selected on mIoU)."""
    def __init__(self, kind: str, num_classes: int = 0, train_targets: Tensor = None,
                 target: Callable = None):
        if kind not in ('classification', 'regression', 'segmentation'):
            raise ValueError(f"'kind' must be 'classification', 'regression' or "
                             f"'segmentation', got {kind!r}")
        if kind == 'segmentation' and target is None:
            raise ValueError("segmentation needs 'target' (batch -> per-leaf labels)")
        self.kind, self.num_classes = kind, num_classes
        self.target = target or (lambda batch: batch.y)
        self.out_channels = 1 if kind == 'regression' else num_classes
        if kind == 'regression':
            self.mean = float(train_targets.float().mean())
            self.std = float(train_targets.float().std()) or 1.0
        self.metric = {'classification': 'accuracy', 'regression': 'rmse',
                       'segmentation': 'miou'}[kind]
        self.metrics = {'classification': ('accuracy', 'macro_f1'), 'regression': ('rmse', ),
                        'segmentation': ('miou', 'accuracy')}[kind]

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        if self.kind == 'regression':
            return F.mse_loss(out.view(-1), (y.view(-1).float() - self.mean) / self.std)
        return F.cross_entropy(out, y.view(-1).long())

    def scores(self, out: Tensor, y: Tensor) -> Dict[str, float]:
        y = y.view(-1)
        if self.kind == 'regression':
            pred = out.view(-1) * self.std + self.mean
            return {'rmse': (pred - y.float()).pow(2).mean().sqrt().item()}
        pred = out.argmax(dim=-1)
        scores = {'accuracy': (pred == y).float().mean().item()}
        if self.kind == 'classification':
            scores['macro_f1'] = macro_f1(pred, y, self.num_classes)
        else:
            scores['miou'] = mean_iou(pred, y, self.num_classes)
        return scores

    def better(self, a: float, b: float) -> bool:
        return a < b if self.kind == 'regression' else a > b


def mean_iou(pred: Tensor, target: Tensor, num_classes: int) -> float:
    r"""Mean over the classes present in prediction or target of the
    intersection over union."""
    ious = []
    for c in range(num_classes):
        union = ((pred == c) | (target == c)).sum().item()
        if union:
            ious.append(((pred == c) & (target == c)).sum().item() / union)
    return sum(ious) / max(len(ious), 1)


# ------------------------------------------------------------------------ batches
class CompiledBatches:
    r"""Fixed batches of hierarchies, each collated by PyG, compiled once
    (:meth:`Hierarchy.from_hetero` on the CPU) and moved to :obj:`device`, so
    that every epoch, seed and model reuses them.  Samples are grouped by
    size (less padding for the flat models' dense families); with
    :obj:`shuffle` the order of the batches is drawn anew on every pass from
    torch's global generator.  Iterating yields ``(batch, hierarchy)``."""
    def __init__(self, samples: list, batch_size: int, device, shuffle: bool = False):
        from torch_geometric.data import Batch
        sizes = torch.tensor([_num_leaves(d) for d in samples])
        order = sizes.argsort(stable=True).tolist()
        self.shuffle = shuffle
        self.batches = []
        for start in range(0, len(order), batch_size):
            batch = Batch.from_data_list([samples[i] for i in order[start:start + batch_size]])
            hierarchy = Hierarchy.from_hetero(batch)
            self.batches.append((batch.to(device), hierarchy.to(device)))

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        order = torch.randperm(len(self.batches)).tolist() if self.shuffle else \
            range(len(self.batches))
        return (self.batches[i] for i in order)


def _num_leaves(data) -> int:
    clusters = {dst for _, rel, dst in data.edge_types if rel == 'in'}
    return sum(int(data[src].num_nodes) for src, rel, _ in data.edge_types
               if rel == 'in' and src not in clusters)


# ----------------------------------------------------------------------- training
@torch.no_grad()
def predict(model, batches, forward: Callable, target: Callable = None) -> tuple:
    model.eval()
    outs, ys = [], []
    for batch, hierarchy in batches:
        outs.append(forward(model, batch, hierarchy).float().cpu())
        ys.append((batch.y if target is None else target(batch)).view(-1).cpu())
    return torch.cat(outs), torch.cat(ys)


def train_run(model, loaders: Dict[str, object], forward: Callable, task: Task,
              epochs: int, lr: float, device, weight_decay: float = 0.0,
              progress=None) -> dict:
    r"""Trains with Adam for :obj:`epochs`, scores valid and test after every
    epoch and reports test at the best validation epoch.

    :obj:`loaders` maps ``'train'``, ``'valid'``, ``'test'`` to
    :class:`CompiledBatches`; :obj:`forward(model, batch, hierarchy)` returns
    the model's output for a batch.  Returns the history, the selected scores, parameters, median
    seconds per training epoch and the peak memory of training."""
    model = model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    history, best, epoch_times, peak = [], None, [], 0
    for epoch in range(1, epochs + 1):
        model.train()
        total, count = 0.0, 0
        with PeakMemory(device) as memory:
            start = time.perf_counter()
            for batch, hierarchy in loaders['train']:
                optimizer.zero_grad()
                loss = task.loss(forward(model, batch, hierarchy), task.target(batch))
                loss.backward()
                optimizer.step()
                memory.step()
                total, count = total + loss.item() * batch.num_graphs, count + batch.num_graphs
            if torch.device(device).type == 'cuda':
                torch.cuda.synchronize()
            epoch_times.append(time.perf_counter() - start)
        peak = max(peak, memory.peak)
        row = {'epoch': epoch, 'loss': total / max(count, 1)}
        for split in ('valid', 'test'):
            scores = task.scores(*predict(model, loaders[split], forward, task.target))
            row.update({f'{split}_{k}': v for k, v in scores.items()})
        history.append(row)
        if best is None or task.better(row[f'valid_{task.metric}'],
                                       best[f'valid_{task.metric}']):
            best = copy.copy(row)
        if progress is not None:
            progress.set_postfix(epoch=epoch, valid=f"{row[f'valid_{task.metric}']:.3f}")
    epoch_times.sort()
    return {
        'history': history, 'best_epoch': best['epoch'],
        **{k: v for k, v in best.items() if k.startswith(('valid_', 'test_'))},
        'params': sum(p.numel() for p in params),
        'device': device_name(device),
        'seconds_per_epoch': epoch_times[len(epoch_times) // 2],
        'peak_mib': peak / 2**20,
    }


# ------------------------------------------------------------------------ reports
def device_name(device) -> str:
    device = torch.device(device)
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'CPU ({torch.get_num_threads()} threads)'


def measurement_note(device) -> str:
    r"""What the time and memory columns mean on :obj:`device`."""
    device = torch.device(device)
    if device.type == 'cuda':
        return (f's/epoch = median training epoch on {device_name(device)}; '
                f'peak MiB = peak CUDA memory allocated during training')
    return (f's/epoch = median training epoch on the {device_name(device)}; peak MiB = '
            f'largest activation memory (tensors saved for backward) of one training step')


def mean_std(values) -> tuple:
    r"""Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


SPREADS = {'ci95': (mean_ci95, '± = 95% interval over seeds (Student t)'),
           'std': (mean_std, '± = standard deviation over seeds')}


def summarise(results: List[dict], keys: List[str], metrics: List[str],
              extra: tuple = (), spread: str = 'ci95') -> List[dict]:
    r"""Groups runs by :obj:`keys` and gives each metric's mean and spread
    over the seeds (:data:`SPREADS`: 95% interval or standard deviation),
    with the median time and peak memory."""
    groups: Dict[tuple, List[dict]] = {}
    for r in results:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    rows = []
    for group_key, runs in groups.items():
        row = dict(zip(keys, group_key))
        row['seeds'] = len(runs)
        for m in metrics:
            row[m] = SPREADS[spread][0]([r[f'test_{m}'] for r in runs])
        row['params'] = runs[0]['params']
        row['seconds_per_epoch'] = sorted(r['seconds_per_epoch'] for r in runs)[len(runs) // 2]
        row['peak_mib'] = max(r['peak_mib'] for r in runs)
        for key in extra:  # the same for every seed, e.g. leaves per sample
            row[key] = runs[0][key]
        rows.append(row)
    return rows


def markdown_table(rows: List[dict], keys: List[str], metrics: List[str],
                   extra: Dict[str, str] = None) -> str:
    r"""A markdown table: the group keys, each metric as ``mean ± 95% CI``,
    seeds, parameters, the :obj:`extra` columns (key -> heading), s/epoch,
    peak MiB."""
    extra = extra or {}
    head = keys + [f'test {m}' for m in metrics] + ['seeds', 'params'] + \
        list(extra.values()) + ['s/epoch', 'peak MiB']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        cells = [str(r[k]) for k in keys]
        for m in metrics:
            mean, half = r[m]
            cells.append(f'{mean:.3f} ± {half:.3f}')
        cells += [str(r['seeds']), f"{r['params']:,}"]
        cells += [f'{r[key]:.0f}' for key in extra]
        cells += [f"{r['seconds_per_epoch']:.2f}", f"{r['peak_mib']:.0f}"]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot_curves(results: List[dict], panel_keys: List[str], line_key: str, metric: str,
                path: str, title: str) -> Optional[str]:
    r"""Validation :obj:`metric` per epoch, mean over seeds, one panel per
    value of :obj:`panel_keys` and one line per :obj:`line_key`."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels: Dict[tuple, Dict[str, List[List[float]]]] = {}
    for r in results:
        lines = panels.setdefault(tuple(r[k] for k in panel_keys), {})
        lines.setdefault(r[line_key], []).append([h[f'valid_{metric}'] for h in r['history']])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (panel, lines) in zip(axes[0], panels.items()):
        for name, curves in lines.items():
            length = min(len(c) for c in curves)
            mean = torch.tensor([c[:length] for c in curves]).mean(0)
            ax.plot(range(1, length + 1), mean.tolist(), label=name)
        ax.set_title(' / '.join(str(p) for p in panel), fontsize=9)
        ax.set_xlabel('epoch')
        ax.set_ylabel(f'valid {metric}')
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_json(obj, path: str) -> None:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(obj, f, indent=1)
