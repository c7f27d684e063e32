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
