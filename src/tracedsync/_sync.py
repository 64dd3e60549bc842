"""``Condition``, ``Semaphore``, ``BoundedSemaphore``, ``Event`` and ``Barrier``.

Each subclasses its ``threading`` counterpart, so its behaviour, exceptions,
warnings and ``repr`` are exactly those of the running Python version.  The
subclass adds a name, registers every wait that actually blocks with
:mod:`tracedsync._blocking`, and makes a ``Condition`` default to a traced
``RLock``.  The internal locks the stdlib classes allocate for themselves are
implementation details and stay untraced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import CodeType
from typing import Any

from tracedsync._blocking import begin_wait, end_wait
from tracedsync._lock import RLock
from tracedsync._sites import caller_site, default_name, register_internal_module

__all__ = ["Barrier", "BoundedSemaphore", "Condition", "Event", "Semaphore"]

register_internal_module(__file__)


class _Named:
    """A name given at creation, or ``Kind@file.py:line`` of the creation site."""

    _tracedsync_name: str | None
    _tracedsync_created: tuple[CodeType | None, int]

    def _set_name(self, name: str | None) -> None:
        self._tracedsync_name = name
        self._tracedsync_created = caller_site(2)

    @property
    def name(self) -> str:
        """The primitive's name as it appears in events and reports."""
        if self._tracedsync_name is None:
            code, line = self._tracedsync_created
            self._tracedsync_name = default_name(type(self).__name__, code, line)
        return self._tracedsync_name


class Condition(_Named, threading.Condition):
    """A traced drop-in for :class:`threading.Condition`.

    Without a ``lock`` argument it uses a traced :class:`~tracedsync.RLock`
    (``threading.Condition`` uses a plain ``RLock``).  Any lock works, traced
    or not, exactly as with ``threading.Condition``.
    """

    def __init__(self, lock: Any = None, *, name: str | None = None) -> None:
        self._set_name(name)
        super().__init__(RLock() if lock is None else lock)  # type: ignore[arg-type]

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until notified or until ``timeout`` seconds pass."""
        outer = begin_wait(self, timeout is not None)
        try:
            return super().wait(timeout)
        finally:
            end_wait(outer)


class Semaphore(_Named, threading.Semaphore):
    """A traced drop-in for :class:`threading.Semaphore`."""

    def __init__(self, value: int = 1, *, name: str | None = None) -> None:
        self._set_name(name)
        super().__init__(value)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Decrement the counter, waiting while it is zero (as the stdlib does)."""
        if not blocking:
            # The stdlib checks the arguments and makes the single try.
            return super().acquire(blocking, timeout)
        if super().acquire(False):
            return True
        outer = begin_wait(self, timeout is not None)
        try:
            return super().acquire(True, timeout)
        finally:
            end_wait(outer)

    __enter__ = acquire


class BoundedSemaphore(Semaphore, threading.BoundedSemaphore):
    """A traced drop-in for :class:`threading.BoundedSemaphore`."""


class Event(_Named, threading.Event):
    """A traced drop-in for :class:`threading.Event`."""

    def __init__(self, *, name: str | None = None) -> None:
        self._set_name(name)
        super().__init__()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set or ``timeout`` seconds pass; return the flag."""
        if self.is_set():
            return True
        outer = begin_wait(self, timeout is not None)
        try:
            return super().wait(timeout)
        finally:
            end_wait(outer)


class Barrier(_Named, threading.Barrier):
    """A traced drop-in for :class:`threading.Barrier`."""

    def __init__(
        self,
        parties: int,
        action: Callable[[], None] | None = None,
        timeout: float | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self._set_name(name)
        super().__init__(parties, action, timeout)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for all parties, as :meth:`threading.Barrier.wait`."""
        timed = timeout is not None or self._timeout is not None  # type: ignore[attr-defined]
        outer = begin_wait(self, timed)
        try:
            return super().wait(timeout)
        finally:
            end_wait(outer)


for _public in (Condition, Semaphore, BoundedSemaphore, Event, Barrier):
    _public.__module__ = "tracedsync"
