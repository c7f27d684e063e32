r"""What the example scripts share that is specific to them: the offline
all-MiniLM-L6-v2 they read, the tasks and their metrics, batches compiled
once, one training run with model selection on validation, and the
point-cloud and mesh runs.  The summaries, tables, plots and result files
are the library's (:mod:`hsa_geo.experiments`).

Each script imports this module as ``from _experiment import ...``: run as
``python examples/<script>.py``, a script has its own folder on the path."""
from __future__ import annotations

import copy
import os.path as osp
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from hsa_geo.experiments import (
    SPREADS,
    device_name,
    markdown_table,
    measurement_note,
    plot_curves,
    save_json,
    summarise,
)
from hsa_geo.hierarchy import hierarchy_node_types
from hsa_geo.loader import HierarchyCollater
from hsa_geo.testing import PeakMemory


# ------------------------------------------------------------------------ models
def model_dir() -> str:
    r"""all-MiniLM-L6-v2's files (:func:`hsa_geo.datasets.minilm_dir`); exits
    with the install hint when the ``zeroshot`` extra is missing."""
    from hsa_geo.datasets import minilm_dir
    try:
        return minilm_dir()
    except ModuleNotFoundError as error:
        raise SystemExit(str(error)) from None


def load_tokenizer():
    r"""all-MiniLM-L6-v2's WordPiece tokenizer."""
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(model_dir(), local_files_only=True)


def load_minilm():
    r"""The offline all-MiniLM-L6-v2: ``(tokenizer, model)`` on transformers'
    SDPA attention (the zero-shot scripts inject HSA into it)."""
    from transformers import AutoModel
    model = AutoModel.from_pretrained(model_dir(), local_files_only=True,
                                      attn_implementation='sdpa')
    return load_tokenizer(), model


def frozen_embeddings() -> Tensor:
    r"""all-MiniLM-L6-v2's input token embedding table ``[30522, 384]``."""
    from safetensors.torch import load_file
    weights = load_file(osp.join(model_dir(), 'model.safetensors'))
    key = next(k for k in weights if k.endswith('embeddings.word_embeddings.weight'))
    return weights[key]


# ------------------------------------------------------------------------ tasks
class Task:
    r"""Classification (cross entropy; accuracy, macro-F1 over all
    :obj:`num_classes`; selected on accuracy), regression (MSE on the
    standardised target; RMSE in the original unit; selected on RMSE) or
    segmentation (a class per leaf, read by :obj:`target` from the batch;
    cross entropy; accuracy over leaves and mean IoU over the classes present
    in prediction or target; selected on mIoU).  The F1 and IoU are
    scikit-learn's."""
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
        from sklearn.metrics import f1_score, jaccard_score
        pred = out.argmax(dim=-1)
        scores = {'accuracy': (pred == y).float().mean().item()}
        y, pred = y.cpu().numpy(), pred.cpu().numpy()
        if self.kind == 'classification':
            # the mean over all classes: one absent from prediction and target scores 0
            scores['macro_f1'] = float(f1_score(y, pred, labels=list(range(self.num_classes)),
                                                average='macro', zero_division=0))
        else:
            # the mean over the classes present in prediction or target
            scores['miou'] = float(jaccard_score(y, pred, average='macro'))
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
              progress=None, schedule: str = 'constant',
              patience: Optional[int] = None) -> dict:
    r"""Trains with AdamW for :obj:`epochs`, scores valid and test after every
    epoch and reports test at the best validation epoch.  With
    :obj:`patience`, training stops early once neither the validation score
    nor the validation loss has improved for that many epochs (the linear
    schedule still decays over :obj:`epochs`).  :obj:`schedule`
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
    if patience is not None and patience < 1:
        raise ValueError(f"'patience' must be a positive number of epochs, got {patience}")
    history, best, lowest_loss, epoch_times, peak = [], None, None, [], 0
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
            out, y = predict(model, loaders[split], forward, task.target)
            row.update({f'{split}_{k}': v for k, v in task.scores(out, y).items()})
            row[f'{split}_loss'] = float(task.loss(out, y))
        row['seconds'] = epoch_times[-1]
        history.append(row)
        if best is None or task.better(row[f'valid_{task.metric}'],
                                       best[f'valid_{task.metric}']):
            best = copy.copy(row)
        if progress is not None:
            progress.set_postfix(epoch=epoch, valid=f"{row[f'valid_{task.metric}']:.3f}")
        if lowest_loss is None or row['valid_loss'] < lowest_loss[1]:
            lowest_loss = (epoch, row['valid_loss'])
        # stop once neither the validation score nor the validation loss has
        # improved for `patience` epochs (a small validation set's score can
        # sit at the majority class for the first epochs while the loss falls)
        if patience is not None and epoch - max(best['epoch'], lowest_loss[0]) >= patience:
            break
    return {
        'history': history, 'best_epoch': best['epoch'], 'epochs_run': len(history),
        **{k: v for k, v in best.items() if k.startswith(('valid_', 'test_'))},
        'params': sum(p.numel() for p in params),
        'device': device_name(device),
        'seconds_per_epoch': statistics.median(epoch_times),
        'peak_mib': peak / 2**20,
    }


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
    from hsa_geo.nn.models import DEFAULT
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
                        extra: Callable = None, facts: dict = None) -> None:
    r"""Trains every model of ``args.models`` for every seed
    (``make_model(model_name)`` builds one), appending one result per run to
    :obj:`results`; after each run :obj:`out_json` holds the arguments, the
    :obj:`facts` (e.g. the number of classes) and the runs so far, so an
    interrupted experiment leaves a result file its report can read."""
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
        save_json({'args': vars(args), **(facts or {}), 'runs': results}, out_json)


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
