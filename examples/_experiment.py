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

from hsa_geo.hierarchy import hierarchy_node_types
from hsa_geo.loader import HierarchyCollater
from hsa_geo.testing import PeakMemory, mean_ci95


# ------------------------------------------------------------------------ models
def load_minilm():
    r"""The offline all-MiniLM-L6-v2: ``(tokenizer, model)`` on transformers'
    SDPA attention (the zero-shot scripts inject HSA into it); exits with the
    install hint when the ``zeroshot`` extra is missing."""
    from transformers import AutoModel, AutoTokenizer

    from hsa_geo.datasets import minilm_dir
    try:
        path = minilm_dir()
    except ModuleNotFoundError as error:
        raise SystemExit(str(error))
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True,
                                      attn_implementation='sdpa')
    return tokenizer, model


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


class OGBTask:
    r"""Loss, target scaling and prediction format for one OGB dataset (the
    main job, ``ogbg_mol.py``): multi-task binary labels with missing entries,
    multi-class labels, or standardised regression targets."""
    def __init__(self, dataset, train_index: Tensor):
        self.task_type = dataset.task_type
        self.num_tasks = dataset.num_tasks
        self.num_classes = dataset.num_classes
        self.regression = self.task_type == 'regression'
        self.multiclass = self.task_type == 'multiclass classification'
        self.out_channels = self.num_classes if self.multiclass else self.num_tasks
        self.mean = torch.zeros(self.num_tasks)
        self.std = torch.ones(self.num_tasks)
        if self.regression:  # standardise targets with training statistics
            # the collated labels: one row per graph, in dataset order
            y = dataset._data.y[train_index].float()
            self.mean = torch.nanmean(y, dim=0)
            self.std = torch.sqrt(torch.nanmean((y - self.mean)**2, dim=0)).clamp_min(1e-6)

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        if self.multiclass:
            return F.cross_entropy(out, y.view(-1).long())
        y = y.float()
        labeled = ~torch.isnan(y)
        if self.regression:
            target = (y - self.mean.to(y.device)) / self.std.to(y.device)
            return F.mse_loss(out[labeled], target[labeled])
        return F.binary_cross_entropy_with_logits(out[labeled], y[labeled])

    def prediction(self, out: Tensor) -> Tensor:
        if self.multiclass:
            return out.argmax(dim=-1, keepdim=True)
        if self.regression:
            return out * self.std.to(out.device) + self.mean.to(out.device)
        return out  # scores for ROC-AUC / AP


def higher_is_better(metric: str) -> bool:
    r"""Whether a larger value of an OGB metric is better."""
    return metric not in ('rmse', 'mae')


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
    r"""Fixed batches of hierarchies, collated and compiled once by
    :class:`~hsa_geo.loader.HierarchyCollater` (the collater of
    :class:`~hsa_geo.loader.HierarchyLoader`) and moved to :obj:`device`, so
    that every epoch, seed and model reuses them.  Samples are grouped by
    size (less padding for the flat models' dense families); with
    :obj:`shuffle` the order of the batches is drawn anew on every pass from
    torch's global generator.  Iterating yields ``(batch, batch.hierarchy)``."""
    def __init__(self, samples: list, batch_size: int, device, shuffle: bool = False):
        sizes = torch.tensor([_num_leaves(d) for d in samples])
        order = sizes.argsort(stable=True).tolist()
        collate = HierarchyCollater(samples)
        self.shuffle = shuffle
        self.batches = []
        for start in range(0, len(order), batch_size):
            batch = collate([samples[i] for i in order[start:start + batch_size]]).to(device)
            self.batches.append((batch, batch.hierarchy))

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        order = torch.randperm(len(self.batches)).tolist() if self.shuffle else \
            range(len(self.batches))
        return (self.batches[i] for i in order)


def _num_leaves(data) -> int:
    leaf_types, _ = hierarchy_node_types(data.edge_types, data.node_types)
    return sum(int(data[t].num_nodes) for t in leaf_types)


# ----------------------------------------------------------------------- training
@torch.no_grad()
def predict(model, batches, forward: Callable, target: Callable = None) -> tuple:
    model.eval()
    outs, ys = [], []
    for batch, hierarchy in batches:
        outs.append(forward(model, batch, hierarchy).float().cpu())
        ys.append((batch.y if target is None else target(batch)).view(-1).cpu())
    return torch.cat(outs), torch.cat(ys)


SCHEDULES = ('constant', 'linear')


def lr_schedule(optimizer, schedule: str, total_steps: int):
    r"""The learning-rate scheduler of :obj:`schedule` (:data:`SCHEDULES`),
    stepped once per training step: :obj:`None` for ``'constant'``; for
    ``'linear'``, torch's ``LinearLR`` from the full rate to zero over
    :obj:`total_steps`."""
    if schedule not in SCHEDULES:
        raise ValueError(f"'schedule' must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == 'constant':
        return None
    return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.0,
                                             total_iters=max(total_steps, 1))


def train_run(model, loaders: Dict[str, object], forward: Callable, task: Task,
              epochs: int, lr: float, device, weight_decay: float = 0.0,
              progress=None, schedule: str = 'constant') -> dict:
    r"""Trains with AdamW for :obj:`epochs`, scores valid and test after every
    epoch and reports test at the best validation epoch.  :obj:`schedule`
    (:data:`SCHEDULES`): ``'constant'`` learning rate, or ``'linear'`` decay
    from :obj:`lr` to zero over all training steps (torch's ``LinearLR``
    with ``end_factor=0``; the paper names a LinearLR schedule without its
    factors).

    :obj:`loaders` maps ``'train'``, ``'valid'``, ``'test'`` to
    :class:`CompiledBatches`; :obj:`forward(model, batch, hierarchy)` returns
    the model's output for a batch.  Returns the history, the selected scores, parameters, median
    seconds per training epoch and the peak memory of training."""
    model = model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = lr_schedule(optimizer, schedule, epochs * len(loaders['train']))
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
                if scheduler is not None:
                    scheduler.step()
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
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'s' if threads != 1 else ''})"


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


def mean_std_text(values) -> str:
    r"""``'mean ± std'`` with three decimals."""
    mean, std = mean_std(values)
    return f'{mean:.3f} ± {std:.3f}'


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
            # one seed has no interval: say so rather than print '± 0.000'
            cells.append(f'{mean:.3f} ± {half:.3f}' if r['seeds'] > 1 else f'{mean:.3f} (one seed)')
        cells += [str(r['seeds']), f"{r['params']:,}"]
        cells += [f'{r[key]:.0f}' for key in extra]
        cells += [f"{r['seconds_per_epoch']:.2f}", f"{r['peak_mib']:.0f}"]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot_curves(results: List[dict], panel_keys: List[str], line_key: str, metric: str,
                path: str, title: str, series: Optional[tuple] = None) -> Optional[str]:
    r"""Per-epoch curves, mean over seeds (with a band of one standard
    deviation when there are several): one panel per value of
    :obj:`panel_keys` and per history key of :obj:`series` (default: the
    validation :obj:`metric`; a ``'loss'`` panel is drawn on a log scale), one
    line per value of :obj:`line_key`."""
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
    for ax, (panel, key) in zip(axes[0], columns):
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


def save_json(obj, path: str) -> None:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(obj, f, indent=1)


# ------------------------------------------------------- point-cloud and mesh runs
# name: (global attention, local PointTransformerConv block, flat hierarchy)
GEOMETRY_MODELS: Dict[str, tuple] = {
    'hsa': (True, False, False),
    'hsa+pt': (True, True, False),
    'pt': (False, True, False),
    'dense': (True, False, True),
    'pointnet': (False, False, False),
}


def geometry_blocks(model_name: str, channels: int, dim: int = 3) -> dict:
    r"""The ``attention`` and ``local`` blocks of :obj:`model_name` for
    :class:`~hsa_geo.nn.HSAPointTransformer` (as modules: the default HSA
    block or none, a :class:`~hsa_geo.nn.PointTransformerBlock` or none)."""
    from hsa_geo.nn import PointTransformerBlock
    from hsa_geo.nn.point import DEFAULT
    attention, local, _ = GEOMETRY_MODELS[model_name]
    return dict(attention=DEFAULT if attention else None,
                local=PointTransformerBlock(channels, dim) if local else None)


def split(num: int, seed: int = 0) -> Dict[str, List[int]]:
    r"""A fixed random 70 / 15 / 15 split of :obj:`num` samples."""
    order = torch.randperm(num, generator=torch.Generator().manual_seed(seed)).tolist()
    a, b = int(0.7 * num), int(0.85 * num)
    return {'train': order[:a], 'valid': order[a:b], 'test': order[b:]}


def geometry_loaders(trees: list, flats: list, parts: Dict[str, List[int]], batch_size: int,
                     device) -> Dict[bool, Dict[str, CompiledBatches]]:
    r"""Compiled batches of the trees and of the flat hierarchies, per split."""
    return {flat: {name: CompiledBatches([(flats if flat else trees)[i] for i in idx],
                                         batch_size, device, shuffle=name == 'train')
                   for name, idx in parts.items()}
            for flat in (False, True)}


def geometry_forward(leaf: str, flat: bool, extra: Callable = None) -> Callable:
    r"""``forward(model, batch, hierarchy)`` for leaves of type :obj:`leaf`
    (their coordinates ``pos``, the hierarchy's position vectors, the
    ``(leaf, 'to', leaf)`` neighbourhood graph); the flat hierarchy's grid
    positions are not used (a cloud is a set)."""
    def forward(model, batch, hierarchy):
        store = batch[leaf]
        kwargs = extra(batch) if extra is not None else {}
        return model(store.get('x'), store.pos, hierarchy,
                     None if flat else batch.hsa_pos_dict,
                     batch[leaf, 'to', leaf].edge_index, **kwargs)
    return forward


def add_training_arguments(parser, seeds: int, epochs: int, batch_size: int, lr,
                           lr_help: str = 'learning rate'):
    r"""The options :func:`run_geometry_models` reads (seeds, epochs,
    optimiser, model size, device)."""
    parser.add_argument('--seeds', type=int, default=seeds)
    parser.add_argument('--epochs', type=int, default=epochs)
    parser.add_argument('--batch-size', type=int, default=batch_size)
    parser.add_argument('--lr', type=float, default=lr, help=lr_help)
    parser.add_argument('--weight-decay', type=float, default=0.01)
    parser.add_argument('--channels', type=int, default=64)
    parser.add_argument('--layers', type=int, default=2)
    parser.add_argument('--heads', type=int, default=4)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')


def run_geometry_models(args, make_model: Callable, data: Dict[bool, dict], task: Task,
                        leaf: str, label: dict, results: list, out_json: str,
                        extra: Callable = None) -> None:
    r"""Trains every model of ``args.models`` for every seed
    (``make_model(model_name)`` builds one), appending one result per run to
    :obj:`results` (written to :obj:`out_json` each time)."""
    from tqdm import tqdm
    runs = [(m, s) for m in args.models for s in range(args.seeds)]
    bar = tqdm(runs, desc=' '.join(str(v) for v in label.values()))
    for model_name, seed in bar:
        flat = GEOMETRY_MODELS[model_name][2]
        torch.manual_seed(seed)
        model = make_model(model_name)
        result = train_run(model, data[flat], geometry_forward(leaf, flat, extra), task,
                           args.epochs, args.lr, args.device, args.weight_decay,
                           progress=bar)
        results.append({**label, 'model': model_name, 'seed': seed, **result})
        save_json(results, out_json)


def geometry_report(results: list, keys: List[str], metrics: List[str], device, title: str,
                    out_dir: str, name: str) -> str:
    r"""Writes ``<name>.md`` (mean +- standard deviation over seeds) and the
    validation curves ``<name>_curves.png``; returns the markdown."""
    rows = summarise(results, keys, metrics, spread='std')
    table = markdown_table(rows, keys, metrics)
    text = (f'## {title}\n\n{table}\n\n{SPREADS["std"][1]}; test scores at the '
            f'best-validation epoch; {measurement_note(device)}\n')
    with open(osp.join(out_dir, f'{name}.md'), 'w') as f:
        f.write(text)
    plot_curves(results, keys[:-1] or keys, 'model', metrics[0],
                osp.join(out_dir, f'{name}_curves.png'), title)
    return text
