import json
import sys

import torch

import hsa_geo
from hsa_geo.experiments import provenance, save_json


def test_save_json_creates_the_folders(tmp_path):
    path = tmp_path / 'a' / 'b' / 'results.json'
    save_json({'args': {'seeds': 3}, 'runs': [{'seed': 0, 'test_accuracy': 0.5}]}, str(path))
    assert json.loads(path.read_text()) == {'args': {'seeds': 3},
                                            'runs': [{'seed': 0, 'test_accuracy': 0.5}]}
    save_json([1, 2], str(path))                         # written again after every run
    assert json.loads(path.read_text()) == [1, 2]


def test_provenance_records_command_versions_and_machine():
    facts = provenance('cpu')
    assert json.loads(json.dumps(facts)) == facts        # JSON types only
    assert facts['versions']['torch'] == torch.__version__
    assert facts['versions']['hsa_geo'] == hsa_geo.__version__
    assert facts['machine']['device'].startswith('CPU (')
    assert facts['machine']['torch_threads'] == torch.get_num_threads()
    assert sys.argv[0].split('/')[-1] in facts['command']
    assert 'device' not in provenance()['machine']


def test_provenance_note_names_the_file_command_commit_and_device(tmp_path):
    from hsa_geo.experiments import load_result, provenance_note
    facts = provenance('cpu')
    assert facts['date'].count('-') == 2 and len(facts['machine']['load_average']) == 3
    path = tmp_path / 'r.json'
    save_json({'provenance': {**facts, 'commit': 'a' * 40 + '+changes'}}, str(path))
    note = provenance_note(load_result(str(path)), 'benchmarks/results/r.json')
    assert note.startswith('*From `benchmarks/results/r.json`: `python ')
    assert 'commit aaaaaaaaaa+changes' in note and 'CPU (' in note and facts['date'] in note
    assert 'records no provenance' in provenance_note({}, 'x.json')


def test_load_result_refuses_what_is_not_a_result_file(tmp_path):
    import pytest

    from hsa_geo.experiments import load_result
    with pytest.raises(ValueError, match="'path' must be a result file"):
        load_result(str(tmp_path / 'missing.json'))
    (tmp_path / 'bad.json').write_text('{')
    with pytest.raises(ValueError, match="'path' must hold JSON"):
        load_result(str(tmp_path / 'bad.json'))
    (tmp_path / 'list.json').write_text('[1]')
    with pytest.raises(ValueError, match='holds a list'):
        load_result(str(tmp_path / 'list.json'))
