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


# every script's --help of a folder in one child process: a child per script
# would start Python and import torch each time (5-10 s apiece)
_HELP_ALL = r'''
import contextlib, io, json, os, runpy, sys
out = {}
for path in sys.argv[1:]:
    saved_path, stdout, stderr = list(sys.path), io.StringIO(), io.StringIO()
    sys.path.insert(0, os.path.dirname(path))
    sys.argv = [path, '--help']
    code = 0
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            runpy.run_path(path, run_name='__main__')
    except SystemExit as exit:
        code = exit.code or 0
    except Exception as error:  # reported to the test that asks for this script
        code = repr(error)
    sys.path[:] = saved_path
    out[path] = [code, stdout.getvalue(), stderr.getvalue()]
sys.__stdout__.write(json.dumps(out))
'''


@pytest.fixture(scope='session')
def script_help():
    r"""``script_help(path)``: what ``python <path> --help`` prints.  The
    first call for a folder runs ``--help`` of every script in it (names not
    starting with ``_``) in one child process, from the script's folder on
    ``sys.path`` as ``python <script>`` has it; the test fails with the
    script's error if ``--help`` did not exit with 0."""
    import json
    import pathlib
    import subprocess
    import sys
    cache = {}

    def help_text(path) -> str:
        path = pathlib.Path(path).resolve()
        if path not in cache:
            scripts = sorted(p for p in path.parent.glob('*.py') if not p.name.startswith('_'))
            out = subprocess.run([sys.executable, '-c', _HELP_ALL] + [str(p) for p in scripts],
                                 cwd=path.parent, capture_output=True, text=True, timeout=600)
            assert out.returncode == 0, out.stderr[-3000:]
            for name, result in json.loads(out.stdout).items():
                cache[pathlib.Path(name)] = result
        code, stdout, stderr = cache[path]
        assert code == 0, f'{path.name} --help: exit {code}\n{stderr[-3000:]}'
        return stdout
    return help_text
