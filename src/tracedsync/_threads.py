"""``Thread`` and ``Timer``.

``Thread`` subclasses :class:`threading.Thread`, so everything a user of the
stdlib reaches for behaves exactly as on the running Python version, legacy
camelCase methods and their deprecation warnings included.  It adds
``isAlive()``, removed from the stdlib in Python 3.9 but still called by old
tutorial code, and registers ``join()`` as a blocking wait so the deadlock
checks know that a joining thread cannot release anything.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tracedsync._blocking import begin_wait, end_wait
from tracedsync._sites import register_internal_module
from tracedsync._sync import Event

__all__ = ["Thread", "Timer"]

register_internal_module(__file__)


class Thread(threading.Thread):
    """A traced drop-in for :class:`threading.Thread`."""

    def join(self, timeout: float | None = None) -> None:
        """Wait until the thread ends, or until ``timeout`` seconds pass."""
        outer = begin_wait(self, timeout is not None)
        try:
            super().join(timeout)
        finally:
            end_wait(outer)

    def isAlive(self) -> bool:  # noqa: N802 - the legacy name is the point
        """Deprecated alias of :meth:`is_alive`, removed from ``threading`` in 3.9."""
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
