r"""Node property prediction with exact global HSA across processes: the
graph's hierarchy is split by top-level subtrees over the ranks of a
``torch.distributed`` job, each rank trains
:class:`hsa_geo.nn.HSAGraphTransformer` on its share under
``DistributedDataParallel``, and every HSA layer all-gathers one row of
statistics per top-level subtree, so the attention of every node still runs
over all nodes of the graph (Amizadeh et al., NeurIPS 2025, with the
algebra of ``docs/math.md``, section 6).

What a rank holds: only its share (``shard_hierarchy``): its subtrees'
nodes, features, labels and the edges between them.  Rank 0 builds the
hierarchy once and saves every rank's share to ``--out``/shards; the others
wait, then each loads its own file, so no other process ever holds the whole
graph.  What is exact and what is not:

* the global attention is the single-process one (tested to round-off in
  float64, values and gradients);
* the normalisation is a per-node ``LayerNorm`` (batch statistics would
  differ by rank; ``SyncBatchNorm`` works only on GPUs);
* the local GraphSAGE layers see the edges inside a rank's share: the edges
  between ranks are cut (the table says how many), as between Cluster-GCN's
  clusters.

Data as in ``examples/ogbn_node.py``: a **SYNTHETIC** planted graph of
``--num-nodes`` nodes by default, or OGB's ``ogbn-arxiv`` / ``ogbn-products``
from ``--root`` (``--download`` lets OGB fetch them).  Reports test accuracy
at the best-validation epoch (mean and 95% interval over ``--seeds``),
seconds per epoch (the slowest rank's, median over epochs), nodes and cut
edges per rank, and the bytes each rank receives per HSA layer.

The result file (``--out``/results.json) holds every seed's scores and
every epoch's time; ``--report`` prints the table of one or more of them, a
row each (no training), e.g. one process against two::

    python examples/ogbn_node_ddp.py --report ranks1/results.json ranks2/results.json

Example::

    torchrun --nproc_per_node=2 examples/ogbn_node_ddp.py                # gloo, CPU
    torchrun --nproc_per_node=8 examples/ogbn_node_ddp.py --num-nodes 1000000  # nccl, GPUs
    python examples/ogbn_node_ddp.py --epochs 5      # one process (world size 1)
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import statistics
import time
from typing import List, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

from hsa_geo import Hierarchy
from hsa_geo.distributed import ShardedHierarchy, communicated_bytes, shard_hierarchy
from hsa_geo.experiments import (
    load_result,
    mean_ci95,
    provenance,
    provenance_note,
    save_json,
)
from hsa_geo.nn import HSAGraphTransformer

from _ogbn import (
    add_common_arguments,
    bold_best,
    build_hierarchy,
    epoch_seconds,
    load_graph,
    mean_interval_text,
    write_report,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Node property prediction with exact global HSA across the ranks of a '
        'torch.distributed job (run it under torchrun).',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument('--out', default='results/ogbn_node_ddp',
                        help='folder for the shards, results.json, results.md and curves.png')
    parser.add_argument('--report', nargs='+', metavar='RESULTS_JSON', default=None,
                        help='print the table of the results.json of earlier runs (a row '
                        'each), with their provenance, and exit (no training)')
    return parser.parse_args(argv)


# ----------------------------------------------------------------- set-up
def init_process_group(device: str = 'cpu') -> tuple:
    r"""``(rank, world_size, device)``: torchrun's environment when there is
    one (nccl on GPUs, one per local rank, when :obj:`device` is CUDA; gloo on
    CPUs), else a single process on :obj:`device`."""
    cuda = torch.device(device).type == 'cuda' and torch.cuda.is_available()
    if 'RANK' not in os.environ:
        return 0, 1, torch.device(device if cuda else 'cpu')
    dist.init_process_group('nccl' if cuda else 'gloo')
    device = torch.device('cpu')
    if cuda:
        device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


def all_reduce(values: List[float], world_size: int, op: str = 'sum') -> List[float]:
    r"""The sums (or, with ``op='max'``, the maxima) of :obj:`values` over the
    ranks."""
    if world_size == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == 'nccl':
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == 'max' else dist.ReduceOp.SUM)
    return tensor.tolist()


def per_rank(value: float, rank: int, world_size: int) -> List[float]:
    r"""Every rank's :obj:`value`, in rank order."""
    return all_reduce([float(value) if r == rank else 0.0 for r in range(world_size)],
                      world_size)


def save_shards(args, world_size: int) -> dict:
    r"""Rank 0: the graph, its hierarchy, and every rank's share on disk."""
    data = load_graph(args)
    tree, _, builder, build_s, _ = build_hierarchy(data, args)
    os.makedirs(osp.join(args.out, 'shards'), exist_ok=True)
    for rank in range(world_size):
        part, _ = shard_hierarchy(tree, rank, world_size)
        torch.save(part, shard_path(args, rank))
    return {'nodes': data.num_nodes, 'edges': data.edge_index.size(1),
            'classes': int(data.y.max()) + 1, 'features': data.num_features,
            'builder': str(builder), 'build_seconds': build_s}


def shard_path(args, rank: int) -> str:
    return osp.join(args.out, 'shards', f'rank{rank}.pt')


# -------------------------------------------------------------- training
def train(seed: int, part, sharded: ShardedHierarchy, args, info: dict, world_size: int,
          device, progress) -> dict:
    torch.manual_seed(seed)       # the same initial parameters on every rank
    model = HSAGraphTransformer(info['features'], args.hidden, info['classes'],
                                num_layers=args.layers, heads=args.heads,
                                pos_channels=args.pos_dim, dropout=args.dropout,
                                norm='layer_norm', norm_kwargs={'mode': 'node'}).to(device)
    torch.manual_seed(seed * 1000 + (dist.get_rank() if world_size > 1 else 0))  # dropout
    net = torch.nn.parallel.DistributedDataParallel(model) if world_size > 1 else model
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    node = part['node']
    edge_index = part['node', 'to', 'node'].edge_index
    total_train, = all_reduce([float(node.train_mask.sum())], world_size)
    history, best, times = [], None, []
    for epoch in range(1, args.epochs + 1):
        net.train()
        start = time.perf_counter()
        optimizer.zero_grad()
        out = net(node.x, edge_index, sharded, part.hsa_pos_dict)
        # this rank's sum, scaled so that DDP's mean over the ranks is the
        # gradient of the mean loss over all training nodes
        loss = F.cross_entropy(out[node.train_mask], node.y[node.train_mask],
                               reduction='sum') * world_size / total_train
        loss.backward()
        optimizer.step()
        seconds, = all_reduce([time.perf_counter() - start], world_size, 'max')
        times.append(seconds)
        net.eval()
        with torch.no_grad():
            pred = net(node.x, edge_index, sharded, part.hsa_pos_dict).argmax(-1)
        correct = pred == node.y
        counts = all_reduce([float(loss.detach()) / world_size,
                             float(correct[node.val_mask].sum()), float(node.val_mask.sum()),
                             float(correct[node.test_mask].sum()), float(node.test_mask.sum())],
                            world_size)
        row = {'epoch': epoch, 'loss': counts[0], 'valid_accuracy': counts[1] / counts[2],
               'test_accuracy': counts[3] / counts[4], 'seconds': seconds}
        history.append(row)
        if best is None or row['valid_accuracy'] > best['valid_accuracy']:
            best = dict(row)
        progress.set_postfix(epoch=epoch, valid=f"{row['valid_accuracy']:.3f}")
        progress.update()
    return {'seed': seed, 'history': history, 'best_epoch': best['epoch'],
            'valid_accuracy': best['valid_accuracy'], 'test_accuracy': best['test_accuracy'],
            'params': sum(p.numel() for p in model.parameters()),
            'seconds_per_epoch': statistics.median(times)}


def main(argv=None) -> List[dict]:
    args = parse_args(argv)
    if args.report:
        results = [(load_result(path), path) for path in args.report]
        print(report(results))
        return [run for result, _ in results for run in result['runs']]
    from tqdm import tqdm
    torch.set_num_threads(args.threads)
    rank, world_size, device = init_process_group(args.device)
    info = [save_shards(args, world_size) if rank == 0 else None]
    if world_size > 1:
        dist.broadcast_object_list(info, src=0)     # also waits for the shards
    info = info[0]
    part = torch.load(shard_path(args, rank), weights_only=False).to(device)
    # the share the part records: the ranks check that they hold one tree's shares
    sharded = ShardedHierarchy(Hierarchy.from_hetero(part).to(device), share=part.hsa_share)
    barrier(world_size)
    if rank == 0:   # the shards are loaded: nobody needs the files any more
        for r in range(world_size):
            os.remove(shard_path(args, r))
        os.rmdir(osp.dirname(shard_path(args, 0)))
    # every rank's nodes and kept edges, and the top-level subtrees of all ranks
    nodes = per_rank(part['node'].num_nodes, rank, world_size)
    edges = per_rank(part['node', 'to', 'node'].num_edges, rank, world_size)
    num_top, = all_reduce([float(sharded.subtrees.num_roots)], world_size)
    head_dim = args.hidden // args.heads    # keys, values and projected positions per head
    sent = communicated_bytes(int(num_top), args.heads, head_dim, head_dim, head_dim) \
        if world_size > 1 else 0                        # one process sends nothing
    label = (f'{args.dataset} (SYNTHETIC)' if args.dataset == 'planted' else args.dataset)
    if rank == 0:
        print(f'{label}: {info["nodes"]:,} nodes, {info["edges"] // 2:,} edges, '
              f'{info["classes"]} classes; {info["builder"]} in {info["build_seconds"]:.1f} s; '
              f'{world_size} rank(s) on {device.type}, nodes per rank '
              f'{[int(n) for n in nodes]}, edges kept {int(sum(edges)) // 2:,} of '
              f'{info["edges"] // 2:,} (the rest cross ranks)')
    results = []
    progress = tqdm(total=args.seeds * args.epochs, disable=args.quiet or rank != 0)
    for seed in range(args.seeds):
        progress.set_description(f'seed {seed}')
        results.append(train(seed, part, sharded, args, info, world_size, device, progress))
    progress.close()
    if rank == 0:
        path = osp.join(args.out, 'results.json')
        result = {'args': vars(args), 'world_size': world_size, 'info': info,
                  'nodes_per_rank': nodes, 'edges_per_rank': edges, 'bytes_per_layer': sent,
                  'runs': results, 'provenance': provenance(device)}
        if world_size > 1:  # the command as typed: sys.argv holds no torchrun
            local = int(os.environ.get('LOCAL_WORLD_SIZE', world_size))
            nnodes = f' --nnodes={world_size // local}' if local != world_size else ''
            result['provenance']['command'] = result['provenance']['command'].replace(
                'python ', f'torchrun{nnodes} --nproc_per_node={local} ', 1)
        save_json(result, path)
        text = (f'{label}, {info["nodes"]:,} nodes: HSAGraphTransformer on {world_size} '
                f'rank(s) ({device.type}, {args.threads} thread(s) each); test accuracy at '
                f'the best-validation epoch, mean ± 95% interval over seeds; s/epoch = the '
                f"slowest rank's training step, median over epochs; bytes = what each rank "
                f'receives per HSA layer in the forward pass.\n\n' + report([(result, path)]))
        write_report(text, [dict(r, name=f'HSA, {world_size} rank(s)') for r in results],
                     args.out, label)
    if world_size > 1:
        dist.destroy_process_group()
    return results


def report(results: Sequence[Tuple[dict, str]]) -> str:
    r"""The table of result files, a row each, with the line of every file's
    provenance: test accuracy at the best-validation epoch (mean ± 95%
    interval over the seeds), the slowest rank's seconds per epoch (median
    over the seeds of each seed's median over epochs; the fastest row in
    bold), nodes per rank, the share of the graph's edges the ranks keep and
    the bytes each rank receives per HSA layer."""
    cells, seconds = [], []
    for result, _ in results:
        runs = result['runs']
        accuracy = mean_ci95([r['test_accuracy'] for r in runs])
        seconds.append(statistics.median(epoch_seconds(r, statistics.median) for r in runs))
        kept = f"{sum(result['edges_per_rank']) / result['info']['edges']:.1%}"
        sent = result['bytes_per_layer']
        cells.append([str(result['world_size']), mean_interval_text(*accuracy, len(runs)),
                      f'{seconds[-1]:.2f}',
                      ' / '.join(f'{int(n):,}' for n in result['nodes_per_rank']),
                      kept.replace('.0%', '%'), f'{sent:,}' if sent else '-'])
    bold_best(cells, 2, seconds, min)
    lines = ['| processes | test accuracy | s/epoch (slowest rank) | nodes per rank | '
             'edges kept | bytes per HSA layer |', '|---|---|---|---|---|---|']
    lines += ['| ' + ' | '.join(row) + ' |' for row in cells]
    notes = [provenance_note(result, path) for result, path in results]
    return '\n'.join(lines) + '\n\n' + '\n\n'.join(notes)


if __name__ == '__main__':
    main()
