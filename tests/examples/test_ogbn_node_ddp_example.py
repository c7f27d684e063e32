import json
import pathlib
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'examples' / 'ogbn_node_ddp.py'


def test_help():
    out = subprocess.run([sys.executable, str(SCRIPT), '--help'], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for flag in ('--dataset', '--num-nodes', '--seeds', '--epochs', '--hierarchy', '--out'):
        assert flag in out.stdout


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason='needs torch.distributed')
def test_two_ranks_train_on_their_shares(tmp_path):
    out = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         '--master_port=29519', str(SCRIPT), '--num-nodes', '3000', '--epochs', '2',
         '--seeds', '1', '--quiet', '--device', 'cpu', '--out', str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'SYNTHETIC' in out.stdout
    report = json.loads((tmp_path / 'results.json').read_text())
    assert report['world_size'] == 2
    nodes = report['nodes_per_rank']
    assert len(nodes) == 2 and min(nodes) > 0 and sum(nodes) == 3000
    # each rank keeps the edges inside its share: most, not all, of the graph's
    kept = sum(report['edges_per_rank']) / report['info']['edges']
    assert 0.5 < kept < 1
    # one row of statistics per top-level subtree and head, never per node:
    # far less than the leaves' queries, keys and values (4 heads of 16, float32)
    assert 0 < report['bytes_per_layer'] < 3000 * 4 * 3 * 16 * 4 / 50
    run, = report['runs']
    assert len(run['history']) == 2 and 0 <= run['test_accuracy'] <= 1
    assert '| 2 |' in (tmp_path / 'results.md').read_text()
    assert not (tmp_path / 'shards').exists()      # the shards are removed once loaded
