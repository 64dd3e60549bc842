"""``guarded_by``: attributes that may only be touched while a lock is held.

A runtime counterpart of clang's ``GUARDED_BY``: the descriptor checks, on
every read, write and delete of the attribute, that the calling thread holds
the lock stored in another attribute of the same object.  An access without
it is a data race, caught where it happens rather than by its consequences;
it is reported through the ``unguarded`` policy (``"raise"`` by default:
:class:`~tracedsync.UnguardedAccessError`).

Construction is exempt: accesses made while the object's ``__init__`` (or a
dataclass's ``__post_init__``) runs, directly or through methods it calls,
are not checked, since no other thread can see the object yet.  This is
decided only after the lock check failed, so it costs nothing on the
ordinary path.

The value lives in the instance ``__dict__`` under the attribute's own name
(a data descriptor takes precedence over it), so the class needs a
``__dict__``.  With the off switch (``TRACEDSYNC=off``) in force when the
class is created, the descriptor removes itself and the attribute is a plain
one: no check, no cost.
"""

from __future__ import annotations

import sys
import threading
from _thread import get_ident
from types import FrameType

from tracedsync import _control
from tracedsync._config import settings
from tracedsync._errors import REPORTED_ERRORS, UnguardedAccessError
from tracedsync._findings import report_finding
from tracedsync._lock import _LockBase
from tracedsync._report import Report, current_stack, describe_primitive, thread_label
from tracedsync._sites import describe_call, describe_offset, register_internal_module
from tracedsync._typenames import Any

__all__ = ["GuardedBy", "guarded_by", "holds"]

register_internal_module(__file__)

_MISSING: Any = object()

#: Functions during which an object is under construction.
_CONSTRUCTORS = frozenset({"__init__", "__post_init__"})


def holds(lock: Any) -> bool:
    """Whether the calling thread holds ``lock``.

    Exact for tracedsync locks and for ``threading.RLock``; a condition is
    held when its lock is.  A plain ``threading.Lock`` does not know its
    owner: it counts as held when it is locked by any thread.
    """
    if isinstance(lock, _LockBase):
        return lock._owner == get_ident()
    if isinstance(lock, threading.Condition):
        return holds(lock._lock)  # type: ignore[attr-defined]
    is_owned = getattr(lock, "_is_owned", None)
    if is_owned is not None:
        return bool(is_owned())
    locked = getattr(lock, "locked", None)
    if locked is not None:
        return bool(locked())
    raise TypeError(f"{lock!r} is not a lock: guarded_by() needs a lock or a condition")


def _constructing(instance: object, frame: FrameType | None) -> bool:
    """Whether ``instance``'s ``__init__``/``__post_init__`` is on the stack."""
    while frame is not None:
        code = frame.f_code
        if (
            code.co_name in _CONSTRUCTORS
            and code.co_argcount
            and frame.f_locals.get(code.co_varnames[0]) is instance
        ):
            return True
        frame = frame.f_back
    return False


class GuardedBy:
    """The descriptor :func:`guarded_by` returns (see there)."""

    __slots__ = ("lock_attribute", "name", "owner_name")

    def __init__(self, lock_attribute: str) -> None:
        if not isinstance(lock_attribute, str) or not lock_attribute.isidentifier():
            raise TypeError(
                f"guarded_by() takes the name of the lock attribute, not {lock_attribute!r}"
            )
        self.lock_attribute = lock_attribute
        self.name = "?"
        self.owner_name = "?"

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.owner_name = owner.__qualname__
        if not settings.enabled:
            delattr(owner, name)  # the off switch: a plain attribute, no check

    def __repr__(self) -> str:
        return f"<guarded_by({self.lock_attribute!r}) {self.owner_name}.{self.name}>"

    def _storage(self, instance: object) -> dict[str, Any]:
        try:
            storage: dict[str, Any] = instance.__dict__
        except AttributeError:
            raise TypeError(
                f"guarded_by() needs instances with a __dict__; "
                f"{type(instance).__qualname__} has none (__slots__)"
            ) from None
        return storage

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        explorer = _control.explorer
        if explorer is not None:  # exploring: an access is a scheduling point
            explorer.point_at_caller("guarded read", self.name, 2)
        lock = getattr(instance, self.lock_attribute, _MISSING)
        if lock is _MISSING or not holds(lock):
            try:
                self._unguarded(instance, lock, "read")
            except REPORTED_ERRORS as error:
                __tracebackhide__ = True
                raise error.with_traceback(None)  # noqa: B904 - the same error, user frames only
        try:
            return self._storage(instance)[self.name]
        except KeyError:
            raise AttributeError(
                f"{type(instance).__qualname__!r} object has no attribute {self.name!r}"
            ) from None

    def __set__(self, instance: object, value: Any) -> None:
        explorer = _control.explorer
        if explorer is not None:
            explorer.point_at_caller("guarded write", self.name, 2)
        lock = getattr(instance, self.lock_attribute, _MISSING)
        if lock is _MISSING or not holds(lock):
            try:
                self._unguarded(instance, lock, "write")
            except REPORTED_ERRORS as error:
                __tracebackhide__ = True
                raise error.with_traceback(None)  # noqa: B904 - the same error, user frames only
        self._storage(instance)[self.name] = value

    def __delete__(self, instance: object) -> None:
        explorer = _control.explorer
        if explorer is not None:
            explorer.point_at_caller("guarded delete", self.name, 2)
        lock = getattr(instance, self.lock_attribute, _MISSING)
        if lock is _MISSING or not holds(lock):
            try:
                self._unguarded(instance, lock, "delete")
            except REPORTED_ERRORS as error:
                __tracebackhide__ = True
                raise error.with_traceback(None)  # noqa: B904 - the same error, user frames only
        try:
            del self._storage(instance)[self.name]
        except KeyError:
            raise AttributeError(self.name) from None

    def _unguarded(self, instance: object, lock: Any, access: str) -> None:
        """An access without the lock: exempt during construction, else reported."""
        frame = sys._getframe(2)
        if _constructing(instance, frame):
            return
        attribute = f"{self.owner_name}.{self.name}"
        if lock is _MISSING:
            raise AttributeError(
                f"{attribute} is guarded_by({self.lock_attribute!r}), but "
                f"{type(instance).__qualname__!r} object has no attribute "
                f"{self.lock_attribute!r}"
            )
        self._report(instance, lock, access, attribute, frame)

    def _report(
        self, instance: object, lock: Any, access: str, attribute: str, frame: FrameType
    ) -> None:
        me = get_ident()
        thread = thread_label(me).strip("'")
        at = describe_call(frame)
        verb = {"read": "read", "write": "wrote", "delete": "deleted"}[access]
        lock_name = getattr(lock, "name", None) or f"{self.owner_name}.{self.lock_attribute}"
        described = describe_primitive(lock) if hasattr(lock, "name") else repr(lock_name)
        traced = lock._lock if isinstance(lock, threading.Condition) else lock  # type: ignore[attr-defined]
        owner = traced._owner if isinstance(traced, _LockBase) else None
        if owner is not None:
            acquired_at = describe_offset(traced._acquired_code, traced._acquired_offset)
            state = f"it is held by thread {thread_label(owner)} (acquired at {acquired_at})"
        elif isinstance(traced, _LockBase) and not traced._lock.locked():
            state = "the lock is free"
        else:
            state = "this thread does not hold it"
        stack = current_stack(me)
        lines = [
            f"Unguarded access: thread {thread!r} {verb} {attribute} at {at} without holding "
            f"{described} ({self.name} is guarded_by({self.lock_attribute!r})); {state}.",
        ]
        if stack:
            lines.append(f"  stack: {' <- '.join(stack)}")
        lines.append(f"Hold self.{self.lock_attribute} around every read and write of {attribute}.")
        details = {
            "attribute": attribute,
            "access": access,
            "lock": lock_name,
            "thread": thread,
            "at": at,
            "stack": stack,
        }
        report = Report(
            "unguarded", "\n".join(lines), ("unguarded", attribute, access, at), details
        )
        report_finding(
            "guard.violation",
            report,
            lock,
            frame,
            error=lambda: UnguardedAccessError(
                report.message,
                attribute=attribute,
                access=access,
                lock=lock_name,
                thread_name=thread,
            ),
            # plain locks have no identity to put in an event
            emit=isinstance(lock, _LockBase),
        )


def guarded_by(lock_attribute: str) -> Any:
    """An attribute that may only be read or written while holding the lock
    in ``self.<lock_attribute>``: a runtime ``GUARDED_BY``.

    ::

        class Account:
            balance: int = tracedsync.guarded_by("_lock")

            def __init__(self) -> None:
                self._lock = tracedsync.Lock()
                self.balance = 0          # construction is exempt

            def deposit(self, amount: int) -> None:
                with self._lock:
                    self.balance += amount

    An access by a thread that does not hold the lock is a data race; it is
    reported through the ``unguarded`` policy (``configure(on_unguarded=...)``,
    or per lock with :func:`set_policy`): ``"raise"`` (the default) raises
    :class:`UnguardedAccessError` before the access happens, ``"warn"``
    records a ``guard.violation`` event and lets it happen, a callable
    receives the :class:`Report`.  The lock may be a tracedsync ``Lock`` or
    ``RLock`` (exact), a condition (its lock must be held), a
    ``threading.RLock`` (exact) or a ``threading.Lock`` (which cannot tell
    who holds it: it only has to be locked).  Accesses while the object's
    ``__init__`` runs are not checked.  Returns ``Any`` so that an
    annotation (``balance: int``) gives the attribute its type.
    """
    return GuardedBy(lock_attribute)
