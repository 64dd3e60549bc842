"""The ``typing`` names tracedsync's modules use, without importing ``typing``.

``import typing`` alone costs about a fifth of ``import tracedsync``'s CPU
time, and the package needs almost nothing of it at run time: with
``from __future__ import annotations`` every annotation is a string, so
``Any``, ``IO`` and ``TYPE_CHECKING`` only matter to the type checker.  The
type checker reads the ``if TYPE_CHECKING:`` branch (it treats any name
``TYPE_CHECKING`` as true) and sees the real ``typing`` names; at run time
the ``else`` branch gives light stand-ins:

* ``Any``, ``IO``, ``TextIO`` and ``Protocol`` are ``object`` (a protocol is a plain
  base class at run time: nothing here checks ``isinstance`` against one);
* ``Union[...]`` and ``TypeVar(...)`` evaluate to ``object``;
* ``NamedTuple`` makes the same class ``typing.NamedTuple`` makes, a
  ``collections.namedtuple`` with the class body's defaults, methods and
  docstring (it needs ``from __future__ import annotations``, as every
  module here has).

``typing.get_type_hints`` on tracedsync's functions therefore resolves
``Any`` to ``object``.  ``tests/test_import_cost.py`` checks that
``import tracedsync`` loads no ``typing``.
"""

from __future__ import annotations

TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import IO, Any, NamedTuple, Protocol, TextIO, TypeVar, Union
else:
    import collections

    Any = IO = TextIO = Protocol = object

    class _Subscript:
        def __getitem__(self, _item: object) -> type:
            return object

    Union = _Subscript()

    def TypeVar(_name: str, *_constraints: object, **_options: object) -> type:  # noqa: N802
        return object

    _NAMESPACE_ONLY = frozenset({"__module__", "__qualname__", "__annotations__"})

    class _NamedTupleMeta(type):
        def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict[str, object]):
            if not bases:  # NamedTuple itself
                return super().__new__(mcls, name, bases, namespace)
            annotations = namespace.get("__annotations__")
            if not isinstance(annotations, dict):
                raise TypeError(
                    f"{name}: NamedTuple here needs `from __future__ import annotations`"
                )
            fields = tuple(annotations)
            defaults = [namespace[field] for field in fields if field in namespace]
            made = collections.namedtuple(  # type: ignore[misc]
                name, fields, defaults=defaults, module=str(namespace.get("__module__"))
            )
            for key, value in namespace.items():
                if key not in _NAMESPACE_ONLY and key not in fields:
                    setattr(made, key, value)
            made.__qualname__ = str(namespace.get("__qualname__", name))
            made.__annotations__ = dict(annotations)
            return made

    class NamedTuple(metaclass=_NamedTupleMeta):
        pass


__all__ = ["IO", "TYPE_CHECKING", "Any", "NamedTuple", "Protocol", "TextIO", "TypeVar", "Union"]
