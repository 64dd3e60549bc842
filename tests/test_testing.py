"""tracedsync.testing.reset() puts tracedsync back as it was after import."""

from __future__ import annotations

import pytest

import tracedsync
import tracedsync.testing
from helpers import run_python
from tracedsync import _hooks, _lockorder, _policy
from tracedsync._config import settings
from tracedsync._watchdog import watchdog


def test_reset_restores_settings_policies_and_the_watchdog() -> None:
    before = (settings.log_level, settings.strict, settings.lock_order, settings.log_format)
    tracedsync.configure(
        log_level="debug",
        strict=True,
        lock_order=False,
        log_format="json",
        on_deadlock="warn",
        on_unguarded="warn",
        wait_warning=30,
    )
    tracedsync.disable()
    assert watchdog.running and _hooks.observing
    tracedsync.testing.reset()
    assert (settings.log_level, settings.strict, settings.lock_order, settings.log_format) == before
    assert tracedsync.is_enabled()
    assert _policy.policy_for("deadlock") == "raise"
    assert _policy.policy_for("unguarded") == "raise"
    assert not watchdog.running
    assert not _hooks.observing  # the flags follow the settings


def test_reset_forgets_learnt_orders_but_not_a_primitives_policy() -> None:
    a, b = tracedsync.Lock(name="a"), tracedsync.Lock(name="b")
    tracedsync.set_policy(b, inversion="raise")
    with a, b:
        pass
    assert _lockorder.graph.edges
    tracedsync.testing.reset()
    assert not _lockorder.graph.edges
    with b, a:  # no inversion: the order a -> b was forgotten
        pass
    with pytest.raises(tracedsync.LockOrderError), a, b:
        pass  # b -> a was learnt since, and b's own policy stayed
    tracedsync.set_policy(b, inversion=None)


def test_reset_returns_to_the_environments_settings() -> None:
    result = run_python(
        "import tracedsync, tracedsync.testing\n"
        "from tracedsync._config import settings\n"
        "from tracedsync._watchdog import watchdog\n"
        "tracedsync.configure(log_level='error', lock_order=True, wait_warning=0)\n"
        "tracedsync.testing.reset()\n"
        "print(settings.log_level, settings.lock_order, watchdog.threshold_ns)\n",
        env={
            "TRACEDSYNC_LOG": "warning",
            "TRACEDSYNC_LOCK_ORDER": "0",
            "TRACEDSYNC_WAIT_WARNING": "12",
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["30", "False", str(12 * 10**9)]
