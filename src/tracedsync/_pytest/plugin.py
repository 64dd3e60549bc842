"""The pytest plugin proper: trace tests and fail those that break lock discipline.

Registered by the ``pytest11`` entry point (``_tracedsync_pytestplugin``)
only when a run asks for it; see ``docs/testing.md``.  A traced test fails,
with a report in its failure output, on the problems that are bugs by any
reading (``TEST_FAILING_KINDS``), when during it:

* a deadlock was detected (``deadlock``: a wait-for cycle, a stranded wait
  or a self-deadlock);
* a lock-order inversion was detected (``inversion``);
* a lock was acquired against a declared hierarchy (``hierarchy``);
* a :func:`~tracedsync.guarded_by` attribute was touched without its lock
  (``unguarded``);
* a traced thread died with an unhandled exception (``thread_error``);
* with ``--tracedsync-races`` (or ``races=True`` in the marker), a data race
  was found (``race``; see ``docs/races.md``).

Two more are *reported* (a ``tracedsync`` section in the test's report and
a list in the terminal summary) and fail the test only when named in
``tracedsync_fail_on`` / ``--tracedsync-fail-on`` / ``fail_on=``
(``TEST_REPORTED_KINDS``): a traced lock acquired during the test and still
held when it ends (``lock_held``; never a *handoff* lock, one released by
another thread than its acquirer, which is a signal rather than something a
thread owns), and a thread the test function started still alive at its
end, after a grace period (``thread_alive``).  On real suites both are
mostly a library's design (pool workers, feeder threads, executors shut down
later or never), so failing on them by default fails correct tests.

The per-test baseline for ``thread_alive`` is the set of threads alive when
the test function starts: threads of fixtures and of earlier tests, and so
a library's threads that live as long as the process, are never a test's.
Only the test that started a thread can be blamed for it, and at its own
end: a verdict deferred to later tests would make a test's outcome depend
on which tests run after it.

Each traced test gets a :class:`Monitor`, an event sink that keeps only the
findings, the thread exits that raised, and the last acquire or release of
each lock (so its memory is bounded by the number of locks, not of events).
"""

from __future__ import annotations

import threading
from _thread import allocate_lock
from collections.abc import Iterator
from time import monotonic, monotonic_ns
from typing import Any, NamedTuple

import pytest

from tracedsync import _hooks, _lockorder, _patch
from tracedsync._catalogue import FINDINGS, TEST_FAILING_KINDS, TEST_KINDS
from tracedsync._hooks import Record
from tracedsync._locktrace import LockTrace
from tracedsync._report import current_stack
from tracedsync._sites import describe_offset, register_internal_module
from tracedsync._waits import waits

__all__ = ["KINDS", "Monitor", "Options", "activate", "locktrace_for"]

register_internal_module(__file__)

#: The kinds of problem a traced test fails on, as ``allow`` names them.
KINDS = TEST_KINDS

#: Finding events that fail a test, and the kind of problem each is.
FINDING_EVENTS = {
    finding.event: finding.kind
    for finding in FINDINGS.values()
    if finding.kind is not None and finding.kind in TEST_KINDS
}
_LOCK_EVENTS = frozenset({"lock.acquire", "lock.release", "rlock.acquire", "rlock.release"})

#: Bounds of a monitor's memory.
MAX_FINDINGS = 100
MAX_TRACKED_LOCKS = 50_000

_MONITOR = pytest.StashKey["Monitor"]()
_PATCHED_HERE = pytest.StashKey[bool]()
_RACES = pytest.StashKey[Any]()

#: Where a test's problems that did not fail it are listed in its report
#: (``user_properties``: it reaches the controller under pytest-xdist).
_REPORTED_PROPERTY = "tracedsync_reported"
#: The most tests the terminal summary lists by name.
MAX_SUMMARY_TESTS = 20


class Options(NamedTuple):
    """How one traced test is checked (ini/command line, then its marker)."""

    thread_grace: float
    allow: frozenset[str]
    patch: bool
    races: bool = False
    #: The kinds that fail the test: :data:`TEST_FAILING_KINDS` plus what
    #: ``tracedsync_fail_on`` or the marker's ``fail_on`` add.
    fail_on: frozenset[str] = frozenset(TEST_FAILING_KINDS)


def _check_allow(allow: Any, where: str) -> frozenset[str]:
    """The kinds named by ``allow`` (a kind, or kinds; ``"a,b"`` is two)."""
    given = [allow] if isinstance(allow, str) else list(allow)
    kinds = frozenset(kind.strip() for text in given for kind in text.split(",") if kind.strip())
    unknown = kinds - set(KINDS)
    if unknown:
        raise ValueError(
            f"{where}: unknown kind {', '.join(sorted(unknown))!s}; use {', '.join(KINDS)}"
        )
    return kinds


def _run_options(config: pytest.Config) -> Options:
    grace = config.getoption("tracedsync_thread_grace")
    if grace is None:
        try:
            grace = float(config.getini("tracedsync_thread_grace"))
        except ValueError:
            raise pytest.UsageError("tracedsync_thread_grace must be a number of seconds") from None
    # The command line adds to the ini file's list.
    allow = [*config.getini("tracedsync_allow"), *(config.getoption("tracedsync_allow") or ())]
    try:
        allowed = _check_allow(allow, "tracedsync_allow")
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    fail_on = [
        *config.getini("tracedsync_fail_on"),
        *(config.getoption("tracedsync_fail_on") or ()),
    ]
    try:
        failing = _check_allow(fail_on, "tracedsync_fail_on")
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    races = bool(config.getoption("tracedsync_races") or config.getini("tracedsync_races"))
    return Options(
        float(grace),
        allowed,
        bool(config.getini("tracedsync_patch")),
        races,
        frozenset(TEST_FAILING_KINDS) | failing,
    )


def _item_options(defaults: Options, item: pytest.Item) -> Options:
    marker = item.get_closest_marker("tracedsync")
    if marker is None:
        return defaults
    if marker.args:
        raise TypeError("@pytest.mark.tracedsync takes keyword arguments only")
    unknown = set(marker.kwargs) - set(Options._fields)
    if unknown:
        raise TypeError(
            f"@pytest.mark.tracedsync: unknown option {', '.join(sorted(unknown))}; "
            f"use {', '.join(Options._fields)}"
        )
    options = defaults
    if marker.kwargs.get("thread_grace") is not None:
        options = options._replace(thread_grace=float(marker.kwargs["thread_grace"]))
    if "allow" in marker.kwargs:
        extra = _check_allow(marker.kwargs["allow"], "@pytest.mark.tracedsync(allow=...)")
        options = options._replace(allow=defaults.allow | extra)
    if "fail_on" in marker.kwargs:
        extra = _check_allow(marker.kwargs["fail_on"], "@pytest.mark.tracedsync(fail_on=...)")
        options = options._replace(fail_on=defaults.fail_on | extra)
    if marker.kwargs.get("patch") is not None:
        options = options._replace(patch=bool(marker.kwargs["patch"]))
    if marker.kwargs.get("races") is not None:
        options = options._replace(races=bool(marker.kwargs["races"]))
    if options.races:  # happens-before edges need every primitive traced
        options = options._replace(patch=True)
    return options


class Problem(NamedTuple):
    """One reason a traced test fails."""

    kind: str
    text: str


class Monitor:
    """The checks of one traced test.

    :meth:`receive` is an event sink: it runs in whichever thread emitted
    the event, so it only appends (atomic) or updates under a raw lock.
    """

    def __init__(self, options: Options) -> None:
        self.options = options
        self.findings: list[Record] = []
        self.thread_errors: list[Record] = []
        #: The latest (by sequence number) acquire or release of each lock,
        #: by primitive id: records of one lock may reach the sink out of
        #: order, since a release is numbered before it happens.
        self.last_lock_record: dict[int, Record] = {}
        #: Ids of the ``Lock``-s released by another thread than the one
        #: that acquired them during the test: handoff locks, never "held".
        self.handed_off: set[int] = set()
        self._guard = allocate_lock()
        self.call_started_ns = 0
        self.threads_before: set[threading.Thread] = set()

    # -- recording -----------------------------------------------------------
    def receive(self, record: Record) -> None:
        event = record[3]
        if event in _LOCK_EVENTS:
            data = _hooks.record_data(record)
            if data.get("outcome") not in {"acquired", "released"}:
                return
            key = record[5][1]
            with self._guard:
                known = self.last_lock_record.get(key)
                if known is None or known[0] < record[0]:
                    if (
                        known is not None
                        and event == "lock.release"
                        and known[3] == "lock.acquire"
                        and known[2][3] != record[2][3]  # thread tokens
                    ):
                        self.handed_off.add(key)
                    self.last_lock_record[key] = record
                    if len(self.last_lock_record) > MAX_TRACKED_LOCKS:
                        self._forget_released()
        elif event in FINDING_EVENTS:
            if len(self.findings) < MAX_FINDINGS:
                self.findings.append(record)
        elif event == "thread.exit":
            data = _hooks.record_data(record)
            raised = data.get("outcome") == "raised"
            if raised and len(self.thread_errors) < MAX_FINDINGS:
                self.thread_errors.append(record)

    def _forget_released(self) -> None:
        for key, record in list(self.last_lock_record.items()):
            if not _holds(record):
                del self.last_lock_record[key]

    def start(self) -> None:
        _hooks.add_sink(self.receive)

    def stop(self) -> None:
        _hooks.remove_sink(self.receive)

    def call_starts(self) -> None:
        """Mark the start of the test function: threads and locks from here on
        are the test's own (fixtures' threads and locks are not)."""
        self.threads_before = set(threading.enumerate())
        self.call_started_ns = monotonic_ns()

    # -- checking ------------------------------------------------------------
    def problems(self) -> list[Problem]:
        """Every problem of the test, allowed kinds left out (those that fail
        it and those only reported: see :meth:`Options.fail_on`)."""
        found: list[Problem] = []
        for record in sorted(self.findings, key=lambda record: record[0]):
            if record[3] == "lock_order.inversion" and _through_handoff(record):
                continue
            found.append(Problem(FINDING_EVENTS[record[3]], _finding_text(record)))
        for record in sorted(self.thread_errors, key=lambda record: record[0]):
            data = _hooks.record_data(record)
            found.append(
                Problem(
                    "thread_error",
                    f"Thread {record[5][2]!r} died with an unhandled exception: "
                    f"{data.get('exception')} (its traceback is in pytest's warnings "
                    "summary, or on stderr)",
                )
            )
        found.extend(self._alive_threads())
        found.extend(self._held_locks())
        return [problem for problem in found if problem.kind not in self.options.allow]

    def _alive_threads(self) -> list[Problem]:
        if "thread_alive" in self.options.allow:
            return []
        started = [
            thread
            for thread in threading.enumerate()
            if thread not in self.threads_before and thread.ident not in waits.internal
        ]
        deadline = monotonic() + self.options.thread_grace
        for thread in started:
            # threading.Thread.join, not a traced join: no events, no checks.
            threading.Thread.join(thread, max(0.0, deadline - monotonic()))
        problems = []
        for thread in started:
            if thread.is_alive():
                stack = current_stack(thread.ident or 0, limit=8)
                target = getattr(thread, "_target", None)
                if stack:
                    where = f"\nstack: {' <- '.join(stack)}"
                elif target is not None:  # running only library code: name what it runs
                    where = f"\nrunning: {target!r}"
                else:
                    where = ""
                daemon = " (daemon)" if thread.daemon else ""
                problems.append(
                    Problem(
                        "thread_alive",
                        f"Thread {thread.name!r}{daemon}, started by the test, is still alive "
                        f"{self.options.thread_grace:g} s after it ended.{where}\n"
                        "Join every thread the test starts (or raise the grace period: "
                        "thread_grace=..., tracedsync_thread_grace).",
                    )
                )
        return problems

    def _held_locks(self) -> list[Problem]:
        with self._guard:
            records = sorted(self.last_lock_record.values(), key=lambda record: record[0])
        problems = []
        for record in records:
            if not _holds(record) or record[1] < self.call_started_ns:
                continue
            if (
                record[5][1] in self.handed_off
                or _lockorder.is_handoff(record[5][1])
                or _lockorder.is_handoff_class(f"{record[5][0]}@{record[5][3]}")
            ):
                continue  # a signal (a lock of a handoff class), not something owned
            kind, _, _, _, name = record[5]
            where = describe_offset(record[6], record[7]) or "an unknown site"
            problems.append(
                Problem(
                    "lock_held",
                    f"{kind} {name!r} is still held at the end of the test: acquired by "
                    f"thread {record[2][1]!r} at {where} and never released.",
                )
            )
        return problems


def _holds(record: Record) -> bool:
    """Whether the lock is held after the operation ``record`` describes."""
    data = _hooks.record_data(record)
    if record[5][0] == "RLock":
        return bool(data.get("depth", 0) > 0)
    return record[3].endswith(".acquire")


def _through_handoff(record: Record) -> bool:
    """Whether an inversion involves a class of locks found to be handoff
    locks (perhaps after it was reported): they are signals, not locks a
    thread owns, so their order proves nothing (see :mod:`tracedsync._lockorder`)."""
    chain = _hooks.record_data(record).get("chain") or ()
    return any(
        _lockorder.is_handoff_class(edge.get(side))
        for edge in chain
        if isinstance(edge, dict)
        for side in ("before_class", "after_class")
    )


def _finding_text(record: Record) -> str:
    data = _hooks.record_data(record)
    message = data.get("message")
    if message:
        return str(message)
    # A self-deadlock carries its facts as fields.
    return (
        f"Self-deadlock: thread {record[2][1]!r} re-acquired {record[5][0]} "
        f"{record[5][4]!r}, which it already holds ({data.get('reason')}).\n"
        f"  first acquired at: {data.get('held_at')}\n"
        f"  acquired again at: {data.get('requested_at')}"
    )


def _problem_lines(problems: list[Problem]) -> list[str]:
    lines = []
    for problem in problems:
        body = problem.text.splitlines()
        lines.append(f"[{problem.kind}] {body[0]}")
        lines.extend(f"    {line}" for line in body[1:])
        lines.append("")
    return lines


def _count(problems: list[Problem]) -> str:
    return f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"


def format_problems(problems: list[Problem]) -> str:
    """The failure report of a traced test."""
    lines = [f"tracedsync: this test broke lock discipline ({_count(problems)})", ""]
    lines.extend(_problem_lines(problems))
    lines.append(
        "To accept a kind of problem in a test: @pytest.mark.tracedsync(allow=[...]); "
        "in every test: the tracedsync_allow ini option."
    )
    return "\n".join(lines)


def format_reported(problems: list[Problem]) -> str:
    """The report of the problems that did not fail a traced test."""
    lines = [f"tracedsync: reported, not failing this test ({_count(problems)})", ""]
    lines.extend(_problem_lines(problems))
    lines.append(
        "To fail tests on a kind: @pytest.mark.tracedsync(fail_on=[...]), "
        "--tracedsync-fail-on=KIND or the tracedsync_fail_on ini option."
    )
    return "\n".join(lines)


class TracedsyncPlugin:
    """Registered once per run (see :func:`activate`)."""

    def __init__(self, config: pytest.Config, *, whole_run: bool) -> None:
        self.config = config
        self.whole_run = whole_run
        self.defaults = _run_options(config)
        self.patched_for_run = False
        #: (test id, kinds) of the tests with problems that did not fail them.
        self.reported: list[tuple[str, list[str]]] = []
        if whole_run and self.defaults.patch and not _patch.is_patched():
            _patch.patch()
            self.patched_for_run = True

    def traced(self, item: pytest.Item) -> bool:
        return self.whole_run or item.get_closest_marker("tracedsync") is not None

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.patched_for_run:
            _patch.unpatch()
            self.patched_for_run = False

    def pytest_report_header(self, config: pytest.Config) -> str | None:
        if not self.whole_run:
            return None
        if self.patched_for_run:
            return "tracedsync: tracing every test, threading patched"
        return "tracedsync: tracing every test"

    # Plain (not wrapper) hooks, first of their kind: they run inside every
    # plugin's wrappers, so an error here is an ordinary setup error, and
    # before the runner's own, so before the test's fixtures.
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if not self.traced(item):
            return
        options = _item_options(self.defaults, item)
        patched_here = options.patch and not _patch.is_patched()
        if patched_here:
            _patch.patch()
        item.stash[_PATCHED_HERE] = patched_here
        monitor = Monitor(options)
        item.stash[_MONITOR] = monitor
        monitor.start()
        if options.races:
            from tracedsync._races import RaceDetector  # start-up cost: only with races on

            detector = RaceDetector([str(item.config.rootpath)])
            item.stash[_RACES] = detector
            detector.start()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        monitor = item.stash.get(_MONITOR, None)
        if monitor is not None:
            monitor.call_starts()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        outcome = yield
        monitor = item.stash.get(_MONITOR, None)
        if monitor is None or call.when != "call":
            return
        report: pytest.TestReport = outcome.get_result()
        if hasattr(report, "wasxfail") or report.skipped:
            return
        problems = monitor.problems()
        failing = [problem for problem in problems if problem.kind in monitor.options.fail_on]
        reported = [problem for problem in problems if problem.kind not in monitor.options.fail_on]
        if failing:
            text = format_problems(failing)
            if report.passed:
                report.outcome = "failed"
                report.longrepr = text
            else:
                report.sections.append(("tracedsync", text))
        if reported:
            report.sections.append(("tracedsync (reported)", format_reported(reported)))
            kinds = sorted({problem.kind for problem in reported})
            report.user_properties.append((_REPORTED_PROPERTY, kinds))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == _REPORTED_PROPERTY:
                self.reported.append((report.nodeid, [str(kind) for kind in value]))  # type: ignore[attr-defined]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """List the tests with problems that did not fail them, by kind."""
        if not self.reported:
            return
        terminalreporter.section("tracedsync: reported, not failing")
        for nodeid, kinds in self.reported[:MAX_SUMMARY_TESTS]:
            terminalreporter.write_line(f"{nodeid}: {', '.join(kinds)}")
        if len(self.reported) > MAX_SUMMARY_TESTS:
            terminalreporter.write_line(f"... and {len(self.reported) - MAX_SUMMARY_TESTS} more")
        by_kind: dict[str, int] = {}
        for _, kinds in self.reported:
            for kind in kinds:
                by_kind[kind] = by_kind.get(kind, 0) + 1
        counts = ", ".join(f"{kind} in {count}" for kind, count in sorted(by_kind.items()))
        terminalreporter.write_line(
            f"{len(self.reported)} tests with problems reported only ({counts}); each test's "
            "report has the details (-rP shows them for passing tests). "
            "To fail on them: --tracedsync-fail-on=KIND or the tracedsync_fail_on ini option."
        )

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Iterator[None]:
        yield
        detector = item.stash.get(_RACES, None)
        if detector is not None:
            detector.stop()
            del item.stash[_RACES]
        monitor = item.stash.get(_MONITOR, None)
        if monitor is not None:
            monitor.stop()
            del item.stash[_MONITOR]
        if item.stash.get(_PATCHED_HERE, False):
            _patch.unpatch()
        item.stash[_PATCHED_HERE] = False


def activate(config: pytest.Config, *, whole_run: bool) -> None:
    """Register the plugin for this run (once)."""
    from _tracedsync_pytestplugin import PLUGIN_NAME  # the entry point imports this module

    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(TracedsyncPlugin(config, whole_run=whole_run), PLUGIN_NAME)


def locktrace_for(request: pytest.FixtureRequest) -> Iterator[LockTrace]:
    """The body of the ``locktrace`` fixture."""
    trace = LockTrace()
    trace.start()
    try:
        yield trace
    finally:
        trace.stop()
