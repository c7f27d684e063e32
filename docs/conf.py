"""Sphinx configuration of the hsa_geo documentation.

Build (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""
import importlib.util
import os
import re
import sys

# the package of this checkout, whatever is installed
sys.path.insert(0, os.path.abspath('..'))
os.environ.setdefault('OMP_NUM_THREADS', '1')

import hsa_geo  # noqa: E402

project = 'hsa_geo'
author = 'hsa_geo contributors'
copyright = 'hsa_geo contributors, MIT License'
release = hsa_geo.__version__
version = release

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
    'sphinx.ext.viewcode',
    'myst_parser',
]

source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build', 'Thumbs.db', '.DS_Store', 'requirements.txt']

# --- MyST (the guides are Markdown) -----------------------------------------
myst_enable_extensions = ['dollarmath', 'amsmath', 'colon_fence', 'deflist']
myst_heading_anchors = 3

# --- autodoc / napoleon (Google-style ``Args:`` docstrings) ------------------
autodoc_member_order = 'bysource'
autodoc_typehints = 'none'          # the docstrings state the types in ``Args:``
autodoc_class_signature = 'separated'
autodoc_default_options = {'show-inheritance': True}
autosummary_generate = False        # the API pages are written by hand
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True

# Optional dependencies: imported for real where installed, mocked otherwise,
# so that the documentation builds with only the core requirements.
_OPTIONAL = ['ogb', 'rdkit', 'transformers', 'trimesh', 'numba', 'triton', 'networkit',
             'pymetis', 'sklearn', 'scipy', 'matplotlib', 'tqdm', 'torch_scatter']
autodoc_mock_imports = [name for name in _OPTIONAL if importlib.util.find_spec(name) is None
                        or os.environ.get('HSA_GEO_DOCS_MOCK') == 'all']   # to check the mocks

# --- HTML --------------------------------------------------------------------
html_theme = 'furo'
html_title = f'hsa_geo {release}'
html_static_path = []


# --- docstring repairs ---------------------------------------------------------
_BROKEN_ROLE = re.compile(r'(:[\w:]+:`[^`\n]*?)\n[ \t]*([^`\n]*?`)')


def _join_broken_roles(app, what, name, obj, options, lines):
    """Joins a cross-reference that a docstring wraps across two lines
    (``:func:`~hsa_geo.utils.`` / ``hierarchy_subgraph```), which would
    otherwise end the summary sentence of autosummary inside the role."""
    text = '\n'.join(lines)
    fixed = _BROKEN_ROLE.sub(r'\1\2', text)
    if fixed != text:
        lines[:] = fixed.split('\n')


def setup(app):
    app.connect('autodoc-process-docstring', _join_broken_roles)
