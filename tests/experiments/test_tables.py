import torch

from hsa_geo.experiments import (
    device_name,
    markdown_table,
    mean_std_text,
    measurement_note,
    summarise,
)


def test_markdown_table():
    runs = [dict(corpus='news', model=m, seed=s, test_accuracy=a, test_macro_f1=a / 2,
                 params=12345, seconds_per_epoch=1.5, peak_mib=100.4, tokens=640.2)
            for m, s, a in (('hsa', 0, 0.5), ('hsa', 1, 0.7), ('fsa', 0, 0.4))]
    keys, metrics = ['corpus', 'model'], ['accuracy', 'macro_f1']
    rows = summarise(runs, keys, metrics, extra=('tokens', ))
    lines = markdown_table(rows, keys, metrics, extra={'tokens': 'tokens'}).splitlines()
    assert lines[0] == ('| corpus | model | test accuracy | test macro_f1 | seeds | params | '
                        'tokens | s/epoch | peak MiB |')
    assert lines[1] == '|' + '---|' * 9
    half = rows[0]['accuracy'][1]
    assert lines[2] == (f'| news | hsa | 0.600 ± {half:.3f} | 0.300 ± {half / 2:.3f} | 2 | '
                        '12,345 | 640 | 1.50 | 100 |')
    # one seed has no interval: said so rather than '± 0.000'
    assert lines[3] == ('| news | fsa | 0.400 (one seed) | 0.200 (one seed) | 1 | 12,345 | 640 '
                        '| 1.50 | 100 |')


def test_mean_std_text():
    assert mean_std_text([1.0, 2.0, 3.0]) == '2.000 ± 1.000'
    assert mean_std_text([0.25]) == '0.250 ± 0.000'


def test_measurement_note_names_the_device():
    threads = torch.get_num_threads()
    assert device_name('cpu') == f"CPU ({threads} thread{'s' if threads != 1 else ''})"
    note = measurement_note(torch.device('cpu'))
    assert note.startswith(f's/epoch = median training epoch on the {device_name("cpu")}')
    assert 'tensors saved for backward' in note
