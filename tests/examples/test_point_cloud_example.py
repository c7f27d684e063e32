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
def test_help(script, flags, script_help):
    text = script_help(EXAMPLES / script)
    for flag in flags:
        assert flag in text


def _smoke_run(tmp_path, script, *flags, seeds=1):
    r"""Runs :obj:`script` for one epoch, :obj:`seeds` seeds, width 16 into
    :obj:`tmp_path`; returns its result file and its runs keyed by
    ((dataset or task, ), model, seed)."""
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), '--epochs', '1', '--seeds', str(seeds),
         '--channels', '16', '--device', 'cpu', '--out', str(tmp_path), *flags],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / 'results.json').read_text())
    assert result['args']['seeds'] == seeds and result['provenance']['command']
    assert result['provenance']['machine']['device'].startswith('CPU')
    runs = {(tuple(r[k] for k in ('dataset', 'task') if k in r), r['model'], r['seed']): r
            for r in result['runs']}
    return result, runs, out.stdout


def _report(script, path, *flags):
    r"""``script --report path [flags]``: its table's lines and the rows'
    cells; checks that the table is followed by the provenance line only."""
    out = subprocess.run([sys.executable, str(EXAMPLES / script), '--report', str(path),
                          *flags], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    table, note = out.stdout.rstrip('\n').split('\n\n')
    assert note.startswith(f'*From `{path}`: `python ') and script in note
    lines = table.splitlines()
    return lines, [[c.strip() for c in line.strip('|').split('|')] for line in lines[2:]], \
        out.stdout


@pytest.mark.slow
def test_point_cloud_smoke_run(tmp_path):
    pytest.importorskip('sklearn')
    pytest.importorskip('trimesh')
    _, runs, stdout = _smoke_run(tmp_path, 'point_cloud.py', '--limit', '40', '--per-class', '3',
                                 '--points', '64', '--figures', str(tmp_path / 'fig'))
    models = ('hsa', 'hsa+pt', 'pt', 'dense', 'pointnet')
    assert set(runs) == {((d, ), m, 0) for d in ('digits', 'shapes') for m in models}
    for d in ('digits', 'shapes'):
        # dense attention is the same module over another hierarchy
        assert runs[(d, ), 'hsa', 0]['params'] == runs[(d, ), 'dense', 0]['params']
        assert runs[(d, ), 'pointnet', 0]['params'] < runs[(d, ), 'hsa', 0]['params']
        assert runs[(d, ), 'hsa+pt', 0]['params'] > runs[(d, ), 'hsa', 0]['params']
        assert all(0 <= runs[(d, ), m, 0]['test_accuracy'] <= 1 for m in models)
    table = (tmp_path / 'point_cloud.md').read_text()
    assert '| digits | hsa |' in table and '| shapes | pointnet |' in table
    for name in ('point_cloud_curves.png', 'fig/bunny_octree.png', 'fig/bunny_attention.png'):
        assert (tmp_path / name).stat().st_size > 10_000

    lines, rows, text = _report('point_cloud.py', tmp_path / 'results.json')
    assert lines[0] == '| dataset | model | test accuracy | params | s/epoch | peak MiB |'
    assert text in stdout                       # the training run printed the same
    assert [r[:2] for r in rows] == [[d, m] for d in ('digits', 'shapes') for m in models]
    run = runs[('shapes', ), 'pt', 0]
    assert rows[7][2].strip('*') == f"{run['test_accuracy']:.3f} (one seed)"
    assert rows[7][3:] == [f"{run['params']:,}", f"{run['seconds_per_epoch']:.2f}",
                           f"{run['peak_mib']:.0f}"]


@pytest.mark.slow
def test_mesh_smoke_run(tmp_path):
    import statistics
    pytest.importorskip('trimesh')
    result, runs, stdout = _smoke_run(tmp_path, 'mesh.py', '--per-class', '3', '--models', 'hsa',
                                      'dense', 'pt', '--figure', str(tmp_path / 'airplane.png'),
                                      seeds=2)
    assert set(runs) == {((t, ), m, s) for t in ('classification', 'parts')
                         for m in ('hsa', 'dense', 'pt') for s in (0, 1)}
    assert 0 <= runs[('parts', ), 'hsa', 0]['test_miou'] <= 1
    assert 'test miou' in (tmp_path / 'mesh_parts.md').read_text()
    assert '| classification | dense |' in (tmp_path / 'mesh_classification.md').read_text()
    assert (tmp_path / 'airplane.png').stat().st_size > 10_000
    assert result['classes'] == 7

    path = tmp_path / 'results.json'
    lines, rows, text = _report('mesh.py', path, '--table', 'parts')
    assert lines[0] == '| task | model | test face accuracy | test mIoU | s/epoch |'
    assert text in stdout
    assert [r[:2] for r in rows] == [['parts (7 primitive types)', m]
                                     for m in ('hsa', 'dense', 'pt')]
    miou = [runs[('parts', ), 'dense', s]['test_miou'] for s in (0, 1)]
    assert rows[1][3].strip('*') == f'{statistics.fmean(miou):.3f} ± {statistics.stdev(miou):.3f}'
    lines, rows, _ = _report('mesh.py', path, '--table', 'classification')
    assert lines[0] == '| task | model | test accuracy | test mIoU | s/epoch |'
    assert rows[0][:2] == ['classification (7 primitives)', 'hsa'] and rows[0][3] == '-'
    # both tasks in one file: the report asks which
    out = subprocess.run([sys.executable, str(EXAMPLES / 'mesh.py'), '--report', str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and 'name one with --table' in out.stderr
