"""Records as the documented event dictionaries (``docs/events.md``)."""

from __future__ import annotations

import functools
from types import CodeType

from tracedsync._config import LOG_LEVELS
from tracedsync._sites import line_at, register_internal_module
from tracedsync._typenames import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracedsync._hooks import Record

__all__ = [
    "ADDED_COMMON_FIELDS",
    "COMMON_FIELD_TYPES",
    "EVENT_FIELD_TYPES",
    "LEVEL_NAMES",
    "NON_NEGATIVE_FIELDS",
    "SCHEMA_VERSION",
    "line_of",
    "record_to_dict",
]

register_internal_module(__file__)

#: Version of the event schema documented in ``docs/events.md``; carried in
#: every event as ``schema``.
SCHEMA_VERSION = 1

LEVEL_NAMES = {number: name for name, number in LOG_LEVELS.items()}

#: The JSON types of the common fields, which every event has, as Python
#: types (``docs/events.md``, "Common fields"); ``None`` stands for ``null``.
#: What a trace reader checks before it trusts a line (all but
#: :data:`ADDED_COMMON_FIELDS` must be there).
COMMON_FIELD_TYPES: dict[str, tuple[type | None, ...]] = {
    "schema": (int,),
    "seq": (int,),
    "time_ns": (int,),
    "event": (str,),
    "level": (str,),
    "pid": (int,),
    "thread_id": (int,),
    "thread_name": (str,),
    "thread_token": (int,),
    "primitive_kind": (str,),
    "primitive_id": (int,),
    "primitive_name": (str,),
    "primitive_created": (str, None),
    "primitive_instance": (str,),
    "file": (str, None),
    "line": (int, None),
    "function": (str, None),
}

#: Common fields added to schema version 1 after its first release: every
#: event written now has them, traces written before do not (readers fall
#: back: ``primitive_instance`` to ``primitive_name``).
ADDED_COMMON_FIELDS = frozenset({"primitive_instance"})

#: The JSON types of the fields particular to some events (``docs/events.md``,
#: "Event-specific fields" and the tables after it), checked when present.
#: ``float`` means any number: an integer is accepted too.
EVENT_FIELD_TYPES: dict[str, tuple[type | None, ...]] = {
    "outcome": (str,),
    "waited_ns": (int,),
    "held_ns": (int, None),
    "timeout": (float, None),
    "blocking": (bool,),
    "error": (str,),
    "depth": (int,),
    "levels": (int,),
    "holder_thread_id": (int, None),
    "held_at": (str, None),
    "requested_at": (str, None),
    "detail": (str,),
    "reason": (str,),
    "n": (int,),
    "waiters": (int,),
    "flag": (bool,),
    "parties": (int,),
    "waiting": (int,),
    "index": (int,),
    "started_thread_id": (int,),
    "daemon": (bool,),
    "exception": (str,),
    "joined_thread_id": (int, None),
    "message": (str,),
    "cycle": (list,),
    "chain": (list,),
    "max_edges": (int,),
    "stranded_thread_id": (int,),
    "waits_at": (str,),
    "blocked": (list,),
    "blocked_thread_id": (int,),
    "waited_s": (float,),
    "timed": (bool,),
    "holder_acquired_at": (str, None),
    "holder_stack": (list,),
    "stacks": (dict,),
}

#: Integer fields that count or measure, or identify (ids, pids, tokens): never
#: negative.  (``timeout`` may be ``-1``.)
NON_NEGATIVE_FIELDS = frozenset(
    {
        "seq",
        "time_ns",
        "pid",
        "thread_id",
        "thread_token",
        "primitive_id",
        "line",
        "waited_ns",
        "held_ns",
        "depth",
        "levels",
        "n",
        "waiters",
        "parties",
        "waiting",
        "max_edges",
    }
)


@functools.lru_cache(maxsize=4096)
def line_of(code: CodeType, offset: int) -> int:
    """The source line of bytecode ``offset`` in ``code`` (cached: sites repeat)."""
    return line_at(code, offset)


def record_to_dict(record: Record) -> dict[str, Any]:
    """Every field of one event, in the documented order."""
    seq, time_ns, thread, event, level, primitive, code, offset, data = record
    kind, primitive_id, name, created, instance = primitive
    thread_id, thread_name, pid, token = thread
    event_dict: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "seq": seq,
        "time_ns": time_ns,
        "event": event,
        "level": LEVEL_NAMES[level],
        "pid": pid,
        "thread_id": thread_id,
        "thread_name": thread_name,
        "thread_token": token,
        "primitive_kind": kind,
        "primitive_id": primitive_id,
        "primitive_name": name,
        "primitive_created": created,
        "primitive_instance": instance,
        "file": None if code is None else code.co_filename,
        "line": None if code is None else line_of(code, offset),
        "function": None if code is None else code.co_name,
    }
    if type(data) is tuple:  # the hot path's flat pairs: see _hooks.PairsData
        for position in range(0, len(data), 2):
            event_dict[data[position]] = data[position + 1]
    elif data:
        event_dict.update(data)
    return event_dict
