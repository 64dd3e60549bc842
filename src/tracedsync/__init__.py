"""Drop-in threading primitives that make synchronisation visible and checkable.

Replace ``threading.Lock`` with ``tracedsync.Lock`` (and likewise ``RLock``,
``Condition``, ``Semaphore``, ``BoundedSemaphore``, ``Event``, ``Barrier``,
``Thread`` and ``Timer``): a correct program behaves exactly as before, every
operation can be observed as a structured event (:func:`record`,
:func:`configure`), and a thread that would deadlock on itself gets
:class:`DeadlockError` instead of hanging.

PYTEST_DONT_REWRITE: this distribution has a pytest plugin, so pytest marks
this package for assertion rewriting, and warns that it cannot when the
package is already imported, as under ``tracedsync run -m pytest`` (an error
in a suite with ``filterwarnings = error``).  Its asserts are not tests'.
"""

from __future__ import annotations

from threading import BrokenBarrierError

from tracedsync import (
    _jsonl,  # noqa: F401 - honours TRACEDSYNC_LOG_FILE at import
    _watchdog,  # noqa: F401 - honours TRACEDSYNC_WAIT_WARNING at import
)
from tracedsync._assertions import assert_no_locks_held, held_locks
from tracedsync._configure import configure
from tracedsync._errors import DeadlockError, LockOrderError, UnguardedAccessError
from tracedsync._hierarchy import declare_level, declare_order
from tracedsync._lock import Lock, RLock
from tracedsync._policy import set_policy
from tracedsync._recorder import Trace, record
from tracedsync._report import Report
from tracedsync._schema import SCHEMA_VERSION
from tracedsync._switch import disable, enable, is_enabled
from tracedsync._sync import Barrier, BoundedSemaphore, Condition, Event, Semaphore
from tracedsync._threads import Thread, Timer
from tracedsync._typenames import TYPE_CHECKING

if TYPE_CHECKING:
    from tracedsync._explore.runs import (
        ExploreResult,
        IncompleteExplorationError,
        InterleavingError,
        explore,
        replay,
        yield_point,
    )
    from tracedsync._explore.schedules import schedules
    from tracedsync._guarded import guarded_by
    from tracedsync._locktrace import LockTrace
    from tracedsync._patch import is_patched, patch, patched, unpatch

for _public in (
    Lock,
    RLock,
    DeadlockError,
    LockOrderError,
    Report,
    Trace,
    UnguardedAccessError,
):
    _public.__module__ = "tracedsync"
del _public

#: Names loaded at their first use (:func:`__getattr__`), by module: the
#: explorer alone was a sixth of the package's import time, and most
#: programs never explore, patch, guard attributes or trace locks in tests.
_LAZY = {
    "ExploreResult": "_explore",
    "IncompleteExplorationError": "_explore",
    "InterleavingError": "_explore",
    "explore": "_explore",
    "replay": "_explore",
    "yield_point": "_explore",
    "schedules": "_explore",
    "guarded_by": "_guarded",
    "LockTrace": "_locktrace",
    "is_patched": "_patch",
    "patch": "_patch",
    "patched": "_patch",
    "unpatch": "_patch",
}


def __getattr__(name: str) -> object:
    """The names of :data:`_LAZY`, imported when first asked for (PEP 562)."""
    source = _LAZY.get(name)
    if source is None:
        raise AttributeError(f"module 'tracedsync' has no attribute {name!r}")
    # Start-up cost: each module loads at the first use of one of its names.
    if source == "_explore":
        # The explorer: the costliest to import.
        from tracedsync._explore import runs
        from tracedsync._explore import schedules as _schedules

        value = getattr(_schedules if name == "schedules" else runs, name)
    elif source == "_guarded":
        from tracedsync import _guarded  # start-up cost (above)

        value = getattr(_guarded, name)
    elif source == "_locktrace":
        from tracedsync import _locktrace  # start-up cost (above)

        value = getattr(_locktrace, name)
    else:
        from tracedsync import _patch  # start-up cost (above)

        value = getattr(_patch, name)
    globals()[name] = value
    return value


__all__ = [
    "SCHEMA_VERSION",
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "DeadlockError",
    "Event",
    "ExploreResult",
    "IncompleteExplorationError",
    "InterleavingError",
    "Lock",
    "LockOrderError",
    "LockTrace",
    "RLock",
    "Report",
    "Semaphore",
    "Thread",
    "Timer",
    "Trace",
    "UnguardedAccessError",
    "assert_no_locks_held",
    "configure",
    "declare_level",
    "declare_order",
    "disable",
    "enable",
    "explore",
    "guarded_by",
    "held_locks",
    "is_enabled",
    "is_patched",
    "patch",
    "patched",
    "record",
    "replay",
    "schedules",
    "set_policy",
    "unpatch",
    "yield_point",
]

__version__ = "0.1.0.dev0"
