import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / 'benchmarks').glob('*.py') if not p.name.startswith('_'))


@pytest.mark.parametrize('script', SCRIPTS)
def test_benchmark_help(script, script_help):
    assert 'usage:' in script_help(ROOT / 'benchmarks' / script)


@pytest.mark.slow
def test_builders_benchmark_smoke_run(tmp_path):
    import statistics
    path = tmp_path / 'builders.json'
    out = subprocess.run([sys.executable, 'benchmarks/bench_builders.py',
                          '--points', '500', '--words', '50', '--sequence', '500',
                          '--graph-sizes', '50', '--spectral-sizes', '500', '--repeats', '3',
                          '--out', str(path)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result = json.loads(path.read_text())
    assert result['provenance']['machine']['torch_threads'] == 1
    runs = result['runs']
    assert [r['builder'] for r in runs] == ['octree', 'text', 'sequence', 'louvain', 'spectral']
    assert all(len(r['build_times']) == len(r['from_hetero_times']) == 3 for r in runs)

    lines, rows, text = _report('bench_builders.py', path)
    assert text in out.stdout                      # the measuring run printed the same
    assert lines[0] == '| builder | build s | `Hierarchy.from_hetero` s | target |'
    assert rows[0][0].startswith('octree, 500 points (depth ')
    for row, run in zip(rows, runs):               # the medians of the runs
        assert row[1] == f"{statistics.median(run['build_times']):.3f}"
        assert row[2] == f"{statistics.median(run['from_hetero_times']):.3f}"
    assert rows[0][3] == '< 10 s: met' and rows[1][3] == '< 1 s: met' and rows[4][3] == '-'


def _report(script, path, *flags):
    r"""What ``script --report path [flags]`` prints: the table, a blank line
    and the provenance line; the table's rows as lists of cells."""
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / script), '--report',
                          str(path), *flags], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    table, note = out.stdout.rstrip('\n').split('\n\n')
    assert note.startswith(f'*From `{path}`: `python ') and f'{script} ' in note
    return table.splitlines(), [[c.strip() for c in line.strip('|').split('|')]
                                for line in table.splitlines()[2:]], out.stdout


@pytest.mark.slow
def test_large_graphs_benchmark_smoke_run(tmp_path):
    import statistics
    path = tmp_path / 'large.json'
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'bench_large_graphs.py'),
                          '--sizes', '2000', '--seeds', '1', '--repeats', '2', '--parts', '4',
                          '4', '--within', '0.6', '0.3', '--degree', '12', '--port', '29541',
                          '--out', str(path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(path.read_text())
    assert result['provenance']['machine']['torch_threads'] == 1
    assert result['args']['sizes'] == [2000]

    lines, rows, text = _report('bench_large_graphs.py', path, '--table', 'builders')
    assert lines[0] == ('| nodes / edges | builder | partition s | hierarchy s | '
                        'ARI per level (finest first) |')
    assert text in out.stdout                      # the measuring run printed the same
    assert [r[1] for r in rows] == ['spectral windows', 'METIS', 'PLM', 'Louvain (networkx)']
    for row in rows[1:3]:                          # METIS and PLM find the planted top blocks
        ari = [float(a.strip('* ')) for a in row[4].split('/')]
        assert len(ari) == 2 and ari[1] > 0.9
    metis = next(r for r in result['builders'] if r['builder'] == 'METIS')
    assert rows[1][0] == '2,000 / 12,000' and metis['edges'] == 12_000
    assert rows[1][2].strip('*') == f"{metis['partition_s']:.2f}"   # one graph: its time

    lines, rows, _ = _report('bench_large_graphs.py', path, '--table', 'step')
    assert lines[0] == '| nodes | model | step s | activation GB | step / HSA step |'
    assert [r[1] for r in rows] == ['HSA', 'SGFormer', 'Polynormer', 'GPS + Performer']
    assert rows[0][4] == '1.00x'                   # ratios against HSA
    raw = {r['model']: r for r in result['step']}
    assert all(len(r['times']) == 2 for r in raw.values())   # every round is kept
    median = {m: statistics.median(r['times']) for m, r in raw.items()}
    assert rows[1][4] == f"{median['SGFormer'] / median['HSA']:.2f}x"
    assert rows[3][2].strip('*') == f"{median['GPS + Performer']:.3f}"

    lines, rows, _ = _report('bench_large_graphs.py', path, '--table', 'distributed')
    assert lines[0].startswith('| leaves | top-level subtrees | 1 process s | 2 ranks s |')
    assert rows[0][:2] == ['2,000', '8']
    assert rows[0][5] == '4,224'                   # 8 top-level nodes x 4 heads x 33 x 4 B
    d = result['distributed'][0]
    single, sharded = (statistics.median(d[key]) for key in ('single_times', 'sharded_times'))
    assert rows[0][4] == f'{single / sharded:.2f}x'

    # one file, several tables: the report asks which
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'bench_large_graphs.py'),
                          '--report', str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and 'name one with --table' in out.stderr


@pytest.mark.slow
def test_points_benchmark_smoke_run(tmp_path):
    import statistics

    # 1,000 points take the approximate kNN graph and skip dense attention:
    # both branches run, with one fresh worker process per measured row
    path = tmp_path / 'points.json'
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'bench_points.py'),
                          '--sizes', '500', '1000', '--repeats', '2', '--device', 'cpu',
                          '--threads', '1', '--exact-knn-max', '500', '--dense-max', '500',
                          '--out', str(path), '--plot', str(tmp_path / 'points.png')],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / 'points.png').stat().st_size
    result = json.loads(path.read_text())
    assert result['provenance']['machine']['torch_threads'] == 1
    runs = {(r['n'], r['layer']): r for r in result['runs']}
    assert all(len(r['fwd_times']) == 2 == len(r['fwd_bwd_times'])   # every run is kept
               for r in runs.values() if 'fwd_times' in r)

    lines, rows, text = _report('bench_points.py', path)
    assert lines[0] == ('| N | layer | fwd s | fwd+bwd s | peak MiB fwd / fwd+bwd | '
                        'fwd+bwd / HSA |')
    assert text in out.stdout                      # the measuring run printed the same
    assert [r[1] for r in rows if r[0] == '500'] == ['HSA (octree)',
                                                     'PointTransformerConv (k=16)', 'dense SDPA']
    assert rows[-1][4] == 'skipped (N > --dense-max 500)'
    pt, hsa = runs[1000, 'point_transformer'], runs[1000, 'hsa']
    row = next(r for r in rows if r[:2] == ['1,000', 'PointTransformerConv (k=16)'])
    fwd_bwd = statistics.median(pt['fwd_bwd_times'])
    assert row[5] == f"{fwd_bwd / statistics.median(hsa['fwd_bwd_times']):.1f}x"
    assert row[4].split(' / ')[1] == \
        f"{(pt['fwd_bwd_high_bytes'] - pt['base_bytes']) / 2**20:,.0f}"
    lines, rows, _ = _report('bench_points.py', path, '--table', 'setup')
    assert lines[0].startswith('| N | sampling s | octree depth |')
    assert rows[1][6] == 'morton' and rows[0][6] == 'exact'


@pytest.mark.slow
def test_workloads_benchmark_smoke_run(tmp_path):
    import statistics
    path = tmp_path / 'w.json'
    out = subprocess.run([sys.executable, 'benchmarks/bench_workloads.py',
                          '--workloads', 'molecules', 'ragged', 'floor', 'memory', '--batch', '4',
                          '--repeats', '3', '--ragged-sizes', '256', '512',
                          '--floor-leaves', '4096', '--out', str(path)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    written = json.loads(path.read_text())
    # the result file records what made it: the command, versions, machine and threads
    facts = written['provenance']
    assert 'bench_workloads.py' in facts['command'] and facts['versions']['torch']
    assert facts['machine']['torch_threads'] == 1
    found = {r['workload'] + ('' if r['workload'] == 'molecules' else str(r['leaves'])): r
             for r in written['results']}
    molecules = found['molecules']
    assert all(len(times) == 3 for times in molecules['times'].values())  # every round
    memory = found['memory4096']
    # small buffers may reuse freed heap pages, so only the form is checked here
    assert memory['input_bytes'] == 4 * 4096 * 4 * 32 * 4
    assert min(memory['fused_peak'], memory['pytorch_peak']) >= 0

    def median(row, key):
        return statistics.median(row['times'][key])

    lines, rows, text = _report('bench_workloads.py', path, '--table', 'batches')
    assert text in out.stdout                      # the measuring run printed the same
    assert lines[0].startswith('| workload | leaves (trees, L_max) | levels (classes) | '
                               'HSA fwd ms | dense fwd ms | dense / HSA fwd |')
    assert len(lines[0].split(' | ')) == 13 and [r[0] for r in rows] == ['molecules']
    row = rows[0]
    assert row[1] == f"{molecules['leaves']:,} (4, {molecules['max_len']})"
    assert row[3] == f"{1e3 * median(molecules, 'hsa_fwd'):.2f}"
    ratio = median(molecules, 'dense_fwd_bwd') / median(molecules, 'hsa_fwd_bwd')
    assert row[8] == f'{ratio:.2f}x'
    assert row[10] == f"{molecules['fwd_ops']['top']} ({molecules['fwd_ops']['all']})"
    assert row[12] == (f"{1e3 * median(molecules, 'compile'):.2f} "
                       f"({molecules['compile_ops']['top']})")

    lines, rows, _ = _report('bench_workloads.py', path, '--table', 'targets')
    assert lines[0] == '| target | measured | |' and len(rows) == 9
    targets = {r[0]: r[1:] for r in rows}
    assert targets['molecule batch fwd+bwd no slower than padded dense SDPA'][1] == \
        ('met' if ratio >= 1 else 'not met')
    assert targets['news batch fwd+bwd at least 10x faster than padded dense SDPA'] == \
        ['not measured', '-']
    ragged = [median(found[f'ragged{n}'], 'ragged') / median(found[f'ragged{n}'], 'regular')
              for n in (256, 512)]
    assert targets['ragged vs regular per-leaf time at most 1.3x at every N'] == \
        [f'{min(ragged):.2f}-{max(ragged):.2f}x', 'met' if max(ragged) <= 1.3 else 'not met']
    floor = median(found['floor4096'], 'hsa_fwd') / median(found['floor4096'], 'floor_fresh')
    assert targets['2^12 leaves regular b=16 forward within 2x of one fused pass with a '
                   'fresh output'][0] == f'{floor:.1f}x'
    assert targets['2^12 leaves forward+backward at most 3.0 GB over the inputs'][0] \
        .startswith(f"{memory['fused_peak'] / 2 ** 30:.2f} GiB over q, k, v")

    lines, rows, _ = _report('bench_workloads.py', path, '--table', 'details')
    assert lines[0] == '| measurement | value |'
    step = next(r for r in rows if 'one training step' in r[0])
    assert step[1].startswith(f"{1e3 * median(molecules, 'model_step'):.1f} ms, ")
    assert any(r[0].endswith('N=512') and r[1] == f'{ragged[1]:.2f}x' for r in rows)

    # one file, several tables: the report asks which
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'bench_workloads.py'),
                          '--report', str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and 'name one with --table' in out.stderr


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
    import statistics
    path = tmp_path / 'c.json'
    out = subprocess.run([sys.executable, 'benchmarks/bench_compile.py',
                          '--workloads', 'molecules', '--batches', '3', '--rounds', '2',
                          '--out', str(path)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result = json.loads(path.read_text())
    assert result['provenance']['machine']['torch_threads'] == 1
    run = result['runs'][0]
    assert len(run['first_eager_times']) == 3 and len(run['eager_times']) == 6

    lines, rows, text = _report('bench_compile.py', path)
    assert text in out.stdout                      # the measuring run printed the same
    assert lines[0] == ('| workload | model | batch shapes | compilations | compile s | '
                        'eager ms / step | compiled ms / step | eager / compiled |')
    row = rows[0]
    assert row[:4] == ['FreeSolv junction trees, batch 32', 'HTEPredictor (2 layers, 64 wide)',
                       '3', '1']                   # three batch shapes, one compilation
    assert row[4] == f"{sum(run['first_compiled_times']) - sum(run['first_eager_times']):.1f}"
    eager = 1e3 * statistics.median(run['eager_times'])
    compiled = 1e3 * statistics.median(run['compiled_times'])
    assert row[5:] == [f'{eager:.1f}', f'{compiled:.1f}', f'{eager / compiled:.2f}']


@pytest.mark.slow
def test_hsa_benchmark_smoke_run(tmp_path):
    import statistics
    path = tmp_path / 'hsa.json'
    out = subprocess.run([sys.executable, 'benchmarks/bench_hsa.py', '--sizes', '256', '512',
                          '--sdpa-max-n', '256', '--repeats', '3', '--out', str(path)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result = json.loads(path.read_text())
    assert result['provenance']['machine']['torch_threads'] == 1
    runs = {(r['method'], r['n'], r['kind']): r for r in result['runs']}
    assert sorted(runs) == [('hsa', 256, 'ragged'), ('hsa', 256, 'regular'),
                            ('hsa', 512, 'ragged'), ('hsa', 512, 'regular'),
                            ('sdpa', 256, 'dense')]
    assert all(len(r['fwd_times']) == 3 and len(r['fwd_bwd_times']) == 1
               and r['torch_threads'] == 1 for r in runs.values())

    def median(run, key='fwd_times'):
        return statistics.median(run[key])

    lines, rows, text = _report('bench_hsa.py', path)
    assert text in out.stdout                      # the measuring run printed the same
    assert lines[0] == ('| N | tree | fwd s | fwd+bwd s | peak GB (fwd / fwd+bwd) | SDPA fwd s '
                        '| SDPA fwd+bwd s | SDPA peak GB | SDPA/HSA fwd | SDPA/HSA fwd+bwd | '
                        'floor s | fwd/floor |')
    assert [r[:2] for r in rows] == [['256', 'regular'], ['256', 'ragged'],
                                     ['512', 'regular'], ['512', 'ragged']]
    regular, sdpa = runs['hsa', 256, 'regular'], runs['sdpa', 256, 'dense']
    assert rows[0][2:4] == [f'{median(regular):.4f}', f"{median(regular, 'fwd_bwd_times'):.4f}"]
    peak = (regular['maxrss_fwd_bytes'] - regular['rss_before_bytes']) / 1e9
    assert rows[0][4].startswith(f'{peak:.2f} / ')
    assert rows[0][8] == f'{median(sdpa) / median(regular):.1f}x'
    assert rows[2][5:10] == ['-'] * 5               # no SDPA beyond --sdpa-max-n
    copy = result['copy']
    floor = 4 * 512 * 4 * 32 * 4 / (copy['bytes'] / statistics.median(copy['times']))
    assert rows[2][10:] == [f'{floor:.4f}', f"{median(runs['hsa', 512, 'regular']) / floor:.1f}x"]

    lines, rows, again = _report('bench_hsa.py', path, '--table', 'ragged',
                                 '--plot', str(tmp_path / 'hsa.png'))
    assert lines[0] == '| N | ragged / regular fwd |'
    ragged, regular = runs['hsa', 512, 'ragged'], runs['hsa', 512, 'regular']
    assert rows[1] == ['512', f'{median(ragged) / median(regular):.2f}x']
    assert (tmp_path / 'hsa.png').stat().st_size > 0  # the plot, from the file alone
    assert _report('bench_hsa.py', path, '--table', 'ragged')[2] == again  # the same bytes


@pytest.mark.slow
def test_gps_benchmark_smoke_run(tmp_path):
    import statistics
    path = tmp_path / 'gps.json'
    out = subprocess.run([sys.executable, 'benchmarks/bench_gps.py', '--sizes', '50', '100',
                          '--repeats', '3', '1', '--methods', 'hsa', 'multihead',
                          '--out', str(path)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result = json.loads(path.read_text())
    assert result['provenance']['machine']['torch_threads'] == 1
    runs = {(r['n'], r['method']): r for r in result['runs']}
    # --repeats per size: every timed step is kept
    assert [len(runs[n, m]['step_times']) for n in (50, 100) for m in ('hsa', 'multihead')] == \
        [3, 3, 1, 1]

    lines, rows, text = _report('bench_gps.py', path)
    assert text in out.stdout                      # the measuring run printed the same
    assert lines[0] == ('| N | hsa step s | hsa peak GB | multihead step s | multihead peak GB '
                        '| GPS multihead / HSA | GPS performer / HSA |')
    hsa, multihead = (statistics.median(runs[50, m]['step_times']) for m in ('hsa', 'multihead'))
    peak = (runs[50, 'hsa']['maxrss_bytes'] - runs[50, 'hsa']['rss_before_bytes']) / 1e9
    assert rows[0] == ['50', f'{hsa:.4f}', f'{peak:.2f}', f'{multihead:.4f}', rows[0][4],
                       f'{multihead / hsa:.1f}x', '-']

    # a configuration that failed (out of memory) is said so, from the file
    result['runs'][1] = {k: v for k, v in runs[50, 'multihead'].items()
                         if k in ('n', 'method', 'hidden', 'heads', 'repeats', 'threads')}
    result['runs'][1]['error'] = 'killed (exit code -9)'
    path.write_text(json.dumps(result))
    _, rows, _ = _report('bench_gps.py', path)
    assert rows[0][3:] == ['OOM', '-', '-', '-']


@pytest.mark.slow
def test_paper_tables_regenerate_the_committed_tables(tmp_path):
    # the result files in benchmarks/paper_results/ give benchmarks/paper_tables.md as committed
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'paper_tables.py'), '--out',
                          str(tmp_path / 'tables.md')], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / 'tables.md').read_text() == \
        (ROOT / 'benchmarks' / 'paper_tables.md').read_text()
