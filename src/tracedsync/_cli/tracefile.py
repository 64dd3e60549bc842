"""Reading a JSON Lines trace back, one event at a time.

A trace may be huge (millions of events), damaged (a process killed mid-write
leaves a truncated last line) or not a trace at all.  :func:`read_events`
streams it in bounded memory: a line is read up to :data:`MAX_LINE_BYTES`,
never further.  Every line is checked against the documented schema
(``docs/events.md``, :mod:`tracedsync._schema`) before it is yielded, so the
readers built on it (the summary, the timeline) can trust every field's type
and range: a damaged line becomes a :class:`TraceFileError` naming the file
and the line, never a traceback further on.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator

from tracedsync._schema import (
    ADDED_COMMON_FIELDS,
    COMMON_FIELD_TYPES,
    EVENT_FIELD_TYPES,
    LEVEL_NAMES,
    NON_NEGATIVE_FIELDS,
    SCHEMA_VERSION,
)
from tracedsync._sites import register_internal_module
from tracedsync._typenames import Any

__all__ = ["MAX_DEPTH", "MAX_LINE_BYTES", "TraceFileError", "check_event", "read_events"]

register_internal_module(__file__)

#: The longest line read (bytes, newline included).  Far above any event
#: tracedsync writes (a ``wait.long`` with the stacks of a few thousand
#: threads); it bounds what one line can cost in memory.
MAX_LINE_BYTES = 8 * 1024 * 1024
#: The deepest nesting of arrays and objects accepted in an event (the
#: schema's deepest is 3: ``stacks`` -> a thread's list of frames).
MAX_DEPTH = 16
#: Integers must lie strictly between ``-LIMIT`` and ``LIMIT``: every id,
#: count and nanosecond value fits in 64 bits.
INTEGER_LIMIT = 1 << 64
_LEVELS = frozenset(LEVEL_NAMES.values())
_TYPE_NAMES = {int: "int", float: "number", str: "str", bool: "bool", list: "array", dict: "object"}


class TraceFileError(ValueError):
    """A trace file, or one line of it, that cannot be read: the message names
    the file (and the line)."""


def _reject_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


#: One decoder for every line (``json.loads`` with arguments builds one per
#: call); NaN, Infinity and -Infinity are not JSON and are refused.
_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


def _allowed_types(expected: tuple[type | None, ...]) -> frozenset[type]:
    """The Python types of a field's JSON types (``float``: any number)."""
    allowed: set[type] = set()
    for kind in expected:
        allowed.update(
            (type(None),) if kind is None else (int, float) if kind is float else (kind,)
        )
    return frozenset(allowed)


#: Field -> the Python types its value may have, for the fields of a
#: documented type; other fields are only passed through.
_ALLOWED = {
    field: _allowed_types(expected)
    for field, expected in {**EVENT_FIELD_TYPES, **COMMON_FIELD_TYPES}.items()
}
_REQUIRED = frozenset(COMMON_FIELD_TYPES) - ADDED_COMMON_FIELDS


def _wrong_type(field: str, value: Any) -> str:
    wanted = " or ".join(
        "null" if kind is None else _TYPE_NAMES[kind]
        for kind in COMMON_FIELD_TYPES.get(field) or EVENT_FIELD_TYPES[field]
    )
    got = "null" if value is None else _TYPE_NAMES.get(type(value), type(value).__name__)
    return f"field {field!r} has the wrong type ({got}; {wanted} expected)"


def _check_nested(value: list[Any] | dict[str, Any]) -> str | None:
    """What is wrong inside an array or object field: too deep, an integer out
    of range, a number that is not finite; ``None`` if nothing.  Iterative,
    so a deep value cannot exhaust the stack."""
    pending: list[tuple[Any, int]] = [(value, 2)]
    while pending:
        item, depth = pending.pop()
        kind = type(item)
        if kind is dict or kind is list:
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            children = item.values() if kind is dict else item
            pending.extend((child, depth + 1) for child in children)
        elif kind is int:
            if not -INTEGER_LIMIT < item < INTEGER_LIMIT:
                return "an integer out of range (more than 64 bits)"
        elif kind is float and not math.isfinite(item):
            return "a number out of range"
    return None


def check_event(event: Any, where: str) -> dict[str, Any]:
    """``event`` if it is an event of the documented schema, else raise
    :class:`TraceFileError` saying what is wrong, prefixed with ``where``.

    Checked: every common field is there; each field of a documented type has
    it; integers fit in 64 bits, and counts, ids and durations are not
    negative; numbers are finite; nesting is at most :data:`MAX_DEPTH`; the
    schema version and the level are known.  The readers rely on all of it.
    """
    if type(event) is not dict:
        raise TraceFileError(f"{where}: not a tracedsync event (a JSON object expected)")
    if not event.keys() >= _REQUIRED:
        missing = next(field for field in COMMON_FIELD_TYPES if field in _REQUIRED - event.keys())
        raise TraceFileError(f"{where}: not a tracedsync event (no {missing!r} field)")
    for field, value in event.items():
        kind = type(value)
        if kind is float and not math.isfinite(value):
            raise TraceFileError(f"{where}: a number out of range")
        allowed = _ALLOWED.get(field)
        if allowed is not None and kind not in allowed:
            raise TraceFileError(f"{where}: {_wrong_type(field, value)}")
        if kind is int:
            if not -INTEGER_LIMIT < value < INTEGER_LIMIT:
                raise TraceFileError(f"{where}: an integer out of range (more than 64 bits)")
            if value < 0 and field in NON_NEGATIVE_FIELDS:
                raise TraceFileError(f"{where}: field {field!r} is negative")
        elif kind is dict or kind is list:
            problem = _check_nested(value)
            if problem is not None:
                raise TraceFileError(f"{where}: {problem}")
    if event["schema"] != SCHEMA_VERSION:
        raise TraceFileError(
            f"{where}: schema version {event['schema']}, not {SCHEMA_VERSION}: "
            "written by another version of tracedsync"
        )
    if event["level"] not in _LEVELS:
        raise TraceFileError(f"{where}: field 'level' is not a level name")
    return event


def _parse(raw: bytes, where: str) -> dict[str, Any]:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TraceFileError(f"{where}: not UTF-8 text") from None
    try:
        value = _decode(line)
    except json.JSONDecodeError as error:
        damage = "truncated" if not raw.endswith(b"\n") else "not valid JSON"
        raise TraceFileError(f"{where}: {damage} ({error.msg})") from None
    except ValueError as error:  # NaN, Infinity, an integer of too many digits
        raise TraceFileError(f"{where}: not valid JSON ({error})") from None
    except RecursionError:
        raise TraceFileError(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    return check_event(value, where)


def read_events(
    path: str | os.PathLike[str],
    *,
    on_bad_record: Callable[[TraceFileError], None] | None = None,
    allow_empty: bool = False,
) -> Iterator[dict[str, Any]]:
    """Yield the events of the JSON Lines trace at ``path``, in file order.

    Blank lines are skipped.  A line that is not a valid event is a
    :class:`TraceFileError` naming the line: passed to ``on_bad_record``,
    after which reading goes on with the next line, or raised when it is
    ``None``.  A line longer than :data:`MAX_LINE_BYTES` is one too, and ends
    the reading (the file is not a trace: ``/dev/zero`` is one long line).
    A file that cannot be opened, or that holds no line at all (unless
    ``allow_empty``), raises :class:`TraceFileError`.
    """
    name = os.fspath(path)

    def bad(error: TraceFileError) -> None:
        if on_bad_record is None:
            raise error
        on_bad_record(error)

    try:
        stream = open(name, "rb")  # noqa: SIM115 - closed below
    except OSError as error:
        raise TraceFileError(f"{name}: cannot read the trace: {error.strerror or error}") from None
    number = 0
    seen_text = False
    with stream:
        while True:
            try:
                raw = stream.readline(MAX_LINE_BYTES + 1)
            except OSError as error:
                raise TraceFileError(
                    f"{name}: cannot read the trace: {error.strerror or error}"
                ) from None
            if not raw:
                break
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                bad(
                    TraceFileError(
                        f"{name}:{number}: line longer than {MAX_LINE_BYTES:,} bytes, the limit; "
                        "not a trace, the rest is not read"
                    )
                )
                return
            if not raw.strip():
                continue
            seen_text = True
            try:
                event = _parse(raw, f"{name}:{number}")
            except TraceFileError as error:
                bad(error)
                continue
            yield event
    if not seen_text and not allow_empty:
        what = "empty" if number == 0 else "empty (only blank lines)"
        raise TraceFileError(f"{name}: the trace is {what}: no events")
