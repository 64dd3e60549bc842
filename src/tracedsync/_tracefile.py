"""Reading a JSON Lines trace back, one event at a time.

A trace may be huge (millions of events) and may be damaged (a process killed
mid-write leaves a truncated last line).  :func:`read_events` streams it, so
memory stays bounded whatever its size, and turns any damage into one
:class:`TraceFileError` that names the file and the line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from tracedsync._sites import register_internal_module

__all__ = ["REQUIRED_FIELDS", "TraceFileError", "read_events"]

register_internal_module(__file__)

#: Fields every event of the documented schema has (``docs/events.md``), with
#: the JSON types they must have.
REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "seq": int,
    "time_ns": int,
    "event": str,
    "thread_id": int,
    "thread_name": str,
    "primitive_kind": str,
    "primitive_id": int,
    "primitive_name": str,
}


class TraceFileError(ValueError):
    """A trace file that cannot be read: the message names the file and line."""


def _check(event: Any, where: str) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise TraceFileError(f"{where}: not a tracedsync event (a JSON object expected)")
    for field, expected in REQUIRED_FIELDS.items():
        value = event.get(field)
        if value is None:
            raise TraceFileError(f"{where}: not a tracedsync event (no {field!r} field)")
        if not isinstance(value, expected) or isinstance(value, bool):
            raise TraceFileError(f"{where}: field {field!r} has the wrong type")
    return event


def read_events(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the events of the JSON Lines trace at ``path``, in file order.

    Blank lines are skipped.  Raises :class:`TraceFileError` (naming the line)
    for a line that is not a complete JSON event, and ``OSError`` when the
    file cannot be opened.
    """
    name = os.fspath(path)
    try:
        stream = open(name, encoding="utf-8", errors="strict")  # noqa: SIM115 - closed below
    except OSError as error:
        raise TraceFileError(f"{name}: cannot read the trace: {error.strerror or error}") from None
    with stream:
        number = 0
        try:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                where = f"{name}:{number}"
                try:
                    event = json.loads(line)
                except json.JSONDecodeError as error:
                    damage = "truncated" if not line.endswith("\n") else "not valid JSON"
                    raise TraceFileError(f"{where}: {damage} ({error.msg})") from None
                yield _check(event, where)
        except UnicodeDecodeError:
            raise TraceFileError(f"{name}:{number + 1}: not UTF-8 text") from None
