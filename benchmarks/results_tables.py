r"""Regenerates every results table of the README and the docs from the
committed result files.

A generated table sits between two markers in a markdown file; the opening
one holds the command that prints it::

    <!-- results: python benchmarks/bench_hsa.py --report benchmarks/results/bench_hsa.json -->
    | N | ... |
    |---|---|
    *From `benchmarks/results/bench_hsa.json`: ...*
    <!-- /results -->

Every script that makes a table reads its own result file back with
``--report RESULT_JSON`` (and ``--table NAME`` where one file holds several
tables) and prints the table computed from the raw numbers in it (per seed,
per repeat), with the line of :func:`hsa_geo.experiments.provenance_note`
under it.  This script runs each command (once, with one thread, from the
repository root) and writes its output between the markers.  With
``--check`` it changes nothing and fails, showing the difference, when a
table is not what its command prints: ``tests/test_results_tables.py`` runs
that, so a table edited by hand, or a result file changed without its
table, fails the tests.

Example::

    python benchmarks/results_tables.py            # rewrite the tables
    python benchmarks/results_tables.py --check    # what the tests run
    python benchmarks/results_tables.py --list     # the tables and their commands
"""
from __future__ import annotations

import argparse
import difflib
import glob
import os
import os.path as osp
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, NamedTuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
OPEN = re.compile(r'^<!-- results: (?P<command>.+?) -->\s*$')
CLOSE = '<!-- /results -->'


class Block(NamedTuple):
    path: str     # the markdown file, relative to the root
    line: int     # of the opening marker, 1-based
    command: str
    start: int    # index of the first line inside the block
    stop: int     # index of the closing marker


def markdown_files(root: str = ROOT) -> List[str]:
    r"""The README and every markdown page of the docs (not the built site)."""
    files = [osp.join(root, 'README.md')]
    files += sorted(p for p in glob.glob(osp.join(root, 'docs', '**', '*.md'), recursive=True)
                    if f'{os.sep}_build{os.sep}' not in p)
    return [p for p in files if osp.isfile(p)]


def find_blocks(lines: List[str], path: str) -> List[Block]:
    r"""The generated blocks of a file's lines.

    Raises:
        ValueError: On a marker without its partner, naming the file and line.
    """
    blocks, opened = [], None
    for i, line in enumerate(lines):
        match = OPEN.match(line)
        if match:
            if opened is not None:
                raise ValueError(f'{path}:{opened[0] + 1}: results block not closed before '
                                 f'the next one at line {i + 1} (expected {CLOSE!r})')
            opened = (i, match['command'])
        elif line.strip() == CLOSE:
            if opened is None:
                raise ValueError(f'{path}:{i + 1}: {CLOSE!r} without an opening '
                                 "'<!-- results: COMMAND -->'")
            blocks.append(Block(path, opened[0] + 1, opened[1], opened[0] + 1, i))
            opened = None
    if opened is not None:
        raise ValueError(f'{path}:{opened[0] + 1}: results block not closed '
                         f'(expected {CLOSE!r})')
    return blocks


def run(command: str, root: str = ROOT) -> str:
    r"""What :obj:`command` prints, run from :obj:`root` with one thread
    (``python`` is this interpreter).

    Raises:
        ValueError: If the command fails, with its error output.
    """
    argv = shlex.split(command)
    if argv and argv[0] == 'python':
        argv[0] = sys.executable
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    try:
        out = subprocess.run(argv, cwd=root, capture_output=True, text=True, env=env,
                             timeout=600)
    except subprocess.TimeoutExpired:
        raise ValueError(f'{command!r} did not finish in 600 s') from None
    if out.returncode != 0:
        raise ValueError(f'{command!r} failed ({out.returncode}):\n{out.stderr[-3000:]}')
    return out.stdout.strip()


def regenerate(paths: List[str], root: str = ROOT, check: bool = False,
               only: str = None) -> List[str]:
    r"""Rewrites (or with :obj:`check`, compares) every block of
    :obj:`paths`; returns the differences found, one per stale block."""
    pages = {}
    for path in paths:
        with open(path) as f:
            pages[path] = find_blocks(f.read().split('\n'), osp.relpath(path, root))
    commands = sorted({b.command for blocks in pages.values() for b in blocks
                       if not only or only in b.command})
    # each command is mostly the start-up of a Python process: run them side by side
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        outputs: Dict[str, str] = dict(zip(commands, pool.map(lambda c: run(c, root), commands),
                                           strict=True))
    stale = []
    for path in paths:
        with open(path) as f:
            lines = f.read().split('\n')
        rel = osp.relpath(path, root)
        blocks, changed = find_blocks(lines, rel), False
        for block in reversed(blocks):  # from the end: indices stay valid
            if only and only not in block.command:
                continue
            new = outputs[block.command].split('\n')
            old = lines[block.start:block.stop]
            if old != new:
                stale.append(f'{rel}:{block.line}: {block.command}\n' + '\n'.join(
                    difflib.unified_diff(old, new, 'committed', 'generated', lineterm='')))
                lines[block.start:block.stop] = new
                changed = True
        if changed and not check:
            with open(path, 'w') as f:
                f.write('\n'.join(lines))
    return stale


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='change nothing; exit 1 when a table differs from its command')
    parser.add_argument('--list', action='store_true', help='list the tables and commands')
    parser.add_argument('--only', default=None,
                        help='only the blocks whose command contains this text')
    args = parser.parse_args(argv)
    paths = markdown_files()
    if args.list:
        for path in paths:
            with open(path) as f:
                for block in find_blocks(f.read().split('\n'), osp.relpath(path, ROOT)):
                    print(f'{block.path}:{block.line}: {block.command}')
        return 0
    stale = regenerate(paths, check=args.check, only=args.only)
    for diff in stale:
        print(diff, end='\n\n')
    verb = 'differ from their commands' if args.check else 'rewritten'
    print(f'{len(stale)} table(s) {verb}')
    return 1 if args.check and stale else 0


if __name__ == '__main__':
    sys.exit(main())
