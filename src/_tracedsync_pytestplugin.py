"""tracedsync's pytest entry point (``pytest11``): options, marker, fixture.

pytest imports this module in every run of every suite in an environment
where tracedsync is installed, so it imports nothing but pytest: importing
:mod:`tracedsync` costs tens of milliseconds (structlog) and reads the
``TRACEDSYNC_*`` environment variables, which a suite's ``conftest.py`` may
still be about to set.  The plugin proper, :mod:`tracedsync._pytest.plugin`,
is imported and registered only when something asks for it: ``--tracedsync``
or the ``tracedsync`` ini option (trace every test), a test marked
``@pytest.mark.tracedsync`` (trace that test), or a test using the
``locktrace`` fixture.  Otherwise the run has two extra hook calls per
session and none per test.

A top-level module for the same reason Hypothesis uses
``_hypothesis_pytestplugin``: any module inside the ``tracedsync`` package
would import the package first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

#: The name the plugin proper is registered under once activated.
PLUGIN_NAME = "tracedsync-checks"

#: What each kind of problem is called in ``allow``: tracedsync's catalogue
#: (``TEST_KINDS``), copied because this module must not import tracedsync;
#: tests/test_catalogue.py checks that the two agree.
KINDS_HELP = (
    "deadlock, inversion, hierarchy, unguarded, race, lock_held, thread_alive, thread_error"
)
#: The kinds only reported unless asked for (``TEST_REPORTED_KINDS``), copied
#: for the same reason.
REPORTED_HELP = "lock_held, thread_alive"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tracedsync", "lock discipline (tracedsync)")
    group.addoption(
        "--tracedsync",
        action="store_true",
        default=None,
        help="trace every test with tracedsync (patching threading) and fail the tests that "
        "break lock discipline",
    )
    group.addoption(
        "--tracedsync-thread-grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long a traced test's threads may keep running after it ends "
        "(default: tracedsync_thread_grace, 1.0)",
    )
    group.addoption(
        "--tracedsync-allow",
        action="append",
        default=None,
        metavar="KIND",
        help=f"a kind of problem that does not fail traced tests, repeatable: {KINDS_HELP}",
    )
    group.addoption(
        "--tracedsync-fail-on",
        action="append",
        default=None,
        metavar="KIND[,KIND]",
        help=f"also fail traced tests on these kinds of problem, which are otherwise only "
        f"reported: {REPORTED_HELP} (repeatable)",
    )
    group.addoption(
        "--tracedsync-races",
        action="store_true",
        default=None,
        help="also check traced tests for data races (happens-before, on the test's files; "
        "slow) and fail the tests that have one",
    )
    parser.addini(
        "tracedsync_races",
        type="bool",
        default=False,
        help="check traced tests for data races (as --tracedsync-races)",
    )
    parser.addini(
        "tracedsync", type="bool", default=False, help="trace every test (as --tracedsync)"
    )
    parser.addini(
        "tracedsync_thread_grace",
        default="1.0",
        help="seconds a traced test's threads may keep running after it ends",
    )
    parser.addini(
        "tracedsync_allow",
        type="args",
        default=[],
        help=f"kinds of problem that do not fail traced tests: {KINDS_HELP}",
    )
    parser.addini(
        "tracedsync_fail_on",
        type="args",
        default=[],
        help=f"kinds of problem that also fail traced tests (otherwise only reported): "
        f"{REPORTED_HELP}",
    )
    parser.addini(
        "tracedsync_patch",
        type="bool",
        default=True,
        help="patch threading while tracing, so that threading.Lock() etc. are traced",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "tracedsync(thread_grace=None, allow=(), fail_on=(), patch=None, races=None): trace "
        "this test with tracedsync and fail it if it breaks lock discipline",
    )
    config.addinivalue_line(
        "markers",
        "tracedsync_explore(strategy='pct', runs=None, seed=0, ...): run this test many times "
        "under tracedsync's controlled scheduler (tracedsync.explore) and fail with the "
        "simplest failing interleaving",
    )
    if config.getoption("tracedsync_races") and not config.getoption("tracedsync"):
        config.option.tracedsync = True  # --tracedsync-races implies --tracedsync
    if config.getoption("tracedsync") or config.getini("tracedsync"):
        _activate(config, whole_run=True)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    inactive = not config.pluginmanager.has_plugin(PLUGIN_NAME)
    for item in items:
        if item.get_closest_marker("tracedsync_explore") is not None:
            _explore_item(item)
        if inactive and item.get_closest_marker("tracedsync") is not None:
            _activate(config, whole_run=False)
            inactive = False


def _explore_item(item: pytest.Item) -> None:
    """Make the test run under :func:`tracedsync.explore` with the marker's
    arguments (``minimize=True`` unless given), so a failure shows the
    simplest failing interleaving found and its replay token."""
    if not isinstance(item, pytest.Function):
        return
    import functools

    from tracedsync import explore

    marker = item.get_closest_marker("tracedsync_explore")
    assert marker is not None
    options = {"minimize": True, **marker.kwargs}
    test = item.obj

    @functools.wraps(test)
    def explored(*args: Any, **kwargs: Any) -> None:
        def body() -> object:
            return test(*args, **kwargs)

        # explore() finds the test's file and module (granularity, races,
        # rebound clocks) through __wrapped__, not in this file.
        body.__wrapped__ = test  # type: ignore[attr-defined]
        explore(body, **options)

    item.obj = explored


def _activate(config: pytest.Config, *, whole_run: bool) -> None:
    from tracedsync._pytest import plugin

    plugin.activate(config, whole_run=whole_run)


@pytest.fixture
def locktrace(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The tracedsync events of this test, with queries and assertions
    (a :class:`tracedsync.LockTrace`): recorded from this fixture's setup to
    its teardown, in every thread."""
    from tracedsync._pytest.plugin import locktrace_for

    yield from locktrace_for(request)
