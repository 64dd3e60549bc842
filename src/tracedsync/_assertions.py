"""Assertions about which locks a thread holds, for production code and tests.

``lock.assert_held()`` and ``lock.assert_not_held()`` read the lock's owner
(the thread that acquired it), which every traced lock keeps anyway: they
work whatever is configured.  :func:`held_locks` and
:func:`assert_no_locks_held` need the list of locks each thread holds, which
the lock-order checker keeps while it is on (the default).  It is not kept
when ``configure(lock_order=False)`` turned the checker off, because keeping
it costs a list append and pop on every acquire and release: these two
functions then raise :class:`RuntimeError` rather than answer wrongly.
"""

from __future__ import annotations

from _thread import get_ident

from tracedsync import _hooks, _lockorder
from tracedsync._report import describe_primitive, thread_label
from tracedsync._sites import describe_offset, register_internal_module
from tracedsync._typenames import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracedsync._lock import Lock, RLock

__all__ = ["assert_no_locks_held", "held_error", "held_locks", "not_held_error"]

register_internal_module(__file__)


def _acquired_at(lock: Any) -> str:
    return describe_offset(lock._acquired_code, lock._acquired_offset) or "an unknown site"


def not_held_error(lock: Any) -> AssertionError:
    """The error of ``lock.assert_held()`` failing in the calling thread."""
    me = thread_label(get_ident())
    owner = lock._owner
    if owner is not None:
        state = f"it is held by thread {thread_label(owner)}, acquired at {_acquired_at(lock)}"
    elif lock._lock.locked():
        state = "it is locked, by a thread tracedsync does not know"
    else:
        state = "it is not locked"
    return AssertionError(f"{describe_primitive(lock)} is not held by thread {me}: {state}")


def held_error(lock: Any) -> AssertionError:
    """The error of ``lock.assert_not_held()`` failing in the calling thread."""
    me = thread_label(get_ident())
    return AssertionError(
        f"{describe_primitive(lock)} is held by thread {me}, acquired at {_acquired_at(lock)}"
    )


def held_locks() -> list[Lock | RLock]:
    """The tracedsync locks the calling thread holds, outermost first.

    An ``RLock`` appears once, however deep its recursion.  A ``Lock`` that
    another thread released on this thread's behalf is not held any more;
    a *handoff* lock (one that has ever been released by another thread than
    its acquirer) is not tracked at all, since it behaves as a signal rather
    than as something a thread owns.  Locks acquired while lock-order
    checking was off are not listed.

    Raises :class:`RuntimeError` when lock-order checking is off
    (``configure(lock_order=False)`` or ``TRACEDSYNC_LOCK_ORDER=0``): the
    held list is not kept then, and an empty answer would be a lie.
    """
    if not _hooks.ordering:
        raise RuntimeError(
            "tracedsync.held_locks() needs lock tracking, which is off: "
            "configure(lock_order=False) or TRACEDSYNC_LOCK_ORDER=0 turned it off"
        )
    try:
        held = _lockorder._per_thread.held
    except AttributeError:
        return []
    me = get_ident()
    found: list[Any] = []
    seen: set[int] = set()
    for entry in list(held):
        lock = _lockorder.entry_lock(entry)
        if lock is None or lock._owner != me or id(lock) in seen:
            continue
        seen.add(id(lock))
        found.append(lock)
    return found


def assert_no_locks_held() -> None:
    """Raise :class:`AssertionError` if the calling thread holds any
    tracedsync lock, naming each and where it was acquired.

    Meant for the boundaries where a thread must hold nothing: the end of a
    request handler, a task, a callback run by a pool, a test.  Needs lock
    tracking, as :func:`held_locks`.
    """
    held = held_locks()
    if held:
        listed = "\n".join(
            f"  {describe_primitive(lock)}, acquired at {_acquired_at(lock)}" for lock in held
        )
        raise AssertionError(
            f"thread {thread_label(get_ident())} holds {len(held)} lock"
            f"{'s' if len(held) > 1 else ''}:\n{listed}"
        )
