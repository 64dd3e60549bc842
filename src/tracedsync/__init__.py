"""Drop-in threading primitives that make synchronisation visible and checkable.

Replace ``threading.Lock`` with ``tracedsync.Lock`` (and likewise ``RLock``,
``Condition``, ``Semaphore``, ``BoundedSemaphore``, ``Event``, ``Barrier``,
``Thread`` and ``Timer``): a correct program behaves exactly as before, and a
thread that would deadlock on itself gets :class:`DeadlockError` instead of
hanging.
"""

from __future__ import annotations

from threading import BrokenBarrierError

from tracedsync._config import configure
from tracedsync._errors import DeadlockError
from tracedsync._lock import Lock, RLock
from tracedsync._sync import Barrier, BoundedSemaphore, Condition, Event, Semaphore
from tracedsync._threads import Thread, Timer

Lock.__module__ = "tracedsync"
RLock.__module__ = "tracedsync"
DeadlockError.__module__ = "tracedsync"

__all__ = [
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "DeadlockError",
    "Event",
    "Lock",
    "RLock",
    "Semaphore",
    "Thread",
    "Timer",
    "configure",
]

__version__ = "0.1.0.dev0"
