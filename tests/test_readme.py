import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()
BLOCKS = re.findall(r'```python\n(.*?)```', README, flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize('index', range(len(BLOCKS)))
def test_every_readme_snippet_runs_as_written(index, capsys):
    # each block runs alone, in a namespace of its own, as a reader copies it
    exec(compile(BLOCKS[index], f'README.md (python block {index})', 'exec'), {})
    if index == 0:
        assert 'Hierarchy(num_nodes=9, num_leaves=6' in capsys.readouterr().out


def test_quick_start_has_two_commands_and_ci_runs_the_test_one():
    section = README.split('## Quick start', 1)[1].split('##', 1)[0]
    commands = re.findall(r'```bash\n(.*?)```', section, flags=re.S)[0].strip().splitlines()
    assert len(commands) == 2
    test_command = commands[1].split('&&')[-1].strip()
    assert test_command in (ROOT / '.ci' / 'run').read_text()


def test_readme_never_points_to_files_a_clone_lacks():
    assert 'shared/' not in README
    for link in re.findall(r'\]\(((?:docs|datasets|benchmarks|examples)/[^)#]+)\)', README):
        assert (ROOT / link).exists(), link
