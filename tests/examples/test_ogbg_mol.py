import json
import pathlib
import re
import statistics
import subprocess
import sys

import pytest
import torch

pytest.importorskip('rdkit')
pytest.importorskip('tqdm')

from hsa_geo.datasets import ogb_dataset  # noqa: E402
from hsa_geo.transforms import MoleculeHierarchy  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'examples' / 'ogbg_mol.py'


@pytest.fixture
def example(examples_on_path):
    import ogbg_mol
    return ogbg_mol


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ogb'))
    ogb_dataset('ogbg-molfreesolv', root, pre_transform=MoleculeHierarchy(pos_dim=16))
    return root


def test_help(script_help):
    text = script_help(SCRIPT)
    for flag in ('--dataset', '--model', '--epochs', '--seeds', '--device', '--hidden',
                 '--layers'):
        assert flag in text


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['gin', 'gps', 'hsa'])
def test_model_loss_decreases(kind, data_root, example):
    dataset = ogb_dataset('ogbg-molfreesolv', data_root,
                          pre_transform=MoleculeHierarchy(pos_dim=16))
    task = example.OGBTask(dataset, torch.arange(64))
    batch = next(iter(example.loader_for(kind)(dataset[:64], batch_size=64)))
    torch.manual_seed(0)
    model = example.MolModel(kind, hidden=32, layers=2, out_channels=task.out_channels,
                             dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        loss = task.loss(model(batch), batch.y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_models_differ_only_in_the_global_part(example):
    gps = example.MolModel('gps', hidden=32, layers=2, out_channels=1)
    hsa = example.MolModel('hsa', hidden=32, layers=2, out_channels=1)
    # HSA adds only the per-layer projection of the junction-tree positions
    extra = sum(p.numel() for n, p in hsa.named_parameters() if 'lin_pos' in n)
    assert extra > 0
    assert sum(p.numel() for p in hsa.parameters()) - extra == \
        sum(p.numel() for p in gps.parameters())
    with pytest.raises(ValueError, match="'kind'"):
        example.MolModel('mlp', hidden=32, layers=2, out_channels=1)


@pytest.mark.slow
def test_one_epoch_smoke_run(data_root, tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), '--epochs', '1', '--seeds', '1', '--limit', '64',
         '--hidden', '16', '--layers', '1', '--root', data_root, '--out', str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ('GIN-VN', 'GPS (dense attention)', 'HSA-GPS (junction tree)'):
        assert f'| {name} |' in out.stdout
    result = json.loads((tmp_path / 'results.json').read_text())
    results = result['results']
    assert {r['model'] for r in results} == {'gin', 'gps', 'hsa'}
    assert (tmp_path / 'curves.png').stat().st_size > 0
    # every epoch's time is kept, with the provenance; --report prints the
    # table the run printed, from the file
    assert all(row['seconds'] > 0 for r in results for row in r['history'])
    assert result['provenance']['machine']['device'] == 'CPU (1 thread)'
    text = report(str(tmp_path / 'results.json'))
    assert text.rstrip('\n') in out.stdout
    assert text.startswith('| model (ogbg-molfreesolv) | test RMSE | valid RMSE | parameters '
                           '| s / epoch (this run) | time / GIN-VN |\n')
    gin = next(r for r in results if r['model'] == 'gin')
    assert f"| {gin['test']:.3f} ± 0.000 |" in text.replace('**', '')


def report(path: str, *extra: str) -> str:
    out = subprocess.run([sys.executable, str(SCRIPT), '--report', path, *extra],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_report_of_a_hand_built_result_file(tmp_path, capsys, example):
    # the raw format of a run: per model and seed, the scores at the
    # best-validation epoch and every epoch's seconds
    runs = []
    for seed in range(3):
        for kind, params, base in (('gin', 100, 1.0), ('hsa_nopos', 200, 2.0)):
            runs.append(dict(model=kind, seed=seed, params=params, best_epoch=2,
                             test=base + 0.1 * seed, best_valid=base + 0.2 + 0.05 * seed,
                             history=[{'epoch': e + 1, 'loss': 1.0, 'valid_rmse': 3.0,
                                       'test_rmse': 3.0, 'seconds': base * (0.1 + e + seed)}
                                      for e in range(3)]))
    path = tmp_path / 'results.json'
    path.write_text(json.dumps(dict(args=dict(dataset='ogbg-molfreesolv'), metric='rmse',
                                    results=runs)))
    text = report(str(path))
    table, note = text.rstrip('\n').split('\n\n')
    lines = table.split('\n')
    assert lines[0] == ('| model (ogbg-molfreesolv) | test RMSE | valid RMSE | parameters '
                        '| s / epoch (this run) | time / GIN-VN |')
    # GIN-VN: test 1.0, 1.1, 1.2; valid 1.2, 1.25, 1.3; the median over seeds
    # of each seed's median epoch (1.1, 2.1, 3.1 s): 2.1 s, and twice that for HSA
    std = statistics.stdev([1.0, 1.1, 1.2])
    assert lines[2] == (f'| GIN-VN | **1.100 ± {std:.3f}** | **1.250 ± 0.050** | 100 | '
                        '2.10 | 1.00x |')
    assert lines[3] == (f'| HSA-GPS, no position vectors | 2.100 ± {std:.3f} | '
                        '2.250 ± 0.050 | 200 | 4.20 | 2.00x |')
    assert note == f'*From `{path}` (the file records no provenance).*'
    example.main(['--report', str(path)])   # in this process: no second start-up
    assert capsys.readouterr().out == text   # the same file, the same bytes
    example.main(['--report', str(path), '--table', 'ratios'])
    ratios = capsys.readouterr().out.split('\n')
    assert ratios[0].endswith('| parameters | time / epoch vs GIN-VN |')
    assert ratios[3].endswith('| 200 | 2.0x |')


@pytest.mark.slow
def test_torchrun_two_processes_agree(data_root, tmp_path):
    out = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone',
         '--nproc_per_node=2', str(SCRIPT), '--epochs', '1', '--seeds', '1', '--limit',
         '96', '--hidden', '16', '--layers', '1', '--model', 'hsa', '--quiet', '--device',
         'cpu', '--root',
         data_root, '--out', str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    found = dict(re.findall(r'\[rank (\d)\] hsa seed 0: valid rmse [-+\d.e]+, '
                            r'test rmse ([-+\d.e]+)', out.stdout))
    assert set(found) == {'0', '1'}, out.stdout
    assert found['0'] == found['1']
    result = json.loads((tmp_path / 'results.json').read_text())
    assert result['world_size'] == 2


@pytest.mark.slow
def test_multiclass_dataset_smoke_run(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), '--dataset', 'ogbg-molsolubility-class', '--split',
         'published', '--epochs', '1', '--seeds', '1', '--limit', '64', '--hidden', '16',
         '--layers', '1', '--model', 'gin', 'hsa', '--quiet', '--device', 'cpu', '--root',
         str(tmp_path / 'data'),
         '--out', str(tmp_path / 'out')],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'test acc' in out.stdout
    results = json.loads((tmp_path / 'out' / 'results.json').read_text())['results']
    assert all(0 <= r['test'] <= 1 for r in results)
