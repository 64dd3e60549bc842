"""The findings pipeline: one path from a detector's facts to what the
program sees.

A detector (a deadlock, a lock-order inversion, a broken declared order, an
unguarded access, a long wait, a data race) states its facts as a
:class:`~tracedsync._report.Report` and calls :func:`report_finding`, which
does the rest in one place: the finding's event (named, and levelled, by the
catalogue), the policy of its kind for the primitive (``"warn"``, a callback,
or ``"raise"``), the undo of an acquire that a raising policy refuses, and
the error raised with the report attached.  Deduplication stays with the
detectors that need it (the lock-order graph and the race detector know
what "the same finding" means; the others report every occurrence).
"""

from __future__ import annotations

from collections.abc import Callable
from types import FrameType

from tracedsync import _hooks
from tracedsync._catalogue import FINDINGS, POLICY_KINDS
from tracedsync._config import LOG_LEVELS
from tracedsync._errors import DeadlockError, UnguardedAccessError
from tracedsync._policy import policy_for
from tracedsync._report import Report
from tracedsync._sites import register_internal_module
from tracedsync._typenames import Any

__all__ = ["report_finding"]

register_internal_module(__file__)

#: The level of every finding's event, from the catalogue.
_LEVELS: dict[str, int] = {event: LOG_LEVELS[f.level] for event, f in FINDINGS.items()}


def report_finding(
    event: str,
    report: Report,
    primitive: Any,
    frame: FrameType | None = None,
    *,
    error: Callable[[], DeadlockError | UnguardedAccessError] | None = None,
    may_raise: bool = True,
    undo: Callable[[], None] | None = None,
    emit: bool = True,
    refuse: bool = False,
) -> None:
    """Emit the finding ``event`` about ``primitive`` and apply its policy.

    The event's data is the report's message then its details.  ``emit``
    false leaves the event out (a primitive with no identity to name in
    it).  Then the policy of the catalogue's kind for ``event`` applies, as
    set for ``primitive`` or globally: a callback receives the report;
    ``"raise"`` raises ``error()`` with the report attached, when the
    detector gave an error and ``may_raise``.  ``undo`` runs before any
    exception leaves (a callback's or the error), so an acquire refused or
    interrupted here never leaves its lock held.  Kinds without a policy
    (a race, a note) stop after the event.  ``refuse``: the operation is
    refused whatever the policy (strict mode): ``error()`` is raised after
    a callback or ``"warn"``.

    One finding, one report: when the error is raised, its message is the
    report, so the event goes to the sinks (traces, the ``run`` summary,
    the pytest plugin) but is not also logged.
    """
    kind = FINDINGS[event].kind
    policy = policy_for(kind, primitive) if kind in POLICY_KINDS else None
    raising = policy == "raise" and may_raise and error is not None
    if emit:
        data = {"message": report.message, **report.details}
        _hooks.emit(event, primitive, frame, data, _LEVELS[event], log=not raising)
    if policy is None:
        return
    if callable(policy):
        if undo is None:
            policy(report)
        else:
            try:
                policy(report)
            except BaseException:
                undo()
                raise
        if not (refuse and error is not None):
            return
    elif not (raising or (refuse and error is not None)):
        return
    assert error is not None
    if undo is not None:
        undo()
    raised = error()
    raised.report = report
    raise raised
