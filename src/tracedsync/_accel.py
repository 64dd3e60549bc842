"""Which implementation of the hot path of ``Lock`` and ``RLock`` runs: C or pure Python.

The pure-Python methods of :class:`tracedsync._lock.Lock` and
:class:`tracedsync._lock.RLock` are the reference.  The optional extension
:mod:`tracedsync._speedups` (built by ``setup.py`` where a C compiler exists)
provides C transliterations of ``Lock.acquire`` (``__enter__``,
``acquire_lock``), ``Lock.release`` (``release_lock``, ``_release_save``),
``RLock.acquire`` (``__enter__``), ``RLock.release``, the protocol
``threading.Condition`` uses (``RLock._release_save``, ``_acquire_restore``,
``_is_owned``) and both classes' ``__exit__``: the same classes, the same
slots, and every branch other than the common ones (the uncontended defaults,
an ``RLock``'s recursion) calls the same Python code.  :func:`install` puts
them on the classes at import, unless ``TRACEDSYNC_IMPL=python`` (or
``TRACEDSYNC_PURE=1``) asks for pure Python, the extension is missing, or the
interpreter is not a GIL build of CPython.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from types import ModuleType

from tracedsync import _blocking, _hooks, _lockorder, _sites
from tracedsync._config import settings
from tracedsync._errors import REPORTED_ERRORS
from tracedsync._typenames import Any

__all__ = [
    "available",
    "describe",
    "implementation",
    "install",
    "json_lines",
    "reason",
    "select",
]

#: Per class name: the methods the accelerator replaces, by the name of its
#: C method.
_ALIASES = {
    "Lock": {
        "acquire": ("acquire", "__enter__", "acquire_lock"),
        "release": ("release", "release_lock", "_release_save"),
        "__exit__": ("__exit__",),
        "_acquire_restore": ("_acquire_restore",),
    },
    "RLock": {
        "acquire": ("acquire", "__enter__"),
        "release": ("release",),
        "__exit__": ("__exit__",),
        "_release_save": ("_release_save",),
        "_is_owned": ("_is_owned",),
        "_acquire_restore": ("_acquire_restore",),
    },
}

#: The slots the C methods read and write, by class name.
_SLOTS = {
    "Lock": ("_handoff",),
    "RLock": ("_depth",),
}
_COMMON_SLOTS = (
    "_lock",
    "_owner",
    "_held_list",
    "_acquired_code",
    "_acquired_offset",
    "_acquired_ns",
    "_weak_self",
    "_order_key",
    "_identity",
)

#: The extension module, where it loaded.
_speedups: Any = None
#: ``"c"`` or ``"python"``: the implementation now installed on the classes.
_active = "python"
#: Why the C accelerator is not active (``None`` while it is).
_why_not: str | None = "not installed yet"
#: Per implementation: class -> attribute name -> the object to put on it.
_methods: dict[str, dict[type, dict[str, Any]]] = {}


def _unsupported() -> str | None:
    """Why this interpreter cannot use the accelerator, or ``None``."""
    # ``sys`` answers both questions; ``platform`` and ``sysconfig`` cost
    # more to import than the accelerator saves in a short program.
    if sys.implementation.name != "cpython":
        return f"{sys.implementation.name} is not CPython"
    if _free_threaded():
        return "free-threaded CPython: the accelerator supports GIL builds only"
    return None


def _free_threaded() -> bool:
    """Whether this is a free-threaded build (``Py_GIL_DISABLED``)."""
    abiflags = getattr(sys, "abiflags", None)
    if abiflags is not None:  # POSIX: "t" marks a free-threaded build
        return "t" in abiflags
    import sysconfig  # start-up cost: only where sys.abiflags is missing

    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def _load() -> tuple[ModuleType | None, str | None]:
    reason = _unsupported()
    if reason is not None:
        return None, reason
    try:
        # Imported here: the extension is optional (and TRACEDSYNC_IMPL may refuse it).
        import tracedsync._speedups as speedups  # type: ignore[import-not-found]
    except ImportError as error:
        if isinstance(error, ModuleNotFoundError) and error.name == "tracedsync._speedups":
            return None, "the C extension is not built"
        return None, f"the C extension does not load ({error})"
    return speedups, None


def install(classes: tuple[type, ...], module: ModuleType) -> None:
    """Put the chosen implementation's methods on ``classes`` (``_lock.Lock``
    and ``_lock.RLock``, defined in ``module``); called once, at the end of
    ``_lock``."""
    global _why_not
    python = {
        klass: {
            name: getattr(klass, name)
            for names in _ALIASES[klass.__name__].values()
            for name in names
        }
        for klass in classes
    }
    _methods["python"] = python
    global _speedups
    speedups, _why_not = _load()
    _speedups = speedups
    forced = _forced()
    if speedups is None:
        _why_not = forced or _why_not
        if settings.impl == "c":
            print(
                f"tracedsync: TRACEDSYNC_IMPL=c, but {_why_not}; "
                "using the pure-Python implementation",
                file=sys.stderr,
            )
        return
    accelerated: dict[type, dict[str, Any]] = {}
    for klass in classes:
        aliases = _ALIASES[klass.__name__]
        try:
            made = speedups.install(_configuration(klass, module, python[klass]))
            accelerated[klass] = {
                name: made[c_name] for c_name, names in aliases.items() for name in names
            }
        except RuntimeError as error:  # a second interpreter: its state is process-wide
            _why_not = f"the C extension is in use by another interpreter ({error})"
            return
        except (KeyError, TypeError) as error:  # built from other sources than these
            _why_not = f"the C extension does not match these Python files ({error!r})"
            return
    _methods["c"] = accelerated
    # The C methods may keep records back (see _hooks._deferring), whichever
    # implementation is selected later: readers have them handed on.
    _hooks._flush_deferred = speedups.flush_events
    _hooks._expand_records = speedups.expand_records
    # The event sequence becomes one whose numbers the C methods take
    # without making an int (itertools.count's are only reachable by next()).
    sequence = speedups.Sequence(next(_hooks.sequence))
    _hooks.sequence = sequence
    module._sequence = sequence  # type: ignore[attr-defined]  # _lock's own name for it
    if forced is not None:
        _why_not = forced
    else:
        select("c")


def _configuration(klass: type, module: ModuleType, python: dict[str, Any]) -> dict[str, Any]:
    """What ``_speedups.install`` needs to know of ``klass``: its slots' member
    descriptors, the modules whose globals its methods read, and its Python
    methods (for the calls the C methods hand over whole)."""
    slots: dict[str, Any] = {}
    for base in reversed(klass.__mro__):
        slots.update(vars(base))
    names = _COMMON_SLOTS + _SLOTS[klass.__name__]
    config = {name: slots[name] for name in names}
    config.update(python)
    config.update(
        cls=klass,
        reentrant=klass.__name__ == "RLock",
        lock_globals=vars(module),
        hooks_globals=vars(_hooks),
        lockorder_globals=vars(_lockorder),
        blocking_globals=vars(_blocking),
        order_thread=_lockorder._per_thread,
        internal_files=_sites.INTERNAL_FILES,
        no_timeout=module.NO_TIMEOUT,
        raw_lock_type=type(threading._allocate_lock()),  # type: ignore[attr-defined]
        reported_errors=REPORTED_ERRORS,
    )
    return config


def _forced() -> str | None:
    """The setting that asks for pure Python, if one does."""
    if settings.impl == "python":
        return "TRACEDSYNC_IMPL=python"
    if settings.impl != "c" and os.environ.get("TRACEDSYNC_PURE", "").strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
    ):
        return "TRACEDSYNC_PURE is set"
    return None


def available() -> bool:
    """Whether the C accelerator could be selected in this process."""
    return "c" in _methods


def implementation() -> str:
    """``"c"`` or ``"python"``: the implementation ``Lock`` and ``RLock`` run now."""
    return _active


def select(name: str) -> None:
    """Switch ``Lock`` and ``RLock`` to the ``"c"`` or ``"python"`` methods.

    For tests and benchmarks that compare the two in one process: call it
    while no thread is inside a ``Lock`` or ``RLock`` method."""
    global _active, _why_not
    if name not in _methods:
        raise ValueError(f"implementation {name!r} is not available ({_why_not})")
    _hooks.flush_deferred()  # what the C methods kept back comes first
    for klass, methods in _methods[name].items():
        for attribute, method in methods.items():
            setattr(klass, attribute, method)
    _active = name
    _why_not = None if name == "c" else "selected in this process"


def json_lines() -> Callable[[list[Any], tuple[Any, ...]], bytes] | None:
    """The C encoder of JSON Lines batches (``_speedups.json_lines``) while
    the C implementation is selected; ``None`` for pure Python."""
    if _active != "c" or _speedups is None:
        return None
    encoder: Callable[[list[Any], tuple[Any, ...]], bytes] = _speedups.json_lines
    return encoder


def describe() -> str:
    """How ``tracedsync --version`` names the active implementation."""
    return "C accelerator for Lock and RLock" if _active == "c" else "pure Python implementation"


def reason() -> str | None:
    """Why the pure-Python implementation is active (``None`` while C is)."""
    return _why_not
