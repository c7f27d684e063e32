r"""What a user gets from ``pip install``: the wheel built from this tree,
installed into a scratch environment and imported from outside the source
tree, loads every kind of shipped data."""
import os
import pathlib
import subprocess
import sys
import venv

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

CHECK = r'''
import os, sys
import hsa_geo
from hsa_geo import datasets
here = os.path.dirname(hsa_geo.__file__)
assert here.startswith(sys.prefix), (here, sys.prefix)        # the wheel, not the source tree
assert datasets.DATA_DIR.startswith(here), datasets.DATA_DIR
assert os.path.exists(os.path.join(here, 'py.typed'))
print('corpus', len(datasets.text_corpus('news_articles').texts))
print('molecules', len(datasets.read_molecules('ogbg-molsolubility')['smiles']))
print('mesh', datasets.read_mesh('ant').face.size(1))
print('bunny', datasets.read_bunny().pos.size(0))
print('ogb', len(datasets.ogb_dataset('ogbg-molfreesolv', root=sys.argv[1])))
'''


@pytest.mark.slow
def test_the_wheel_loads_the_shipped_data_without_the_source_tree(tmp_path):
    pytest.importorskip('ogb')
    pytest.importorskip('trimesh')
    wheels = tmp_path / 'wheels'
    build = [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '-q', str(ROOT), '-w', str(wheels)]
    # with this environment's setuptools when it can build the wheel, else in pip's isolated
    # build environment (which fetches setuptools from the package index)
    if subprocess.run(build + ['--no-build-isolation'], timeout=600).returncode != 0:
        subprocess.run(build, check=True, timeout=600)
    wheel, = wheels.glob('hsa_geo-*.whl')
    env_dir = tmp_path / 'env'
    # the scratch environment sees this one's packages (torch, PyG, ...) but not
    # the source tree: hsa_geo itself comes from the wheel
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / 'bin' / 'python'
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    subprocess.run([sys.executable, '-m', 'pip', '--python', str(python), 'install', '-q',
                    '--no-deps', '--no-index', str(wheel)], check=True, timeout=600, env=env)
    work = tmp_path / 'work'
    work.mkdir()
    out = subprocess.run([str(python), '-c', CHECK, str(tmp_path / 'ogb')], cwd=work, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    keys = ('corpus', 'molecules', 'mesh', 'bunny', 'ogb')
    lines = dict(line.split() for line in out.stdout.splitlines()
                 if line.split()[:1] and line.split()[0] in keys and len(line.split()) == 2)
    assert int(lines['corpus']) > 3000 and int(lines['molecules']) == 1282
    assert int(lines['mesh']) == 912 and int(lines['bunny']) > 2000
    assert int(lines['ogb']) == 642
