import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'examples' / 'ogbn_node.py'


def test_help_and_offline_ogb_message(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), '--help'], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for flag in ('--dataset', '--models', '--seeds', '--epochs', '--hierarchy',
                 '--subtrees-per-batch', '--download', '--num-nodes'):
        assert flag in out.stdout
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
