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

import os
import sys
import threading
from _thread import RLock as _RawRLock
from _thread import get_ident
from time import monotonic_ns
from types import CodeType, FrameType
from typing import NamedTuple

from tracedsync._sites import register_internal_module, user_frame

__all__ = ["Wait", "WaitRegistry", "waits"]

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


class WaitRegistry:
    """The blocking waits in progress, by thread ident.

    Waits nest (a condition wait re-acquiring its lock is a lock wait inside a
    condition wait): :meth:`begin` returns the wait it replaces and :meth:`end`
    puts it back.
    """

    def __init__(self) -> None:
        # Reentrant: a __del__ run by the garbage collector inside a guarded
        # section may itself wait on a traced primitive.
        self._guard = _RawRLock()
        self._waits: dict[int, Wait] = {}
        #: Incremented by every change, so a caller can tell whether two
        #: snapshots saw the same state.
        self._generation = 0
        #: Idents of tracedsync's own threads (the watchdog): never counted
        #: as threads that could release anything.
        self.internal: set[int] = set()

    def begin(self, primitive: object, timed: bool, frame: FrameType | None = None) -> Wait | None:
        """Record that the calling thread is about to block; return the outer wait.

        ``frame`` is the frame making the wait (internal frames are skipped).
        """
        ident = get_ident()
        found = user_frame(frame)
        code, offset = (None, 0) if found is None else (found.f_code, found.f_lasti)
        wait = Wait(primitive, timed, code, offset, monotonic_ns())
        with self._guard:
            outer = self._waits.get(ident)
            self._waits[ident] = wait
            self._generation += 1
        return outer

    def end(self, outer: Wait | None) -> None:
        """Record that the calling thread's wait is over, restoring ``outer``."""
        ident = get_ident()
        with self._guard:
            if outer is None:
                self._waits.pop(ident, None)
            else:
                self._waits[ident] = outer
            self._generation += 1

    def withdraw(self) -> None:
        """Drop the calling thread's wait at once (a victim about to report
        and raise is running, not blocked); :meth:`end` later is harmless."""
        with self._guard:
            self._waits.pop(get_ident(), None)
            self._generation += 1

    def snapshot(self) -> tuple[int, dict[int, Wait]]:
        """The current generation and a copy of every wait in progress."""
        with self._guard:
            return self._generation, dict(self._waits)

    def get(self, ident: int) -> Wait | None:
        """The wait thread ``ident`` is blocked in, if any."""
        with self._guard:
            return self._waits.get(ident)

    @property
    def generation(self) -> int:
        """The number of changes so far (see :meth:`snapshot`)."""
        return self._generation

    def others_can_progress(self, me: int) -> tuple[bool, int]:
        """Whether a thread other than ``me`` is running or may wake by itself.

        Returns the answer and the registry generation it was computed at.
        Live threads are taken from :func:`sys._current_frames`, which also
        sees threads started with ``_thread.start_new_thread``.  The main
        thread counts as finished once the interpreter's shutdown has marked it
        so (it then only waits for the other threads to exit).
        """
        generation, current = self.snapshot()
        # Cheap test first: fewer untimed waits than other threads that
        # ``threading`` knows means one of them is running.
        main_ident = threading.main_thread().ident
        main_finished = not threading.main_thread().is_alive()
        untimed = sum(1 for ident, wait in current.items() if not wait.timed and ident != me)
        others = threading.active_count() - 1 - (main_finished and main_ident != me)
        if untimed < others:
            return True, generation
        for ident in sys._current_frames():
            if ident == me or ident in self.internal or (ident == main_ident and main_finished):
                continue
            wait = current.get(ident)
            if wait is None or wait.timed:
                return True, generation
        return False, generation

    def reset_after_fork(self) -> None:
        """Forget every wait: in a forked child only the forking thread exists."""
        # Reentrant: a __del__ run by the garbage collector inside a guarded
        # section may itself wait on a traced primitive.
        self._guard = _RawRLock()
        self._waits = {}
        self._generation += 1


waits = WaitRegistry()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=waits.reset_after_fork)
