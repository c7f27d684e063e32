r"""The house rules a tool can check: no import cycle between any two modules
of hsa_geo (lazy imports included), and no module past 400 lines.  The
layering itself (imports point down the data flow) is import-linter's
contract in ``pyproject.toml``, run by ``.ci/run`` (``lint-imports``)."""
import os

import pytest

grimp = pytest.importorskip('grimp')

import hsa_geo  # noqa: E402

PACKAGE = os.path.dirname(hsa_geo.__file__)


def _cycles(graph) -> list:
    r"""The strongly connected components of more than one module (Tarjan)."""
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(root):
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for module in modules:
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_between_modules():
    graph = grimp.build_graph('hsa_geo')
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    class Graph:  # a <-> b, c alone
        modules = {'a', 'b', 'c'}

        @staticmethod
        def find_modules_directly_imported_by(module):
            return {'a': {'b'}, 'b': {'a', 'c'}, 'c': set()}[module]

    assert _cycles(Graph()) == [['a', 'b']]


def test_no_module_past_400_lines():
    long = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                with open(path) as f:
                    lines = sum(1 for _ in f)
                if lines > 400:
                    long[os.path.relpath(path, PACKAGE)] = lines
    assert long == {}
