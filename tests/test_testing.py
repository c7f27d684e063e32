import math

import pytest
import torch

import hsa_geo.experiments
from hsa_geo.testing import PeakMemory, mean_ci95, median_time


def test_mean_ci95():
    # the summaries live in hsa_geo.experiments; hsa_geo.testing keeps the name
    assert mean_ci95 is hsa_geo.experiments.mean_ci95
    assert mean_ci95([2.0]) == (2.0, 0.0)
    mean, half = mean_ci95([1.0, 2.0, 3.0, 4.0, 5.0])
    # t(0.975, 4) = 2.7764 (scipy.stats.t.ppf), stdev = sqrt(2.5)
    assert mean == 3.0 and math.isclose(half, 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5))
    with pytest.raises(ValueError, match="'values' is empty"):
        mean_ci95([])


def test_median_time_times_each_call_once(monkeypatch):
    import torch.utils.benchmark
    clock = iter([0.0, 1.0, 10.0, 13.0, 20.0, 22.0])   # calls of 1, 3 and 2 seconds
    monkeypatch.setattr(torch.utils.benchmark, 'timer', lambda: next(clock))
    calls = []
    assert median_time(lambda: calls.append(1), 3) == 2.0
    assert len(calls) == 4                               # one untimed warm-up
    clock = iter([0.0, 5.0])
    calls.clear()
    assert median_time(lambda: calls.append(1), 1, warmup=False) == 5.0
    assert len(calls) == 1


def test_peak_memory_counts_saved_activations_on_cpu():
    w = torch.randn(256, 256, requires_grad=True)
    with PeakMemory('cpu') as memory:
        for rows in (64, 1024, 128):
            x = torch.randn(rows, 256)
            h = torch.tanh(x @ w)          # saves x (for w's grad) and tanh's output
            h.sum().backward()
            memory.step()
    # the largest step saved x and tanh(x @ w) of 1024 x 256 floats (+ w itself)
    expected = 2 * 1024 * 256 * 4
    assert expected <= memory.peak <= expected + w.numel() * 4
