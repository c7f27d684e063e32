import json
import pathlib
import statistics
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'examples' / 'ogbn_node_ddp.py'
COMMITTED = ['benchmarks/node_results/ddp_planted_100k/ranks1/results.json',
             'benchmarks/node_results/ddp_planted_100k/ranks2/results.json']
# the processes table of docs/experiments/large_graphs.md, from the committed files
DOCS_ROWS = """\
| processes | test accuracy | s/epoch (slowest rank) | nodes per rank | edges kept | \
bytes per HSA layer |
|---|---|---|---|---|---|
| 1 | 0.997 ± 0.003 | 5.00 | 100,000 | 100% | - |
| 2 | 0.993 ± 0.019 | **2.56** | 56,244 / 43,756 | 88.9% | 12,544 |"""


def report(*paths: str) -> str:
    out = subprocess.run([sys.executable, str(SCRIPT), '--report', *paths], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_report_of_the_committed_files_prints_the_docs_table(capsys, examples_on_path):
    text = report(*COMMITTED)
    table, *notes = text.rstrip('\n').split('\n\n')
    assert table == DOCS_ROWS
    assert notes == [f'*From `{path}` (the file records no provenance).*'
                     for path in COMMITTED]
    import ogbn_node_ddp  # in this process: no second start-up
    ogbn_node_ddp.main(['--report', *COMMITTED])
    assert capsys.readouterr().out == text   # the same files, the same bytes


def test_help(script_help):
    text = script_help(SCRIPT)
    for flag in ('--dataset', '--num-nodes', '--seeds', '--epochs', '--hierarchy', '--out'):
        assert flag in text


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
    result = json.loads((tmp_path / 'results.json').read_text())
    assert result['world_size'] == 2
    nodes = result['nodes_per_rank']
    assert len(nodes) == 2 and min(nodes) > 0 and sum(nodes) == 3000
    # each rank keeps the edges inside its share: most, not all, of the graph's
    kept = sum(result['edges_per_rank']) / result['info']['edges']
    assert 0.5 < kept < 1
    # one row of statistics per top-level subtree and head, never per node:
    # far less than the leaves' queries, keys and values (4 heads of 16, float32)
    assert 0 < result['bytes_per_layer'] < 3000 * 4 * 3 * 16 * 4 / 50
    run, = result['runs']
    assert len(run['history']) == 2 and 0 <= run['test_accuracy'] <= 1
    assert '| 2 |' in (tmp_path / 'results.md').read_text()
    assert not (tmp_path / 'shards').exists()      # the shards are removed once loaded
    # every epoch's time (the slowest rank's) is kept; --report reads it back
    assert result['provenance']['machine']['device'] == 'CPU (1 thread)'
    path = str(tmp_path / 'results.json')
    table, note = report(path).rstrip('\n').split('\n\n')
    assert table.startswith('| processes | test accuracy | s/epoch (slowest rank) |')
    assert note.startswith(f'*From `{path}`: `torchrun --nproc_per_node=2 {SCRIPT} ')
    seconds = statistics.median(row['seconds'] for row in run['history'])
    assert seconds == pytest.approx(run['seconds_per_epoch'])
    assert (f"| 2 | {run['test_accuracy']:.3f} (one seed) | {seconds:.2f} | "
            f"{int(nodes[0]):,} / {int(nodes[1]):,} | {kept:.1%} | "
            f"{result['bytes_per_layer']:,} |") in table
