"""tracedsync's own locks: raw, reentrant, and reset in a forked child.

Every piece of tracedsync's bookkeeping that several threads touch (the wait
registry, the wait-for cycle check, the lock-order graph, declared orders,
sinks, the recorder's overflow count) is guarded by a lock made here, and by
no other kind.  Three hazards decide its kind:

- *Recursion.*  A guard is a raw ``_thread`` lock, never a traced one.
- *User code inside a guarded section.*  The garbage collector (a
  ``__del__``, a weak reference callback) and signal handlers run between
  any two bytecodes, so they can run while this thread holds a guard, and
  they may use traced primitives, which take the same guard again.  Every
  guard is therefore reentrant: the nested use proceeds instead of hanging.
- *fork().*  A child process has only the thread that forked; a guard
  another thread held at that moment would stay held forever in the child.
  Every guard made here is reset to unlocked in the child
  (``os.register_at_fork``), before any other after-fork handler of
  tracedsync runs, so those handlers may use them.

A reentrant guard still lets user code that blocks inside it hold it
meanwhile; other threads on the blocking path therefore wait for a guard at
most :data:`PATIENCE_SECONDS` (see there).

The state a guard protects may be mid-update in a child that forked while
another thread changed it; each module's own after-fork handler decides
what to keep (most forget the other threads, which no longer exist).
"""

from __future__ import annotations

import os
import weakref
from _thread import RLock as RawRLock

__all__ = ["PATIENCE_SECONDS", "RawRLock", "internal_lock"]

#: How long a thread waits for a guard that another thread holds before it
#: goes on without it.  A check takes microseconds; a guard held longer is
#: held by a thread running user code inside it (a signal handler or a
#: ``__del__`` that blocks on a traced primitive), and waiting for it could
#: hang a program that ``threading`` runs fine.  What is skipped is only the
#: detection the guard protects (one cycle check, one lock order learnt),
#: never the user's operation.
PATIENCE_SECONDS = 1.0

#: Every guard made by :func:`internal_lock` that is still alive.
_guards: weakref.WeakSet[RawRLock] = weakref.WeakSet()
#: Guards :data:`_guards` itself.
_registry_guard = RawRLock()


def internal_lock() -> RawRLock:
    """A new guard for tracedsync's own state: a raw reentrant lock that is
    reset to unlocked in a forked child (see the module docstring)."""
    guard = RawRLock()
    with _registry_guard:
        _guards.add(guard)
    return guard


def _reset_in_child() -> None:
    _registry_guard._at_fork_reinit()  # type: ignore[attr-defined]
    for guard in list(_guards):
        guard._at_fork_reinit()  # type: ignore[attr-defined]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)
