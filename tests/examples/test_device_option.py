import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / 'examples'
SCRIPTS = sorted(p.name for p in EXAMPLES.glob('*.py') if not p.name.startswith('_'))


@pytest.mark.slow
@pytest.mark.parametrize('script', SCRIPTS)
def test_every_example_takes_a_device(script):
    out = subprocess.run([sys.executable, str(EXAMPLES / script), '--help'], cwd=EXAMPLES,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert '--device' in out.stdout
