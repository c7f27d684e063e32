r"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node=2``
(gloo, CPU): every rank holds a share of the top-level subtrees and checks
its outputs and gradients against single-process HSA over the whole tree."""
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
        json.dump(report, f)
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
