"""``Lock`` and ``RLock``: the hot path.

An uncontended acquire is one non-blocking try of a raw ``_thread`` lock,
an owner store, the caller's site (one frame lookup) and one flag test;
release is an owner clear, the flag test and a raw release.  Everything else
leaves this module: waiting for :mod:`tracedsync._blocking` (the single place
where blocking operations are registered and checked), events for
:mod:`tracedsync._hooks` (only while something observes them).

Both classes are real classes, not proxies: ``with lock:``,
``threading.Condition(lock)``, ``os.fork()`` and weak references must all see
a lock, including the private protocol ``threading.Condition`` relies on
(``_is_owned``, ``_release_save``, ``_acquire_restore``) and
``_at_fork_reinit``.
"""

from __future__ import annotations

import sys
import threading
import warnings
import weakref
from _thread import allocate_lock, get_ident
from time import monotonic_ns
from types import CodeType, FrameType, TracebackType

from tracedsync import _accel, _blocking, _hooks, _lockorder
from tracedsync._assertions import held_error, not_held_error
from tracedsync._config import settings
from tracedsync._errors import REPORTED_ERRORS
from tracedsync._hooks import Identity
from tracedsync._sites import (
    INTERNAL_FILES,
    caller_site,
    check_name,
    default_name,
    instance_label,
    new_instance,
    register_internal_module,
    user_site,
)
from tracedsync._typenames import Any

__all__ = ["Lock", "RLock"]

register_internal_module(__file__)

_getframe = sys._getframe
_sequence = _hooks.sequence
_order_thread = _lockorder._per_thread

#: From 3.12 a collection an allocation asks for runs when the next call
#: returns, not inside the allocation: the raw acquire's argument tuple needs
#: a primer then (see ``Lock.acquire``).  Up to 3.11 that tuple is made, and
#: any collection it asks for run, before the raw lock is taken.
COLLECTS_AT_CALLS = sys.version_info >= (3, 12)

#: ``acquire()``'s default timeout: ``timeout is NO_TIMEOUT`` tells the common
#: call (default or an explicit ``-1``) from ``-1.0`` and every other value.
NO_TIMEOUT = -1


def _acquired_data(blocking: bool, timeout: float, *depth: Any) -> _hooks.PairsData:
    return (
        "outcome",
        "acquired",
        "waited_ns",
        0,
        "blocking",
        bool(blocking),
        "timeout",
        timeout,
        *depth,
    )


#: The data of the common acquire event (blocking, no timeout), one tuple
#: shared by all of them (see _hooks.PairsData).
_ACQUIRED = _acquired_data(True, NO_TIMEOUT)
#: The same for an RLock, by depth (deeper recursion builds its own).
_RLOCK_ACQUIRED = tuple(_acquired_data(True, NO_TIMEOUT, "depth", depth) for depth in range(9))


_site = user_site


def _check_acquire_arguments(blocking: bool, timeout: float) -> None:
    """Raise exactly what ``_thread.lock.acquire`` raises for these arguments.

    A fresh lock is unlocked, so acquiring it returns at once once the
    arguments pass the interpreter's own checks: the exception types and
    messages are the running CPython's, whatever its version.
    """
    allocate_lock().acquire(blocking, timeout)


def _run_pending() -> None:
    """Do nothing; the C accelerator calls this before it takes a raw lock,
    when the interpreter has something pending (the C ``run_pending``).

    Entering a Python function is where CPython 3.12+ runs a collection an
    allocation asked for: there, a ``__del__`` taking the lock finds it free
    (or held by another thread), never held by its own thread with no Python
    code of the user's in between.
    """


class _LockBase:
    """What both lock classes share: names, sites, identity, the off switch."""

    __slots__ = (
        "__weakref__",
        "_acquired_code",
        "_acquired_ns",
        "_acquired_offset",
        "_created_code",
        "_created_line",
        "_held_list",
        "_identity",
        "_instance",
        "_lock",
        "_name",
        "_order_key",
        "_owner",
        "_weak_self",
    )
    _kind = "Lock"
    #: Marks a traced lock for the modules this one imports (they cannot
    #: import this module back): see ``_hierarchy.is_traced_lock``.
    _tracedsync_lock = True
    #: Prefix of this class's event names (``lock.acquire``...).
    _events = "lock"
    _name: str | None
    _created_code: CodeType | None
    _created_line: int
    _acquired_code: CodeType | None
    #: Bytecode offset of the acquire in ``_acquired_code``: cheaper to capture
    #: than a line number, which is computed only when a report needs it.
    _acquired_offset: int
    #: ``time.monotonic_ns()`` of the acquisition less tracedsync's time in
    #: the thread so far (see ``_hooks.spent``), kept only while observed; 0
    #: when not.  An int, or from the C accelerator a float holding the same
    #: whole number (see ``hold_start`` in ``_speedups.c``): read it with
    #: ``int()``.
    _acquired_ns: float
    _identity: Identity | None
    #: Which instance of its site (or given name) this is: see ``_sites.new_instance``.
    _instance: int | str
    _order_key: str | None
    _owner: int | None
    #: The held-lock list of the thread that took the lock on ``Lock``'s
    #: pure-Python hot path (its entry on top), until the lock is released;
    #: else ``None``.  Spares release() a thread-local lookup.
    _held_list: list[Any] | None

    def _init_common(self, name: str | None) -> None:
        check_name(name)
        self._lock = allocate_lock()
        self._owner = None
        self._held_list = None
        self._acquired_code = None
        self._acquired_offset = 0
        self._acquired_ns = 0
        self._created_code, self._created_line = caller_site(2)
        self._instance = new_instance(self._kind, name, self._created_code, self._created_line)
        self._name = name
        self._identity = None
        self._order_key = None
        self._weak_self: weakref.ref[_LockBase] | None = None

    @property
    def name(self) -> str:
        """The name given at creation, or ``Kind@file.py:line`` of the creation site."""
        if self._name is None:
            self._name = default_name(self._kind, self._created_code, self._created_line)
        return self._name

    def _creation_site(self) -> tuple[CodeType | None, int]:
        """Where the lock was created (events' ``primitive_created``)."""
        return self._created_code, self._created_line

    def _instance_label(self) -> str:
        """The name that tells this lock from others of its site or name
        (events' ``primitive_instance``): ``Lock@bank.py:12#2``."""
        return instance_label(self.name, self._instance)

    def _take(self, code: CodeType | None, offset: int) -> None:
        """Record the calling thread as owner after a contended acquire
        succeeded, taken at the user's ``code``/``offset`` (see :func:`_site`:
        found before the wait, so that nothing allocates between taking the
        raw lock and recording its owner)."""
        raise NotImplementedError

    def _depth_data(self) -> dict[str, Any]:
        """Extra event fields describing the lock's state (an RLock's depth)."""
        return {}

    def _after_acquire(
        self, frame: FrameType, blocking: bool, timeout: float, *, may_raise: bool = True
    ) -> None:
        """Report a fresh (not recursive) acquisition to the active hooks."""
        if _hooks.ordering:
            _lockorder.acquired(self, frame, may_raise and bool(blocking) and timeout < 0)
        if _hooks.observing:
            self._observe_acquired(self._acquired_code, self._acquired_offset, blocking, timeout)

    def _observe_acquired(
        self, code: CodeType | None, offset: int, blocking: bool, timeout: float
    ) -> None:
        """Publish the ``acquire`` event of an uncontended acquire made at ``code``/``offset``."""
        raise NotImplementedError

    def _undo_acquire(self) -> None:
        """Release a just-made acquisition that a hook refused."""
        _lockorder.released(self)
        self._held_list = None
        self._owner = None
        self._lock.release()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()  # type: ignore[attr-defined]

    def assert_held(self) -> None:
        """Raise :class:`AssertionError` unless the calling thread holds this lock.

        "Holds" means acquired it and has not released it since (for an
        ``RLock``, at any depth).  For a ``Lock``, which any thread may
        release, the holder is the thread that acquired it.  Meant for the
        top of functions whose caller must hold the lock: a runtime
        ``REQUIRES(lock)``.  Always checked, also under ``python -O``.
        """
        if self._owner != get_ident():
            raise not_held_error(self)

    def assert_not_held(self) -> None:
        """Raise :class:`AssertionError` if the calling thread holds this lock
        (see :meth:`assert_held`): e.g. before calling out to code that may
        take it, or before a blocking wait."""
        if self._owner == get_ident():
            raise held_error(self)


#: The locks given their own ``strict`` (see ``Lock.strict``), weakly: rare,
#: so kept here rather than in a slot of every lock (the memory per lock).
_strict_locks: weakref.WeakKeyDictionary[Lock, bool] = weakref.WeakKeyDictionary()


class Lock(_LockBase):
    """A traced drop-in for :func:`threading.Lock`.

    Same methods, return values and exceptions.  A thread that re-acquires,
    blocking and without a timeout, a ``Lock`` it holds gets
    :class:`~tracedsync.DeadlockError` as soon as no other thread could
    release it; until then it waits, because ``threading.Lock`` may legally be
    released by another thread.  ``strict=True`` (or
    ``tracedsync.configure(strict=True)``) refuses every blocking self
    re-acquire at once.
    """

    __slots__ = ("_handoff",)

    def __new__(cls, *, name: str | None = None, strict: bool | None = None) -> Lock:
        if not settings.enabled and cls is Lock:
            return threading.Lock()  # type: ignore[return-value]
        return object.__new__(cls)

    def __init__(self, *, name: str | None = None, strict: bool | None = None) -> None:
        self._init_common(name)
        if strict is not None:
            self.strict = strict
        #: Set once another thread than the acquirer released the lock (a
        #: handoff): anyone may release it, so it never closes a deadlock cycle.
        self._handoff = False

    @property
    def strict(self) -> bool | None:
        """This lock's own ``strict`` setting, overriding
        ``tracedsync.configure(strict=...)``; ``None``: the global one."""
        return _strict_locks.get(self)

    @strict.setter
    def strict(self, value: bool | None) -> None:
        if value is None:
            _strict_locks.pop(self, None)
        else:
            _strict_locks[self] = value

    def acquire(self, blocking: bool = True, timeout: float = NO_TIMEOUT) -> bool:
        """Acquire the lock, as :meth:`threading.Lock.acquire`."""
        if timeout != -1:
            _check_acquire_arguments(blocking, timeout)
        frame = _getframe(1)
        code: CodeType | None = frame.f_code
        offset = frame.f_lasti
        if code.co_filename in INTERNAL_FILES:  # type: ignore[union-attr]
            code, offset = _site(frame)
        # _lockorder.acquired's commonest case, inlined (the hottest path of
        # all: a Lock under the defaults): the thread holds no other lock, so
        # there is no order to check, only this lock to note as held, by its
        # bare weak reference (see _lockorder.Outermost), which allocates
        # nothing.  Nothing allocates between taking the raw lock and
        # returning either, so the garbage collector (a __del__ taking this
        # lock) never runs where threading.Lock runs no Python code.  What
        # allocates (a lock's first weak reference, the site's frame object,
        # a thread's first held list) comes before the get_ident() call: from
        # 3.12 a collection an allocation asks for runs when the next call
        # returns, and that must not be the raw acquire's (lock taken, no
        # owner yet).  The raw acquire allocates too: its argument tuple, a
        # new one only when no 1-tuple is free, and from 3.12 that one can
        # ask for a collection as the acquire returns.  The primer, made and
        # dropped just before get_ident(), leaves a 1-tuple free for it (and
        # any collection the primer itself asks for runs at get_ident()).  On
        # 3.13 with pure Python, the gc stress scenario (benchmarks/stress.py)
        # failed 2 runs of 20 without it, 0 of 40 with it.  The held list is
        # kept in the lock for release().
        commonest = False
        if _hooks.ordering:
            if self._weak_self is None:
                _lockorder.prepare_lock(self)
            try:
                held = _order_thread.held
            except AttributeError:
                held = _lockorder.thread_state()
            commonest = not held and not self._handoff
        if COLLECTS_AT_CALLS:
            primer = (offset,)  # see above
            del primer
        me = get_ident()  # the last call before the raw lock: see above
        if self._lock.acquire(False):
            self._owner = me
            self._acquired_code = code
            self._acquired_offset = offset
            if commonest:
                held.append(self._weak_self)
                self._held_list = held
            elif _hooks.ordering:
                try:
                    _lockorder.acquired(self, frame, blocking and timeout < 0)
                except REPORTED_ERRORS as error:
                    __tracebackhide__ = True
                    raise error.with_traceback(None)  # noqa: B904 - the same error, user frames only
            if _hooks.observing:
                self._observe_acquired(code, offset, blocking, timeout)
            return True
        try:
            return _blocking.acquire_contended(self, blocking, timeout, frame)
        except REPORTED_ERRORS as error:
            __tracebackhide__ = True
            raise error.with_traceback(None)  # noqa: B904 - the same error, user frames only

    __enter__ = acquire

    def _take(self, code: CodeType | None, offset: int) -> None:
        self._owner = get_ident()
        self._acquired_code, self._acquired_offset = code, offset

    def _observe_acquired(
        self, code: CodeType | None, offset: int, blocking: bool, timeout: float
    ) -> None:
        now = monotonic_ns()
        if blocking is True and timeout is NO_TIMEOUT:
            data = _ACQUIRED
        else:
            data = _acquired_data(blocking, timeout)
        base = now - _hooks.spent.get(get_ident(), 0)  # see _hooks.spent
        _hooks.publish(next(_sequence), now, "lock.acquire", self, code, offset, data)
        self._acquired_ns = base

    def release(self) -> None:
        """Release the lock, as :meth:`threading.Lock.release` (any thread may)."""
        held = self._held_list
        if held is not None:
            # acquire()'s commonest case undone: the thread that took the
            # lock there releases it, innermost first.
            self._held_list = None
            if held and held[-1] is self._weak_self and self._owner == get_ident():
                held.pop()
                if _hooks.observing:
                    self._release_observed(_getframe(1))
                    return
                self._owner = None
                self._acquired_ns = 0
                self._lock.release()
                return
        if _hooks.active:
            if _hooks.ordering:
                _lockorder.released(self)
            if _hooks.observing:
                self._release_observed(_getframe(1))
                return
        owner = self._owner
        if owner is not None and owner != get_ident():  # a call: before the owner goes
            self._handoff = True
        self._owner = None
        self._acquired_ns = 0
        self._lock.release()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A subclass's own release() is what ``with`` calls: the __exit__
        # below inlines Lock.release's commonest case, so a subclass that
        # overrides release() gets the one that calls it.
        super().__init_subclass__(**kwargs)
        overrides = cls.__mro__[: cls.__mro__.index(Lock)]
        if any("release" in vars(klass) for klass in overrides) and not any(
            "__exit__" in vars(klass) for klass in overrides
        ):
            cls.__exit__ = _LockBase.__exit__  # type: ignore[method-assign]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        held = self._held_list
        if held is not None:  # release()'s commonest case, inlined: see there
            self._held_list = None
            if held and held[-1] is self._weak_self and self._owner == get_ident():
                held.pop()
                if _hooks.observing:
                    self._release_observed(_getframe(1))
                    return
                self._owner = None
                self._acquired_ns = 0
                self._lock.release()
                return
        self.release()

    def _release_observed(self, frame: FrameType) -> None:
        """Release, publishing the ``release`` event (the order checker has been told)."""
        seq, now = next(_sequence), monotonic_ns()  # before the release: see _hooks
        if _hooks.release_edge is not None:
            _hooks.release_edge(self)
        acquired_ns, self._acquired_ns = self._acquired_ns, 0
        owner = self._owner
        # Between the owner's clearing and the raw release nothing calls: a
        # collection or a signal handler run there (at a call's return) would
        # find the lock taken with no owner.
        if owner is not None and owner != get_ident():
            self._handoff = True
        self._owner = None
        try:
            self._lock.release()
        except RuntimeError as error:
            _hooks.deliver(
                (seq, now),
                "lock.release",
                self,
                frame,
                {"outcome": "error", "error": _hooks.describe_error(error)},
            )
            raise
        # Less tracedsync's time in the holder meanwhile (see _hooks.spent).
        # Released by another thread (a handoff), the holder's count is read
        # while the holder may be adding to it, after this release's time was
        # taken: never below zero.
        spent = _hooks.spent.get(owner or 0, 0)
        held_ns = max(0, int(now - spent - acquired_ns)) if acquired_ns else None
        code, offset = _site(frame)
        data = ("outcome", "released", "held_ns", held_ns)
        _hooks.publish(seq, now, "lock.release", self, code, offset, data)

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

    # Releasing for a wait is a release like any other (the event's site is
    # the user's call of the wait: threading's frames are internal).
    _release_save = release

    def _acquire_restore(self, state: None, /) -> None:
        frame = _getframe(1)
        code, offset = _site(frame)  # before the raw lock: see acquire
        if COLLECTS_AT_CALLS:
            primer = (offset,)  # see acquire
            del primer
        me = get_ident()  # the last call before the raw lock: see acquire
        if self._lock.acquire(False):
            self._owner = me
            self._acquired_code, self._acquired_offset = code, offset
            if _hooks.active:
                self._after_acquire(frame, True, -1, may_raise=False)
        else:
            _blocking.acquire_contended(self, True, -1, frame, restoring=True)

    def _at_fork_reinit(self) -> None:
        self._lock._at_fork_reinit()  # type: ignore[attr-defined]
        self._held_list = None
        self._owner = None

    def __repr__(self) -> str:
        state = "locked" if self._lock.locked() else "unlocked"
        cls = type(self)
        return (
            f"<{state} {cls.__module__}.{cls.__qualname__} object {self.name!r} at {id(self):#x}>"
        )


class RLock(_LockBase):
    """A traced drop-in for :func:`threading.RLock`.

    Reentrant: the owning thread may acquire it again, and must release it as
    many times.  Only the owner may release it (others get ``RuntimeError``,
    as with ``threading.RLock``).  Recursion is never reported as a deadlock.
    """

    #: ``_depth``: the recursion depth, meaningful only to the owner.
    #: ``_owner`` is written only by the owner, so a thread reading its own
    #: ident there owns the lock.
    __slots__ = ("_depth",)
    _kind = "RLock"
    _events = "rlock"
    #: Only the owner may release an RLock: never a handoff (see Lock).
    _handoff = False

    # A subclass with its own __init__ may take any arguments (as a subclass
    # of _thread.RLock may); RLock's own __init__ decides about the rest.
    def __new__(cls, *args: Any, name: str | None = None, **kwargs: Any) -> RLock:
        if not settings.enabled and cls is RLock:
            return threading.RLock(*args, **kwargs)  # type: ignore[return-value]
        return object.__new__(cls)

    if sys.version_info >= (3, 15):
        # 3.15 removed the arguments RLock() used to accept and ignore.

        def __init__(self, *, name: str | None = None) -> None:
            self._init_common(name)
            self._depth = 0

    else:
        # Before 3.15 threading.RLock() accepts any arguments and ignores
        # them; 3.13 and 3.14 warn (gh-102029).

        def __init__(self, *args: Any, name: str | None = None, **kwargs: Any) -> None:
            if (args or kwargs) and sys.version_info >= (3, 13) and type(self) is RLock:
                warnings.warn(
                    "Passing arguments to RLock is deprecated and will be removed in 3.15",
                    DeprecationWarning,
                    stacklevel=2,
                )
            self._init_common(name)
            self._depth = 0

    def acquire(self, blocking: bool = True, timeout: float = NO_TIMEOUT) -> bool:
        """Acquire the lock, as :meth:`threading.RLock.acquire`."""
        if timeout != -1:
            _check_acquire_arguments(blocking, timeout)
        if self._owner == get_ident():
            self._depth += 1
            if _hooks.observing:
                self._observe_acquired(*_site(_getframe(1)), blocking, timeout)
            return True
        frame = _getframe(1)
        code: CodeType | None = frame.f_code
        offset = frame.f_lasti
        if code.co_filename in INTERNAL_FILES:  # type: ignore[union-attr]
            code, offset = _site(frame)
        # As Lock.acquire: everything that allocates (the site, the held-lock
        # entry of lock order's commonest case, a lock's first weak reference,
        # a thread's first held list) comes before the raw lock is taken, and
        # the owner is stored the moment it is, so that a __del__ the
        # collector runs in between finds this thread owning the lock (and
        # recurses) instead of waiting for itself.  The C accelerator
        # inlines the entry and its push as Lock's does.
        prepared = _lockorder.prepared_entry(self) if _hooks.ordering else None
        if COLLECTS_AT_CALLS:
            primer = (offset,)  # see Lock.acquire
            del primer
        me = get_ident()  # the last call before the raw lock: see Lock.acquire
        if self._lock.acquire(False):
            self._owner = me
            self._depth = 1
            self._acquired_code, self._acquired_offset = code, offset
            if _hooks.active:  # _after_acquire, inlined: the hot path
                if _hooks.ordering:
                    try:
                        _lockorder.acquired(self, frame, blocking and timeout < 0, prepared)
                    except REPORTED_ERRORS as error:
                        __tracebackhide__ = True
                        raise error.with_traceback(None)  # noqa: B904 - the same error, user frames only
                if _hooks.observing:
                    self._observe_acquired(code, offset, blocking, timeout)
            return True
        try:
            return _blocking.acquire_contended(self, blocking, timeout, frame)
        except REPORTED_ERRORS as error:
            __tracebackhide__ = True
            raise error.with_traceback(None)  # noqa: B904 - the same error, user frames only

    __enter__ = acquire

    def _take(self, code: CodeType | None, offset: int) -> None:
        self._owner = get_ident()
        self._depth = 1
        self._acquired_code, self._acquired_offset = code, offset

    def _depth_data(self) -> dict[str, Any]:
        return {"depth": self._depth}

    def _observe_acquired(
        self, code: CodeType | None, offset: int, blocking: bool, timeout: float
    ) -> None:
        now = monotonic_ns()
        depth = self._depth
        if blocking is True and timeout is NO_TIMEOUT and depth < len(_RLOCK_ACQUIRED):
            data = _RLOCK_ACQUIRED[depth]
        else:
            data = _acquired_data(blocking, timeout, "depth", depth)
        base = now - _hooks.spent.get(get_ident(), 0)  # see _hooks.spent
        _hooks.publish(next(_sequence), now, "rlock.acquire", self, code, offset, data)
        if depth == 1:  # a recursive acquire does not restart the hold
            self._acquired_ns = base

    def release(self) -> None:
        """Release one level; the last release unlocks.  Only the owner may call it."""
        if _hooks.observing:
            self._release_active(_getframe(1), 1, whole=False)
            return
        if self._owner != get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        depth = self._depth - 1
        if depth == 0:
            if _hooks.ordering:  # a call: while the lock is still whole
                _lockorder.released(self)
            self._depth = 0
            self._owner = None
            self._acquired_ns = 0
            self._lock.release()
        else:
            self._depth = depth

    def _undo_acquire(self) -> None:
        _lockorder.released(self)
        self._depth = 0
        self._owner = None
        self._lock.release()

    def _release_active(self, frame: FrameType, levels: int, *, whole: bool) -> None:
        if _hooks.ordering and self._owner == get_ident() and self._depth == levels:
            _lockorder.released(self)
        if not _hooks.observing:
            if self._owner != get_ident():
                raise RuntimeError("cannot release un-acquired lock")
            depth = self._depth - levels
            self._depth = depth
            if depth == 0:
                self._owner = None
                self._acquired_ns = 0
                self._lock.release()
            return
        seq, now = next(_sequence), monotonic_ns()  # before the release: see _hooks
        if self._owner != get_ident():
            error = "cannot release un-acquired lock"
            _hooks.deliver(
                (seq, now),
                "rlock.release",
                self,
                frame,
                {"outcome": "error", "error": f"RuntimeError: {error}"},
            )
            raise RuntimeError(error)
        depth = self._depth - levels
        held_ns = None
        if depth == 0:
            if self._acquired_ns:  # less tracedsync's time meanwhile (see _hooks.spent)
                held_ns = max(0, int(now - _hooks.spent.get(get_ident(), 0) - self._acquired_ns))
            if _hooks.release_edge is not None:
                _hooks.release_edge(self)
            # From here to the raw release nothing calls (see Lock._release_observed).
            self._depth = 0
            self._acquired_ns = 0
            self._owner = None
            self._lock.release()
        else:
            self._depth = depth
        data: _hooks.PairsData = ("outcome", "released", "depth", depth, "held_ns", held_ns)
        if whole:  # a condition wait releases every level at once
            data = (*data, "levels", levels)
        code, offset = _site(frame)
        _hooks.publish(seq, now, "rlock.release", self, code, offset, data)

    def _is_owned(self) -> bool:
        return self._owner == get_ident()

    def _release_save(self) -> tuple[int, int]:
        owner = self._owner
        if owner != get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        depth = self._depth
        state = (depth, owner)
        if _hooks.observing:
            self._release_active(_getframe(1), depth, whole=True)
            return state
        # _release_active(frame, depth, whole=True) without observers, inlined
        # (the C accelerator's common case): every level at once.
        if _hooks.ordering:
            _lockorder.released(self)
        self._depth = 0
        self._owner = None
        self._acquired_ns = 0
        self._lock.release()
        return state

    def _acquire_restore(self, state: tuple[int, int], /) -> None:
        frame = _getframe(1)
        code, offset = _site(frame)  # before the raw lock: see acquire
        if COLLECTS_AT_CALLS:
            primer = (offset,)  # see Lock.acquire
            del primer
        get_ident()  # the last call before the raw lock: see Lock.acquire
        if self._lock.acquire(False):
            self._depth, self._owner = state
            self._acquired_code, self._acquired_offset = code, offset
        else:
            _blocking.acquire_contended(self, True, -1, frame, quiet=True, restoring=True)
            self._depth, self._owner = state
        if _hooks.ordering:
            _lockorder.acquired(self, frame, False)
        if _hooks.observing:
            data = {"outcome": "acquired", "depth": self._depth, "levels": self._depth}
            base = _hooks.spent.get(get_ident(), 0)  # see _hooks.spent
            self._acquired_ns = _hooks.emit("rlock.acquire", self, frame, data) - base

    if sys.version_info >= (3, 11):

        def _recursion_count(self) -> int:
            return self._depth if self._owner == get_ident() else 0

    if sys.version_info >= (3, 14):
        # 3.14 added RLock.locked() (gh-115942), and threading.Condition
        # exports its lock's locked().

        def locked(self) -> bool:
            """Whether the lock is held by any thread."""
            return self._lock.locked()

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


# The C accelerator's methods replace Lock's and RLock's hot paths where it is
# built (see tracedsync._accel); the methods above stay the reference and the
# fallback.
_accel.install((Lock, RLock), sys.modules[__name__])
