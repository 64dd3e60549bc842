"""The acquire/release pairing rules, checked on recorded events."""

from __future__ import annotations

from collections.abc import Iterable

from tracedsync._sites import register_internal_module
from tracedsync._typenames import Any

__all__ = ["pairing_violations"]

register_internal_module(__file__)


def _where(event: dict[str, Any]) -> str:
    return (
        f"seq {event['seq']} {event['event']} of {event['primitive_name']!r} "
        f"by {event['thread_name']!r} at {event['file']}:{event['line']}"
    )


def pairing_violations(events: Iterable[dict[str, Any]]) -> list[str]:
    """See :meth:`tracedsync.Trace.pairing_violations`."""
    violations: list[str] = []
    lock_held: dict[int, bool] = {}
    rlock_state: dict[int, tuple[int | None, int]] = {}  # owner token, depth
    for event in events:
        kind = event["primitive_kind"]
        name = event["event"]
        key = event["primitive_id"]
        outcome = event.get("outcome")
        if kind == "Lock" and name in {"lock.acquire", "lock.release"}:
            held = lock_held.get(key, False)
            if name == "lock.acquire" and outcome == "acquired":
                if held:
                    violations.append(f"{_where(event)}: acquired while already held")
                lock_held[key] = True
            elif name == "lock.release" and outcome == "released":
                if not held:
                    violations.append(f"{_where(event)}: released while not held")
                lock_held[key] = False
        elif kind == "RLock" and name in {"rlock.acquire", "rlock.release"}:
            owner, depth = rlock_state.get(key, (None, 0))
            me = event["thread_token"]
            if name == "rlock.acquire" and outcome == "acquired":
                if owner not in (None, me):
                    violations.append(f"{_where(event)}: acquired while owned by another thread")
                owner, depth = me, depth + event.get("levels", 1)
            elif name == "rlock.release" and outcome == "released":
                if owner != me:
                    violations.append(f"{_where(event)}: released by a thread that does not own it")
                depth = max(depth - event.get("levels", 1), 0)
                owner = owner if depth else None
            else:
                continue
            if event.get("depth") != depth:
                violations.append(
                    f"{_where(event)}: recorded depth {event.get('depth')}, expected {depth}"
                )
            rlock_state[key] = (owner, depth)
    return violations
