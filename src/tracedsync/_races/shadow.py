"""Shadow memory: the FastTrack state of every tracked location.

A *location* is one attribute of one object (``obj.x``, or ``Cls.x`` on a
class) or one global of one module.  Its :class:`Location` holds the epoch
of the last write, the epoch of the last read or, once reads by unordered
threads overlap, a vector clock of reads ("read-shared"), plus where those
accesses were made, for the report.

Memory is bounded two ways:

* an object's locations go with the object: they are found through its
  ``id()``, and a weak reference with a callback queues that ``id`` for
  removal the moment the object dies, before the ``id`` can be handed to a
  new object.  The queue is drained at the start of every lookup, under
  the detector's lock, so a callback (which may run inside any allocation,
  in any thread, even one holding the detector's lock) never takes a lock.
  Objects that cannot be weakly referenced (``__slots__`` without
  ``__weakref__``, most builtins) are not tracked: keyed by ``id()`` alone,
  a dead object's state would be attributed to the next one at its address,
  which could report races that are not there.
* at most :attr:`Shadow.limit` locations are tracked; past it new locations
  are not, and :attr:`Shadow.full` says so (the detector reports it once).

Module globals are keyed by the module's namespace dictionary, held
strongly: modules live as long as the program in practice, and there are
few of them.

Not thread-safe by itself: every method except the weak-reference callback
runs under the detector's lock.
"""

from __future__ import annotations

import weakref
from collections import deque
from typing import Any, NamedTuple

from tracedsync._races.clocks import EMPTY, VectorClock

__all__ = ["DEFAULT_LIMIT", "Location", "Shadow", "Site"]

#: Default cap on tracked locations.
DEFAULT_LIMIT = 1_000_000


class Site(NamedTuple):
    """One access, as a report shows it."""

    tid: int
    thread: str
    thread_id: int
    file: str
    line: int
    function: str
    locks: tuple[str, ...]
    write: bool


class Location:
    """FastTrack's shadow state of one location (``W``, ``R``) and the sites
    of the accesses it remembers."""

    __slots__ = ("read", "read_site", "read_sites", "reads", "write", "write_site")

    def __init__(self) -> None:
        #: Epoch of the last write (``EMPTY`` before any).
        self.write = EMPTY
        self.write_site: Site | None = None
        #: Epoch of the last read while reads are totally ordered; ignored
        #: while :attr:`reads` is set.
        self.read = EMPTY
        self.read_site: Site | None = None
        #: Read-shared mode: the last read of each thread since the last
        #: write, and where it was made.
        self.reads: VectorClock | None = None
        self.read_sites: dict[int, Site] | None = None


class _KeyedRef(weakref.ref):  # type: ignore[type-arg]
    """A weak reference that remembers the key of its object's entry."""

    __slots__ = ("key",)
    key: int


class Shadow:
    """Every tracked location; see the module docstring for the contract."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        #: Locations tracked now.
        self.count = 0
        #: Whether a location was refused because :attr:`limit` was reached.
        self.full = False
        self._objects: dict[int, tuple[_KeyedRef, dict[str, Location]]] = {}
        self._modules: dict[int, tuple[dict[str, Any], dict[str, Location]]] = {}
        self._dead: deque[int] = deque()
        self._unreferenceable: set[type] = set()

    def _died(self, reference: _KeyedRef) -> None:
        # Any thread, any time (garbage collection): deque.append only.
        self._dead.append(reference.key)

    def _drain(self) -> None:
        dead = self._dead
        while dead:
            key = dead.popleft()
            entry = self._objects.get(key)
            if entry is not None and entry[0]() is None:
                del self._objects[key]
                self.count -= len(entry[1])

    def attribute(self, owner: object, name: str) -> Location | None:
        """The location ``owner.name``, created on first use; ``None`` when
        ``owner`` cannot be tracked or the cap is reached."""
        if self._dead:
            self._drain()
        key = id(owner)
        entry = self._objects.get(key)
        if entry is None or entry[0]() is not owner:
            if entry is not None:  # a dead object's entry, its callback pending
                del self._objects[key]
                self.count -= len(entry[1])
            kind = type(owner)
            if kind in self._unreferenceable:
                return None
            try:
                reference = _KeyedRef(owner, self._died)
            except TypeError:
                self._unreferenceable.add(kind)
                return None
            reference.key = key
            entry = (reference, {})
            self._objects[key] = entry
        return self._location(entry[1], name)

    def global_(self, namespace: dict[str, Any], name: str) -> Location | None:
        """The location of global ``name`` in the module whose namespace is
        ``namespace``; ``None`` when the cap is reached."""
        key = id(namespace)
        entry = self._modules.get(key)
        if entry is None:
            entry = (namespace, {})
            self._modules[key] = entry
        return self._location(entry[1], name)

    def _location(self, locations: dict[str, Location], name: str) -> Location | None:
        found = locations.get(name)
        if found is None:
            if self.count >= self.limit:
                self.full = True
                return None
            found = locations[name] = Location()
            self.count += 1
        return found
