"""The wrappers :func:`tracedsync.patch` puts in ``threading``'s place.

Each is a :class:`wrapt.FunctionWrapper` around the original name, never
tracedsync's class itself, so ``isinstance``/``issubclass`` against
``threading.X``, subclassing while patched, pickling and ``threading``'s own
calls of ``X.__init__`` keep working (see :mod:`tracedsync._patch`).  A module
of its own so that wrapt is imported only by a program that patches.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from types import MethodType

import wrapt

from tracedsync._sites import module_in, register_internal_module
from tracedsync._typenames import Any

__all__ = ["ConstructorWrapper"]

register_internal_module(__file__)

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
            if module_in(caller.f_globals.get("__name__", ""), excluded):
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
                if isinstance(instance, traced) and not module_in(
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
