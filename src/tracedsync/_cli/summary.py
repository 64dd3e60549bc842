"""What happened, in one screen: the summary ``tracedsync run`` and
``tracedsync report`` print.

:class:`Summary` folds a stream of events into what a person debugging a
program asks first: did anything deadlock or risk deadlocking, did a thread
die, and which locks made threads wait.  It keeps counters per lock
*instance* (``primitive_instance``: two locks made on one line are two rows,
``Lock@bank.py:12#1`` and ``#2``), never the events themselves, so its memory
does not grow with the length of the trace; and it tells apart at most
:data:`MAX_LOCKS` locks (the
events of any further lock are merged into one row, "(other locks)", and
counted) and :data:`MAX_THREADS` threads, so its memory does not grow with
the number of distinct locks or threads either.  It accepts both live
records (``tracedsync run``) and event dictionaries read back from a trace
file (``tracedsync report``).

A ``Lock`` released by another thread than its acquirer is a handoff lock
(see :mod:`tracedsync._lockorder`): an inversion through a lock of its class
is not counted, even when it was reported before the handoff was seen; the
summary says how many were left out.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping

from tracedsync._catalogue import FINDINGS, HEADINGS
from tracedsync._guards import internal_lock
from tracedsync._hooks import Record, record_data
from tracedsync._sites import register_internal_module
from tracedsync._typenames import Any

__all__ = ["FINDING_EVENTS", "MAX_LOCKS", "MAX_THREADS", "LockStats", "Summary"]

register_internal_module(__file__)

#: Event name -> the heading its findings are listed under.
FINDING_EVENTS = {finding.event: finding.heading for finding in FINDINGS.values()}
_HEADINGS = HEADINGS
#: Findings kept per heading; beyond it they are only counted.
MAX_FINDINGS = 20
#: Rows of the contention table (distinct lock names) kept; the events of
#: further locks are merged into the row :data:`OTHER_LOCKS`.
MAX_LOCKS = 10_000
#: The row that stands for every lock past :data:`MAX_LOCKS`.
OTHER_LOCKS = "(other locks)"
#: Distinct threads told apart; beyond it the summary says "more than".
MAX_THREADS = 100_000
_ACQUIRES = {"lock.acquire", "rlock.acquire", "semaphore.acquire"}
_RELEASES = {"lock.release", "rlock.release"}
_INVERSION = "lock_order.inversion"
_CYCLE = "deadlock.cycle"
#: Inversions whose lock classes are kept, to tell which ones a later
#: handoff makes moot; beyond it they always count.
MAX_INVERSIONS = 10_000


class LockStats:
    """Counters for the locks (and semaphores) of one name."""

    __slots__ = (
        "acquired",
        "contended",
        "created",
        "failed",
        "instance",
        "kind",
        "max_hold_ns",
        "max_wait_ns",
        "name",
        "total_wait_ns",
    )

    def __init__(self, kind: str, name: str, created: str | None, instance: str = "") -> None:
        self.kind = kind
        self.name = name
        #: The lock's instance label (the table's row: see the module docstring).
        self.instance = instance or name
        self.created = created
        #: Successful acquisitions (a recursive re-entry of an RLock is not one).
        self.acquired = 0
        #: Attempts that found the lock taken: they waited, or gave up.
        self.contended = 0
        #: Attempts that did not get the lock (timed out, would block, error).
        self.failed = 0
        self.total_wait_ns = 0
        self.max_wait_ns = 0
        self.max_hold_ns = 0

    @property
    def attempts(self) -> int:
        return self.acquired + self.failed

    @property
    def contended_ratio(self) -> float:
        return self.contended / self.attempts if self.attempts else 0.0


class Summary:
    """Counters and findings folded from events; see the module docstring."""

    def __init__(self) -> None:
        self._guard = internal_lock()
        self.events = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self._threads: set[tuple[int, int]] = set()
        #: (pid, id, kind, instance, creation site) -> that lock's counters.
        #: The id tells apart live locks given one name (``name=`` stays as
        #: given): two such locks that never lived at once may share a row.
        self.locks: dict[tuple[int, int, str, str, str | None], LockStats] = {}
        #: Heading -> the messages of its findings (at most MAX_FINDINGS).
        self.findings: dict[str, list[str]] = {heading: [] for heading in _HEADINGS}
        #: Heading -> how many findings it had in all.
        self.finding_counts: dict[str, int] = dict.fromkeys(_HEADINGS, 0)
        #: Kind (``GATE_KINDS``) -> how many findings of it (``--fail-on``).
        self.kind_counts: dict[str, int] = {}
        #: Events of locks past MAX_LOCKS, counted in the OTHER_LOCKS row.
        self.merged_lock_events = 0
        #: Whether threads past MAX_THREADS emitted events.
        self.more_threads = False
        #: Held ``Lock``-s: (pid, id) -> (sequence number, thread) of the acquire.
        self._acquirers: dict[tuple[int, int], tuple[int, tuple[int, int]]] = {}
        #: ``Kind@created`` of the lock classes seen handed off.
        self.handoff_classes: set[str] = set()
        #: (message, lock classes) of each inversion (at most MAX_INVERSIONS).
        self._inversions: list[tuple[str, frozenset[str]]] = []
        #: The process whose summary this is (the first event's, unless set):
        #: the findings of other processes (a run's children) name theirs.
        self.pid: int | None = None
        #: Deadlock cycles made only of locks: inversions that did deadlock.
        self.lock_cycles = 0

    @property
    def threads(self) -> int:
        """How many distinct threads emitted events."""
        return len(self._threads)

    @property
    def duration_ns(self) -> int:
        if self.first_ns is None or self.last_ns is None:
            return 0
        return self.last_ns - self.first_ns

    def add_record(self, record: Record) -> None:
        """Fold one live record (a sink of :mod:`tracedsync._hooks`).

        Sinks are called by every thread at once: the folding is guarded, or
        counters lose increments and the handoff bookkeeping raises.
        """
        seq, time_ns, thread, event, _, primitive, _, _, _ = record
        _, thread_name, pid, token = thread
        with self._guard:
            self._add(
                seq,
                primitive[1],
                event,
                time_ns,
                (pid, token),
                thread_name,
                primitive[0],
                primitive[2],
                primitive[3],
                record_data(record),
                primitive[4],
            )

    def add_events(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Fold event dictionaries while live records may arrive too (a
        ``run``'s children's traces, read at its end)."""
        for event in events:
            with self._guard:
                self.add_event(event)

    def add_event(self, event: Mapping[str, Any]) -> None:
        """Fold one event dictionary (as read from a trace file)."""
        self._add(
            event.get("seq", 0),
            event.get("primitive_id", 0),
            event["event"],
            event["time_ns"],
            (event.get("pid", 0), event.get("thread_token", event["thread_id"])),
            event["thread_name"],
            event["primitive_kind"],
            event["primitive_name"],
            event.get("primitive_created"),
            event,
            # Traces written before primitive_instance existed: by name.
            event.get("primitive_instance") or event["primitive_name"],
        )

    def _add(
        self,
        seq: int,
        primitive_id: int,
        event: str,
        time_ns: int,
        thread: tuple[int, int],
        thread_name: str,
        kind: str,
        name: str,
        created: str | None,
        data: Mapping[str, Any],
        instance: str,
    ) -> None:
        self.events += 1
        if self.pid is None:
            self.pid = thread[0]
        if self.first_ns is None or time_ns < self.first_ns:
            self.first_ns = time_ns
        if self.last_ns is None or time_ns > self.last_ns:
            self.last_ns = time_ns
        if len(self._threads) < MAX_THREADS:
            self._threads.add(thread)
        elif thread not in self._threads:
            self.more_threads = True
        if kind == "Lock" and event in {"lock.acquire", "lock.release"}:
            self._track_handoff(seq, primitive_id, event, thread, f"{kind}@{created}", data)
        if event in _ACQUIRES:
            self._acquire(self._stats(thread, primitive_id, kind, name, created, instance), data)
        elif event in _RELEASES:
            held = data.get("held_ns")
            if held:
                stats = self._stats(thread, primitive_id, kind, name, created, instance)
                stats.max_hold_ns = max(stats.max_hold_ns, held)
        elif event in FINDING_EVENTS:
            message = data.get("message") or _describe(event, thread_name, kind, name, data)
            message = self._in_process(thread[0], str(message))
            self._finding(FINDING_EVENTS[event], message)
            if event == _INVERSION and len(self._inversions) < MAX_INVERSIONS:
                chain = data.get("chain") or ()
                classes = frozenset(
                    str(edge.get(side))
                    for edge in chain
                    if isinstance(edge, Mapping)
                    for side in ("before_class", "after_class")
                    if edge.get(side)
                )
                self._inversions.append((str(message), classes))
            if event == _CYCLE and _only_locks(data.get("cycle")):
                self.lock_cycles += 1
            finding_kind = FINDINGS[event].kind
            if finding_kind is not None:
                self.kind_counts[finding_kind] = self.kind_counts.get(finding_kind, 0) + 1
        elif event == "thread.exit" and data.get("outcome") == "raised":
            self.kind_counts["thread_error"] = self.kind_counts.get("thread_error", 0) + 1
            self._finding(
                "threads that raised",
                self._in_process(
                    thread[0], f"thread {thread_name!r} raised {data.get('exception')}"
                ),
            )

    def _in_process(self, pid: int, message: str) -> str:
        """``message`` of a finding in process ``pid``: named when it is not
        the summary's own process (a child of a ``run``)."""
        return message if pid == self.pid else f"[process {pid}] {message}"

    @property
    def processes(self) -> int:
        """How many processes emitted events (the run's and its children)."""
        return len({pid for pid, _ in self._threads})

    def _stats(
        self,
        thread: tuple[int, int],
        primitive_id: int,
        kind: str,
        name: str,
        created: str | None,
        instance: str,
    ) -> LockStats:
        key = (thread[0], primitive_id, kind, instance, created)
        stats = self.locks.get(key)
        if stats is None:
            if len(self.locks) >= MAX_LOCKS:
                self.merged_lock_events += 1
                key = (0, 0, "", OTHER_LOCKS, None)
                stats = self.locks.get(key)
                if stats is not None:
                    return stats
                kind, name, created, instance = "", OTHER_LOCKS, None, OTHER_LOCKS
            stats = self.locks[key] = LockStats(kind, name, created, instance)
        return stats

    @staticmethod
    def _acquire(stats: LockStats, data: Mapping[str, Any]) -> None:
        outcome = data.get("outcome")
        waited = data.get("waited_ns") or 0
        if outcome == "acquired":
            if data.get("depth", 1) != 1 and "levels" not in data:
                return  # an RLock re-entry: no new acquisition
            stats.acquired += 1
        else:
            stats.failed += 1
        if waited or outcome in {"timed_out", "would_block"}:
            stats.contended += 1
        stats.total_wait_ns += waited
        stats.max_wait_ns = max(stats.max_wait_ns, waited)

    def _finding(self, heading: str, message: str) -> None:
        self.finding_counts[heading] += 1
        kept = self.findings[heading]
        if len(kept) < MAX_FINDINGS and message not in kept:
            kept.append(message)

    def _track_handoff(
        self,
        seq: int,
        primitive_id: int,
        event: str,
        thread: tuple[int, int],
        lock_class: str,
        data: Mapping[str, Any],
    ) -> None:
        """Note a ``Lock`` released by another thread than its acquirer.

        Best effort, in bounded memory (see below).  Live records of one lock
        may arrive out of order (a release is
        numbered before it happens, so the next acquire can arrive first): a
        release only matches an acquire numbered before it.
        """
        outcome = data.get("outcome")
        # Ids are per process (a fork child's inherited locks keep theirs).
        key = (thread[0], primitive_id)
        if event == "lock.acquire":
            # Bounded as the table is: past MAX_LOCKS locks held at once (or
            # acquired and dropped unreleased), new ones are not followed.
            if outcome == "acquired" and (
                key in self._acquirers or len(self._acquirers) < MAX_LOCKS
            ):
                self._acquirers[key] = (seq, thread)
            return
        if outcome != "released":
            return
        acquired = self._acquirers.get(key)
        if acquired is None or acquired[0] > seq:
            return
        del self._acquirers[key]
        if acquired[1] != thread:
            self.handoff_classes.add(lock_class)

    def _moot_inversions(self) -> list[str]:
        """The inversions through a handoff class (see the module docstring)."""
        return [message for message, classes in self._inversions if classes & self.handoff_classes]

    def failing(self, kinds: Iterable[str]) -> str | None:
        """``"2 inversion, 1 deadlock"``: the findings of ``kinds`` seen, if any
        (what ``--fail-on`` fails on)."""
        counts = dict(self.kind_counts)
        counts["inversion"] = counts.get("inversion", 0) - len(self._moot_inversions())
        seen = [f"{counts[kind]} {kind}" for kind in kinds if counts.get(kind, 0) > 0]
        return ", ".join(seen) or None

    # -- rendering -----------------------------------------------------------

    def render(self, *, full: bool = True, top: int = 10) -> str:
        """The summary as text.

        ``full``: show each finding's whole report (``tracedsync report``);
        otherwise only its first line, for findings already printed as they
        happened (``tracedsync run``).
        """
        seconds = self.duration_ns / 1e9
        threads = f"more than {self.threads:,}" if self.more_threads else f"{self.threads:,}"
        processes = self.processes
        lines = [
            f"tracedsync: {self.events:,} events from {threads} "
            f"thread{'s' if self.threads != 1 else ''}"
            f"{f' in {processes} processes' if processes > 1 else ''} over {seconds:.2f} s"
        ]
        moot = self._moot_inversions()
        inversions = FINDINGS[_INVERSION].heading
        for heading in _HEADINGS:
            count = self.finding_counts[heading]
            kept = self.findings[heading]
            if heading == inversions and moot:
                count -= len(moot)
                kept = [message for message in kept if message not in set(moot)]
            if not count and heading not in {"deadlocks", "lock-order inversions"}:
                continue
            if heading == inversions and not count and self.lock_cycles:
                cycles = self.lock_cycles
                plural = "s" if cycles > 1 else ""
                lines.append(f"  {heading}: none besides the {cycles} deadlock{plural} above")
                continue
            lines.append(f"  {heading}: {count or 'none'}")
            for message in kept:
                text = message if full else _first_sentence(message)
                lines.extend("    " + line for line in text.splitlines())
            if count > len(kept):
                lines.append(f"    ... and {count - len(kept)} more")
            if heading == inversions and moot:
                lines.append(
                    f"    ({len(moot)} more through handoff locks, released by another thread "
                    "than their acquirer, not counted: they order nothing)"
                )
        lines.extend(self._contention_table(top))
        return "\n".join(lines)

    def _contention_table(self, top: int) -> list[str]:
        rows = sorted(
            self.locks.values(),
            key=lambda stats: (stats.total_wait_ns, stats.contended, stats.acquired),
            reverse=True,
        )
        if not rows:
            return ["  contention: no lock was acquired"]
        shown = rows[:top]
        title = f"  contention ({len(rows)} lock{'s' if len(rows) != 1 else ''}"
        title += f"; the {len(shown)} with the most waiting):" if len(rows) > top else "):"
        header = (
            "lock",
            "created at",
            "acquired",
            "contended",
            "total wait",
            "max wait",
            "max hold",
        )
        table = [header]
        labels = _distinct_labels(shown)
        for stats, label in zip(shown, labels, strict=True):
            table.append(
                (
                    label,
                    stats.created or "-",
                    f"{stats.acquired:,}",
                    f"{stats.contended_ratio:.1%}",
                    _duration(stats.total_wait_ns),
                    _duration(stats.max_wait_ns),
                    _duration(stats.max_hold_ns),
                )
            )
        widths = [max(len(row[column]) for row in table) for column in range(len(header))]
        lines = [title]
        if self.merged_lock_events:
            lines.append(
                f"    (limit reached: the table tells apart at most {MAX_LOCKS:,} locks; "
                f"{self.merged_lock_events:,} events of further locks are merged into "
                f"{OTHER_LOCKS!r})"
            )
        for row in table:
            cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
            cells += [cell.rjust(width) for cell, width in zip(row[2:], widths[2:], strict=True)]
            lines.append("    " + "  ".join(cells).rstrip())
        return lines


def _describe(event: str, thread: str, kind: str, name: str, data: Mapping[str, Any]) -> str:
    """A one-line finding for the events that carry no ``message``."""
    if event.endswith("self_reacquire"):
        why = data.get("reason") or data.get("detail") or ""
        return (
            f"{kind} {name!r} re-acquired by thread {thread!r}, which holds it, at "
            f"{data.get('requested_at')} (held since {data.get('held_at')}): {why}"
        )
    if event == "lock_order.graph_full":
        return f"the lock-order graph is full ({data.get('max_edges')} orders); no new orders"
    return f"{event} on {kind} {name!r} in thread {thread!r}"


def _distinct_labels(rows: list[LockStats]) -> list[str]:
    """The rows' instance labels, with ``(1)``, ``(2)``... after those shared
    by several rows of one kind and site (locks given one ``name=``)."""
    counts: dict[tuple[str, str, str | None], int] = {}
    for stats in rows:
        key = (stats.kind, stats.instance, stats.created)
        counts[key] = counts.get(key, 0) + 1
    seen: dict[tuple[str, str, str | None], int] = {}
    labels = []
    for stats in rows:
        key = (stats.kind, stats.instance, stats.created)
        if counts[key] == 1:
            labels.append(stats.instance)
        else:
            seen[key] = seen.get(key, 0) + 1
            labels.append(f"{stats.instance} ({seen[key]})")
    return labels


def _only_locks(cycle: Any) -> bool:
    """Whether a ``deadlock.cycle``'s ``cycle`` waits only for locks (a lock
    cycle is a lock-order inversion that did deadlock)."""
    return bool(cycle) and all(
        isinstance(entry, Mapping) and entry.get("waits_for_kind") in {"Lock", "RLock"}
        for entry in cycle
    )


#: Width the summary wraps a finding's first sentence at.
_WIDTH = 100


def _first_sentence(message: str) -> str:
    """A finding's headline for the ``run`` summary: its first sentence, whole
    (a report's first line may stop mid-sentence), wrapped at :data:`_WIDTH`
    columns."""
    lines = message.splitlines()
    taken: list[str] = []
    for line in lines[:4]:
        taken.append(line.strip())
        if line.rstrip().endswith((".", ":", "!", "?")):
            break
    text = " ".join(taken)
    if len(taken) < len(lines) and not text.endswith("."):
        text = text.rstrip(":") + " ..."
    return textwrap.fill(text, _WIDTH, subsequent_indent="  ")


def _duration(nanoseconds: int) -> str:
    if nanoseconds == 0:
        return "0"
    if nanoseconds < 1_000_000:
        return f"{nanoseconds / 1e3:.1f} us"
    if nanoseconds < 1_000_000_000:
        return f"{nanoseconds / 1e6:.1f} ms"
    return f"{nanoseconds / 1e9:.2f} s"
