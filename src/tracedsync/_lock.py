"""``Lock`` and ``RLock``: the hot path.

An uncontended acquire is one non-blocking try of a raw ``_thread`` lock,
an owner store and the caller's site (one frame lookup); release is an owner
clear and a raw release.  Everything that can wait (contention, self
re-acquire, timeouts) leaves this module for :mod:`tracedsync._blocking`, the
single place where blocking operations are registered and checked.

Both classes are real classes, not proxies: ``with lock:``,
``threading.Condition(lock)``, ``os.fork()`` and weak references must all see
a lock, including the private protocol ``threading.Condition`` relies on
(``_is_owned``, ``_release_save``, ``_acquire_restore``) and
``_at_fork_reinit``.
"""

from __future__ import annotations

import sys
from _thread import allocate_lock, get_ident
from types import CodeType, FrameType, TracebackType

from tracedsync import _blocking
from tracedsync._sites import (
    INTERNAL_FILES,
    caller_site,
    default_name,
    register_internal_module,
    user_frame,
)

__all__ = ["Lock", "RLock"]

register_internal_module(__file__)

_getframe = sys._getframe


def _check_acquire_arguments(blocking: bool, timeout: float) -> None:
    """Raise exactly what ``_thread.lock.acquire`` raises for these arguments.

    A fresh lock is unlocked, so acquiring it returns at once once the
    arguments pass the interpreter's own checks: the exception types and
    messages are the running CPython's, whatever its version.
    """
    allocate_lock().acquire(blocking, timeout)


class _SiteMixin:
    """Names and acquisition sites shared by both lock classes."""

    __slots__ = (
        "__weakref__",
        "_acquired_code",
        "_acquired_offset",
        "_created_code",
        "_created_line",
        "_lock",
        "_name",
        "_owner",
    )
    _kind = "Lock"
    _name: str | None
    _created_code: CodeType | None
    _created_line: int
    _acquired_code: CodeType | None
    #: Bytecode offset of the acquire in ``_acquired_code``: cheaper to capture
    #: than a line number, which is computed only when a report needs it.
    _acquired_offset: int
    _owner: int | None

    @property
    def name(self) -> str:
        """The name given at creation, or ``Kind@file.py:line`` of the creation site."""
        if self._name is None:
            self._name = default_name(self._kind, self._created_code, self._created_line)
        return self._name

    def _take(self, frame: FrameType) -> None:
        """Record the calling thread as owner after a contended acquire succeeded."""
        raise NotImplementedError

    def _note_site(self, frame: FrameType) -> None:
        """Remember where the user acquired the lock (skipping internal frames)."""
        found = user_frame(frame)
        if found is None:
            self._acquired_code, self._acquired_offset = None, 0
        else:
            self._acquired_code, self._acquired_offset = found.f_code, found.f_lasti


class Lock(_SiteMixin):
    """A traced drop-in for :func:`threading.Lock`.

    Same methods, return values and exceptions.  A thread that re-acquires,
    blocking and without a timeout, a ``Lock`` it holds gets
    :class:`~tracedsync.DeadlockError` as soon as no other thread could
    release it; until then it waits, because ``threading.Lock`` may legally be
    released by another thread.  ``strict=True`` (or
    ``tracedsync.configure(strict=True)``) refuses every blocking self
    re-acquire at once.
    """

    __slots__ = ("strict",)

    def __init__(self, *, name: str | None = None, strict: bool | None = None) -> None:
        self._lock = allocate_lock()
        #: Ident of the thread that acquired the lock, ``None`` while unlocked.
        self._owner = None
        self._acquired_code = None
        self._acquired_offset = 0
        self._created_code, self._created_line = caller_site(1)
        self._name = name
        #: Per-lock override of the global ``strict`` setting (``None``: use it).
        self.strict = strict

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire the lock, as :meth:`threading.Lock.acquire`."""
        if timeout != -1:
            _check_acquire_arguments(blocking, timeout)
        frame = _getframe(1)
        if self._lock.acquire(False):
            self._owner = get_ident()
            if frame.f_code.co_filename in INTERNAL_FILES:
                self._note_site(frame)
            else:
                self._acquired_code, self._acquired_offset = frame.f_code, frame.f_lasti
            return True
        return _blocking.acquire_contended(self, blocking, timeout, frame)

    __enter__ = acquire

    def _take(self, frame: FrameType) -> None:
        self._owner = get_ident()
        self._note_site(frame)

    def release(self) -> None:
        """Release the lock, as :meth:`threading.Lock.release` (any thread may)."""
        self._owner = None
        self._lock.release()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def locked(self) -> bool:
        """Whether the lock is held by any thread."""
        return self._lock.locked()

    # The legacy aliases ``_thread.lock`` still has.
    acquire_lock = acquire
    release_lock = release
    locked_lock = locked

    # The protocol threading.Condition uses.  A Lock does not know its owner
    # in the stdlib's sense (any thread may release it), so _is_owned answers
    # exactly as threading.Condition's own fallback for a plain Lock does.
    def _is_owned(self) -> bool:
        return self._lock.locked()

    def _release_save(self) -> None:
        self.release()

    def _acquire_restore(self, state: None, /) -> None:
        frame = _getframe(1)
        if self._lock.acquire(False):
            self._owner = get_ident()
            self._note_site(frame)
        else:
            _blocking.acquire_contended(self, True, -1, frame)

    def _at_fork_reinit(self) -> None:
        self._lock._at_fork_reinit()  # type: ignore[attr-defined]
        self._owner = None

    def __repr__(self) -> str:
        state = "locked" if self._lock.locked() else "unlocked"
        cls = type(self)
        return (
            f"<{state} {cls.__module__}.{cls.__qualname__} object {self.name!r} at {id(self):#x}>"
        )


class RLock(_SiteMixin):
    """A traced drop-in for :func:`threading.RLock`.

    Reentrant: the owning thread may acquire it again, and must release it as
    many times.  Only the owner may release it (others get ``RuntimeError``,
    as with ``threading.RLock``).  Recursion is never reported as a deadlock.
    """

    __slots__ = ("_depth",)
    _kind = "RLock"

    def __init__(self, *, name: str | None = None) -> None:
        self._lock = allocate_lock()
        #: Ident of the owning thread, ``None`` while unlocked.  Written only
        #: by the owner, so a thread reading its own ident here owns the lock.
        self._owner: int | None = None
        #: Recursion depth; meaningful only to the owner.
        self._depth = 0
        self._acquired_code = None
        self._acquired_offset = 0
        self._created_code, self._created_line = caller_site(1)
        self._name = name

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire the lock, as :meth:`threading.RLock.acquire`."""
        if timeout != -1:
            _check_acquire_arguments(blocking, timeout)
        me = get_ident()
        if self._owner == me:
            self._depth += 1
            return True
        frame = _getframe(1)
        if self._lock.acquire(False):
            self._owner = me
            self._depth = 1
            if frame.f_code.co_filename in INTERNAL_FILES:
                self._note_site(frame)
            else:
                self._acquired_code, self._acquired_offset = frame.f_code, frame.f_lasti
            return True
        return _blocking.acquire_contended(self, blocking, timeout, frame)

    __enter__ = acquire

    def _take(self, frame: FrameType) -> None:
        self._owner = get_ident()
        self._depth = 1
        self._note_site(frame)

    def release(self) -> None:
        """Release one level; the last release unlocks.  Only the owner may call it."""
        if self._owner != get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        depth = self._depth - 1
        self._depth = depth
        if depth == 0:
            self._owner = None
            self._lock.release()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _is_owned(self) -> bool:
        return self._owner == get_ident()

    def _release_save(self) -> tuple[int, int]:
        owner = self._owner
        if owner != get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        state = (self._depth, owner)
        self._depth = 0
        self._owner = None
        self._lock.release()
        return state

    def _acquire_restore(self, state: tuple[int, int], /) -> None:
        frame = _getframe(1)
        if not self._lock.acquire(False):
            _blocking.acquire_contended(self, True, -1, frame)
        else:
            self._note_site(frame)
        self._depth, self._owner = state

    if sys.version_info >= (3, 11):

        def _recursion_count(self) -> int:
            return self._depth if self._owner == get_ident() else 0

    def _at_fork_reinit(self) -> None:
        self._lock._at_fork_reinit()  # type: ignore[attr-defined]
        self._owner = None
        self._depth = 0

    def __repr__(self) -> str:
        owner = self._owner
        state = "locked" if owner is not None else "unlocked"
        cls = type(self)
        return (
            f"<{state} {cls.__module__}.{cls.__qualname__} object {self.name!r} "
            f"owner={owner or 0} count={self._depth if owner is not None else 0} "
            f"at {id(self):#x}>"
        )
