import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / 'examples'


@pytest.mark.parametrize('script, flags', [
    ('point_cloud.py', ('--dataset', '--models', '--seeds', '--epochs', '--figures-only')),
    ('mesh.py', ('--task', '--models', '--seeds', '--faces', '--depth')),
])
def test_help(script, flags):
    out = subprocess.run([sys.executable, str(EXAMPLES / script), '--help'],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for flag in flags:
        assert flag in out.stdout


def _smoke_run(tmp_path, script, *flags):
    r"""Runs :obj:`script` for one epoch, one seed, width 16 into
    :obj:`tmp_path`; returns its runs keyed by ((dataset or task, ), model)."""
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), '--epochs', '1', '--seeds', '1',
         '--channels', '16', '--device', 'cpu', '--out', str(tmp_path), *flags],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return {(tuple(r[k] for k in ('dataset', 'task') if k in r), r['model']): r
            for r in json.loads((tmp_path / 'results.json').read_text())}


@pytest.mark.slow
def test_point_cloud_smoke_run(tmp_path):
    pytest.importorskip('sklearn')
    pytest.importorskip('trimesh')
    runs = _smoke_run(tmp_path, 'point_cloud.py', '--limit', '40', '--per-class', '3',
                      '--points', '64', '--figures', str(tmp_path / 'fig'))
    models = ('hsa', 'hsa+pt', 'pt', 'dense', 'pointnet')
    assert set(runs) == {((d, ), m) for d in ('digits', 'shapes') for m in models}
    for d in ('digits', 'shapes'):
        # dense attention is the same module over another hierarchy
        assert runs[(d, ), 'hsa']['params'] == runs[(d, ), 'dense']['params']
        assert runs[(d, ), 'pointnet']['params'] < runs[(d, ), 'hsa']['params']
        assert runs[(d, ), 'hsa+pt']['params'] > runs[(d, ), 'hsa']['params']
        assert all(0 <= runs[(d, ), m]['test_accuracy'] <= 1 for m in models)
    table = (tmp_path / 'point_cloud.md').read_text()
    assert '| digits | hsa |' in table and '| shapes | pointnet |' in table
    for name in ('point_cloud_curves.png', 'fig/bunny_octree.png', 'fig/bunny_attention.png'):
        assert (tmp_path / name).stat().st_size > 10_000


@pytest.mark.slow
def test_mesh_smoke_run(tmp_path):
    pytest.importorskip('trimesh')
    runs = _smoke_run(tmp_path, 'mesh.py', '--per-class', '3', '--models', 'hsa', 'dense',
                      'pt', '--figure', str(tmp_path / 'airplane.png'))
    assert set(runs) == {((t, ), m) for t in ('classification', 'parts')
                         for m in ('hsa', 'dense', 'pt')}
    assert 0 <= runs[('parts', ), 'hsa']['test_miou'] <= 1
    assert 'test miou' in (tmp_path / 'mesh_parts.md').read_text()
    assert '| classification | dense |' in (tmp_path / 'mesh_classification.md').read_text()
    assert (tmp_path / 'airplane.png').stat().st_size > 10_000
