"""The JSON Lines file sink (``TRACEDSYNC_LOG_FILE`` / ``configure(log_file=...)``).

Records are buffered and written in batches, under a raw lock, by a thread
that fills the buffer while it holds none of the program's traced locks: a
batch written inside a critical section would lengthen it by the whole
write (see :class:`JsonLinesSink`).  The rest is written when the process exits
normally, by ``sys.exit`` or after an unhandled exception in any thread
(an ``atexit`` handler, which runs after ``threading`` has joined the
non-daemon threads); after that the sink writes through, line by line, so
daemon threads still running lose nothing either.  Only a process killed by a
signal or ``os._exit`` loses its last unflushed batch.

One file, many processes: the process that opens the file first truncates it
and names itself in :data:`OWNER_VARIABLE`; every process started from it that
opens the same file (a ``spawn`` or ``forkserver`` child re-importing
tracedsync with ``TRACEDSYNC_LOG_FILE`` inherited, or re-running the same
``configure(log_file=...)``) appends instead, so no child ever destroys the
parent's events.  The file is opened ``O_APPEND`` and each batch is one
``write()`` of whole lines, so lines of different processes never mix.  A
``fork`` child keeps the inherited file and drops the parent's unwritten
batch (the parent writes it).  A child, forked or not, writes its own batch
when ``threading`` shuts down, which ``multiprocessing`` does before it ends
the child with ``os._exit``.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
import threading
from _thread import RLock
from collections.abc import Callable
from types import CodeType

from tracedsync import _accel, _hooks
from tracedsync._hooks import Identity, Record, ThreadInfo
from tracedsync._schema import LEVEL_NAMES, SCHEMA_VERSION, line_of, record_to_dict
from tracedsync._sites import register_internal_module
from tracedsync._typenames import Any

__all__ = ["OWNER_VARIABLE", "JsonLinesSink", "open_log_file", "record_to_json"]

register_internal_module(__file__)

#: Records per batch: large enough to amortise the write, small enough that
#: a crash loses little.
BATCH = 2048

#: Batches a full buffer may grow to while every thread that adds to it holds
#: a lock; past that it is written anyway (and counted: see
#: ``JsonLinesSink.written_under_lock``), so memory stays bounded.
DEFERRED_BATCHES = 8

#: The events that start (``True``) or end (``False``) a hold.
_HOLDS = {
    "lock.acquire": True,
    "rlock.acquire": True,
    "lock.release": False,
    "rlock.release": False,
}

#: ``<pid>:<real path>`` of the process that created the current log file,
#: inherited by the processes it starts: see the module docstring.
OWNER_VARIABLE = "TRACEDSYNC_LOG_FILE_OWNER"

try:  # ``json.encoder.encode_basestring_ascii`` itself, without importing ``json``
    from _json import encode_basestring_ascii as _quote
except ImportError:  # an interpreter without the C module  # pragma: no cover
    from json.encoder import encode_basestring_ascii as _quote


def _first_encode(value: Any) -> str:
    """``value`` as JSON, through the one encoder behind every line (``json.dumps``
    with arguments builds a new encoder per call), made at the first use and
    then called directly: ``json`` is only imported when a value needs it."""
    global _encode
    import json  # start-up cost: only once a value is not a string, number, bool or None

    _encode = json.JSONEncoder(separators=(",", ":"), default=repr).encode
    return _encode(value)


_encode: Callable[[Any], str] = _first_encode

#: The fields every event has (``_schema.record_to_dict``), which an
#: operation's own fields must not shadow for the fast encoding to apply.
_COMMON_FIELDS = frozenset(
    record_to_dict((0, 0, (0, "", 0, 0), "", 10, ("", 0, "", None, ""), None, 0, None))
)


def _reference_json(record: Record) -> str:
    """The definition of a line: the event dictionary as compact JSON."""
    import json  # start-up cost: see _encode

    return json.dumps(record_to_dict(record), separators=(",", ":"), default=repr)


#: How ``json.dumps`` spells the common atomic values, by type: C functions
#: only, so converting a value costs no Python frame.  (``True == 1``, but the
#: literal table is only consulted for ``bool`` and ``None``.)
_LITERALS = {None: "null", True: "true", False: "false"}
_ATOM_JSON: dict[type, Any] = {
    str: _quote,
    int: int.__repr__,
    bool: _LITERALS.__getitem__,
    type(None): _LITERALS.__getitem__,
}


@functools.lru_cache(maxsize=256)
def _fields_template(keys: tuple[str, ...]) -> str:
    """``',"outcome":{},"held_ns":{}'``: the operation's fields of one shape,
    ready for :meth:`str.format` (events of one kind share their keys)."""
    escaped = (_quote(key).replace("{", "{{").replace("}", "}}") for key in keys)
    return "".join(f",{key}:{{}}" for key in escaped)


@functools.lru_cache(maxsize=1024)
def _thread_json(thread: ThreadInfo) -> str:
    ident, name, pid, token = thread
    return f'"pid":{pid},"thread_id":{ident},"thread_name":{_quote(name)},"thread_token":{token}'


@functools.lru_cache(maxsize=4096)
def _primitive_json(primitive: Identity) -> str:
    kind, primitive_id, name, created, instance = primitive
    return (
        f'"primitive_kind":{_quote(kind)},"primitive_id":{primitive_id},'
        f'"primitive_name":{_quote(name)},'
        f'"primitive_created":{"null" if created is None else _quote(created)},'
        f'"primitive_instance":{_quote(instance)}'
    )


#: Site fragments by ``id(code)``: (the code, its fragments by offset).  Not
#: keyed by the code object itself, whose hash is recomputed from its
#: contents on every lookup; the stored code guards against a reused id.
_site_fragments: dict[int, tuple[CodeType, dict[int, str]]] = {}
MAX_CACHED_CODES = 4096


def _site_json(code: CodeType | None, offset: int) -> str:
    if code is None:
        return '"file":null,"line":null,"function":null'
    entry = _site_fragments.get(id(code))
    if entry is None or entry[0] is not code:
        if len(_site_fragments) >= MAX_CACHED_CODES:
            _site_fragments.clear()
        entry = _site_fragments[id(code)] = (code, {})
    fragment = entry[1].get(offset)
    if fragment is None:
        fragment = entry[1][offset] = (
            f'"file":{_quote(code.co_filename)},"line":{line_of(code, offset)},'
            f'"function":{_quote(code.co_name)}'
        )
    return fragment


def record_to_json(record: Record) -> str:
    """One record as one line of compact JSON (no trailing newline).

    Exactly :func:`_reference_json`'s text, built from cached fragments (the
    thread, the primitive and the site repeat from event to event) and the
    operation's fields: several times faster, which is what the file sink's
    event rate rests on.
    """
    seq, time_ns, thread, event, level, primitive, code, offset, data = record
    fields = ""
    if data:
        if type(data) is tuple:
            keys, values = data[::2], data[1::2]
        else:
            keys, values = tuple(data), tuple(data.values())  # type: ignore[union-attr]
        if not _COMMON_FIELDS.isdisjoint(keys):
            return _reference_json(record)  # a field overriding a common one
        fields = _fields_template(keys).format(
            *[_ATOM_JSON.get(type(value), _encode)(value) for value in values]
        )
    return (
        f'{{"schema":{SCHEMA_VERSION},"seq":{seq},"time_ns":{time_ns},"event":{_quote(event)},'
        f'"level":"{LEVEL_NAMES[level]}",{_thread_json(thread)},{_primitive_json(primitive)},'
        f"{_site_json(code, offset)}{fields}}}"
    )


#: What the C encoder (``_speedups.json_lines``) builds lines from: the
#: reference for whole records, the fragment makers, the quoting, the level
#: names, the common fields and the start of every line.
_PIECES = (
    record_to_json,
    _thread_json,
    _primitive_json,
    _site_json,
    _quote,
    LEVEL_NAMES,
    _COMMON_FIELDS,
    f'{{"schema":{SCHEMA_VERSION},"seq":',
)


def json_lines(records: list[Record]) -> bytes:
    """``records`` as JSON Lines (a newline after each): :func:`record_to_json`
    of each, built in C by the accelerator where it is active."""
    encoder = _accel.json_lines()
    if encoder is not None:
        return encoder(records, _PIECES)
    return "".join(record_to_json(record) + "\n" for record in records).encode()


def _released_depth(data: Any) -> Any:
    """The ``depth`` of a release's fields: an RLock's release says it third,
    a Lock's has none (neither needs a search)."""
    if type(data) is tuple:
        if len(data) > 3 and data[2] == "depth":
            return data[3]
        if "depth" not in data:
            return None
    return _field(data, "depth")


def _field(data: Any, key: str) -> Any:
    """``data[key]`` of a record's operation fields (pairs or a dictionary)."""
    if type(data) is tuple:
        for index in range(0, len(data), 2):
            if data[index] == key:
                return data[index + 1]
        return None
    return None if data is None else data.get(key)


class JsonLinesSink:
    """Append every record to a JSON Lines file.

    ``truncate``: empty the file first (the process that creates the trace);
    otherwise the records are added after what other processes wrote.

    A full buffer is written by the first thread to add a record while it
    holds no ``Lock`` or ``RLock`` of the program's, so the write never
    lengthens a critical section.  The sink learns who holds what from the
    records themselves (an acquire is recorded while its lock is held, a
    release once it is not), which works whatever the detectors' settings;
    it reads them when the buffer is full, not one by one as they come.
    If every thread keeps a lock held until :data:`DEFERRED_BATCHES` batches
    have piled up, the buffer is written anyway, and
    :attr:`written_under_lock` counts such writes.
    """

    def __init__(
        self, path: str | os.PathLike[str], batch: int = BATCH, *, truncate: bool = True
    ) -> None:
        self.path = os.fspath(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self._fd: int | None = os.open(self.path, flags, 0o666)
        self._batch = batch
        self._buffer: list[Record] = []
        # Reentrant: a __del__ run inside a flush may emit events itself.
        self._guard = RLock()
        self._write_through = False
        self.written = 0
        #: Batches written while the writing thread held a lock (see above).
        self.written_under_lock = 0
        #: Who holds what, as far as the records tell: primitive id -> the
        #: holding thread's token, and token -> how many it holds; followed
        #: up to ``_buffer[_followed]``.
        self._holder: dict[int, int] = {}
        self._holding: dict[int, int] = {}
        self._followed = 0

    def __call__(self, record: Record) -> None:
        with self._guard:
            buffer = self._buffer
            buffer.append(record)
            if len(buffer) >= self._batch or self._write_through:
                self._full(record[2][3])

    def _full(self, token: int) -> None:
        """The buffer is full, or writes through: write it, unless the thread
        (``token``) adding to it holds a lock and there is room still."""
        if not self._write_through:
            self._follow_holds()
            if token in self._holding:
                if len(self._buffer) < self._batch * DEFERRED_BATCHES:
                    return
                self.written_under_lock += 1
        self._flush_locked()

    def _follow_holds(self) -> None:
        """Read the holds of the records not followed yet (see the class docstring)."""
        holder, holding = self._holder, self._holding
        for record in self._buffer[self._followed :]:
            acquire = _HOLDS.get(record[3])
            if acquire is None:
                continue
            data, primitive = record[8], record[5][1]
            # The locks' own records start ("outcome", ...): no call for them.
            outcome = data[1] if type(data) is tuple and data and data[0] == "outcome" else None
            if outcome is None:
                outcome = _field(data, "outcome")
            if acquire:
                if outcome == "acquired" and primitive not in holder:
                    token = record[2][3]
                    holder[primitive] = token
                    holding[token] = holding.get(token, 0) + 1
            elif outcome == "released" and not _released_depth(data):
                token = holder.pop(primitive, 0)  # any thread may release a Lock
                if token:  # tokens count from 1
                    count = holding.pop(token) - 1
                    if count:
                        holding[token] = count
        self._followed = len(self._buffer)

    def _flush_locked(self) -> None:
        self._follow_holds()
        records, self._buffer, self._followed = self._buffer, [], 0
        if records and self._fd is not None:
            # One write() of whole lines on an O_APPEND file: another
            # process's batch lands before or after it, never inside it.
            data = json_lines(records)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            self.written += len(records)

    def flush(self) -> None:
        """Write every buffered record now."""
        with self._guard:
            self._flush_locked()

    def finish(self) -> None:
        """Write what is buffered and write every later record at once."""
        with self._guard:
            self._flush_locked()
            self._write_through = True

    def close(self) -> None:
        """Write what is buffered, stop receiving records and close the file."""
        _hooks.remove_sink(self)
        with self._guard:
            self._flush_locked()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _forget_after_fork(self) -> None:
        """In a ``fork`` child: drop the parent's unwritten batch (the parent
        writes it; writing it here too would duplicate it) and write the
        child's own batch when ``threading`` shuts down, which
        ``multiprocessing`` does before it ends the child with ``os._exit``
        (the inherited ``atexit`` handler does not run then)."""
        self._buffer = []
        self._followed = 0
        self._guard = RLock()
        self._finish_at_thread_shutdown()

    def _finish_at_thread_shutdown(self) -> None:
        """Finish when ``threading`` shuts down, before the non-daemon threads
        are joined: their last events are then written at once.  For a
        process that may end with ``os._exit`` (a ``multiprocessing`` child),
        where the ``atexit`` handler never runs."""
        try:
            threading._register_atexit(self.finish)  # type: ignore[attr-defined]
        except RuntimeError:  # already shutting down
            self._write_through = True


_current: JsonLinesSink | None = None


def _owner_mark(path: str) -> str:
    return f"{os.getpid()}:{os.path.realpath(path)}"


def _opened_by_an_ancestor(path: str) -> bool:
    """Whether a process that started this one created the file ``path``."""
    owner_pid, _, owner_path = os.environ.get(OWNER_VARIABLE, "").partition(":")
    return owner_pid != str(os.getpid()) and owner_path == os.path.realpath(path)


def open_log_file(path: str | os.PathLike[str]) -> JsonLinesSink:
    """Send every event to the JSON Lines file ``path`` (closing any previous one).

    The file is truncated unless a process that started this one created it
    (see the module docstring): then the events are appended.
    """
    global _current
    if _current is not None:
        _current.close()
    name = os.fspath(path)
    if _opened_by_an_ancestor(name):
        sink = JsonLinesSink(name, truncate=False)
        sink._finish_at_thread_shutdown()  # a spawn or forkserver child
    else:
        sink = JsonLinesSink(name)
        os.environ[OWNER_VARIABLE] = _owner_mark(name)
    _current = sink
    _hooks.add_sink(sink)
    atexit.register(sink.finish)
    return sink


def _after_fork_in_child() -> None:
    if _current is not None:
        _current._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

if os.environ.get("TRACEDSYNC_LOG_FILE"):
    # A bad path must not make ``import tracedsync`` (and so the program)
    # fail: one line on stderr, and the program runs unrecorded.
    try:
        open_log_file(os.environ["TRACEDSYNC_LOG_FILE"])
    except OSError as _error:
        print(
            f"tracedsync: TRACEDSYNC_LOG_FILE: cannot write {_error.filename or ''!s}: "
            f"{_error.strerror or _error}; not recording",
            file=sys.stderr,
        )
