"""Tracing unmodified code: make ``threading``'s constructors build traced primitives.

After :func:`patch`, ``threading.Lock()``, ``RLock()``, ``Condition()``,
``Semaphore()``, ``BoundedSemaphore()``, ``Event()``, ``Barrier()``,
``Thread(...)`` and ``Timer(...)`` return tracedsync's primitives, so code that
was never written for tracedsync (``queue``, ``concurrent.futures``, a
third-party library) is traced as it runs.  :func:`unpatch` puts the original
objects back, exactly.

Each name on :mod:`threading` is replaced by a :class:`wrapt.FunctionWrapper`
around the original, never by tracedsync's class itself, so the rest of the
program still sees ``threading``'s types:

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
import importlib
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import MethodType, ModuleType
from typing import Any

import wrapt

from tracedsync._guards import internal_lock
from tracedsync._lock import Lock, RLock
from tracedsync._sites import register_internal_module
from tracedsync._sync import Barrier, BoundedSemaphore, Condition, Event, Semaphore
from tracedsync._threads import Thread, Timer
from tracedsync._waits import note_foreign_start

__all__ = ["EXCLUDED_MODULES", "is_patched", "patch", "patched", "unpatch"]

register_internal_module(__file__)

#: Modules (and their submodules) whose calls get the original primitives.
EXCLUDED_MODULES: tuple[str, ...] = (
    "threading",
    "_thread",
    "tracedsync",
    "structlog",
    "logging",
    "wrapt",
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


def _excluded(module_name: str, excluded: tuple[str, ...]) -> bool:
    return any(module_name == prefix or module_name.startswith(prefix + ".") for prefix in excluded)


#: ``Py_TPFLAGS_BASETYPE``: a type that allows subclasses.
_BASETYPE = 1 << 10


class _ModuleByName:
    """A module in a pickle: unpickles as ``importlib.import_module(name)``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        return importlib.import_module, (self.name,)


class _ForwardedInit:
    """``threading.Semaphore.__init__`` while patched: the class's ``__init__``.

    ``threading`` itself calls ``Semaphore.__init__(self, value)`` and
    ``Thread.__init__(self, ...)`` through its module globals, and old-style
    subclasses do the same.  Attribute access on the wrapper must therefore
    give the wrapped class's ``__init__`` (the traced class's for a traced
    instance), while the wrapper's own construction uses
    :meth:`ConstructorWrapper._setup`.
    """

    def __get__(self, wrapper: Any, owner: Any = None) -> Any:
        if wrapper is None:
            return self
        try:
            return object.__getattribute__(wrapper, "_self_init")
        except AttributeError:  # the wrapper itself is being constructed
            return MethodType(ConstructorWrapper._setup, wrapper)


class ConstructorWrapper(wrapt.FunctionWrapper):  # type: ignore[type-arg]
    """What stands in ``threading.<name>`` while patched.

    Calling it builds the traced primitive, unless the caller's module is
    excluded.  Type checks accept both the original and the traced class;
    subclassing it subclasses the traced class.
    """

    __init__ = _ForwardedInit()

    def _setup(self, original: Any, traced: type, excluded: tuple[str, ...]) -> None:
        def construct(
            wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
        ) -> Any:
            caller = sys._getframe(1)
            while caller.f_globals.get("__name__", "").startswith("wrapt"):  # pure-Python wrapt
                caller = caller.f_back  # type: ignore[assignment]
            if _excluded(caller.f_globals.get("__name__", ""), excluded):
                return wrapped(*args, **kwargs)
            return traced(*args, **kwargs)

        super().__init__(original, construct)
        self._self_traced = traced
        if isinstance(original, type):

            def __init__(instance: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
                # threading's own classes chain to the original (a traced
                # class's __init__ may be what called them); a user's
                # old-style subclass of a traced class reaches the traced one.
                owner = original
                if isinstance(instance, traced) and not _excluded(
                    sys._getframe(1).f_globals.get("__name__", ""), excluded
                ):
                    owner = traced
                owner.__init__(instance, *args, **kwargs)  # type: ignore[misc]

            self._self_init = __init__
        else:
            self._self_init = original.__init__

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __reduce_ex__(self, protocol: Any) -> str | tuple[Any, ...]:
        """Pickle as the original does: by reference to where it lives.

        A class or function pickles as its module and qualified name, and
        :mod:`pickle` checks that the name leads back to the very object
        pickled.  For every name whose original lives on ``threading`` the
        name does lead to this wrapper while patched, so the bytes are
        exactly the original's (``threading Thread``), and unpickling gives
        ``threading``'s name as it is there: the original in an unpatched
        process.  ``threading.Lock`` is ``_thread.allocate_lock`` (before
        3.13) or ``_thread.lock``, which is not this wrapper, so it pickles
        as a lookup of that same name (``getattr(_thread, "lock")``): other
        bytes, but it unpickles to the same object as the original's pickle.
        """
        original: Any = self.__wrapped__
        module_name = getattr(original, "__module__", None) or "threading"
        name: str = getattr(original, "__qualname__", original.__name__)
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, name, None) is self:
            return name
        return getattr, (_ModuleByName(module_name), name)

    def __reduce__(self) -> str | tuple[Any, ...]:
        return self.__reduce_ex__(2)

    def __copy__(self) -> Any:
        return self  # classes and functions are atomic to copy, as the originals

    def __deepcopy__(self, memo: Any) -> Any:
        return self

    def __instancecheck__(self, instance: Any) -> bool:
        original: Any = self.__wrapped__
        if not isinstance(original, type):  # threading.Lock before 3.13: a function,
            return isinstance(instance, original)  # so this raises TypeError, as unpatched
        return isinstance(instance, (original, self._self_traced))

    def __subclasscheck__(self, subclass: Any) -> bool:
        original: Any = self.__wrapped__
        subclass = getattr(subclass, "__wrapped__", subclass)
        if not isinstance(original, type):
            return issubclass(subclass, original)  # raises TypeError, as unpatched
        return issubclass(subclass, (original, self._self_traced))

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[Any, ...]:
        """Subclass the traced class, where CPython lets the original be subclassed.

        A function (``threading.Lock`` before 3.13, ``threading.RLock``) or a
        final type (``_thread.lock`` since 3.13) is given back as the base, so
        class creation fails exactly as it does unpatched, same ``TypeError``.
        """
        original: Any = self.__wrapped__
        if not isinstance(original, type) or not original.__flags__ & _BASETYPE:
            return (original,)
        return (self._self_traced,)


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
        if not isinstance(module_name, str) or _excluded(module_name, excluded):
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
    (tracedsync, structlog, logging, wrapt, threading and _thread).
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


@contextmanager
def patched(*, exclude: Iterable[str] = ()) -> Iterator[None]:
    """``with tracedsync.patched():`` patch for the block; a block entered while
    already patched leaves the patch in place when it ends."""
    if _patcher.active:
        yield
        return
    patch(exclude=exclude)
    try:
        yield
    finally:
        unpatch()
