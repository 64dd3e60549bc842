"""Who is blocked on what, right now.

Every tracedsync operation that actually blocks (a contended acquire, a
condition or event wait, a join) registers here for the duration of the wait.
The registry answers one question for the deadlock checks: *could any other
thread still make progress?*  A thread blocked without a timeout in a
tracedsync primitive cannot; a thread that has exited cannot; every other
live thread, including threads tracedsync knows nothing about, might.

The registry is guarded by a raw ``_thread`` lock, not by the GIL, and is only
touched on the blocking path, never on an uncontended acquire.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from _thread import get_ident
from collections.abc import Callable
from time import monotonic_ns
from types import CodeType, FrameType

from tracedsync._guards import internal_lock
from tracedsync._sites import (
    INTERNAL_FILES,
    current_frames,
    live_threads,
    register_internal_module,
    user_frame,
)
from tracedsync._typenames import Any, NamedTuple

__all__ = ["Wait", "WaitRegistry", "granted", "running_outside_waits", "waits"]

register_internal_module(__file__)


class Wait(NamedTuple):
    """One thread's current blocking wait."""

    #: The primitive waited on (a strong reference only while the wait lasts:
    #: the waiting thread's own frame holds one anyway).
    primitive: object
    #: Whether the wait ends by itself: a timed wait is not "blocked forever".
    timed: bool
    #: The user's code and bytecode offset where the wait was made (``None``
    #: if unknown), for reports.
    code: CodeType | None = None
    offset: int = 0
    #: ``time.monotonic_ns()`` when the wait began, for the long-wait watchdog.
    since_ns: int = 0
    #: Whether the thread already held the lock it waits for (a ``Lock``
    #: re-acquired by its holder): such a waiter owning its lock is blocked,
    #: any other has just taken it (see :func:`wait_can_end`).
    self_wait: bool = False
    #: The user's frame that made the wait (``code`` and ``offset`` are its
    #: place), to tell the wait from code run inside it: see
    #: :func:`running_outside_waits`.
    frame: FrameType | None = None


class WaitRegistry:
    """The blocking waits in progress, by thread ident.

    Waits nest (a condition wait re-acquiring its lock is a lock wait inside a
    condition wait): :meth:`begin` returns the wait it replaces and :meth:`end`
    puts it back.
    """

    def __init__(self) -> None:
        #: Thread ident -> its wait.  No guard: each thread writes only its
        #: own entry, and a single dict operation is atomic (the GIL, or the
        #: dict's own lock in a free-threaded build).  A guard here would be
        #: held where the garbage collector or a signal handler can run user
        #: code that waits on a traced primitive, and hang every other wait.
        self._waits: dict[int, Wait] = {}
        #: Unique, increasing change numbers.
        self._changes = itertools.count(1)
        #: The number of the latest change, so a caller can tell whether two
        #: snapshots saw the same state.
        self._generation = 0
        #: Guards :attr:`starting` (nothing runs under it that could wait).
        self._guard = internal_lock()
        #: Idents of tracedsync's own threads (the watchdog): never counted
        #: as threads that could release anything.
        self.internal: set[int] = set()
        #: Threads started with ``_thread.start_new_thread`` that have not
        #: run any Python code yet (see :func:`note_foreign_start`).
        self.starting = 0

    def begin(
        self,
        primitive: object,
        timed: bool,
        frame: FrameType | None = None,
        *,
        self_wait: bool = False,
    ) -> Wait | None:
        """Record that the calling thread is about to block; return the outer wait.

        ``frame`` is the frame making the wait (internal frames are skipped);
        ``self_wait``: the thread holds the lock it waits for.
        """
        ident = get_ident()
        found = user_frame(frame)
        code, offset = (None, 0) if found is None else (found.f_code, found.f_lasti)
        wait = Wait(primitive, timed, code, offset, monotonic_ns(), self_wait, found)
        outer = self._waits.get(ident)
        self._waits[ident] = wait
        self._generation = next(self._changes)
        return outer

    def end(self, outer: Wait | None) -> None:
        """Record that the calling thread's wait is over, restoring ``outer``."""
        ident = get_ident()
        if outer is None:
            self._waits.pop(ident, None)
        else:
            self._waits[ident] = outer
        self._generation = next(self._changes)

    def withdraw(self) -> None:
        """Drop the calling thread's wait at once (a victim about to report
        and raise is running, not blocked); :meth:`end` later is harmless."""
        self._waits.pop(get_ident(), None)
        self._generation = next(self._changes)

    def snapshot(self) -> tuple[int, dict[int, Wait]]:
        """The current generation and a copy of every wait in progress.

        The generation is read first: a change made while the copy is taken
        has a later number, so a later snapshot never looks unchanged."""
        generation = self._generation
        return generation, dict(self._waits)

    def get(self, ident: int) -> Wait | None:
        """The wait thread ``ident`` is blocked in, if any."""
        return self._waits.get(ident)

    @property
    def generation(self) -> int:
        """The number of changes so far (see :meth:`snapshot`)."""
        return self._generation

    def others_exist(self, me: int) -> bool:
        """Whether any thread other than ``me`` (and tracedsync's own) is
        alive or starting: one that could still release what ``me`` holds."""
        if _limbo or self.starting:
            return True
        live = live_threads()
        if live is None:  # inside live_threads() already: cannot tell
            return True
        return any(ident != me and ident not in self.internal for ident in live)

    def others_can_progress(self, me: int | None) -> tuple[bool, int]:
        """Whether a thread other than ``me`` is running or may wake by itself
        (``me=None``: any thread at all).

        Returns the answer and the registry generation it was computed at.
        The answer "no" is a fact about the present, never a guess from how
        long threads have waited: every other live thread is in a wait
        without timeout that the present state of its primitive cannot end
        (see :func:`wait_can_end`), and no thread is starting.  Live threads
        are the interpreter's thread states (:func:`~tracedsync._sites.live_threads`:
        a stale ``_DummyThread`` that ``threading.enumerate()`` still lists
        is not live); a thread
        that ``threading`` or ``_thread.start_new_thread`` (see
        :func:`note_foreign_start`) has started but that runs no Python code
        yet counts as running.  The main thread counts as finished once the
        interpreter's shutdown has marked it so (it then only waits for the
        other threads to exit).
        """
        generation, current = self.snapshot()
        if _limbo or self.starting:
            return True, generation
        main = threading.main_thread()
        main_ident, main_finished = main.ident, not main.is_alive()
        live = live_threads()
        if live is None:  # inside live_threads() already: cannot tell
            return True, generation
        for ident in live:
            if ident == me or ident in self.internal or (ident == main_ident and main_finished):
                continue
            wait = current.get(ident)
            if wait is None or wait.timed or wait_can_end(ident, wait, current, live):
                return True, generation
        return False, generation

    def reset_after_fork(self) -> None:
        """Forget every wait: in a forked child only the forking thread exists."""
        self._waits = {}
        self._generation = next(self._changes)
        self.starting = 0


def wait_can_end(ident: int, wait: Wait, current: dict[int, Wait], live: frozenset[int]) -> bool:
    """Whether the present state of the primitive thread ``ident`` waits for
    (its ``wait``) lets the wait end: it has been granted, or will be without
    any blocked thread acting.

    ``current`` is a snapshot of the registry and ``live`` the threads
    alive (:func:`~tracedsync._sites.live_threads`).  A lock that is free, that its new owner is
    just taking (no owner recorded yet), or that the waiter itself now owns
    (it took the lock and has not unregistered yet, unless it held the lock
    when it began waiting) is granted; a joined thread that has finished, or
    whose thread state is gone, is ending.  Every other primitive waits on a ``threading.Condition``
    (its own, or itself for a condition): when more threads are registered
    as waiting on it than the condition still has waiters, one of them has
    been notified and will run.  An event that is set, a semaphore with a
    positive counter and a barrier that is releasing are granted as well.
    """
    primitive = wait.primitive
    if isinstance(primitive, threading.Thread):
        return not primitive.is_alive() or primitive.ident not in live
    raw = getattr(primitive, "_lock", None)
    if raw is not None and hasattr(primitive, "_owner"):  # a traced Lock or RLock
        owner = getattr(primitive, "_owner", None)
        return not raw.locked() or owner is None or (owner == ident and not wait.self_wait)
    if granted(primitive):
        return True
    condition = primitive if isinstance(primitive, threading.Condition) else None
    if condition is None:
        condition = getattr(primitive, "_cond", None)
    waiters = getattr(condition, "_waiters", None)
    if waiters is None:
        return False
    registered = sum(1 for wait in current.values() if wait.primitive is primitive)
    return registered > len(waiters)


def running_outside_waits(blocked: dict[int, Wait]) -> bool:
    """Whether any thread of ``blocked`` (threads and their registered waits)
    is running code that is not its wait, right now.

    A thread registers its wait before it blocks and unregisters it after it
    wakes, and in between runs tracedsync's and ``threading``'s own code,
    where the interpreter may run code the thread never called: a signal
    handler, or a finalizer (``__del__``, a weak reference callback) of a
    garbage collection.  That code may take and hold a lock while the
    registry still lists the thread as blocked, so a cycle or a stranded
    wait read from the registry is not a fact until every thread in it is
    found inside its wait: every frame above the wait's own (the user's
    frame that made it) is tracedsync's or ``threading``'s.  Any other frame
    there is code run inside the wait, and so is a thread whose wait's frame
    is no longer on its stack.

    Reads the threads' stacks (frame objects, dropped at once: see
    :func:`~tracedsync._sites.live_threads`), so it confirms a verdict and
    is never asked on a common path.  "Cannot tell" (called inside a stack
    read, by a signal handler) answers ``True``: no verdict.
    """
    if not blocked:
        return False
    frames = current_frames()
    if frames is None:
        return True
    try:
        return any(
            not _inside(frames[ident], wait.frame)
            for ident, wait in blocked.items()
            if ident in frames
        )
    finally:
        del frames


def _inside(frame: FrameType | None, wait_frame: FrameType | None) -> bool:
    """Whether the stack whose innermost frame is ``frame`` is blocked in the
    wait made in ``wait_frame``: only internal frames lie above it (with no
    user frame at all when the wait was made, none anywhere)."""
    while frame is not None:
        if frame is wait_frame:
            return True
        if frame.f_code.co_filename not in INTERNAL_FILES:
            return False
        frame = frame.f_back
    return wait_frame is None


def granted(primitive: Any) -> bool:
    """Whether the state of ``primitive`` (not a lock or a thread) lets a wait
    on it end now: an event that is set, a semaphore with a positive counter,
    a barrier that is releasing, resetting or broken."""
    if isinstance(primitive, threading.Event):
        return primitive.is_set()
    if isinstance(primitive, threading.Semaphore):
        return bool(getattr(primitive, "_value", 0) > 0)
    if isinstance(primitive, threading.Barrier):
        return bool(getattr(primitive, "_state", 0) != 0)  # 0: still filling
    return False


def note_foreign_start(start_new_thread: Callable[..., int]) -> Callable[..., int]:
    """Wrap ``_thread.start_new_thread`` so that a thread it starts counts as
    running from the moment it is asked for, before it runs any Python code
    and appears in :func:`~tracedsync._sites.live_threads` (``threading``'s own threads
    are known from ``threading._limbo`` instead)."""

    def started(function: Callable[..., object], args: tuple[Any, ...], *more: Any) -> int:
        def bootstrap(*arguments: Any, **keywords: Any) -> None:
            with waits._guard:
                waits.starting -= 1
            try:
                function(*arguments, **keywords)
            except SystemExit:
                pass  # as _thread: a thread's SystemExit is silent
            except BaseException as error:
                # reported as _thread reports it, naming the caller's function
                # (not this wrapper)
                _thread_unraisable(function, error)

        with waits._guard:
            waits.starting += 1
        try:
            return start_new_thread(bootstrap, args, *more)
        except BaseException:
            with waits._guard:
                waits.starting -= 1
            raise

    started.__wrapped__ = start_new_thread  # type: ignore[attr-defined]
    return started


_hook_args_type: list[type] = []


def _thread_unraisable(function: Callable[..., object], error: BaseException) -> None:
    """Report ``error``, raised by ``function`` in a thread started with
    ``_thread.start_new_thread``, to :func:`sys.unraisablehook` exactly as
    ``_thread`` does on this Python version."""
    if sys.version_info >= (3, 13):
        message, culprit = f"Exception ignored in thread started by {function!r}", None
    else:
        message, culprit = "Exception ignored in thread started by", function
    try:
        if not _hook_args_type:
            _hook_args_type.append(_unraisable_args_type())
        args = _hook_args_type[0]((type(error), error, error.__traceback__, message, culprit))
        sys.unraisablehook(args)
    except BaseException:
        pass  # as _thread: a failing hook is ignored


def _unraisable_args_type() -> type:
    """``sys.UnraisableHookArgs``, which ``sys`` does not expose: captured from
    one unraisable exception, anything else caught meanwhile forwarded."""

    class _Probe:
        def __del__(self) -> None:
            raise _ProbeError

    caught: list[Any] = []
    hook = sys.unraisablehook
    sys.unraisablehook = caught.append
    try:
        _Probe()
    finally:
        sys.unraisablehook = hook
    found = None
    for args in caught:
        if args.exc_type is _ProbeError:
            found = type(args)
        else:
            hook(args)
    if found is None:
        raise RuntimeError("no UnraisableHookArgs")
    return found


class _ProbeError(Exception):
    pass


waits = WaitRegistry()
#: Threads ``threading`` has started that have not begun running yet.
_limbo: dict[Any, Any] = threading._limbo  # type: ignore[attr-defined]

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=waits.reset_after_fork)
