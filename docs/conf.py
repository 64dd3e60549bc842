"""Sphinx configuration for the tracedsync documentation.

Build with::

    python -m sphinx -W --keep-going -n -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

# Document the source tree even when the package is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import tracedsync

project = "tracedsync"
author = "The tracedsync developers"
copyright = "the tracedsync developers"
version = tracedsync.__version__
release = tracedsync.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# autodoc: signatures carry the type hints; members are listed explicitly in
# api.md.
autodoc_typehints = "signature"
autodoc_inherit_docstrings = False
add_module_names = False

# No intersphinx (the build must work offline): references to the standard
# library that cannot resolve are listed here, one by one.
nitpicky = True
nitpick_ignore = [
    ("py:class", "collections.abc.Callable"),
    ("py:class", "collections.abc.Iterable"),
    ("py:class", "collections.abc.Iterator"),
    ("py:class", "tracedsync._explore.schedules.Strategy"),
    # patched()'s context manager: private, documented by patched() itself.
    ("py:class", "tracedsync._patch._Patched"),
    ("py:class", "collections.abc.Mapping"),
    ("py:func", "threading.Lock"),
    ("py:func", "threading.RLock"),
    ("py:class", "threading.Condition"),
    ("py:class", "threading.Semaphore"),
    ("py:class", "threading.BoundedSemaphore"),
    ("py:class", "threading.Event"),
    ("py:class", "threading.Barrier"),
    ("py:class", "threading.Thread"),
    ("py:class", "threading.Timer"),
    ("py:meth", "threading.Lock.acquire"),
    ("py:meth", "threading.Lock.release"),
    ("py:meth", "threading.RLock.acquire"),
    ("py:meth", "threading.Barrier.wait"),
    # Thread.isAlive's docstring says :meth:`is_alive`, which tracedsync
    # inherits from threading.Thread and does not document itself.
    ("py:meth", "is_alive"),
    ("py:meth", "threading.Thread.is_alive"),
    ("py:class", "os.PathLike"),
    ("py:class", "hypothesis.strategies.SearchStrategy"),
]

html_theme = "furo"
html_title = f"tracedsync {release}"
