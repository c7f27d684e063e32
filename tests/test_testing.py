import math

import pytest
import torch

from hsa_geo.testing import PeakMemory, mean_ci95


def test_mean_ci95():
    assert mean_ci95([2.0]) == (2.0, 0.0)
    mean, half = mean_ci95([1.0, 2.0, 3.0, 4.0, 5.0])
    # t(0.975, 4) = 2.776, stdev = sqrt(2.5)
    assert mean == 3.0 and math.isclose(half, 2.776 * math.sqrt(2.5) / math.sqrt(5))
    with pytest.raises(ValueError, match="'values' is empty"):
        mean_ci95([])


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
