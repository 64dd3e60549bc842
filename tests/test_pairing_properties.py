"""Stateful properties of acquire/release pairing, driven on several real threads.

Hypothesis walks a few worker threads through acquires and releases of one
lock.  Each rule hands one operation to one worker and waits, bounded, for its
answer: steps run one at a time and are reproducible, yet every call runs on
the thread the model names.  Every acquire is non-blocking or one the model
knows succeeds at once, so no step can wait; a worker that does not answer
fails the test instead of hanging it.

The model is the list of acquires not yet matched by a release (the worker
that made each one):

* ``Lock``: at most one.  Any thread may release it, the acquirer or not.
* ``RLock``: all made by one owner.  Only the owner may release, one level per
  release; the lock is free again only after as many releases as acquires.

Each machine runs against tracedsync's type and, as a control that validates
the model itself, against the stdlib's.
"""

from __future__ import annotations

import functools
import queue
import re
import sys
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import tracedsync

#: Worker threads per machine.
WORKERS = 3
#: Longest wait for a worker's answer, in seconds; a step takes microseconds.
STEP_TIMEOUT = 10.0
#: Per-test limit, in seconds (below the project's global 60 s pytest-timeout).
TEST_TIMEOUT = 45

HAS_RECURSION_COUNT = sys.version_info >= (3, 11)

#: The non-blocking spellings of acquire: none of them may ever wait.
NON_BLOCKING: dict[str, Callable[[Any], bool]] = {
    "acquire(blocking=False)": lambda lock: lock.acquire(blocking=False),
    "acquire(False)": lambda lock: lock.acquire(False),
}

workers = st.integers(min_value=0, max_value=WORKERS - 1)
#: Added to one worker's index (mod WORKERS), gives any *other* worker.
other_offsets = st.integers(min_value=1, max_value=WORKERS - 1)
non_blocking = st.sampled_from(sorted(NON_BLOCKING))

_RLOCK_REPR = re.compile(r"^<(locked|unlocked) .* owner=(\d+) count=(\d+) at 0x[0-9a-fA-F]+>$")


def _release_error(release: Callable[[], object]) -> BaseException | None:
    try:
        release()
    except BaseException as exc:  # the caller checks exactly what was raised
        return exc
    return None


@functools.cache
def stdlib_release_errors() -> dict[str, str]:
    """The stdlib's message for each invalid release, on the running interpreter."""
    elsewhere = threading.RLock()
    holder = threading.Thread(target=elsewhere.acquire)
    holder.start()
    holder.join(STEP_TIMEOUT)
    errors = {
        "Lock unheld": _release_error(threading.Lock().release),
        "RLock unheld": _release_error(threading.RLock().release),
        "RLock non-owner": _release_error(elsewhere.release),
    }
    assert all(type(error) is RuntimeError for error in errors.values()), errors
    return {case: str(error) for case, error in errors.items()}


def assert_stdlib_release_error(error: BaseException | None, case: str) -> None:
    """``error`` is what the stdlib raises for this invalid release: type and message."""
    assert error is not None, f"{case}: release succeeded, expected RuntimeError"
    assert type(error) is RuntimeError, f"{case}: raised {error!r}, expected RuntimeError"
    assert str(error) == stdlib_release_errors()[case]


class WorkerStuck(BaseException):
    """A worker gave no answer in time: an operation that must not block did.

    Not an ``Exception``, so Hypothesis fails the test at once instead of
    shrinking, which would wait STEP_TIMEOUT again on every attempt.
    """


class Worker:
    """A thread that runs the commands it is sent, one at a time, and answers each."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.stuck = False
        self._commands: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self._answers: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self._thread = threading.Thread(
            target=self._serve, name=f"pairing-worker-{index}", daemon=True
        )
        self._thread.start()
        #: The thread's ident, as lock reprs show an owner.
        self.ident = self._thread.ident

    def _serve(self) -> None:
        while (command := self._commands.get()) is not None:
            try:
                answer = (True, command())
            except BaseException as exc:  # handed to the test thread, which re-raises it
                answer = (False, exc)
            self._answers.put(answer)

    def run(self, command: Callable[[], Any]) -> Any:
        """Run ``command`` on this worker; return its result or raise its exception."""
        self._commands.put(command)
        try:
            ok, value = self._answers.get(timeout=STEP_TIMEOUT)
        except queue.Empty:
            self.stuck = True
            what = getattr(command, "__qualname__", repr(command))
            raise WorkerStuck(
                f"worker {self.index} gave no answer to {what} within {STEP_TIMEOUT} s: "
                "an operation that must not block did"
            ) from None
        if not ok:
            raise value
        return value

    def ask_to_stop(self) -> None:
        self._commands.put(None)

    def join(self) -> None:
        """Wait for the thread to end (a stuck one is a daemon and left behind)."""
        if not self.stuck:
            self._thread.join(STEP_TIMEOUT)
            assert not self._thread.is_alive(), f"worker {self.index} did not stop"


class WorkerMachine(RuleBasedStateMachine):
    """One lock from ``factory``, WORKERS threads, and the unmatched acquires."""

    factory: ClassVar[Callable[[], Any]]

    def __init__(self) -> None:
        super().__init__()
        self.lock = type(self).factory()
        self.workers = [Worker(index) for index in range(WORKERS)]
        #: The worker of each acquire not yet matched by a release, oldest first.
        self.outstanding: list[int] = []

    def on(self, worker: int, command: Callable[[], Any]) -> Any:
        return self.workers[worker].run(command)

    def release_error(self, worker: int) -> BaseException | None:
        """Release on ``worker``; return what it raised, if anything."""
        return self.on(worker, lambda: _release_error(self.lock.release))

    def teardown(self) -> None:
        for worker in self.workers:
            worker.ask_to_stop()
        for worker in self.workers:
            worker.join()


class LockPairing(WorkerMachine):
    """``Lock``: at most one unmatched acquire, which any thread may release."""

    factory = staticmethod(tracedsync.Lock)

    @precondition(lambda self: not self.outstanding)
    @rule(worker=workers)
    def acquire_free(self, worker: int) -> None:
        """A blocking acquire of a free lock returns True at once."""
        assert self.on(worker, self.lock.acquire) is True
        self.outstanding.append(worker)

    @rule(worker=workers, call=non_blocking)
    def try_acquire(self, worker: int, call: str) -> None:
        """A non-blocking acquire succeeds iff the lock is free.

        Held by anyone, including the caller itself, it returns False.
        """
        expected = not self.outstanding
        assert self.on(worker, lambda: NON_BLOCKING[call](self.lock)) is expected
        if expected:
            self.outstanding.append(worker)

    @precondition(lambda self: bool(self.outstanding))
    @rule()
    def release_by_acquirer(self) -> None:
        """The acquirer's release matches its acquire and frees the lock."""
        acquirer = self.outstanding.pop()
        assert self.release_error(acquirer) is None

    @precondition(lambda self: bool(self.outstanding))
    @rule(offset=other_offsets)
    def release_by_other_thread(self, offset: int) -> None:
        """Another thread's release is legal: it matches the acquire and frees the lock."""
        acquirer = self.outstanding.pop()
        assert self.release_error((acquirer + offset) % WORKERS) is None

    @precondition(lambda self: not self.outstanding)
    @rule(worker=workers)
    def release_unheld(self, worker: int) -> None:
        """Releasing a free lock raises the stdlib's RuntimeError and leaves it free."""
        assert_stdlib_release_error(self.release_error(worker), "Lock unheld")

    @precondition(lambda self: not self.outstanding)
    @rule(worker=workers)
    def with_block(self, worker: int) -> None:
        """``with lock:`` holds the lock inside the block and frees it on exit."""

        def block() -> tuple[bool, bool]:
            with self.lock:
                return self.lock.locked(), self.lock.acquire(False)

        assert self.on(worker, block) == (True, False)

    @invariant()
    def agrees_with_model(self) -> None:
        """The lock is locked exactly while one acquire is unmatched."""
        assert len(self.outstanding) <= 1, self.outstanding
        locked = bool(self.outstanding)
        assert self.lock.locked() is locked
        assert repr(self.lock).startswith("<locked " if locked else "<unlocked "), repr(self.lock)


def _rlock_view(lock: Any) -> tuple[bool, int | None]:
    """What the calling thread sees of an RLock: owned?, recursion count (3.11+)."""
    count = lock._recursion_count() if HAS_RECURSION_COUNT else None
    return lock._is_owned(), count


class RLockPairing(WorkerMachine):
    """``RLock``: unmatched acquires all by one owner; only the owner releases."""

    factory = staticmethod(tracedsync.RLock)

    @property
    def owner(self) -> int | None:
        return self.outstanding[0] if self.outstanding else None

    def observe(self) -> tuple[object, ...]:
        """The lock's state as its repr and every thread (workers, test thread) see it."""
        text = repr(self.lock)
        parsed = _RLOCK_REPR.match(text)
        assert parsed is not None, text
        state, owner_ident, count = parsed.group(1), int(parsed.group(2)), int(parsed.group(3))
        views = [self.on(worker, lambda: _rlock_view(self.lock)) for worker in range(WORKERS)]
        return state, owner_ident, count, views, self.lock._is_owned()

    def expected(self) -> tuple[object, ...]:
        owner, depth = self.owner, len(self.outstanding)
        views = [
            (worker == owner, (depth if worker == owner else 0) if HAS_RECURSION_COUNT else None)
            for worker in range(WORKERS)
        ]
        owner_ident = 0 if owner is None else self.workers[owner].ident
        state = "unlocked" if owner is None else "locked"
        return state, owner_ident, depth, views, False

    @precondition(lambda self: not self.outstanding)
    @rule(worker=workers)
    def acquire_free(self, worker: int) -> None:
        """A blocking acquire of a free RLock returns True at once; the caller owns it."""
        assert self.on(worker, self.lock.acquire) is True
        self.outstanding.append(worker)

    @precondition(lambda self: bool(self.outstanding))
    @rule()
    def reacquire_by_owner(self) -> None:
        """The owner's blocking acquire returns True at once and nests one level."""
        owner = self.outstanding[0]
        assert self.on(owner, self.lock.acquire) is True
        self.outstanding.append(owner)

    @rule(worker=workers, call=non_blocking)
    def try_acquire(self, worker: int, call: str) -> None:
        """A non-blocking acquire succeeds iff the RLock is free or the caller owns it.

        Held by another worker, it returns False.
        """
        expected = self.owner in (None, worker)
        assert self.on(worker, lambda: NON_BLOCKING[call](self.lock)) is expected
        if expected:
            self.outstanding.append(worker)

    @precondition(lambda self: bool(self.outstanding))
    @rule()
    def release_by_owner(self) -> None:
        """The owner's release undoes one level; only the last one frees the lock."""
        owner = self.outstanding.pop()
        assert self.release_error(owner) is None
        still_owned = bool(self.outstanding)
        count = len(self.outstanding) if HAS_RECURSION_COUNT else None
        assert self.on(owner, lambda: _rlock_view(self.lock)) == (still_owned, count)

    @precondition(lambda self: bool(self.outstanding))
    @rule(offset=other_offsets)
    def release_by_non_owner(self, offset: int) -> None:
        """A non-owner's release raises the stdlib's RuntimeError and changes nothing."""
        before = self.observe()
        error = self.release_error((self.outstanding[0] + offset) % WORKERS)
        assert_stdlib_release_error(error, "RLock non-owner")
        assert self.observe() == before

    @precondition(lambda self: not self.outstanding)
    @rule(worker=workers)
    def release_unheld(self, worker: int) -> None:
        """Releasing a free RLock raises the stdlib's RuntimeError and leaves it free."""
        assert_stdlib_release_error(self.release_error(worker), "RLock unheld")

    @rule(worker=workers)
    def with_block(self, worker: int) -> None:
        """``with rlock:`` nests one level inside the block and unwinds it on exit.

        Run by the owner, or by ``worker`` when the lock is free.
        """
        runner = worker if self.owner is None else self.owner
        depth = len(self.outstanding) + 1

        def block() -> tuple[bool, int | None]:
            with self.lock:
                return _rlock_view(self.lock)

        assert self.on(runner, block) == (True, depth if HAS_RECURSION_COUNT else None)

    @invariant()
    def agrees_with_model(self) -> None:
        """Owner and depth, seen by the repr and by every thread, are the model's."""
        assert len(set(self.outstanding)) <= 1, self.outstanding
        assert self.observe() == self.expected()


class StdlibLockPairing(LockPairing):
    """Control: the same machine against ``threading.Lock``."""

    factory = staticmethod(threading.Lock)


class StdlibRLockPairing(RLockPairing):
    """Control: the same machine against ``threading.RLock``."""

    factory = staticmethod(threading.RLock)


@pytest.mark.timeout(TEST_TIMEOUT)
@pytest.mark.parametrize(
    "machine",
    [LockPairing, StdlibLockPairing, RLockPairing, StdlibRLockPairing],
    ids=["tracedsync.Lock", "threading.Lock", "tracedsync.RLock", "threading.RLock"],
)
def test_pairing(machine: type[RuleBasedStateMachine]) -> None:
    run_state_machine_as_test(machine)
