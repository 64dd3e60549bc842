"""Records as the documented event dictionaries (``docs/events.md``)."""

from __future__ import annotations

import functools
from types import CodeType
from typing import Any

from tracedsync._config import LOG_LEVELS
from tracedsync._hooks import SCHEMA_VERSION, Record
from tracedsync._sites import line_at, register_internal_module

__all__ = ["LEVEL_NAMES", "line_of", "record_to_dict"]

register_internal_module(__file__)

LEVEL_NAMES = {number: name for name, number in LOG_LEVELS.items()}


@functools.lru_cache(maxsize=4096)
def line_of(code: CodeType, offset: int) -> int:
    """The source line of bytecode ``offset`` in ``code`` (cached: sites repeat)."""
    return line_at(code, offset)


def record_to_dict(record: Record) -> dict[str, Any]:
    """Every field of one event, in the documented order."""
    seq, time_ns, thread, event, level, primitive, code, offset, data = record
    kind, primitive_id, name, created = primitive
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
