import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_usage_example_runs(capsys):
    text = (ROOT / 'README.md').read_text()
    blocks = re.findall(r'```python\n(.*?)```', text, flags=re.S)
    assert blocks, 'README has no python example'
    exec(compile(blocks[0], 'README.md', 'exec'), {})
    assert 'Hierarchy(num_nodes=9, num_leaves=6' in capsys.readouterr().out


def test_quick_start_has_two_commands_and_ci_runs_the_test_one():
    text = (ROOT / 'README.md').read_text()
    section = text.split('## Quick start', 1)[1].split('##', 1)[0]
    commands = re.findall(r'```bash\n(.*?)```', section, flags=re.S)[0].strip().splitlines()
    assert len(commands) == 2
    test_command = commands[1].split('&&')[-1].strip()
    assert test_command in (ROOT / '.ci' / 'run').read_text()
