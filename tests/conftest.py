import os

# Triton decides when it is first imported whether its kernels are compiled
# or interpreted; tests/engine/test_triton_kernels.py runs them on the CPU in the
# interpreter, so this must precede every import of triton (the engine only
# uses the kernels on the CPU where HSA_GEO_TRITON_ON_CPU=1 asks for it).
os.environ.setdefault('TRITON_INTERPRET', '1')

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# engine_path (below) sets one environment variable for a whole test, the
# same for every example: a function-scoped fixture is right there
_QUIET = [HealthCheck.function_scoped_fixture]
settings.register_profile('ci', max_examples=200, deadline=None, derandomize=True,
                          suppress_health_check=_QUIET)
settings.register_profile('dev', max_examples=60, deadline=None, suppress_health_check=_QUIET)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'ci'))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def _has_numba() -> bool:
    from hsa_geo.engine import numba_kernels
    return numba_kernels.available()


@pytest.fixture(params=['pytorch', pytest.param('numba', marks=pytest.mark.skipif(
    not _has_numba(), reason='numba is not installed'))])
def engine_path(request, monkeypatch):
    r"""Runs a test on each CPU path of the engine: the PyTorch path (the
    readable reference implementation) and the fused numba kernels
    (``HSA_GEO_CPU_KERNELS`` switches between them).  A module opts in with
    ``pytestmark = pytest.mark.usefixtures('engine_path')``."""
    monkeypatch.setenv('HSA_GEO_CPU_KERNELS', '1' if request.param == 'numba' else '0')
    return request.param
