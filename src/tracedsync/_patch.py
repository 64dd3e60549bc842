"""Tracing unmodified code: make ``threading``'s constructors build traced primitives.

After :func:`patch`, ``threading.Lock()``, ``RLock()``, ``Condition()``,
``Semaphore()``, ``BoundedSemaphore()``, ``Event()``, ``Barrier()``,
``Thread(...)`` and ``Timer(...)`` return tracedsync's primitives, so code that
was never written for tracedsync (``queue``, ``concurrent.futures``, a
third-party library) is traced as it runs.  :func:`unpatch` puts the original
objects back, exactly.

Each name on :mod:`threading` is replaced by a transparent wrapper
(:class:`~tracedsync._wrappers.ConstructorWrapper`) around the original,
never by tracedsync's class itself, so the rest of the program still sees ``threading``'s types:

* ``isinstance(x, threading.Thread)`` (and ``issubclass``) is true for
  threads created before or after patching, traced or not;
* ``class Worker(threading.Thread)`` written while patched subclasses
  tracedsync's ``Thread`` (the wrapper's ``__mro_entries__``), so its
  instances are traced too; where CPython refuses the subclass
  (``threading.Lock``, a function before 3.13 and a final type since;
  ``threading.RLock``, a function) it is refused with the same ``TypeError``;
* attribute access (``threading.Thread.run``) reaches the original class;
* the names pickle (and copy) as the originals do, so a ``multiprocessing``
  Manager started with ``spawn`` or ``forkserver`` (which pickles its
  registry of ``threading`` constructors) works while patched.

Some code must never run on traced primitives: tracedsync itself, structlog
and :mod:`logging` (which render tracedsync's own events, so tracing them
would recurse) and :mod:`threading` (whose classes build private locks and
events for their own bookkeeping, e.g. every ``Thread``'s ``_started`` event).
A constructor called from such a module returns the original object; the
caller is found with one frame lookup, at construction only.

Names bound before :func:`patch` (``from threading import Lock`` in a module
imported earlier) are rebound in every loaded module that holds the original
under the same name; :func:`unpatch` restores them, and also the names that
modules imported while patched bound to the wrappers.  What cannot be covered:
primitives that already exist when :func:`patch` runs (module-level locks of
modules imported earlier, such as ``logging``'s), aliases under other names,
classes that subclassed a ``threading`` class before :func:`patch`, and
C-level synchronisation (``queue.SimpleQueue``, ``_thread`` locks used
directly).
"""

from __future__ import annotations

import _thread
import sys
import threading
from collections.abc import Iterable
from types import ModuleType

from tracedsync._guards import internal_lock
from tracedsync._lock import Lock, RLock
from tracedsync._sites import module_in, register_internal_module
from tracedsync._sync import Barrier, BoundedSemaphore, Condition, Event, Semaphore
from tracedsync._threads import Thread, Timer
from tracedsync._typenames import TYPE_CHECKING, Any
from tracedsync._waits import note_foreign_start

if TYPE_CHECKING:
    from tracedsync._wrappers import ConstructorWrapper

__all__ = ["EXCLUDED_MODULES", "is_patched", "patch", "patched", "unpatch"]

register_internal_module(__file__)

#: Modules (and their submodules) whose calls get the original primitives.
EXCLUDED_MODULES: tuple[str, ...] = (
    "threading",
    "_thread",
    "tracedsync",
    "structlog",
    "logging",
)

#: ``threading`` name -> the tracedsync class its wrapper constructs.
TRACED: dict[str, type] = {
    "Lock": Lock,
    "RLock": RLock,
    "Condition": Condition,
    "Semaphore": Semaphore,
    "BoundedSemaphore": BoundedSemaphore,
    "Event": Event,
    "Barrier": Barrier,
    "Thread": Thread,
    "Timer": Timer,
}


class _Patcher:
    """The patch state: which names were replaced where, under one raw lock."""

    def __init__(self) -> None:
        self._guard = internal_lock()
        #: (namespace dict, name, original, wrapper) of every replaced name.
        self._replaced: list[tuple[dict[str, Any], str, Any, ConstructorWrapper]] = []
        #: ``_thread.start_new_thread`` before :meth:`patch` wrapped it, so
        #: that a thread it starts exists for the liveness checks before it
        #: runs Python code (see ``_waits.note_foreign_start``).
        self._start_new_thread: Any = None

    @property
    def active(self) -> bool:
        return bool(self._replaced)

    def patch(self, exclude: Iterable[str]) -> None:
        with self._guard:
            if self._replaced:
                return
            excluded = (*EXCLUDED_MODULES, *exclude)
            namespace = vars(threading)
            # Not at the top: start-up time a program that never patches
            # should not pay.
            from tracedsync._wrappers import ConstructorWrapper

            wrappers: dict[int, ConstructorWrapper] = {}
            for name, traced in TRACED.items():
                original = namespace[name]
                wrapper = ConstructorWrapper(original, traced, excluded)
                wrappers[id(original)] = wrapper
                self._replace(namespace, name, original, wrapper)
            for module in list(sys.modules.values()):
                self._rebind(module, excluded, wrappers)
            self._start_new_thread = _thread.start_new_thread
            _thread.start_new_thread = note_foreign_start(self._start_new_thread)

    def _rebind(
        self, module: ModuleType | None, excluded: tuple[str, ...], wrappers: dict[int, Any]
    ) -> None:
        """Rebind ``from threading import X`` names of an already imported module."""
        module_name = getattr(module, "__name__", None)
        if not isinstance(module_name, str) or module_in(module_name, excluded):
            return
        try:
            namespace = vars(module)
        except TypeError:
            return
        for name in TRACED:
            value = namespace.get(name)
            wrapper = wrappers.get(id(value)) if value is not None else None
            if wrapper is not None and wrapper.__wrapped__ is value:
                self._replace(namespace, name, value, wrapper)

    def _replace(
        self, namespace: dict[str, Any], name: str, original: Any, wrapper: ConstructorWrapper
    ) -> None:
        namespace[name] = wrapper
        self._replaced.append((namespace, name, original, wrapper))

    def unpatch(self) -> None:
        with self._guard:
            original_start: Any = self._start_new_thread
            self._start_new_thread = None
            current_start = getattr(_thread.start_new_thread, "__wrapped__", None)
            if original_start is not None and current_start is original_start:
                vars(_thread)["start_new_thread"] = original_start
            replaced, self._replaced = self._replaced, []
            originals: dict[int, Any] = {}
            for namespace, name, original, wrapper in reversed(replaced):
                originals[id(wrapper)] = original
                # A name someone else rebound since is theirs now: leave it.
                if namespace.get(name) is wrapper:
                    namespace[name] = original
            # Modules imported while patched bound the wrappers themselves.
            for module in list(sys.modules.values()):
                try:
                    namespace = vars(module)
                except TypeError:
                    continue
                for name in TRACED:
                    value = namespace.get(name)
                    if value is not None and id(value) in originals:
                        namespace[name] = originals[id(value)]


_patcher = _Patcher()


def patch(*, exclude: Iterable[str] = ()) -> None:
    """Make ``threading``'s constructors build traced primitives, until :func:`unpatch`.

    ``exclude`` names more modules (and their submodules) whose calls keep
    getting the original primitives, on top of ``tracedsync._patch.EXCLUDED_MODULES``
    (tracedsync, structlog, logging, threading and _thread).
    Patching an already patched process does nothing.
    """
    _patcher.patch(tuple(exclude))


def unpatch() -> None:
    """Restore every name :func:`patch` replaced to its original object.

    Primitives created while patched stay traced.  Unpatching an unpatched
    process does nothing.
    """
    _patcher.unpatch()


def is_patched() -> bool:
    """Whether ``threading`` is patched now."""
    return _patcher.active


class _Patched:
    """What :func:`patched` returns (a class, not ``contextlib.contextmanager``:
    contextlib costs start-up time)."""

    __slots__ = ("_exclude", "_patching")

    def __init__(self, exclude: Iterable[str]) -> None:
        self._exclude = exclude
        self._patching = False

    def __enter__(self) -> None:
        self._patching = not _patcher.active
        if self._patching:
            patch(exclude=self._exclude)

    def __exit__(self, *_exc_info: object) -> None:
        if self._patching:
            self._patching = False
            unpatch()


def patched(*, exclude: Iterable[str] = ()) -> _Patched:
    """``with tracedsync.patched():`` patch for the block; a block entered while
    already patched leaves the patch in place when it ends."""
    return _Patched(exclude)
