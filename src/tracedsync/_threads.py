"""``Thread`` and ``Timer``.

``Thread`` subclasses :class:`threading.Thread`, so everything a user of the
stdlib reaches for behaves exactly as on the running Python version, legacy
camelCase methods and their deprecation warnings included.  It adds
``isAlive()``, removed from the stdlib in Python 3.9 but still called by old
tutorial code, registers ``join()`` as a blocking wait so the deadlock checks
know that a joining thread cannot release anything, and reports
``thread.start``, ``thread.run``, ``thread.exit`` and ``thread.join`` events
while something observes them.
"""

from __future__ import annotations

import contextvars
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

from tracedsync import _control, _hooks
from tracedsync._blocking import begin_blocked
from tracedsync._config import settings
from tracedsync._deadlock import wait_unless_stranded
from tracedsync._hooks import Identity
from tracedsync._sites import register_internal_module
from tracedsync._sync import Event
from tracedsync._waits import waits

__all__ = ["Thread", "Timer"]

register_internal_module(__file__)

_getframe = sys._getframe


def _excepthook_recorder(original: Callable[[Any], None]) -> Callable[[Any], None]:
    """Wrap ``Thread._invoke_excepthook`` to keep the exception that ended
    ``run()`` for the ``thread.exit`` event (the wrapper holds no reference
    to the thread: no cycle)."""

    def invoke_excepthook(thread: Any) -> None:
        thread._tracedsync_exception = sys.exc_info()[1]
        original(thread)

    return invoke_excepthook


def _outcome(error: BaseException | None) -> str:
    """``thread.exit``'s outcome: ``SystemExit`` ends a thread quietly in
    ``threading`` (its excepthook ignores it), so it is ``"exited"``, not
    ``"raised"``."""
    if error is None:
        return "returned"
    return "exited" if isinstance(error, SystemExit) else "raised"


class Thread(threading.Thread):
    """A traced drop-in for :class:`threading.Thread`."""

    _kind = "Thread"
    _identity: Identity | None = None
    _tracedsync_exception: BaseException | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if not settings.enabled and cls in (Thread, Timer):
            plain = threading.Thread if cls is Thread else threading.Timer
            return plain(*args, **kwargs)
        return super().__new__(cls)

    if sys.version_info >= (3, 14):
        # 3.14 added ``context``: the contextvars.Context the thread runs in.

        def __init__(
            self,
            group: None = None,
            target: Callable[..., object] | None = None,
            name: str | None = None,
            args: Iterable[Any] = (),
            kwargs: Mapping[str, Any] | None = None,
            *,
            daemon: bool | None = None,
            context: contextvars.Context | None = None,
        ) -> None:
            super().__init__(  # type: ignore[call-arg, unused-ignore]
                group, target, name, args, kwargs, daemon=daemon, context=context
            )
            self._record_exceptions()

    else:

        def __init__(
            self,
            group: None = None,
            target: Callable[..., object] | None = None,
            name: str | None = None,
            args: Iterable[Any] = (),
            kwargs: Mapping[str, Any] | None = None,
            *,
            daemon: bool | None = None,
        ) -> None:
            super().__init__(group, target, name, args, kwargs, daemon=daemon)
            self._record_exceptions()

    def _record_exceptions(self) -> None:
        hook = getattr(self, "_invoke_excepthook", None)
        if hook is not None:
            self._invoke_excepthook = _excepthook_recorder(hook)

    def start(self) -> None:
        """Start the thread's activity, as :meth:`threading.Thread.start`."""
        explorer = _control.controlled()
        if explorer is not None:  # the new thread joins the run
            explorer.starting(self)
            begin: Callable[[], None] = partial(explorer.start_unmodelled, super().start)
        else:
            begin = super().start
        if not _hooks.observing:
            begin()
            return
        stamped = _hooks.stamp()  # before the thread runs: see _hooks
        if _hooks.release_edge is not None:
            _hooks.release_edge(self)
        begin()
        data = {"started_thread_id": self.ident, "daemon": self.daemon}
        _hooks.deliver(stamped, "thread.start", self, _getframe(1), data)

    def _bootstrap_inner(self) -> None:
        _hooks.bind_thread(self.name)
        if _hooks.observing:
            _hooks.emit("thread.run", self, None, {"daemon": self.daemon})
        try:
            super()._bootstrap_inner()  # type: ignore[misc]
        finally:
            error = self._tracedsync_exception
            # The exception's traceback holds run()'s frames, which may hold
            # this thread: keeping it would be a reference cycle that keeps
            # the target's objects alive (CPython's test_threading checks
            # there is none).  It is needed only for the event below.
            self._tracedsync_exception = None
            if _hooks.observing:
                data: dict[str, Any] = {"outcome": _outcome(error)}
                if error is not None:
                    data["exception"] = _hooks.describe_error(error)
                _hooks.emit("thread.exit", self, None, data)
            del error

    def join(self, timeout: float | None = None) -> None:
        """Wait until the thread ends, or until ``timeout`` seconds pass."""
        me = threading.get_ident()
        joining_self = self.ident == me
        frame = _getframe(1)
        blocked = {"timeout": timeout, "joined_thread_id": self.ident}
        wait = begin_blocked(
            self, "thread.join", frame, timeout is not None, blocked, check_cycle=not joining_self
        )
        try:
            explorer = None if joining_self else _control.controlled()
            if explorer is not None:
                if explorer.join(self, timeout):  # modelled; then the thread's very end
                    super().join(timeout)
            elif timeout is None and not joining_self and not waits.others_can_progress(me)[0]:
                wait_unless_stranded(self._join_for, self, frame)
            else:
                super().join(timeout)
        except BaseException as error:
            wait.failed(error)
            raise
        finally:
            wait.end()
        if wait.observing:
            wait.outcome("timed_out" if self.is_alive() else "joined", timeout=timeout)

    def _join_for(self, seconds: float) -> bool:
        super().join(seconds)
        return not self.is_alive()

    def isAlive(self) -> bool:  # noqa: N802 - the legacy name is the point
        """Deprecated alias of :meth:`threading.Thread.is_alive`, removed from
        ``threading`` in Python 3.9."""
        warnings.warn(
            "isAlive() is deprecated, use is_alive() instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.is_alive()


class Timer(Thread):
    """A traced drop-in for :class:`threading.Timer`: call ``function`` after
    ``interval`` seconds unless :meth:`cancel` is called first."""

    def __init__(
        self,
        interval: float,
        function: Callable[..., object],
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.function = function
        self.args = args if args is not None else []
        self.kwargs = kwargs if kwargs is not None else {}
        self.finished = Event()

    def cancel(self) -> None:
        """Stop the timer if it has not fired yet."""
        self.finished.set()

    def run(self) -> None:
        self.finished.wait(self.interval)
        if not self.finished.is_set():
            self.function(*self.args, **self.kwargs)
        self.finished.set()


Thread.__module__ = "tracedsync"
Timer.__module__ = "tracedsync"
