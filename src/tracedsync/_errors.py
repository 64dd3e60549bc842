"""The exception tracedsync raises instead of letting a thread hang forever."""

from __future__ import annotations

__all__ = ["REPORTED_ERRORS", "DeadlockError", "LockOrderError", "UnguardedAccessError"]


class DeadlockError(RuntimeError):
    """An acquire or wait that could never return was refused.

    Raised in the thread whose operation would block forever, instead of
    letting it hang.  It subclasses :class:`RuntimeError` because that is what
    ``threading`` raises for misuse of a lock, so code that already guards
    against lock misuse keeps working.

    The attributes carry the same facts as the message, for programs and tests
    that want to inspect them: :attr:`primitive` is the name of the primitive
    that could not be acquired, :attr:`thread_name` the thread that was
    refused, :attr:`held_at` where that primitive was acquired by the thread
    that holds it (``None`` if unknown) and :attr:`requested_at` where the
    refused acquire was made, both as ``"file:line (in function)"``.
    """

    def __init__(
        self,
        message: str,
        *,
        primitive: str,
        thread_name: str,
        held_at: str | None,
        requested_at: str | None,
    ) -> None:
        super().__init__(message)
        self.primitive = primitive
        self.thread_name = thread_name
        self.held_at = held_at
        self.requested_at = requested_at
        #: The full finding (``tracedsync.Report``), set when the error is
        #: raised for a finding (every deadlock, a self re-acquire included).
        self.report: object = None


class LockOrderError(DeadlockError):
    """A lock-order inversion, raised only under the ``"raise"`` policy.

    The acquire that would have created the inversion is undone before the
    error is raised: the lock is not held.
    """


class UnguardedAccessError(AssertionError):
    """A :func:`~tracedsync.guarded_by` attribute was read or written by a
    thread that does not hold its lock (a data race), under the ``"raise"``
    policy for ``unguarded`` findings (the default).

    An :class:`AssertionError`, because it reports a broken contract of the
    program rather than a failed operation: the access itself is not undone
    (a read returns nothing, a write stores nothing, since the error is raised
    first).  :attr:`attribute` is ``"Class.attribute"``, :attr:`access`
    ``"read"``, ``"write"`` or ``"delete"``, :attr:`lock` the name of the lock
    that should have been held, :attr:`thread_name` the offending thread and
    :attr:`report` the full :class:`~tracedsync.Report`.
    """

    def __init__(
        self, message: str, *, attribute: str, access: str, lock: str, thread_name: str
    ) -> None:
        super().__init__(message)
        self.attribute = attribute
        self.access = access
        self.lock = lock
        self.thread_name = thread_name
        self.report: object = None


#: The errors a finding raises out of a primitive's operation.  The public
#: method re-raises them with a fresh traceback (and pytest's
#: ``__tracebackhide__``), so a traceback ends at the user's call, not in
#: tracedsync's internals; the C accelerator clears their traceback.
REPORTED_ERRORS = (DeadlockError, UnguardedAccessError)
