"""Hypothesis profiles: ``ci`` (reproducible, fixed budget) and ``dev`` (the default).

``CI=true`` selects ``ci``; otherwise ``HYPOTHESIS_PROFILE`` names the profile.  Both
derive from Hypothesis's ``default`` profile, not from whatever it auto-loaded for
the environment, so each means the same everywhere.

Hypothesis keeps its state (the example database, a cache of the constants it
found in the code) under ``.hypothesis/`` in the *current* directory, so running
the suite from elsewhere would litter that directory.  It goes to this
checkout's own ``.hypothesis/`` instead (git-ignored), wherever the suite runs
from, unless ``HYPOTHESIS_STORAGE_DIRECTORY`` says otherwise.  ``dev`` keeps the
example database there, so a failure found once is replayed first next time;
``ci`` has none (``database=None``): with ``derandomize`` each CI run must
depend on the code alone, never on what an earlier run happened to save.

With ``-p no:cacheprovider`` pytest does not know ``cache_dir``, and
``--strict-config`` would reject ``-o cache_dir=...``, the documented way to
keep pytest's cache out of the tree; :func:`pytest_addoption` declares it then.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

import tracedsync.testing
from tracedsync import _accel

if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(Path(__file__).resolve().parent.parent / ".hypothesis")

_base = settings.get_profile("default")
settings.register_profile(
    "ci",
    _base,
    derandomize=True,
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    database=None,
    print_blob=True,
)
settings.register_profile("dev", _base, max_examples=100, stateful_step_count=40, deadline=None)

if os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}:
    settings.load_profile("ci")
else:
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

#: pytester runs the tests of the pytest plugin (tests/test_pytest_plugin.py).
pytest_plugins = ["pytester"]


def pytest_addoption(parser: pytest.Parser, pluginmanager: Any) -> None:
    if pluginmanager.is_blocked("cacheprovider"):
        # Only this unknown key is accepted; every other one still fails.
        parser.addini("cache_dir", "pytest's cache directory (unused: the cache plugin is off)")


@pytest.fixture(autouse=True)
def _fresh_tracedsync() -> Iterator[None]:
    """Every test starts from tracedsync as imported (:func:`tracedsync.testing.reset`):
    default settings and policies, no lock order learnt, no lock recorded as
    held by this thread (CPython's own suite, run by the conformance tests,
    leaves some acquired on purpose).

    It also drops any wait the test's own thread left registered: a test
    stopped by its timeout (pytest-timeout raises in the main thread) while
    tracedsync was unregistering a wait leaves that thread registered as
    blocked; every later liveness verdict of the session would then be
    wrong, and one slow test on a loaded machine would fail a dozen others.
    """
    tracedsync.testing.reset()
    yield
    tracedsync.testing.reset()


@pytest.fixture
def restore_implementation() -> Iterator[None]:
    """Put back the implementation (C accelerator or pure Python) the test found."""
    previous = _accel.implementation()
    try:
        yield
    finally:
        _accel.select(previous)
