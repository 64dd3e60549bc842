"""``Condition``, ``Semaphore``, ``BoundedSemaphore``, ``Event`` and ``Barrier``.

Each subclasses its ``threading`` counterpart, so its behaviour, exceptions,
warnings and ``repr`` are exactly those of the running Python version.  The
subclass adds a name, registers every wait that actually blocks with
:mod:`tracedsync._blocking`, reports its operations to :mod:`tracedsync._hooks`
while something observes them, and makes a ``Condition`` default to a traced
``RLock``.  The internal locks the stdlib classes allocate for themselves are
implementation details and stay untraced.

With the off switch (``TRACEDSYNC=off``), constructing one of these classes
returns the plain ``threading`` object instead.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import CodeType

from tracedsync import _hooks
from tracedsync._blocking import begin_blocked
from tracedsync._config import settings
from tracedsync._errors import REPORTED_ERRORS
from tracedsync._hooks import Identity
from tracedsync._lock import RLock
from tracedsync._sites import (
    caller_site,
    check_name,
    default_name,
    instance_label,
    new_instance,
    register_internal_module,
)
from tracedsync._typenames import Any

__all__ = ["Barrier", "BoundedSemaphore", "Condition", "Event", "Semaphore"]

register_internal_module(__file__)

_getframe = sys._getframe


class _Named:
    """A name given at creation, or ``Kind@file.py:line`` of the creation site,
    and the off switch: ``_plain`` is the ``threading`` class to return instead."""

    _kind = "Primitive"
    _plain: Any = None
    _identity: Identity | None = None
    _tracedsync_name: str | None
    _tracedsync_created: tuple[CodeType | None, int]
    _tracedsync_instance: int | str

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if not settings.enabled and cls._plain is not None and cls.__module__ == "tracedsync":
            kwargs.pop("name", None)
            return cls._plain(*args, **kwargs)
        return super().__new__(cls)

    def _set_name(self, name: str | None) -> None:
        check_name(name)
        self._tracedsync_name = name
        self._tracedsync_created = code, line = caller_site(2)
        self._kind = type(self).__name__
        self._tracedsync_instance = new_instance(self._kind, name, code, line)

    def _creation_site(self) -> tuple[CodeType | None, int]:
        """Where the primitive was created (events' ``primitive_created``)."""
        return self._tracedsync_created

    def _instance_label(self) -> str:
        """The name that tells this primitive from others of its site or
        name (events' ``primitive_instance``): ``Event@app.py:7#2``."""
        return instance_label(self.name, self._tracedsync_instance)

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

    _plain = threading.Condition

    def __init__(self, lock: Any = None, *, name: str | None = None) -> None:
        self._set_name(name)
        super().__init__(RLock() if lock is None else lock)  # type: ignore[arg-type]

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until notified or until ``timeout`` seconds pass."""
        try:
            wait = begin_blocked(
                self,
                "condition.wait",
                _getframe(1),
                timeout is not None,
                {"timeout": timeout},
                alone_is_stranded=timeout is None and self._is_owned(),  # type: ignore[attr-defined]
            )
        except REPORTED_ERRORS as error:
            __tracebackhide__ = True
            raise error.with_traceback(None)  # noqa: B904 - the same error, user frames only
        try:
            notified = super().wait(timeout)
        except BaseException as error:
            wait.failed(error)
            raise
        finally:
            wait.end()
        wait.outcome("notified" if notified else "timed_out", timeout=timeout)
        return notified

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` threads waiting on the condition."""
        if _hooks.observing:
            stamped = _hooks.stamp()  # before the state change: see _hooks
            if _hooks.release_edge is not None:
                _hooks.release_edge(self)
            waiting = len(self._waiters)  # type: ignore[attr-defined]
            super().notify(n)
            data = {"n": n, "waiters": waiting}
            _hooks.deliver(stamped, "condition.notify", self, _getframe(1), data)
            return
        super().notify(n)

    def notify_all(self) -> None:
        """Wake every thread waiting on the condition."""
        waiting = len(self._waiters)  # type: ignore[attr-defined]
        if _hooks.observing:
            stamped = _hooks.stamp()
            if _hooks.release_edge is not None:
                _hooks.release_edge(self)
            threading.Condition.notify(self, waiting)
            data = {"waiters": waiting}
            _hooks.deliver(stamped, "condition.notify_all", self, _getframe(1), data)
            return
        threading.Condition.notify(self, waiting)


class Semaphore(_Named, threading.Semaphore):
    """A traced drop-in for :class:`threading.Semaphore`."""

    _plain = threading.Semaphore

    def __init__(self, value: int = 1, *, name: str | None = None) -> None:
        self._set_name(name)
        super().__init__(value)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Decrement the counter, waiting while it is zero (as the stdlib does)."""
        observing = _hooks.observing
        if not blocking or super().acquire(False):
            # A non-blocking call goes to the stdlib as it is, so that its
            # argument checks and exceptions are the stdlib's own.
            acquired = True if blocking else super().acquire(blocking, timeout)
            if observing:
                data = {
                    "outcome": "acquired" if acquired else "would_block",
                    "waited_ns": 0,
                    "blocking": bool(blocking),
                    "timeout": timeout,
                }
                _hooks.emit("semaphore.acquire", self, _getframe(1), data)
            return acquired
        try:
            wait = begin_blocked(
                self,
                "semaphore.acquire",
                _getframe(1),
                timeout is not None,
                {"timeout": timeout},
                alone_is_stranded=True,
            )
        except REPORTED_ERRORS as error:
            __tracebackhide__ = True
            raise error.with_traceback(None)  # noqa: B904 - the same error, user frames only
        try:
            acquired = super().acquire(True, timeout)
        except BaseException as error:
            wait.failed(error)
            raise
        finally:
            wait.end()
        wait.outcome("acquired" if acquired else "timed_out", blocking=True, timeout=timeout)
        return acquired

    __enter__ = acquire

    def release(self, n: int = 1) -> None:
        """Increment the counter by ``n``, waking waiting threads."""
        if _hooks.observing:
            stamped = _hooks.stamp()  # before the state change: see _hooks
            if _hooks.release_edge is not None:
                _hooks.release_edge(self)
            frame = _getframe(1)
            try:
                super().release(n)
            except ValueError as error:
                data = {"outcome": "error", "error": _hooks.describe_error(error), "n": n}
                _hooks.deliver(stamped, "semaphore.release", self, frame, data)
                raise
            _hooks.deliver(
                stamped, "semaphore.release", self, frame, {"outcome": "released", "n": n}
            )
            return
        super().release(n)


class BoundedSemaphore(Semaphore, threading.BoundedSemaphore):
    """A traced drop-in for :class:`threading.BoundedSemaphore`."""

    _plain = threading.BoundedSemaphore


class Event(_Named, threading.Event):
    """A traced drop-in for :class:`threading.Event`."""

    _plain = threading.Event

    def __init__(self, *, name: str | None = None) -> None:
        self._set_name(name)
        super().__init__()

    def set(self) -> None:
        """Set the flag, waking every waiting thread."""
        if _hooks.observing:
            stamped = _hooks.stamp()  # before the state change: see _hooks
            if _hooks.release_edge is not None:
                _hooks.release_edge(self)
            super().set()
            _hooks.deliver(stamped, "event.set", self, _getframe(1), {"flag": True})
            return
        super().set()

    def clear(self) -> None:
        """Reset the flag."""
        if _hooks.observing:
            stamped = _hooks.stamp()
            super().clear()
            _hooks.deliver(stamped, "event.clear", self, _getframe(1), {"flag": False})
            return
        super().clear()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set or ``timeout`` seconds pass; return the flag."""
        observing = _hooks.observing
        if self.is_set():
            if observing:
                data = {"outcome": "set", "flag": True, "waited_ns": 0, "timeout": timeout}
                _hooks.emit("event.wait", self, _getframe(1), data)
            return True
        try:
            wait = begin_blocked(
                self,
                "event.wait",
                _getframe(1),
                timeout is not None,
                {"timeout": timeout},
                alone_is_stranded=True,
            )
        except REPORTED_ERRORS as error:
            __tracebackhide__ = True
            raise error.with_traceback(None)  # noqa: B904 - the same error, user frames only
        try:
            flag = super().wait(timeout)
        except BaseException as error:
            wait.failed(error)
            raise
        finally:
            wait.end()
        wait.outcome("set" if flag else "timed_out", flag=flag, timeout=timeout)
        return flag


class Barrier(_Named, threading.Barrier):
    """A traced drop-in for :class:`threading.Barrier`."""

    _plain = threading.Barrier

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
        blocked = (
            {"timeout": timeout, "parties": self.parties, "waiting": self.n_waiting}
            if _hooks.observing
            else {}
        )
        try:
            wait = begin_blocked(
                self,
                "barrier.wait",
                _getframe(1),
                timed,
                blocked,
                alone_is_stranded=not self.broken and self.n_waiting + 1 < self.parties,
            )
        except REPORTED_ERRORS as error:
            __tracebackhide__ = True
            raise error.with_traceback(None)  # noqa: B904 - the same error, user frames only
        if wait.observing and _hooks.release_edge is not None:  # arriving is release-like
            _hooks.release_edge(self)
        try:
            index = super().wait(timeout)
        except threading.BrokenBarrierError:
            wait.outcome("broken", timeout=timeout)
            raise
        except BaseException as error:
            wait.failed(error)
            raise
        finally:
            wait.end()
        wait.outcome("passed", index=index, timeout=timeout)
        return index

    def abort(self) -> None:
        """Put the barrier into the broken state, waking every waiting thread."""
        if _hooks.observing:
            _hooks.emit("barrier.abort", self, _getframe(1), {"waiting": self.n_waiting})
        super().abort()

    def reset(self) -> None:
        """Return the barrier to its initial state; waiting threads get
        :class:`~threading.BrokenBarrierError`."""
        if _hooks.observing:
            _hooks.emit("barrier.reset", self, _getframe(1), {"waiting": self.n_waiting})
        super().reset()


for _public in (Condition, Semaphore, BoundedSemaphore, Event, Barrier):
    _public.__module__ = "tracedsync"
