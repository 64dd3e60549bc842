"""CPython's own conformance suites for the threading primitives, run against
tracedsync's types on the running interpreter.

``test.lock_tests`` is the contract ``threading`` itself is tested with; every
test in it must pass for tracedsync's drop-ins.  The classes are built from the
interpreter's own copy of the module, so each CPython version checks the
semantics of that version.
"""

from __future__ import annotations

import threading
from typing import ClassVar

import pytest
from test import lock_tests

import tracedsync
from tracedsync import _accel


class TestLock(lock_tests.LockTests):
    locktype = staticmethod(tracedsync.Lock)


class TestRLock(lock_tests.RLockTests):
    locktype = staticmethod(tracedsync.RLock)


class TestConditionAsRLock(lock_tests.RLockTests):
    """A Condition exports its lock's API; CPython's test_threading runs the
    RLock suite against ``threading.Condition``, with these two skips."""

    locktype = staticmethod(tracedsync.Condition)

    def test_constructor_noargs(self) -> None:
        self.skipTest("Condition allows positional arguments")

    def test_recursion_count(self) -> None:
        self.skipTest("Condition does not expose _recursion_count()")


class TestEvent(lock_tests.EventTests):
    eventtype = staticmethod(tracedsync.Event)


class TestCondition(lock_tests.ConditionTests):
    condtype = staticmethod(tracedsync.Condition)


class TestSemaphore(lock_tests.SemaphoreTests):
    semtype = staticmethod(tracedsync.Semaphore)


class TestBoundedSemaphore(lock_tests.BoundedSemaphoreTests):
    semtype = staticmethod(tracedsync.BoundedSemaphore)


class TestBarrier(lock_tests.BarrierTests):
    barriertype = staticmethod(tracedsync.Barrier)


# The stdlib's Condition over tracedsync's locks: the private lock protocol
# (_is_owned, _release_save, _acquire_restore) must satisfy threading itself.
# (ConditionTests assume the default lock is reentrant, so the Condition over
# a plain Lock is covered in test_primitives.py instead.)


def _stdlib_condition_over_rlock(lock: object = None) -> threading.Condition:
    return threading.Condition(tracedsync.RLock() if lock is None else lock)


class TestStdlibConditionOverRLock(lock_tests.ConditionTests):
    condtype = staticmethod(_stdlib_condition_over_rlock)


# Where the C accelerator is built, the suite runs with it; the Lock and RLock suites
# run once more here on the other implementation (the pure-Python reference),
# so both pass test.lock_tests in every run.  TRACEDSYNC_IMPL=python runs the
# whole suite on the reference.
_OTHER = "python" if _accel.implementation() == "c" else "c"


@pytest.mark.skipif(not _accel.available(), reason="the C accelerator is not built here")
class _OnTheOtherImplementation:
    previous: ClassVar[str] = _accel.implementation()

    def setUp(self) -> None:
        _accel.select(_OTHER)
        super().setUp()  # type: ignore[misc]

    def tearDown(self) -> None:
        try:
            super().tearDown()  # type: ignore[misc]
        finally:
            _accel.select(self.previous)


class TestLockOtherImplementation(_OnTheOtherImplementation, lock_tests.LockTests):
    locktype = staticmethod(tracedsync.Lock)


class TestRLockOtherImplementation(_OnTheOtherImplementation, lock_tests.RLockTests):
    locktype = staticmethod(tracedsync.RLock)


class TestStdlibConditionOverRLockOtherImplementation(
    _OnTheOtherImplementation, lock_tests.ConditionTests
):
    condtype = staticmethod(_stdlib_condition_over_rlock)
