import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / 'examples'


@pytest.fixture
def examples_on_path(monkeypatch):
    r"""The examples folder on ``sys.path`` for one test, as it is for a
    script run as ``python examples/<script>.py``: the test can import an
    example and the example its helper modules (``_experiment``,
    ``_ogbn``)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return EXAMPLES
