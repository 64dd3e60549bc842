"""The JSON Lines file sink (``TRACEDSYNC_LOG_FILE`` / ``configure(log_file=...)``).

Records are buffered and written in batches by whichever thread fills the
buffer, under a raw lock.  The rest is written when the process exits
normally, by ``sys.exit`` or after an unhandled exception in any thread
(an ``atexit`` handler, which runs after ``threading`` has joined the
non-daemon threads); after that the sink writes through, line by line, so
daemon threads still running lose nothing either.  Only a process killed by a
signal or ``os._exit`` loses its last unflushed batch.
"""

from __future__ import annotations

import atexit
import json
import os
from _thread import RLock
from typing import IO

from tracedsync import _hooks
from tracedsync._hooks import Record
from tracedsync._schema import record_to_dict
from tracedsync._sites import register_internal_module

__all__ = ["JsonLinesSink", "open_log_file", "record_to_json"]

register_internal_module(__file__)

#: Records per batch: large enough to amortise the write, small enough that
#: a crash loses little.
BATCH = 2048


def record_to_json(record: Record) -> str:
    """One record as one line of compact JSON (no trailing newline)."""
    return json.dumps(record_to_dict(record), separators=(",", ":"), default=repr)


class JsonLinesSink:
    """Append every record to a JSON Lines file."""

    def __init__(self, path: str | os.PathLike[str], batch: int = BATCH) -> None:
        self.path = os.fspath(path)
        # Truncate, then append: appends from a forked child never overwrite.
        open(self.path, "w").close()
        self._file: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._batch = batch
        self._buffer: list[Record] = []
        # Reentrant: a __del__ run inside a flush may emit events itself.
        self._guard = RLock()
        self._write_through = False
        self.written = 0

    def __call__(self, record: Record) -> None:
        with self._guard:
            self._buffer.append(record)
            if self._write_through or len(self._buffer) >= self._batch:
                self._flush_locked()

    def _flush_locked(self) -> None:
        records, self._buffer = self._buffer, []
        if records and not self._file.closed:
            self._file.write("".join(record_to_json(record) + "\n" for record in records))
            self._file.flush()
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
            self._file.close()

    def _forget_after_fork(self) -> None:
        # The parent writes its own buffered records; the child starts empty.
        self._buffer = []
        self._guard = RLock()


_current: JsonLinesSink | None = None


def open_log_file(path: str | os.PathLike[str]) -> JsonLinesSink:
    """Send every event to the JSON Lines file ``path`` (closing any previous one)."""
    global _current
    if _current is not None:
        _current.close()
    sink = JsonLinesSink(path)
    _current = sink
    _hooks.add_sink(sink)
    atexit.register(sink.finish)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=sink._forget_after_fork)
    return sink


if os.environ.get("TRACEDSYNC_LOG_FILE"):
    open_log_file(os.environ["TRACEDSYNC_LOG_FILE"])
