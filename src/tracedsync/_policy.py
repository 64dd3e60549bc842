"""What happens when a detector finds something: raise, warn, or a callback.

Each kind of finding has a global policy (:func:`tracedsync.configure`) and
may be overridden per primitive (:func:`tracedsync.set_policy`).  The
per-primitive table holds weak references only: it never keeps a primitive
alive.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from tracedsync._catalogue import POLICY_KINDS
from tracedsync._errors import LockOrderError
from tracedsync._sites import register_internal_module
from tracedsync._typenames import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from tracedsync._report import Report

__all__ = ["KINDS", "Policy", "check_policy", "order_error", "policy_for", "set_policy"]

register_internal_module(__file__)

#: A policy: ``"raise"``, ``"warn"``, or a callable receiving the report.
Policy = Union[str, Callable[["Report"], object]]

#: The kinds of finding and their default policies (see the catalogue).
KINDS: dict[str, Policy] = dict(POLICY_KINDS)

_global: dict[str, Policy] = dict(KINDS)
_per_primitive: weakref.WeakKeyDictionary[Any, dict[str, Policy]] = weakref.WeakKeyDictionary()


def check_policy(kind: str, policy: Policy) -> Policy:
    """Validate ``policy`` for ``kind``; return it."""
    if kind not in KINDS:
        raise ValueError(f"unknown finding {kind!r}; use one of {', '.join(KINDS)}")
    if not callable(policy) and policy not in {"raise", "warn"}:
        raise ValueError(f"policy for {kind} must be 'raise', 'warn' or a callable, not {policy!r}")
    if kind == "long_wait" and policy == "raise":
        raise ValueError("the watchdog cannot raise in a blocked thread: use 'warn' or a callable")
    return policy


def reset_global() -> None:
    """Every kind's global policy back to its default."""
    _global.clear()
    _global.update(KINDS)


def set_global(kind: str, policy: Policy) -> None:
    _global[kind] = check_policy(kind, policy)


def set_policy(primitive: Any, **policies: Policy) -> None:
    """Override the policy for findings about ``primitive``.

    ``tracedsync.set_policy(lock, deadlock="warn", inversion="raise")``; pass
    ``None`` to return a kind to the global policy.
    """
    table = _per_primitive.setdefault(primitive, {})
    for kind, policy in policies.items():
        if policy is None:
            check_policy(kind, "warn")
            table.pop(kind, None)
        else:
            table[kind] = check_policy(kind, policy)


def policy_for(kind: str, primitive: Any = None) -> Policy:
    """The policy in force for ``kind`` about ``primitive``."""
    if primitive is not None:
        try:
            table = _per_primitive.get(primitive)
        except TypeError:  # not weakly referenceable
            table = None
        if table and kind in table:
            return table[kind]
    return _global[kind]


def order_error(
    lock: Any,
    report: Report,
    thread_name: str,
    held_at: str | None,
    requested_at: str | None,
) -> Callable[[], LockOrderError]:
    """The error an ``inversion`` or ``hierarchy`` finding about ``lock``
    raises under ``"raise"`` (built only then)."""

    def build() -> LockOrderError:
        return LockOrderError(
            report.message,
            primitive=lock.name,
            thread_name=thread_name,
            held_at=held_at,
            requested_at=requested_at,
        )

    return build
