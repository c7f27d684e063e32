import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / 'examples'
SCRIPTS = sorted(p.name for p in EXAMPLES.glob('*.py') if not p.name.startswith('_'))


@pytest.mark.parametrize('script', SCRIPTS)
def test_every_example_takes_a_device(script, script_help):
    assert '--device' in script_help(EXAMPLES / script)
