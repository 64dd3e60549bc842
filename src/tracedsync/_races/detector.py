"""The happens-before data-race detector: FastTrack over tracedsync's events.

Two inputs, both in the thread acting:

* synchronisation, from tracedsync's event hook.  Release-like operations
  come through :data:`tracedsync._hooks.release_edge`, called *before* the
  primitive's state changes (a sink sees the release only afterwards, when
  the thread it lets through may already have delivered its acquire):
  a ``Lock``/``RLock`` release that unlocks stores the thread's clock in the
  lock's; ``Semaphore.release``, ``Event.set``, ``Condition.notify``,
  ``Barrier.wait`` (arrival) join it into the primitive's; ``Thread.start``
  stores it as the new thread's first clock.  Each then starts a new epoch
  of the thread.  Acquire-like outcomes come through an ordinary sink
  (:meth:`RaceDetector.receive`), delivered after the operation and before
  the thread goes on: an acquired lock or semaphore, an ``Event.wait`` that
  returned true, a notified ``Condition.wait``, a passed ``Barrier.wait``,
  ``thread.run`` (the start clock), ``thread.exit`` (the thread's final
  clock, stored) and a ``thread.join`` that joined (that clock, joined).
  Everything built on these (``queue.Queue``, ``concurrent.futures``) gets
  its edges from them once ``threading`` is patched.
* accesses, from :mod:`tracedsync._races.monitor`: before each read or
  write of an attribute or a global in the user's files,
  :meth:`RaceDetector.access` runs FastTrack's check against the
  location's shadow state (:mod:`tracedsync._races.shadow`).

A race is reported once per pair of source lines and location name, as a
``race.data`` warning event whose ``message`` names both accesses, the
locks each side held, and a way to fix it.

All state is guarded by one raw ``_thread`` lock (no traced primitive, and
no reliance on the GIL).  A per-thread ``busy`` flag keeps the detector
from re-entering itself: garbage collection can run a user ``__del__``
(instrumented) while the thread holds that lock.
"""

from __future__ import annotations

import builtins
import types
from _thread import _local, allocate_lock, get_ident
from collections.abc import Callable
from types import FrameType
from typing import Any

from tracedsync import _hooks
from tracedsync._findings import report_finding
from tracedsync._hooks import Record
from tracedsync._races.accesses import (
    FAST,
    GLOBAL,
    READ_ATTR,
    READ_GLOBAL,
    READ_NAME,
    WRITE_ATTR,
    WRITE_GLOBAL,
    Access,
    Receiver,
)
from tracedsync._races.clocks import (
    EMPTY,
    MAX_THREADS,
    VectorClock,
    clock_of,
    epoch,
    epoch_before,
    first_not_before,
    join,
    tid_of,
)
from tracedsync._races.monitor import Capture, UserFiles, make_capture
from tracedsync._races.shadow import DEFAULT_LIMIT, Location, Shadow, Site, _KeyedRef
from tracedsync._report import Report
from tracedsync._sites import register_internal_module, short_path

__all__ = ["MAX_REPORTS", "RaceDetector"]

register_internal_module(__file__)

#: Distinct races reported; later ones are only counted.
MAX_REPORTS = 1000

_MISSING = object()
#: Values of globals and module attributes taken to be bound once (modules,
#: functions, classes, builtins): their instructions are not checked.
_STABLE = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)
_LOCKS = frozenset({"Lock", "RLock"})


class _Thread:
    """The detector's view of one thread (FastTrack's ``C_t``)."""

    __slots__ = ("busy", "clock", "epoch", "held", "ident", "locks", "name", "tid")

    def __init__(self, tid: int, ident: int, name: str) -> None:
        self.tid = tid
        self.ident = ident
        self.name = name
        self.clock: VectorClock = {tid: 1}
        self.epoch = epoch(1, tid)
        #: Locks held, by primitive id -> name, in acquisition order.
        self.held: dict[int, str] = {}
        self.locks: tuple[str, ...] = ()
        self.busy = False

    def tick(self) -> None:
        step = self.clock[self.tid] + 1
        self.clock[self.tid] = step
        self.epoch = epoch(step, self.tid)


class _Subject:
    """What a ``race.data`` event names as its primitive: the location."""

    _kind = "Location"

    def __init__(self, label: str) -> None:
        self.name = label
        self._identity: _hooks.Identity = ("Location", id(self), label, None, label)


class RaceDetector:
    """FastTrack over tracedsync's events; see the module docstring.

    ``roots`` are the directories whose files are the user's (accesses
    elsewhere are not checked); ``limit`` caps tracked locations;
    ``on_race`` is called (outside the detector's lock) with each new
    report's event data.
    """

    def __init__(
        self,
        roots: list[str],
        *,
        limit: int = DEFAULT_LIMIT,
        on_race: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.shadow = Shadow(limit)
        self.on_race = on_race
        #: The data of every ``race.data`` event emitted (at most MAX_REPORTS).
        self.races: list[dict[str, Any]] = []
        #: Races found in all, reported or not.
        self.race_count = 0
        self._seen: set[tuple[Any, ...]] = set()
        self._lock = allocate_lock()
        self._local = _local()
        self._tids = 0
        self._sync: dict[int, tuple[_KeyedRef | None, VectorClock]] = {}
        self._starts: dict[int, VectorClock] = {}
        self._exits: dict[int, VectorClock] = {}
        self._dead: list[int] = []
        self._full_reported = False
        self._capture: Capture = make_capture(self.access, UserFiles(roots))
        self._handlers: dict[str, Callable[[_Thread, Record], None]] = {
            "lock.acquire": self._lock_acquired,
            "rlock.acquire": self._lock_acquired,
            "lock.release": self._lock_released,
            "rlock.release": self._lock_released,
            "semaphore.acquire": self._joined_if("acquired"),
            "event.wait": self._joined_if("set"),
            "condition.wait": self._joined_if("notified"),
            "barrier.wait": self._joined_if("passed"),
            "thread.run": self._thread_runs,
            "thread.exit": self._thread_exits,
            "thread.join": self._thread_joined,
        }

    # -- life ----------------------------------------------------------------

    def start(self) -> None:
        """Observe synchronisation and start capturing accesses."""
        if _hooks.release_edge is not None:
            raise RuntimeError("a race detector is already running")
        _hooks.release_edge = self.release_edge
        _hooks.add_sink(self.receive)
        self._capture.start()

    def reset(self) -> None:
        """Forget every access, clock and report, as if the next access
        began a new program: each run :func:`tracedsync.explore` makes is
        one execution, and its accesses are never ordered against another
        run's.  The capture keeps running (analysed code objects and
        disabled instructions stay as they are)."""
        with self._lock:
            self.shadow = Shadow(self.shadow.limit)
            self.races = []
            self.race_count = 0
            self._seen = set()
            self._local = _local()
            self._tids = 0
            self._sync = {}
            self._starts = {}
            self._exits = {}
            self._dead = []
            self._full_reported = False

    def stop(self) -> None:
        """Stop capturing and observing (the reports stay)."""
        self._capture.stop()
        _hooks.remove_sink(self.receive)
        if _hooks.release_edge == self.release_edge:
            _hooks.release_edge = None

    # -- threads -------------------------------------------------------------

    def _thread(self) -> _Thread:
        try:
            state: _Thread = self._local.state
        except AttributeError:
            with self._lock:
                self._tids = min(self._tids + 1, MAX_THREADS)
                tid = self._tids
            state = _Thread(tid, get_ident(), _hooks.thread_info()[1])
            self._local.state = state
        return state

    # -- synchronisation -----------------------------------------------------

    def _drain(self) -> None:
        dead = self._dead
        while dead:
            key = dead.pop()
            entry = self._sync.get(key)
            if entry is not None and entry[0] is not None and entry[0]() is None:
                del self._sync[key]
            self._starts.pop(key, None)
            self._exits.pop(key, None)

    def _died(self, reference: _KeyedRef) -> None:
        self._dead.append(reference.key)  # any thread, any time: append only

    def _watch(self, primitive: Any) -> _KeyedRef | None:
        try:
            reference = _KeyedRef(primitive, self._died)
        except TypeError:
            return None
        reference.key = id(primitive)
        return reference

    def release_edge(self, primitive: Any) -> None:
        """:data:`tracedsync._hooks.release_edge`: publish the acting thread's
        clock in ``primitive`` before its state changes, then tick."""
        state = self._thread()
        if state.busy:
            return
        state.busy = True
        try:
            with self._lock:
                self._drain()
                key = id(primitive)
                kind = getattr(primitive, "_kind", "")
                if kind == "Thread":
                    if key not in self._starts:
                        self._watch_thread(primitive)
                    self._starts[key] = dict(state.clock)
                else:
                    entry = self._sync.get(key)
                    if entry is None or (entry[0] is not None and entry[0]() is not primitive):
                        entry = (self._watch(primitive), {})
                        self._sync[key] = entry
                    if kind in _LOCKS:
                        entry[1].clear()
                        entry[1].update(state.clock)
                    else:
                        join(entry[1], state.clock)
                state.tick()
        finally:
            state.busy = False

    def _watch_thread(self, thread: Any) -> None:
        reference = self._watch(thread)
        if reference is not None:
            self._sync[id(thread)] = (reference, {})  # keeps the callback alive

    def receive(self, record: Record) -> None:
        """The sink: the acquire-like half of the edges (see the module
        docstring)."""
        handler = self._handlers.get(record[3])
        if handler is None:
            return
        state = self._thread()
        if state.busy:
            return
        state.busy = True
        try:
            with self._lock:
                self._drain()
                handler(state, record)
        finally:
            state.busy = False

    def _acquire(self, state: _Thread, key: int) -> None:
        entry = self._sync.get(key)
        if entry is not None:
            join(state.clock, entry[1])

    def _lock_acquired(self, state: _Thread, record: Record) -> None:
        data = _hooks.record_data(record)
        if data.get("outcome") != "acquired":
            return
        key = record[5][1]
        self._acquire(state, key)
        if key not in state.held:
            state.held[key] = record[5][2]
            state.locks = tuple(state.held.values())

    def _lock_released(self, state: _Thread, record: Record) -> None:
        data = _hooks.record_data(record)
        if data.get("outcome") != "released" or data.get("depth", 0):
            return
        if state.held.pop(record[5][1], None) is not None:
            state.locks = tuple(state.held.values())

    def _joined_if(self, outcome: str) -> Callable[[_Thread, Record], None]:
        def joined(state: _Thread, record: Record) -> None:
            if _hooks.record_data(record).get("outcome") == outcome:
                self._acquire(state, record[5][1])

        return joined

    def _thread_runs(self, state: _Thread, record: Record) -> None:
        started = self._starts.get(record[5][1])
        if started is not None:
            join(state.clock, started)

    def _thread_exits(self, state: _Thread, record: Record) -> None:
        self._exits[record[5][1]] = dict(state.clock)

    def _thread_joined(self, state: _Thread, record: Record) -> None:
        if _hooks.record_data(record).get("outcome") == "joined":
            exited = self._exits.get(record[5][1])
            if exited is not None:
                join(state.clock, exited)

    # -- accesses ------------------------------------------------------------

    def access(self, frame: FrameType, access: Access) -> bool:
        """The capture's callback: check one access; ``True`` when the
        instruction need never be checked again (it reads a module,
        function, class or builtin binding)."""
        kind = access.kind
        if kind <= WRITE_ATTR:
            assert access.receiver is not None
            owner = _resolve(frame, access.receiver)
            if owner is _MISSING or isinstance(owner, _local):
                return False
            if isinstance(owner, types.ModuleType):
                if kind == READ_ATTR and isinstance(owner.__dict__.get(access.name), _STABLE):
                    return True
                namespace: dict[str, Any] | None = owner.__dict__
            else:
                namespace = None
        else:
            namespace = frame.f_globals
            if kind >= READ_NAME and frame.f_locals is not namespace:
                return True  # LOAD_NAME/STORE_NAME in a class body: not globals
            if kind in (READ_GLOBAL, READ_NAME):
                value = namespace.get(access.name, _MISSING)
                if value is _MISSING or isinstance(value, _STABLE):
                    return True
            owner = namespace
        write = kind in (WRITE_ATTR, WRITE_GLOBAL) or kind > READ_NAME
        state = self._thread()
        if state.busy:
            return False
        state.busy = True
        try:
            with self._lock:
                if namespace is None:
                    location = self.shadow.attribute(owner, access.name)
                else:
                    location = self.shadow.global_(namespace, access.name)
                if location is None:
                    found = None
                elif write:
                    found = self._write(state, location, frame, access)
                else:
                    found = self._read(state, location, frame, access)
                full = self.shadow.full and not self._full_reported
                self._full_reported |= full
            if found is not None:
                self._report(found, owner, namespace is not None, frame, access)
            if full:
                self._report_full(frame)
        finally:
            state.busy = False
        return False

    def _site(self, state: _Thread, frame: FrameType, access: Access, write: bool) -> Site:
        code = frame.f_code
        return Site(
            state.tid,
            state.name,
            state.ident,
            code.co_filename,
            access.line,
            code.co_name,
            state.locks,
            write,
        )

    def _read(
        self, state: _Thread, location: Location, frame: FrameType, access: Access
    ) -> Site | None:
        now = state.epoch
        reads = location.reads
        if reads is None:
            if location.read == now:
                return None
        elif reads.get(state.tid) == clock_of(now):
            return None
        clock = state.clock
        race = None
        if not epoch_before(location.write, clock):
            race = location.write_site
        site = self._site(state, frame, access, write=False)
        if reads is None:
            if location.read == EMPTY or epoch_before(location.read, clock):
                location.read, location.read_site = now, site
            else:  # unordered reads: go read-shared
                previous = location.read
                location.reads = {tid_of(previous): clock_of(previous), state.tid: clock_of(now)}
                assert location.read_site is not None
                location.read_sites = {tid_of(previous): location.read_site, state.tid: site}
        else:
            reads[state.tid] = clock_of(now)
            assert location.read_sites is not None
            location.read_sites[state.tid] = site
        return race

    def _write(
        self, state: _Thread, location: Location, frame: FrameType, access: Access
    ) -> Site | None:
        now = state.epoch
        if location.write == now:
            return None
        clock = state.clock
        race = None
        if not epoch_before(location.write, clock):
            race = location.write_site
        elif location.reads is None:
            if not epoch_before(location.read, clock):
                race = location.read_site
        else:
            unordered = first_not_before(location.reads, clock)
            if unordered is not None:
                assert location.read_sites is not None
                race = location.read_sites.get(unordered)
        location.reads = location.read_sites = None
        location.read, location.read_site = EMPTY, None
        location.write = now
        location.write_site = self._site(state, frame, access, write=True)
        return race

    # -- reports -------------------------------------------------------------

    def _report(
        self, earlier: Site, owner: Any, is_global: bool, frame: FrameType, access: Access
    ) -> None:
        state = self._thread()
        later = self._site(state, frame, access, write=access.kind in (WRITE_ATTR, WRITE_GLOBAL))
        if access.kind > READ_NAME:
            later = later._replace(write=True)
        label, what = _describe(owner, access.name, is_global)
        key = (label, frozenset({(earlier.file, earlier.line), (later.file, later.line)}))
        with self._lock:
            self.race_count += 1
            if key in self._seen or len(self._seen) >= MAX_REPORTS:
                return
            self._seen.add(key)
        details = {
            "location": label,
            "object_type": what,
            "attribute": access.name,
            "accesses": [_site_data(earlier), _site_data(later)],
        }
        report = Report("race", _message(label, what, earlier, later), ("race", *key), details)
        data = {"message": report.message, **details}
        with self._lock:
            self.races.append(data)
        report_finding("race.data", report, _Subject(label), frame)
        if self.on_race is not None:
            self.on_race(data)

    def _report_full(self, frame: FrameType) -> None:
        limit = self.shadow.limit
        message = (
            f"Race detector: {limit:,} locations tracked, the limit; accesses to new "
            "locations are no longer checked."
        )
        report = Report("note", message, ("race.shadow_full",), {"max_locations": limit})
        report_finding("race.shadow_full", report, _Subject("race detector"), frame)


def _resolve(frame: FrameType, receiver: Receiver) -> Any:
    """The object a receiver path names in ``frame`` now, read through
    instance dictionaries only; ``_MISSING`` when it cannot be read so."""
    variable = receiver.variable
    if receiver.start == FAST:
        value = frame.f_locals.get(variable, _MISSING)
    else:
        value = _MISSING
        if receiver.start != GLOBAL:
            value = frame.f_locals.get(variable, _MISSING)
        if value is _MISSING:
            value = frame.f_globals.get(variable, _MISSING)
        if value is _MISSING:
            value = getattr(builtins, variable, _MISSING)
    for attribute in receiver.attributes:
        if value is _MISSING:
            break
        try:
            namespace = object.__getattribute__(value, "__dict__")
        except AttributeError:
            return _MISSING
        value = namespace.get(attribute, _MISSING)
    return value


def _describe(owner: Any, name: str, is_global: bool) -> tuple[str, str]:
    """(``"Counter.value"``, what it is) for a report."""
    if is_global:
        module = owner.get("__name__", "?") if isinstance(owner, dict) else owner.__name__
        return f"{module}.{name}", "module global"
    if isinstance(owner, type):
        return f"{owner.__qualname__}.{name}", "class attribute"
    return f"{type(owner).__qualname__}.{name}", f"attribute of a {type(owner).__qualname__}"


def _held(site: Site) -> str:
    return ", ".join(site.locks) if site.locks else "nothing"


def _side(site: Site) -> str:
    return (
        f"{'write' if site.write else 'read'} in thread {site.thread!r} at "
        f"{short_path(site.file)}:{site.line} (in {site.function}), holding {_held(site)}"
    )


def _fix(label: str, earlier: Site, later: Site) -> str:
    first, second = set(earlier.locks), set(later.locks)
    if bool(first) != bool(second):
        holder, bare = (earlier, later) if first else (later, earlier)
        return (
            f"hold {holder.locks[0]} around the {'write' if bare.write else 'read'} at "
            f"{short_path(bare.file)}:{bare.line} too, as the other side does."
        )
    if first and second:
        return (
            f"the two sides hold different locks ({_held(earlier)} / {_held(later)}): "
            f"protect {label} with one lock, held at every access."
        )
    if earlier.write and later.write and (earlier.file, earlier.line) == (later.file, later.line):
        return (
            f"an unsynchronised read-modify-write: hold one lock around every access to "
            f"{label}, or give each thread its own and combine them after join()."
        )
    return (
        f"protect {label} with one lock held at every access, or order the two accesses "
        "with a synchronisation (Event.set/wait, Thread.join, a queue) instead of timing "
        "or a plain flag."
    )


def _message(label: str, what: str, earlier: Site, later: Site) -> str:
    writer = earlier if earlier.write else later
    reader = later if writer is earlier else earlier
    role = "reader" if not reader.write else "writer"

    def brief(site: Site) -> str:
        kind = "write" if site.write else "read"
        return f"{kind} at {short_path(site.file)}:{site.line} in {site.thread!r}"

    return (
        f"Data race on {label} ({what}): {brief(earlier)} and {brief(later)}, "
        "and neither happens before the other.\n"
        f"  {_side(earlier)}\n"
        f"  {_side(later)}\n"
        f"  writer held {_held(writer)}, {role} held {_held(reader)}\n"
        f"  how to fix: {_fix(label, earlier, later)}"
    )


def _site_data(site: Site) -> dict[str, Any]:
    return {
        "access": "write" if site.write else "read",
        "thread": site.thread,
        "thread_id": site.thread_id,
        "file": site.file,
        "line": site.line,
        "function": site.function,
        "locks": list(site.locks),
    }
