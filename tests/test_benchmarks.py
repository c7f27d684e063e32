import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / 'benchmarks').glob('*.py'))


@pytest.mark.parametrize('script', SCRIPTS)
def test_benchmark_help(script):
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / script), '--help'],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'usage:' in out.stdout


def test_builders_benchmark_smoke_run():
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'bench_builders.py'),
                          '--points', '500', '--words', '50', '--sequence', '500',
                          '--graph-sizes', '50', '--spectral-sizes', '500', '--repeats', '1'],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert '| octree, 500 points' in out.stdout
