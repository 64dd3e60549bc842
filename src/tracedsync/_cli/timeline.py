"""A trace as a timeline: Chrome Trace Event Format JSON for ui.perfetto.dev.

The layout, in the terms of the format
(https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU):

* one track per thread (``pid`` the process, ``tid`` the thread's token),
  named after the thread, holding the thread's life (``thread.run`` to
  ``thread.exit``) and, nested in it, every wait as a complete slice
  (``ph: "X"``) from the ``*.blocked`` event to the wait's end; a wait that
  never ended (a deadlock) runs to the end of the trace, marked unfinished;
* one track per lock instance (``primitive_instance``: two locks made on one
  line are two tracks), in a separate "locks" process, holding each hold of
  the lock, from its acquisition to the release that unlocked it; a hold
  never released (a lock still held when the program ended or deadlocked)
  runs to the end of the trace, marked still held;
* instant events (``ph: "i"``) for set, clear, notify, barrier aborts and
  resets, and every finding (deadlocks, inversions, long waits);
* flow arrows (``ph: "s"``/``"f"``) from the hold that ended with a release to
  the wait that release ended.

Slices are written when they end, from the durations the events carry
(``waited_ns``, ``held_ns``), so the conversion streams: memory holds one
entry per thread, per lock, per open wait and per held lock, never the
events.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from tracedsync._catalogue import FINDINGS
from tracedsync._sites import register_internal_module
from tracedsync._typenames import IO, Any

__all__ = ["LOCKS_PROCESS_OFFSET", "write_timeline"]

register_internal_module(__file__)

#: The "locks" process of a traced process ``pid`` has pid ``pid + offset``.
LOCKS_PROCESS_OFFSET = 1 << 30
_INSTANTS = {
    "event.set",
    "event.clear",
    "condition.notify",
    "condition.notify_all",
    "barrier.abort",
    "barrier.reset",
    "semaphore.release",
}
#: Every finding is a process-wide instant.
_GLOBAL_INSTANTS = frozenset(FINDINGS)
_ACQUIRES = {"lock.acquire", "rlock.acquire"}
#: Fields of an event already shown by the timeline's own structure.
_COMMON = {
    "schema",
    "seq",
    "time_ns",
    "event",
    "level",
    "pid",
    "thread_id",
    "thread_name",
    "thread_token",
    "primitive_id",
    "message",
}
# Flow points sit this far (microseconds) inside the slices they bind to.
_INSIDE = 0.001


class _Timeline:
    def __init__(self, output: IO[str]) -> None:
        self._output = output
        self._written = 0
        self._origin: int | None = None
        self._last_ns = 0
        self._threads: set[tuple[int, int]] = set()
        self._locks: dict[tuple[int, int, str], int] = {}
        #: lock key -> (time, thread name, acquire event) of each hold not yet
        #: released, drawn to the end of the trace by :meth:`finish`.
        self._holds: dict[tuple[int, int, str], tuple[int, str, Mapping[str, Any]]] = {}
        self._processes: set[int] = set()
        #: (pid, thread) -> (blocked event, its time, its fields) of each open
        #: wait, innermost last.
        self._open_waits: dict[tuple[int, int], list[tuple[str, int, Mapping[str, Any]]]] = {}
        #: (pid, thread) -> the time its thread.run was seen.
        self._running: dict[tuple[int, int], int] = {}
        #: lock key -> (seq, time, lock track) of its last unlocking release.
        self._last_release: dict[tuple[int, int, str], tuple[int, int, int]] = {}
        #: lock key -> (seq, time, pid, thread) of a contended acquire whose
        #: release is not in the file yet (threads write their events in turn).
        self._pending: dict[tuple[int, int, str], tuple[int, int, int, int]] = {}
        self._flows = 0

    # -- output --------------------------------------------------------------

    def _emit(self, trace_event: dict[str, Any]) -> None:
        self._output.write(",\n" if self._written else "")
        # allow_nan=False: a NaN would make the document invalid JSON.
        self._output.write(
            json.dumps(trace_event, separators=(",", ":"), default=str, allow_nan=False)
        )
        self._written += 1

    def _ts(self, time_ns: int) -> float:
        origin = self._origin if self._origin is not None else time_ns
        return round((time_ns - origin) / 1000, 3)

    def _thread_track(self, event: Mapping[str, Any]) -> tuple[int, int]:
        pid = event.get("pid", 0)
        tid = event.get("thread_token") or event["thread_id"]
        if (pid, tid) not in self._threads:
            self._threads.add((pid, tid))
            self._process(pid, f"threads (pid {pid})", 0)
            name = event["thread_name"]
            self._emit(
                {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}
            )
            self._emit(
                {
                    "ph": "M",
                    "name": "thread_sort_index",
                    "pid": pid,
                    "tid": tid,
                    "args": {"sort_index": tid},
                }
            )
        return pid, tid

    def _process(self, pid: int, name: str, sort_index: int) -> None:
        if pid not in self._processes:
            self._processes.add(pid)
            self._emit({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": name}})
            self._emit(
                {
                    "ph": "M",
                    "name": "process_sort_index",
                    "pid": pid,
                    "args": {"sort_index": sort_index},
                }
            )

    def _lock_track(self, event: Mapping[str, Any]) -> tuple[tuple[int, int, str], int, int]:
        pid = event.get("pid", 0)
        key = _lock_key(event)
        tid = self._locks.get(key)
        if tid is None:
            tid = self._locks[key] = len(self._locks) + 1
            locks_pid = pid + LOCKS_PROCESS_OFFSET
            self._process(locks_pid, f"locks (pid {pid})", 1)
            name = f"{event['primitive_kind']} {key[2]!r}"
            self._emit(
                {
                    "ph": "M",
                    "name": "thread_name",
                    "pid": locks_pid,
                    "tid": tid,
                    "args": {"name": name},
                }
            )
        return key, pid + LOCKS_PROCESS_OFFSET, tid

    # -- events --------------------------------------------------------------

    def add(self, event: Mapping[str, Any]) -> None:
        time_ns: int = event["time_ns"]
        if self._origin is None:
            self._origin = time_ns
        self._last_ns = max(self._last_ns, time_ns)
        name: str = event["event"]
        pid, tid = self._thread_track(event)
        if name.endswith(".blocked"):
            self._open_waits.setdefault((pid, tid), []).append((name, time_ns, event))
            return
        waits = self._open_waits.get((pid, tid))
        if waits and waits[-1][0] == name + ".blocked":
            self._wait_slice(pid, tid, waits.pop(), time_ns, event)
            if not waits:
                del self._open_waits[(pid, tid)]
        if name in _ACQUIRES and event.get("outcome") == "acquired":
            self._acquired(event, pid, tid, time_ns)
        elif name in {"lock.release", "rlock.release"} and event.get("outcome") == "released":
            self._unheld(event)
            if event.get("held_ns"):
                self._released(event, time_ns)
        elif name == "thread.run":
            self._running[(pid, tid)] = time_ns
        elif name == "thread.exit":
            started = self._running.pop((pid, tid), None)
            if started is not None:
                self._emit(
                    self._slice(
                        f"thread {event['thread_name']!r}",
                        pid,
                        tid,
                        started,
                        time_ns,
                        _arguments(event),
                    )
                )
        elif name in _INSTANTS or name in _GLOBAL_INSTANTS:
            label = f"{name} {_lock_key(event)[2]!r}"
            arguments = _arguments(event)
            if name in _GLOBAL_INSTANTS and "message" in event:
                arguments["message"] = event["message"]
            instant = {
                "ph": "i",
                "s": "g" if name in _GLOBAL_INSTANTS else "t",
                "name": label,
                "cat": name.partition(".")[0],
                "pid": pid,
                "tid": tid,
                "ts": self._ts(time_ns),
                "args": arguments,
            }
            self._emit(instant)

    def _slice(
        self, name: str, pid: int, tid: int, start_ns: int, end_ns: int, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        start = self._ts(start_ns)
        return {
            "ph": "X",
            "name": name,
            "pid": pid,
            "tid": tid,
            "ts": start,
            "dur": max(round(self._ts(end_ns) - start, 3), 0.001),
            "args": arguments,
        }

    def _wait_slice(
        self,
        pid: int,
        tid: int,
        opened: tuple[str, int, Mapping[str, Any]],
        end_ns: int,
        closing: Mapping[str, Any] | None,
    ) -> None:
        _, start_ns, blocked = opened
        label = f"wait {blocked['primitive_kind']} {_lock_key(blocked)[2]!r}"
        arguments = _arguments(blocked)
        if closing is None:
            arguments["unfinished"] = True
            label += " (never ended)"
        else:
            arguments.update(_arguments(closing))
        self._emit(self._slice(label, pid, tid, start_ns, end_ns, arguments))

    def _acquired(self, event: Mapping[str, Any], pid: int, tid: int, time_ns: int) -> None:
        key = _lock_key(event)
        if event.get("depth", 1) == 1 or "levels" in event:  # not an RLock re-entry
            self._holds[key] = (time_ns, event["thread_name"], event)
        if not event.get("waited_ns"):
            return
        seq = event["seq"]
        release = self._last_release.get(key)
        if release is not None and release[0] < seq:
            self._flow(release[1], release[2], pid, tid, time_ns, key)
        else:
            self._pending[key] = (seq, time_ns, pid, tid)

    def _unheld(self, event: Mapping[str, Any]) -> None:
        """Close the open hold a release that unlocked ends (not a later
        acquire's that was read first: see ``_pending``)."""
        if event.get("depth", 0) != 0:
            return
        key = _lock_key(event)
        hold = self._holds.get(key)
        if hold is not None and hold[2]["seq"] < event["seq"]:
            del self._holds[key]

    def _released(self, event: Mapping[str, Any], time_ns: int) -> None:
        if event.get("depth", 0) != 0:
            return
        key, locks_pid, lock_tid = self._lock_track(event)
        held: int = event["held_ns"]
        arguments = {"thread": event["thread_name"], **_arguments(event)}
        self._emit(
            self._slice(
                f"held by {event['thread_name']!r}",
                locks_pid,
                lock_tid,
                time_ns - held,
                time_ns,
                arguments,
            )
        )
        self._last_release[key] = (event["seq"], time_ns, lock_tid)
        pending = self._pending.get(key)
        if pending is not None and event["seq"] < pending[0]:
            del self._pending[key]
            self._flow(time_ns, lock_tid, pending[2], pending[3], pending[1], key)

    def _flow(
        self,
        release_ns: int,
        lock_tid: int,
        pid: int,
        tid: int,
        acquire_ns: int,
        key: tuple[int, int, str],
    ) -> None:
        self._flows += 1
        common = {"name": "unblocks", "cat": "handoff", "id": self._flows}
        self._emit(
            {
                "ph": "s",
                "pid": key[0] + LOCKS_PROCESS_OFFSET,
                "tid": lock_tid,
                "ts": round(self._ts(release_ns) - _INSIDE, 3),
                **common,
            }
        )
        self._emit(
            {
                "ph": "f",
                "bp": "e",
                "pid": pid,
                "tid": tid,
                "ts": round(self._ts(acquire_ns) - _INSIDE, 3),
                **common,
            }
        )

    def finish(self) -> None:
        """Close what never ended: waits (deadlocks) and threads still running."""
        for (pid, tid), waits in self._open_waits.items():
            for opened in waits:
                self._wait_slice(pid, tid, opened, self._last_ns, None)
        for (pid, tid), started in self._running.items():
            self._emit(
                self._slice(
                    "thread (still running)", pid, tid, started, self._last_ns, {"unfinished": True}
                )
            )
        for start_ns, thread, acquired in self._holds.values():
            _, locks_pid, lock_tid = self._lock_track(acquired)
            arguments = {"thread": thread, **_arguments(acquired), "still_held": True}
            label = f"held by {thread!r} (still held at the end)"
            self._emit(self._slice(label, locks_pid, lock_tid, start_ns, self._last_ns, arguments))
        self._open_waits.clear()
        self._running.clear()
        self._holds.clear()


def _lock_key(event: Mapping[str, Any]) -> tuple[int, int, str]:
    """A lock's track: (pid, id, instance label), by name in traces written
    before events carried ``primitive_instance``.  (Also how slices and
    instants name any primitive.)"""
    instance = event.get("primitive_instance") or event["primitive_name"]
    return event.get("pid", 0), event["primitive_id"], instance


def _arguments(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event's own fields, for the slice's details pane."""
    arguments = {key: value for key, value in event.items() if key not in _COMMON}
    if event.get("file"):
        arguments["site"] = f"{event['file']}:{event.get('line')}"
    for key in ("file", "line", "function"):
        arguments.pop(key, None)
    return arguments


def write_timeline(events: Iterable[Mapping[str, Any]], output: IO[str]) -> int:
    """Write ``events`` to ``output`` as a Chrome Trace Event Format document.

    Streams: ``events`` may be a generator over a file of any length.  Returns
    the number of trace events written.
    """
    timeline = _Timeline(output)
    output.write('{"displayTimeUnit":"ns","traceEvents":[\n')
    for event in events:
        timeline.add(event)
    timeline.finish()
    output.write("\n]}\n")
    return timeline._written
