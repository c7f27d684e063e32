r"""The results tables of the README and the docs are what their commands
print from the committed result files (benchmarks/results_tables.py)."""
import importlib.util
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'benchmarks' / 'results_tables.py'


@pytest.fixture(scope='module')
def tables():
    spec = importlib.util.spec_from_file_location('results_tables', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _page(tmp_path, text):
    (tmp_path / 'docs').mkdir(exist_ok=True)
    path = tmp_path / 'docs' / 'page.md'
    path.write_text(text)
    return path


def test_a_block_is_rewritten_from_its_command_and_check_sees_a_stale_one(tables, tmp_path):
    command = "python -c \"print('| a |\\n|---|\\n| 1 |')\""
    path = _page(tmp_path, f'Intro.\n\n<!-- results: {command} -->\n| a |\n|---|\n| 0 |\n'
                           '<!-- /results -->\n\nAfter.\n')
    files = tables.markdown_files(str(tmp_path))
    assert files == [str(path)]
    stale = tables.regenerate(files, str(tmp_path), check=True)
    assert len(stale) == 1 and '-| 0 |' in stale[0] and '+| 1 |' in stale[0]
    assert '| 0 |' in path.read_text()                        # --check changes nothing
    assert len(tables.regenerate(files, str(tmp_path))) == 1
    assert path.read_text() == (f'Intro.\n\n<!-- results: {command} -->\n| a |\n|---|\n| 1 |\n'
                                '<!-- /results -->\n\nAfter.\n')
    assert tables.regenerate(files, str(tmp_path), check=True) == []


@pytest.mark.parametrize('text, message', [
    ('<!-- results: python -c "" -->\n| a |\n', 'docs/page.md:1: results block not closed'),
    ('| a |\n<!-- /results -->\n', "docs/page.md:2: '<!-- /results -->' without an opening"),
    ('<!-- results: a -->\n<!-- results: b -->\n<!-- /results -->\n',
     'docs/page.md:1: results block not closed before the next one at line 2'),
])
def test_unpaired_markers_name_the_file_and_line(tables, tmp_path, text, message):
    _page(tmp_path, text)
    with pytest.raises(ValueError, match=message):
        tables.regenerate(tables.markdown_files(str(tmp_path)), str(tmp_path), check=True)


def test_a_failing_command_is_a_clear_error(tables, tmp_path):
    _page(tmp_path, '<!-- results: python -c "import sys; sys.exit(3)" -->\n<!-- /results -->\n')
    with pytest.raises(ValueError, match=r'failed \(3\)'):
        tables.regenerate(tables.markdown_files(str(tmp_path)), str(tmp_path), check=True)


def test_every_committed_table_is_what_its_command_prints():
    out = subprocess.run([sys.executable, str(SCRIPT), '--check'], cwd=ROOT,
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    listed = subprocess.run([sys.executable, str(SCRIPT), '--list'], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    assert 'docs/experiments/from_scratch.md' in listed
