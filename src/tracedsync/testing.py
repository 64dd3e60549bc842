"""Support for test suites: put tracedsync back as it was after import.

Tests that change tracedsync's process-wide state (``configure()``,
``disable()``, an inversion learnt by the lock-order graph...) call
:func:`reset` afterwards, typically from an autouse fixture, as structlog's
``structlog.reset_defaults()`` and trio's testing helpers are used::

    import pytest
    import tracedsync.testing

    @pytest.fixture(autouse=True)
    def _fresh_tracedsync():
        yield
        tracedsync.testing.reset()
"""

from __future__ import annotations

from tracedsync import _config, _hooks, _lockorder, _policy, _sites, _watchdog
from tracedsync._waits import waits

__all__ = ["reset"]


def reset() -> None:
    """Return tracedsync's process-wide state to what it was after import.

    Puts back the settings read from the environment (``TRACEDSYNC_*``:
    log level and format, strict mode, lock-order checking, the off switch),
    the default global policy of every kind of finding and the watchdog's
    threshold; forgets every lock order learnt (so an inversion is reported
    anew), the locks the calling thread is recorded as holding and any wait
    it left registered; numbers the instances made at each creation site
    from 1 again (the next lock made on a line is ``Lock@file.py:12#1``);
    and lets rendering through structlog be tried again if it failed.

    It leaves alone what belongs to objects or to their owners: policies set
    on a primitive with :func:`~tracedsync.set_policy` and declared orders
    (both go with the primitive), :func:`~tracedsync.patch` (the pytest
    plugin patches for a whole run), sinks and recordings in progress, and
    the JSON Lines file given by ``log_file``/``TRACEDSYNC_LOG_FILE``.
    """
    _config.restore()
    _policy.reset_global()
    _watchdog.watchdog.configure(_watchdog.seconds_from_environment)
    _watchdog.watchdog.hang_rule = None
    _lockorder.graph.clear()
    _lockorder.forget_held()
    waits.withdraw()
    _sites.reset_instances()
    _hooks.reset_rendering()
    _hooks.settings_changed()
