r"""The wall-clock part of ``zero_shot_fidelity.py``: the whole
all-MiniLM-L6-v2 with HSA in every layer against the original, and HSA's
attention alone against SDPA, every timed round kept; and their tables, the
medians of the rounds.

``zero_shot_fidelity.py`` imports this module as ``from _wall_clock import
...``: run as ``python examples/zero_shot_fidelity.py``, a script has its own
folder on the path."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

from hsa_geo import hsa
from hsa_geo.zero_shot import attention_flops, inject, restore, token_forest

WIDTH, HEADS = 384, 12


@torch.no_grad()
def wall_clock(model, lengths=(128, 512), batch=8, repeats=5) -> List[dict]:
    r"""Whole-model seconds of every round, original against HSA in every
    layer, the two taking turns round by round (so they share the machine's
    load); the first round warms up (and fills the hierarchy cache) and is
    dropped."""
    rows = []
    variants = ('original', 'HSA (2,4,8,16), all layers')
    for n in lengths:
        ids = torch.randint(1000, 20000, (batch, n))
        ids[:, 0], ids[:, -1] = 101, 102
        mask = torch.ones_like(ids)
        times: Dict[str, List[float]] = {v: [] for v in variants}
        for round_ in range(repeats + 1):
            for variant in variants:
                restore(model)
                if variant != 'original':
                    inject(model, hierarchy=(2, 4, 8, 16))
                with torch.no_grad():
                    start = time.perf_counter()
                    model(input_ids=ids, attention_mask=mask)
                    elapsed = time.perf_counter() - start
                if round_:
                    times[variant].append(elapsed)
        restore(model)
        rows.append(dict(length=n, batch=batch, original_seconds=times[variants[0]],
                         injected_seconds=times[variants[1]]))
    return rows


def times_of(fn: Callable[[], object], repeats: int) -> List[float]:
    r"""The seconds of :obj:`repeats` calls of :obj:`fn` after an untimed one
    (:func:`hsa_geo.testing.median_time`'s clock, every call kept)."""
    from torch.utils.benchmark import timer
    fn()
    times = []
    for _ in range(repeats):
        start = timer()
        fn()
        times.append(timer() - start)
    return times


@torch.no_grad()
def attention_alone(lengths=(512, 2048, 8192), repeats=5) -> List[dict]:
    r"""HSA's attention (windows (2, 4, 8, 16), ``include_self=True``) and
    SDPA on one sequence of random queries, keys and values per length:
    every repeat's seconds, and the attention FLOPs HSA saves."""
    rows = []
    for n in lengths:
        q, k, v = (torch.randn(n, HEADS, WIDTH // HEADS) for _ in range(3))
        h = token_forest(torch.ones(1, n, dtype=torch.bool), (2, 4, 8, 16), True)

        def run_hsa(q=q, k=k, v=v, h=h):
            hsa(q, k, v, h, include_self=True)

        qs, ks, vs = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))

        def run_sdpa(qs=qs, ks=ks, vs=vs):
            F.scaled_dot_product_attention(qs, ks, vs)

        row = dict(length=n)
        for name, fn in (('hsa', run_hsa), ('sdpa', run_sdpa)):
            row[f'{name}_seconds'] = times_of(fn, repeats)
        f = attention_flops(n, WIDTH, HEADS, (2, 4, 8, 16), special_tokens=True,
                            include_self=True)
        row['flops_saved'] = f.saved
        rows.append(row)
    return rows


def model_table(rows: List[dict]) -> str:
    r"""The whole model's wall-clock: per length, the median over the rounds
    of the original and of HSA in all layers, and their ratio."""
    lines = ['| length | original s | HSA all layers s | HSA / original |', '|---|---|---|---|']
    for r in rows:
        original, injected = (statistics.median(r[k]) for k in ('original_seconds',
                                                                 'injected_seconds'))
        lines.append(f"| {r['length']:,} | {original:.3f} | {injected:.3f} | "
                     f'{injected / original:.2f}x |')
    return '\n'.join(lines)


def attention_table(rows: List[dict]) -> str:
    r"""The attention alone: per length, the median over the repeats of HSA
    and of SDPA, their ratio and the attention FLOPs HSA saves."""
    lines = ['| length | HSA s | SDPA s | SDPA / HSA | attention FLOPs saved |',
             '|---|---|---|---|---|']
    for r in rows:
        hsa_s, sdpa_s = (statistics.median(r[k]) for k in ('hsa_seconds', 'sdpa_seconds'))
        lines.append(f"| {r['length']:,} | {hsa_s:.4f} | {sdpa_s:.4f} | {sdpa_s / hsa_s:.2f}x | "
                     f"{100 * r['flops_saved']:.1f}% |")
    return '\n'.join(lines)
