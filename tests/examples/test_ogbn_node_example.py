import json
import pathlib
import statistics
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'examples' / 'ogbn_node.py'
COMMITTED = 'benchmarks/node_results/planted_100k/results.json'
# the table of docs/experiments/large_graphs.md, from the committed file
DOCS_ROWS = """\
| model | test accuracy | params | s/epoch | activation MiB |
|---|---|---|---|---|
| HSA (full batch) | 0.983 ± 0.048 | 87,368 | 4.92 | 1048 |
| HSA (subtree mini-batches) | 0.999 ± 0.000 | 87,368 | 3.93 | 261 |
| SGFormer | 0.924 ± 0.014 | 62,856 | 6.91 | 1206 |
| Polynormer | 0.937 ± 0.007 | 43,344 | 3.77 | 728 |
| GPS + Performer | 0.932 ± 0.004 | 184,264 | 14.31 | 4638 |
| GraphSAGE | 0.898 ± 0.016 | 5,192 | 1.08 | 150 |"""


def report(path: str) -> str:
    out = subprocess.run([sys.executable, str(SCRIPT), '--report', path], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_report_of_the_committed_file_prints_the_docs_table(capsys, examples_on_path):
    text = report(COMMITTED)
    table, note = text.rstrip('\n').split('\n\n')
    # the numbers of the docs (the best of each column is in bold)
    assert table.replace('**', '') == DOCS_ROWS
    assert '| **0.999 ± 0.000** |' in table and '| **1.08** |' in table
    assert note == f'*From `{COMMITTED}` (the file records no provenance).*'
    import ogbn_node  # in this process: no second start-up
    ogbn_node.main(['--report', COMMITTED])
    assert capsys.readouterr().out == text   # the same file, the same bytes


def test_help_and_offline_ogb_message(tmp_path, script_help):
    text = script_help(SCRIPT)
    for flag in ('--dataset', '--models', '--seeds', '--epochs', '--hierarchy',
                 '--subtrees-per-batch', '--download', '--num-nodes'):
        assert flag in text
    # nothing is downloaded unless asked: a clear message instead
    out = subprocess.run([sys.executable, str(SCRIPT), '--dataset', 'ogbn-arxiv', '--root',
                          str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert 'ogbn-arxiv is not in' in out.stderr and '--download' in out.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_every_model_trains_on_a_small_planted_graph(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), '--num-nodes', '3000', '--epochs', '2', '--seeds', '1',
         '--quiet', '--device', 'cpu', '--out', str(tmp_path)], capture_output=True, text=True,
        timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'SYNTHETIC' in out.stdout
    runs = json.loads((tmp_path / 'results.json').read_text())['runs']
    models = ('hsa', 'hsa_subtrees', 'sgformer', 'polynormer', 'gps_performer', 'graphsage')
    assert [r['model'] for r in runs] == list(models)
    by = {r['model']: r for r in runs}
    for r in runs:
        assert 0 <= r['test_accuracy'] <= 1 and r['seconds_per_epoch'] > 0
        assert len(r['history']) == 2
    # full batch and subtree mini-batches train the same model
    assert by['hsa']['params'] == by['hsa_subtrees']['params']
    assert by['hsa']['peak_mib'] > by['hsa_subtrees']['peak_mib']
    table = (tmp_path / 'results.md').read_text()
    assert '| HSA (subtree mini-batches) |' in table and '(one seed)' in table
    assert (tmp_path / 'curves.png').stat().st_size > 0
    # the file keeps every epoch's time and its provenance; --report reads them back
    result = json.loads((tmp_path / 'results.json').read_text())
    assert result['provenance']['machine']['device'] == 'CPU (1 thread)'
    path = str(tmp_path / 'results.json')
    text = report(path)
    table, note = text.rstrip('\n').split('\n\n')
    assert table.startswith('| model | test accuracy | params | s/epoch | activation MiB |\n')
    assert note.startswith(f'*From `{path}`: `python ') and 'CPU (1 thread)' in note
    sage = by['graphsage']
    seconds = statistics.median(row['seconds'] for row in sage['history'])
    assert seconds == sage['seconds_per_epoch']
    assert (f"| GraphSAGE | {sage['test_accuracy']:.3f} (one seed) | {sage['params']:,} | "
            f'{seconds:.2f} |') in table.replace('**', '')


@pytest.mark.slow
def test_the_control_draws_a_graph_per_seed_with_labels_per_node(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), '--num-nodes', '2000', '--epochs', '1', '--seeds', '2',
         '--models', 'hsa', 'graphsage', '--control', '--graph-per-seed', '--quiet',
         '--device', 'cpu', '--out', str(tmp_path)], capture_output=True, text=True,
        timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    # one hierarchy per seed: the graph is drawn again
    assert out.stdout.count(' edges, 8 classes; ') == 2
    assert 'labels per node (control), a graph per seed' in out.stdout
    result = json.loads((tmp_path / 'results.json').read_text())
    assert result['args']['control'] and result['args']['graph_per_seed']
    assert [(r['model'], r['seed']) for r in result['runs']] == [
        ('hsa', 0), ('graphsage', 0), ('hsa', 1), ('graphsage', 1)]
    out = subprocess.run([sys.executable, str(SCRIPT), '--dataset', 'ogbn-arxiv', '--control'],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and 'apply to --dataset planted only' in out.stderr
