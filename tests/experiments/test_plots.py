import pytest

from hsa_geo.experiments import plot_curves


def test_plot_curves_writes_a_png(tmp_path):
    pytest.importorskip('matplotlib')
    history = [{'epoch': e, 'loss': 1.0 / e, 'valid_accuracy': 0.1 * e} for e in (1, 2, 3)]
    runs = [dict(dataset='digits', model=m, seed=s, history=history[:3 - s])
            for m in ('hsa', 'dense') for s in (0, 1)]
    path = tmp_path / 'curves' / 'curves.png'
    assert plot_curves(runs, ['dataset'], 'model', 'accuracy', str(path), 'digits',
                       series=('valid_accuracy', 'loss')) == str(path)
    assert path.stat().st_size > 10_000
