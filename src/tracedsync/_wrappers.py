"""The wrappers :func:`tracedsync.patch` puts in ``threading``'s place.

Each is a :class:`ConstructorWrapper` around the original name, never
tracedsync's class itself, so ``isinstance``/``issubclass`` against
``threading.X``, subclassing while patched, pickling and ``threading``'s own
calls of ``X.__init__`` keep working (see :mod:`tracedsync._patch`).  A module
of its own so that only a program that patches pays for it.

Why not :class:`wrapt.FunctionWrapper`, which this wrapper used to be: wrapt
2.x's package imports :mod:`asyncio` (and through it
:mod:`concurrent.futures`) on ``import wrapt``, so every traced process, and
every traced child, had those modules loaded before the program ran; a
program that inspects ``sys.modules`` saw the difference (CPython's
``test_concurrent_futures`` has such a test), and the import doubled ``run``'s
start-up.  A wrapper of nine names needs little of wrapt: a transparent
proxy for attribute access, comparisons and type checks, and a call; that
is this class, with nothing imported.
"""

from __future__ import annotations

import sys
from types import MethodType

from tracedsync._sites import module_in, register_internal_module
from tracedsync._typenames import Any

__all__ = ["ConstructorWrapper"]

register_internal_module(__file__)

#: ``Py_TPFLAGS_BASETYPE``: a type that allows subclasses.
_BASETYPE = 1 << 10

#: The wrapper's own attributes; every other name is the original's.
_OWN = frozenset({"__wrapped__", "_self_traced", "_self_excluded", "_self_init"})


class _ModuleByName:
    """A module in a pickle: unpickles as ``importlib.import_module(name)``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        import importlib  # only when pickled: patching imports nothing a program could see

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


class ConstructorWrapper:
    """What stands in ``threading.<name>`` while patched.

    Calling it builds the traced primitive, unless the caller's module is
    excluded.  Everything else is the original's, as through a transparent
    proxy: attributes (read, set, deleted), ``repr``, equality and hash,
    ``__class__`` (so ``isinstance(threading.Thread, type)`` holds),
    ``X | None`` in annotations, and :func:`inspect.signature` (through
    ``__wrapped__``).  Type checks accept both the original and the traced
    class; subclassing it subclasses the traced class; it pickles and copies
    as the original.
    """

    __slots__ = ("__weakref__", "__wrapped__", "_self_excluded", "_self_init", "_self_traced")

    __wrapped__: Any
    _self_traced: type
    _self_excluded: tuple[str, ...]
    _self_init: Any

    __init__ = _ForwardedInit()

    def _setup(self, original: Any, traced: type, excluded: tuple[str, ...]) -> None:
        own = object.__setattr__
        own(self, "__wrapped__", original)
        own(self, "_self_traced", traced)
        own(self, "_self_excluded", excluded)
        if isinstance(original, type):

            def __init__(instance: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
                # threading's own classes chain to the original (a traced
                # class's __init__ may be what called them); a user's
                # old-style subclass of a traced class reaches the traced one.
                owner = original
                if isinstance(instance, traced) and not module_in(
                    sys._getframe(1).f_globals.get("__name__", ""), excluded
                ):
                    owner = traced
                owner.__init__(instance, *args, **kwargs)  # type: ignore[misc]

            own(self, "_self_init", __init__)
        else:
            own(self, "_self_init", original.__init__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1)
        if module_in(caller.f_globals.get("__name__", ""), self._self_excluded):
            return self.__wrapped__(*args, **kwargs)
        return self._self_traced(*args, **kwargs)

    # -- a transparent proxy of the original ----------------------------------

    def __getattr__(self, name: str) -> Any:
        if name in _OWN:  # not set yet: never ask the original for these
            raise AttributeError(name)
        return getattr(self.__wrapped__, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.__wrapped__, name, value)

    def __delattr__(self, name: str) -> None:
        if name in _OWN:
            object.__delattr__(self, name)
        else:
            delattr(self.__wrapped__, name)

    def __dir__(self) -> list[str]:
        return dir(self.__wrapped__)

    # Names this class has itself, so __getattr__ would never ask the original
    # (``__name__`` and ``__qualname__`` are the metaclass's: it does).
    @property  # type: ignore[misc]
    def __class__(self) -> Any:  # the original's class, as a proxy's
        return self.__wrapped__.__class__

    @property
    def __module__(self) -> Any:  # type: ignore[override]
        return self.__wrapped__.__module__

    @property
    def __doc__(self) -> Any:  # type: ignore[override]
        return self.__wrapped__.__doc__

    @property
    def __signature__(self) -> Any:
        # inspect.unwrap() stops at anything whose __class__ is type (3.13+).
        import inspect  # only when asked: patching imports nothing a program could see

        return inspect.signature(self.__wrapped__)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __eq__(self, other: object) -> bool:
        return bool(self.__wrapped__ == getattr(other, "__wrapped__", other))

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.__wrapped__)

    def __or__(self, other: Any) -> Any:
        return self.__wrapped__ | other

    def __ror__(self, other: Any) -> Any:
        return other | self.__wrapped__

    # -- type checks, subclassing, pickling -----------------------------------

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
