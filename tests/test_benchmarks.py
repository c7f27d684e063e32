import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / 'benchmarks').glob('*.py') if not p.name.startswith('_'))


@pytest.mark.parametrize('script', SCRIPTS)
def test_benchmark_help(script):
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / script), '--help'],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'usage:' in out.stdout


@pytest.mark.slow
def test_builders_benchmark_smoke_run():
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'bench_builders.py'),
                          '--points', '500', '--words', '50', '--sequence', '500',
                          '--graph-sizes', '50', '--spectral-sizes', '500', '--repeats', '1'],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert '| octree, 500 points' in out.stdout


@pytest.mark.slow
def test_large_graphs_benchmark_smoke_run(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'bench_large_graphs.py'),
                          '--sizes', '2000', '--seeds', '1', '--repeats', '1', '--parts', '4',
                          '4', '--within', '0.6', '0.3', '--degree', '12', '--port', '29541',
                          '--out', str(tmp_path / 'large.md')],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / 'large.md').read_text()
    assert 'SYNTHETIC' in text
    for builder in ('METIS', 'PLM'):
        row = next(line for line in text.splitlines() if builder in line)
        ari = [float(a) for a in row.split('|')[6].split('/')]
        assert len(ari) == 2 and ari[1] > 0.9     # the planted top blocks are found
    assert 'spectral windows' in text and 'Louvain (networkx)' in text
    steps = [line.split(' | ') for line in text.splitlines() if line.startswith('| 2,000 | ')
             and line.split(' | ')[1] in ('HSA', 'SGFormer', 'Polynormer', 'GPS + Performer')]
    assert len(steps) == 4 and all(float(row[2]) > 0 for row in steps)
    assert steps[0][4] == '1.00x'                 # ratios against HSA
    distributed = next(line for line in text.splitlines() if line.startswith('| 2,000 | 8 |'))
    assert distributed.split(' | ')[5] == '4,224'  # 8 top-level nodes x 4 heads x 33 x 4 B


@pytest.mark.slow
def test_points_benchmark_smoke_run(tmp_path):
    # 1,000 points take the approximate kNN graph and skip dense attention:
    # both branches run, with one fresh worker process per measured row
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'bench_points.py'),
                          '--sizes', '500', '1000', '--repeats', '1', '--device', 'cpu',
                          '--exact-knn-max', '500', '--dense-max', '500',
                          '--out', str(tmp_path / 'points.md'),
                          '--plot', str(tmp_path / 'points.png')],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    table = (tmp_path / 'points.md').read_text()
    timings = table.split('Untimed setup')[0]
    rows = [line.split(' | ') for line in timings.splitlines() if line.startswith('| 500 |')]
    assert [r[1] for r in rows] == ['HSA (octree)', 'PointTransformerConv (kNN)',
                                    'dense SDPA']
    for r in rows:  # fwd ms and fwd+bwd ms are numbers
        assert float(r[5].replace(',', '')) > 0 and float(r[6].replace(',', '')) > 0
    assert 'morton kNN' in table and 'skipped (N > --dense-max' in table
    assert (tmp_path / 'points.json').exists() and (tmp_path / 'points.png').stat().st_size


@pytest.mark.slow
def test_workloads_benchmark_smoke_run(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'bench_workloads.py'),
                          '--workloads', 'molecules', 'ragged', 'memory', '--batch', '4',
                          '--repeats', '1', '--ragged-sizes', '256', '--floor-leaves', '4096',
                          '--out', str(tmp_path / 'w.json')],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert '| molecules | ' in out.stdout and 'N=256:' in out.stdout
    assert 'GiB on the fused CPU kernels' in out.stdout
    written = json.loads((tmp_path / 'w.json').read_text())
    # the result file records what made it: the command, versions, machine and threads
    assert 'bench_workloads.py' in written['command'] and written['versions']['torch']
    assert written['machine']['torch_threads'] == 1
    found = written['results'][-1]
    # small buffers may reuse freed heap pages, so only the form is checked here
    assert found['input_bytes'] == 4 * 4096 * 4 * 32 * 4
    assert min(found['fused_peak'], found['pytorch_peak']) >= 0


@pytest.mark.slow
def test_cuda_check_dry_run_on_the_cpu():
    # the GPU script cannot run in CI; its dry run walks every step on the CPU
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'cuda_check.py'),
                          '--dry-run'], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert 'max |PyTorch path - reference|' in out.stdout
    assert '| molecules |' in out.stdout and '| 4,096 |' in out.stdout


@pytest.mark.slow
def test_compile_benchmark_smoke_run(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'bench_compile.py'),
                          '--workloads', 'molecules', '--batches', '3', '--rounds', '1',
                          '--out', str(tmp_path / 'c.json')],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith('| molecules |'))
    assert row.split(' | ')[3] == '1'  # three batch shapes, one compilation
    assert (tmp_path / 'c.json').exists()


@pytest.mark.slow
def test_paper_tables_regenerate_the_committed_tables(tmp_path):
    # the result files in benchmarks/paper_results/ give benchmarks/paper_tables.md as committed
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'paper_tables.py'), '--out',
                          str(tmp_path / 'tables.md')], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / 'tables.md').read_text() == \
        (ROOT / 'benchmarks' / 'paper_tables.md').read_text()
