"""The catalogue of findings: the one place their events, kinds and
headings are spelled.

A *finding* is an event that reports a problem (a deadlock, an inversion, a
broken declaration...), as opposed to the events that record what the
program did.  Everything that treats findings specially reads this module:
the policies (which kinds exist and their default), the ``run`` summary (the
heading each is listed under), the timeline (a process-wide instant), the
pytest plugin (which kind of problem fails a test, as ``allow`` names it)
and the documentation.  A detector that emits a finding names it here first;
a test fails on a finding event emitted anywhere that this catalogue does
not list.
"""

from __future__ import annotations

from tracedsync._typenames import NamedTuple

__all__ = [
    "FINDINGS",
    "GATE_KINDS",
    "HEADINGS",
    "POLICY_KINDS",
    "TEST_FAILING_KINDS",
    "TEST_KINDS",
    "TEST_REPORTED_KINDS",
    "Finding",
]


class Finding(NamedTuple):
    """What tracedsync does with one finding event."""

    #: The event's name.
    event: str
    #: The kind of problem: the policy that applies (``configure(on_<kind>=)``,
    #: ``set_policy``) and the name a test ``allow``-s; ``None`` for findings
    #: that are notes rather than problems (no policy, never fail a test).
    kind: str | None
    #: The heading ``tracedsync run``'s summary lists it under.
    heading: str
    #: The level it is emitted at (a ``TRACEDSYNC_LOG`` name).
    level: str = "warning"


#: Every finding event, by name.
FINDINGS: dict[str, Finding] = {
    finding.event: finding
    for finding in (
        Finding("deadlock.cycle", "deadlock", "deadlocks", "error"),
        Finding("deadlock.stranded", "deadlock", "deadlocks", "error"),
        Finding("deadlock.self_reacquire", "deadlock", "deadlocks", "error"),
        Finding("run.hang", "deadlock", "deadlocks", "error"),
        Finding("lock_order.inversion", "inversion", "lock-order inversions"),
        Finding("lock_order.hierarchy", "hierarchy", "declared lock orders broken"),
        Finding("guard.violation", "unguarded", "unguarded accesses"),
        Finding("race.data", "race", "data races"),
        Finding("wait.long", "long_wait", "long waits"),
        Finding("lock.self_reacquire", None, "self re-acquires"),
        Finding("lock_order.graph_full", None, "limits reached"),
        Finding("race.shadow_full", None, "limits reached"),
    )
}

#: The kinds ``tracedsync run`` and ``tracedsync report`` can fail on
#: (``--fail-on``): every kind of finding, and a thread that raised.
GATE_KINDS: tuple[str, ...] = tuple(
    dict.fromkeys([*(f.kind for f in FINDINGS.values() if f.kind is not None), "thread_error"])
)

#: The kinds of finding a policy applies to, with their default policies
#: (a data race is reported, and fails a traced test, but has no policy).
#: Declared contracts (``declare_order``/``declare_level``, ``guarded_by``):
#: the program said how it must behave, so breaking one raises by default.
POLICY_KINDS: dict[str, str] = {
    "deadlock": "raise",
    "inversion": "warn",
    "long_wait": "warn",
    "hierarchy": "raise",
    "unguarded": "raise",
}

#: The kinds of problem a traced test fails on, as ``allow`` names them: the
#: findings that are bugs by any reading, then what the pytest plugin checks
#: itself at the end of a test.
TEST_KINDS: tuple[str, ...] = (
    "deadlock",
    "inversion",
    "hierarchy",
    "unguarded",
    "race",
    "lock_held",
    "thread_alive",
    "thread_error",
)

#: The kinds a traced test is only *reported* for unless the run asks to fail
#: on them (``tracedsync_fail_on``): a thread still running or a lock still
#: held when a test returns is often a library's design (a pool's workers, a
#: feeder thread, an executor shut down at exit, a lock handed to a callback),
#: not a bug, so on a real suite they would fail correct tests.
TEST_REPORTED_KINDS: tuple[str, ...] = ("lock_held", "thread_alive")

#: The kinds that fail a traced test by default: bugs by any reading.
TEST_FAILING_KINDS: tuple[str, ...] = tuple(
    kind for kind in TEST_KINDS if kind not in TEST_REPORTED_KINDS
)

#: The summary's headings, in the order it prints them; the first two are
#: printed even when empty ("deadlocks: none").
HEADINGS: tuple[str, ...] = (
    "deadlocks",
    "lock-order inversions",
    "declared lock orders broken",
    "unguarded accesses",
    "data races",
    "threads that raised",
    "self re-acquires",
    "long waits",
    "limits reached",
)
