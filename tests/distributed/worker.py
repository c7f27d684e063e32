r"""Run by tests/distributed/test_distributed.py under ``torchrun --nproc_per_node=2``
(gloo, CPU): every rank holds a share of the top-level subtrees and checks
its outputs and gradients against single-process HSA over the whole tree;
then a model trains one step under DistributedDataParallel on
ShardedHierarchy shares and is checked against full-batch training in one
process."""
import json
import os
import sys

import torch
import torch.distributed as dist

from hsa_geo import Hierarchy, hsa
from hsa_geo.distributed import communicated_bytes, distributed_hsa, shard_forest
from hsa_geo.testing import random_forest


def main(out_dir: str):
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    report = []
    for seed in range(3):
        parent, n = random_forest(seed, num_roots=5, max_depth=3, max_branching=4)
        forest = Hierarchy.from_parent(parent, n)
        num_nodes = parent.numel()
        whole = Hierarchy.from_parent(torch.cat([torch.where(parent < 0, num_nodes, parent),
                                                 torch.tensor([-1])]), n)
        gen = torch.Generator().manual_seed(seed)          # the same inputs on every rank
        q, k = (torch.randn(n, 2, 3, generator=gen, dtype=torch.float64) for _ in range(2))
        v = torch.randn(n, 2, 4, generator=gen, dtype=torch.float64)
        pos = torch.randn(num_nodes + 1, 2, 2, generator=gen, dtype=torch.float64)
        ref_inputs = [t.clone().requires_grad_() for t in (q, k, v, pos)]
        ref = hsa(*ref_inputs[:3], whole, pos=ref_inputs[3])
        ref_grads = torch.autograd.grad(ref.sin().sum(), ref_inputs)

        local, leaf_ids, node_ids = shard_forest(forest, world)[rank]
        mine = [t[leaf_ids].clone().requires_grad_() for t in (q, k, v)]
        local_pos = pos[node_ids].clone().requires_grad_()
        top_pos = pos[forest.roots[torch.isin(forest.roots, node_ids)]].clone().requires_grad_()
        out = distributed_hsa(*mine, local, pos=local_pos, top_pos=top_pos)
        grads = torch.autograd.grad(out.sin().sum(), mine + [local_pos, top_pos])
        # every rank's loss term reaches every rank's inputs: sum the pieces
        errors = {'out': (out - ref[leaf_ids]).abs().max().item()}
        for name, g, r in zip('qkv', grads[:3], ref_grads[:3]):
            errors[name] = (g - r[leaf_ids]).abs().max().item()
        inner = node_ids[node_ids < num_nodes]
        full_pos_grad = torch.zeros_like(pos)
        full_pos_grad[node_ids] += grads[3]
        full_pos_grad[forest.roots[torch.isin(forest.roots, node_ids)]] += grads[4]
        errors['pos'] = (full_pos_grad[inner] - ref_grads[3][inner]).abs().max().item()
        errors['bytes'] = communicated_bytes(forest.roots.numel(), 2, 3, 4, 2, 8)
        report.append(errors)
    with open(os.path.join(out_dir, f'rank{rank}.json'), 'w') as f:
        json.dump({'hsa': report, 'ddp': ddp_step(rank, world),
                   'causal_mixed': causal_mixed_types(rank, world)}, f)
    dist.destroy_process_group()


def ddp_step(rank: int, world: int) -> dict:
    r"""One DDP training step of an HSAGraphTransformer on this rank's share
    of a graph hierarchy against full-batch training of the same model."""
    from torch.nn.parallel import DistributedDataParallel

    from hsa_geo.datasets import planted_node_dataset
    from hsa_geo.distributed import shard_hierarchy
    from hsa_geo.nn import HSAGraphTransformer
    from hsa_geo.transforms import GraphHierarchy
    graph = planted_node_dataset(600, avg_degree=8, num_parts=(4, 4), within=(0.6, 0.3),
                                 num_features=6, num_classes=3, split=(0.5, 0.2), seed=3)
    del graph.planted
    graph.x = graph.x.double()
    data = GraphHierarchy(method='metis', num_parts=(4, 4), pos_dim=3)(graph)
    for t in data.node_types:
        data[t].hsa_pos = data[t].hsa_pos.double()

    def model():
        torch.manual_seed(0)   # the same initial parameters everywhere
        # a per-node LayerNorm: no statistics across nodes, so exact under DDP
        return HSAGraphTransformer(6, 8, 3, num_layers=2, heads=2, conv=None,
                                   norm='layer_norm', norm_kwargs={'mode': 'node'},
                                   pos_channels=3).double()

    def loss_of(net, part, hierarchy, total_train):
        nodes = part['node']
        out = net(nodes.x, part['node', 'to', 'node'].edge_index, hierarchy,
                  part.hsa_pos_dict)
        mask = nodes.train_mask
        # the sum over this rank's training nodes, scaled so that DDP's mean of
        # the ranks' gradients is the gradient of the mean over all of them
        loss = torch.nn.functional.cross_entropy(out[mask], nodes.y[mask], reduction='sum')
        return out, loss * world / total_train

    total_train = int(data['node'].train_mask.sum())
    reference = model()
    ref_out, ref_loss = loss_of(reference, data, Hierarchy.from_hetero(data), total_train)
    (ref_loss / world).backward()
    part, sharded = shard_hierarchy(data, rank, world)
    net = DistributedDataParallel(model())
    out, loss = loss_of(net, part, sharded, total_train)
    loss.backward()
    grads = {name: p.grad for name, p in net.module.named_parameters()}
    # (without a local layer its norm is unused: no gradient in either model)
    unused = sorted(name for name, p in reference.named_parameters() if p.grad is None)
    errors = {'out': (out - ref_out[part['node'].n_id]).abs().max().item(),
              'nodes': int(part['node'].num_nodes),
              'unused_match': unused == sorted(n for n, g in grads.items() if g is None),
              'grad': max((grads[name] - p.grad).abs().max().item()
                          for name, p in reference.named_parameters() if p.grad is not None)}
    return errors


def causal_mixed_types(rank: int, world: int) -> float:
    r"""Causal HSA when the root's children are of two node types (leaves and
    clusters) listed in the other order among the edge types: the ranks'
    shares must follow the compiled tree's order."""
    from torch_geometric.data import HeteroData

    from hsa_geo.distributed import shard_hierarchy
    from hsa_geo.nn import HSAConv
    data = HeteroData()
    gen = torch.Generator().manual_seed(7)
    data['tok'].x = torch.randn(10, 4, generator=gen, dtype=torch.float64)
    data['grp'].num_nodes, data['root'].num_nodes = 3, 1
    data['tok', 'in', 'grp'].edge_index = torch.tensor([[0, 1, 2, 3, 4, 5],
                                                        [0, 0, 1, 1, 2, 2]])
    data['grp', 'in', 'root'].edge_index = torch.tensor([[0, 1, 2], [0, 0, 0]])
    data['tok', 'in', 'root'].edge_index = torch.tensor([[6, 7, 8, 9], [0, 0, 0, 0]])
    torch.manual_seed(0)
    conv = HSAConv(4, 3, heads=2, causal=True, include_self=True).double()
    ref = conv(data['tok'].x, Hierarchy.from_hetero(data))
    part, sharded = shard_hierarchy(data, rank, world)
    out = conv(part['tok'].x, sharded)
    return (out - ref[part['tok'].n_id]).abs().max().item()


if __name__ == '__main__':
    main(sys.argv[1])
