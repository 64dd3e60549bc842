"""Events rendered through structlog, without configuring structlog.

A library must not call ``structlog.configure()``: the application owns that.
If the application has configured structlog, tracedsync's events go through
``structlog.get_logger("tracedsync")`` and so through the application's own
processors.  Otherwise tracedsync uses a private bound logger, built with
:func:`structlog.wrap_logger` and explicit processors, that writes to the
*current* ``sys.stderr``, as console lines or JSON lines.

Only events at or above the configured level (``error`` by default) come
here; see :func:`tracedsync.configure`.
"""

from __future__ import annotations

import sys

import structlog

from tracedsync._config import settings
from tracedsync._schema import record_to_dict
from tracedsync._sites import register_internal_module, short_path
from tracedsync._typenames import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracedsync._hooks import Record

__all__ = ["log_record"]

register_internal_module(__file__)

#: Fields a console line leaves out: the line already shows time and level,
#: and the rest matter to programs reading JSON, not to a person.
_CONSOLE_OMITS = (
    "schema",
    "seq",
    "time_ns",
    "thread_id",
    "pid",
    "thread_token",
    "primitive_id",
    "primitive_created",
    "file",
    "line",
    "function",
)

#: Fields of a report (an event with a ``message``) that its text already
#: shows, left out of its console line.
_SHOWN_IN_MESSAGE = (
    "accesses",
    "cycle",
    "chain",
    "blocked",
    "stacks",
    "user_stack",
    "holder_stack",
    "holder_acquired_at",
)


class _StderrLogger:
    """A structlog logger writing each rendered line to ``sys.stderr`` as it is now.

    Looking ``sys.stderr`` up per line (not once at import) lets test runners
    and applications that redirect stderr capture our events.
    """

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = error = critical = msg


def _private_logger(renderer: Any) -> Any:
    return structlog.wrap_logger(
        _StderrLogger(),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=False,
        logger_name="tracedsync",
    )


class _ReportRenderer:
    """structlog's console renderer, with a report's text on the lines after
    its data: ``time [level] event key=value ...``, then the report as
    written, so no data is glued onto the report's last sentence."""

    def __init__(self) -> None:
        self._console = structlog.dev.ConsoleRenderer(colors=False)

    def __call__(self, logger: Any, name: str, event_dict: Any) -> str:
        report = event_dict.pop(_REPORT, None)
        line: str = self._console(logger, name, event_dict)
        return line if report is None else f"{line}\n{report}"


#: The console logger's key for a report's text (see _ReportRenderer).
_REPORT = "_tracedsync_report"

_console_logger = _private_logger(_ReportRenderer())
_json_logger = _private_logger(structlog.processors.JSONRenderer())


#: Event fields whose names structlog's own processors and renderers treat
#: specially (``ConsoleRenderer`` formats ``stack`` as a rendered stack
#: string, and refuses the list a report's ``stack`` field is): renamed in
#: log output only; events, recordings and trace files keep the schema's names.
_RESERVED_BY_STRUCTLOG = {"stack": "user_stack", "stack_info": "user_stack_info"}


def log_record(record: Record) -> None:
    """Render one event through structlog at its level."""
    fields = record_to_dict(record)
    event = fields.pop("event")
    level = fields.pop("level")
    for reserved, renamed in _RESERVED_BY_STRUCTLOG.items():
        if reserved in fields:
            fields[renamed] = fields.pop(reserved)
    if structlog.is_configured():
        logger = structlog.get_logger("tracedsync")
    elif settings.log_format == "json":
        logger = _json_logger
    else:
        logger = _console_logger
        if fields["file"] is not None:
            fields["site"] = f"{short_path(fields['file'])}:{fields['line']} ({fields['function']})"
        for key in _CONSOLE_OMITS:
            fields.pop(key, None)
        message = fields.pop("message", None)
        if message is not None:
            # A report: the person reads its text; its data is in JSON output.
            for key in _SHOWN_IN_MESSAGE:
                fields.pop(key, None)
        fields = {key: value for key, value in fields.items() if value is not None}
        if message is not None:
            fields[_REPORT] = message
    getattr(logger, level)(event, **fields)
