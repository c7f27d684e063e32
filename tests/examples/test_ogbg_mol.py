import json
import pathlib
import re
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


def test_help():
    out = subprocess.run([sys.executable, str(SCRIPT), '--help'], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for flag in ('--dataset', '--model', '--epochs', '--seeds', '--device', '--hidden',
                 '--layers'):
        assert flag in out.stdout


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
    results = json.loads((tmp_path / 'results.json').read_text())['results']
    assert {r['model'] for r in results} == {'gin', 'gps', 'hsa'}
    assert (tmp_path / 'curves.png').stat().st_size > 0


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
