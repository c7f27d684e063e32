import math

import pytest

from hsa_geo.experiments import SPREADS, mean_ci95, mean_std, summarise


def test_mean_std():
    assert mean_std([2.0]) == (2.0, 0.0)
    mean, std = mean_std([1, 2, 3, 4])
    assert mean == 2.5 and math.isclose(std, math.sqrt(5 / 3))


def test_mean_ci95_uses_student_t():
    from scipy.stats import t
    values = [0.61, 0.64, 0.58, 0.66, 0.6, 0.63, 0.59, 0.65, 0.62, 0.57, 0.64, 0.6]
    mean, half = mean_ci95(values)
    _, std = mean_std(values)
    assert math.isclose(half, t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values)))
    # two seeds: the interval is wide (t(0.975, 1) = 12.706)
    assert math.isclose(mean_ci95([1.0, 2.0])[1], 12.706204736174707 * math.sqrt(0.5) / 2**0.5)


def _run(model, seed, accuracy, seconds, peak, **extra):
    return dict(model=model, seed=seed, test_accuracy=accuracy, params=10,
                seconds_per_epoch=seconds, peak_mib=peak, **extra)


def test_summarise_groups_runs_over_seeds():
    runs = [_run('hsa', 0, 0.5, 3.0, 10, tokens=7), _run('fsa', 0, 0.4, 1.0, 20, tokens=9),
            _run('hsa', 1, 0.7, 1.0, 30, tokens=7), _run('hsa', 2, 0.6, 2.0, 5, tokens=7)]
    hsa, fsa = summarise(runs, ['model'], ['accuracy'], extra=('tokens', ), spread='std')
    assert hsa['model'] == 'hsa' and hsa['seeds'] == 3 and fsa['seeds'] == 1
    assert hsa['accuracy'] == pytest.approx((0.6, 0.1))
    assert hsa['seconds_per_epoch'] == 2.0 and hsa['peak_mib'] == 30 and hsa['tokens'] == 7
    assert fsa['accuracy'] == (0.4, 0.0)
    ci = summarise(runs, ['model'], ['accuracy'])[0]['accuracy']
    assert ci == mean_ci95([0.5, 0.7, 0.6]) and SPREADS['ci95'][0] is mean_ci95
    with pytest.raises(ValueError, match="'spread' must be one of"):
        summarise(runs, ['model'], ['accuracy'], spread='iqr')
