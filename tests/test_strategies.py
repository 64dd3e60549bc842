"""tracedsync.strategies: generated lock programs check lock wrappers."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracedsync
from tracedsync.strategies import LockProgram, Step, lock_programs, run_lock_program

#: Each example starts worker threads: keep the budget small.
FEW = settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("make", [tracedsync.Lock, threading.Lock], ids=["traced", "stdlib"])
def test_locks_pass_their_own_programs(make: Any) -> None:
    @FEW
    @given(lock_programs())
    def check(program: LockProgram) -> None:
        run_lock_program(program, make())

    check()


@pytest.mark.parametrize("make", [tracedsync.RLock, threading.RLock], ids=["traced", "stdlib"])
def test_rlocks_pass_reentrant_programs(make: Any) -> None:
    @FEW
    @given(lock_programs(reentrant=True))
    def check(program: LockProgram) -> None:
        run_lock_program(program, make())

    check()


class CountingLock:
    """A correct wrapper: counts acquisitions around a tracedsync Lock."""

    def __init__(self) -> None:
        self._lock = tracedsync.Lock(name="counted")
        self.acquisitions = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        acquired = self._lock.acquire(blocking, timeout)
        self.acquisitions += acquired
        return acquired

    def release(self) -> None:
        self._lock.release()


class LenientLock(CountingLock):
    """A broken wrapper: ignores the release of a lock nobody holds."""

    def release(self) -> None:
        if self._lock.locked():
            self._lock.release()


@FEW
@given(lock_programs(threads=2))
def test_a_correct_wrapper_passes(program: LockProgram) -> None:
    run_lock_program(program, CountingLock())


def test_a_broken_wrapper_is_caught_with_a_short_example() -> None:
    @settings(max_examples=200, derandomize=True, database=None)
    @given(lock_programs(threads=2))
    def check(program: LockProgram) -> None:
        run_lock_program(program, LenientLock())

    with pytest.raises(AssertionError, match=r"t\d\.release returned None, expected RuntimeError"):
        check()


def test_an_explicit_program_and_a_lock_of_the_wrong_kind() -> None:
    program = LockProgram(2, (Step(0, "acquire"), Step(0, "try_acquire")), reentrant=True)
    with pytest.raises(
        AssertionError, match=r"step 2, t0\.try_acquire returned False, expected True"
    ):
        run_lock_program(program, tracedsync.Lock())  # a Lock is not reentrant
    foreign = LockProgram(2, (Step(0, "acquire"), Step(1, "release")), reentrant=True)
    run_lock_program(program._replace(reentrant=True), tracedsync.RLock())
    with pytest.raises(AssertionError, match="expected RuntimeError"):
        run_lock_program(foreign, tracedsync.Lock())  # any thread may release a Lock


def test_generated_programs_never_block_a_correct_lock() -> None:
    @FEW
    @given(st.from_type(LockProgram))
    def check(program: LockProgram) -> None:
        lock = tracedsync.Lock()
        run_lock_program(program, lock, step_timeout=5)
        assert not lock.locked()  # left free

    check()
