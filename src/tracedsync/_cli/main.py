"""The ``tracedsync`` command line (``python -m tracedsync``).

``run`` traces an unmodified program, ``report`` and ``timeline`` read back
the trace it saved, ``demo`` runs the teaching programs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tracedsync import __version__, _accel
from tracedsync._catalogue import GATE_KINDS
from tracedsync._typenames import Any

__all__ = ["main"]

_RUN_EPILOG = """\
Everything after the script (or the -m module) is the program's own argument
list. The program's exit status passes through; a program stopped because it
deadlocked exits with status 86.

examples:
  tracedsync run app.py --port 8080
  tracedsync run --races worker.py
  tracedsync run --trace trace.jsonl --timeline timeline.json -m mypackage.tool
"""


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (off) or a positive number of seconds")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # start-up cost: --version only

    try:
        number = version("tracedsync")
    except PackageNotFoundError:  # run from a source tree
        number = __version__
    return f"tracedsync {number} ({_accel.describe()}, Python {sys.version.split()[0]})"


class _VersionAction(argparse._VersionAction):
    """``--version``, its text computed only when asked for: it reads the
    installed metadata, and ``importlib.metadata`` costs start-up time."""

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.version = _version()
        super().__call__(*args, **kwargs)


def _kinds(text: str) -> tuple[str, ...]:
    """``--fail-on``'s value: kinds of finding from the catalogue."""
    kinds = tuple(kind.strip() for kind in text.split(",") if kind.strip())
    unknown = [kind for kind in kinds if kind not in GATE_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown kind {', '.join(unknown) or repr(text)}; use {', '.join(GATE_KINDS)}"
        )
    return kinds


def _add_fail_on(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--fail-on",
        type=_kinds,
        action="append",
        default=[],
        metavar="KIND[,KIND]",
        help=f"exit with status {FAIL_ON_EXIT_STATUS} when {what} has a finding of these kinds "
        "(deadlock, inversion, hierarchy, unguarded, race, long_wait, thread_error); "
        "repeatable",
    )


#: The exit status of ``--fail-on`` when a finding of its kinds was seen (a
#: program's own non-zero status passes through instead).
FAIL_ON_EXIT_STATUS = 87


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracedsync",
        description="Make thread synchronisation visible and checkable.",
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run a Python program with threading traced, then summarise what happened",
        description="Run a Python program with threading patched to tracedsync's primitives: "
        "deadlocks, lock-order inversions and long waits are reported as they happen, and "
        "a summary with a contention table is printed at exit.",
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("-m", dest="module", metavar="MODULE", help="run a library module as a script")
    run.add_argument("--trace", metavar="PATH", help="write every event to PATH (JSON Lines)")
    run.add_argument(
        "--timeline", metavar="PATH", help="write a Perfetto / Chrome trace timeline to PATH"
    )
    run.add_argument(
        "--on-deadlock",
        choices=("exit", "continue", "raise"),
        default="exit",
        help="on a deadlock: report and exit with status 86 (default), report and "
        "continue, or raise DeadlockError in the thread that closes it",
    )
    run.add_argument(
        "--hang-timeout",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="report waits blocked this long; with --on-deadlock exit, a lock acquire "
        "blocked this long, or any wait while every thread is blocked, is a hang "
        "(default 10, or 100 with --races, which slows the program; 0 turns the watchdog off)",
    )
    run.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error", "critical", "off"),
        help="lowest level of events printed as they happen (default warning)",
    )
    run.add_argument(
        "--races",
        action="store_true",
        help="detect data races (happens-before) on attributes and globals of the "
        "program's own files; slower (see docs/races.md)",
    )
    run.add_argument(
        "--races-path",
        action="append",
        default=[],
        metavar="DIR",
        help="also check accesses in files under DIR (repeatable)",
    )
    run.add_argument("--no-summary", action="store_true", help="do not print the summary")
    _add_fail_on(run, "the run")
    run.add_argument(
        "script", nargs="?", metavar="script.py [args ...]", help="the program and its arguments"
    )

    report = commands.add_parser(
        "report",
        help="print the summary of a saved trace",
        description="Print the summary (findings and contention table) of a JSON Lines trace "
        "saved by 'tracedsync run --trace', with the traces of the run's child processes "
        "beside it (TRACE.pid-N.jsonl).",
    )
    report.add_argument("trace", metavar="TRACE", help="the JSON Lines trace")
    report.add_argument(
        "--top", type=int, default=10, metavar="N", help="locks shown in the contention table"
    )
    _add_fail_on(report, "the trace")

    timeline = commands.add_parser(
        "timeline",
        help="convert a saved trace to a Perfetto / Chrome trace timeline",
        description="Convert a JSON Lines trace (with the traces of the run's child "
        "processes beside it, TRACE.pid-N.jsonl) to Chrome Trace Event Format JSON, "
        "which https://ui.perfetto.dev and chrome://tracing open.",
    )
    timeline.add_argument("trace", metavar="TRACE", help="the JSON Lines trace")
    timeline.add_argument("-o", "--output", required=True, metavar="PATH", help="the timeline")

    commands.add_parser(
        "demo",
        help="run the classic threading teaching programs on tracedsync",
        description="Run the classic threading teaching programs on tracedsync: "
        "their output, tracedsync's diagnostics, and the self-deadlock caught instead "
        "of a hang.",
    )
    return parser


#: ``run``'s own options that take a value.
_RUN_VALUED = {
    "--trace",
    "--timeline",
    "--on-deadlock",
    "--hang-timeout",
    "--log-level",
    "--races-path",
    "--fail-on",
}


def _split_program(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``run``'s arguments into its own and the program's.

    The program starts at the first argument that is not one of ``run``'s
    options (the script), or right after ``-m MODULE``: everything from there
    belongs to the program, even what looks like an option of ours.
    """
    position = 1  # argv[0] is "run"
    while position < len(argv):
        argument = argv[position]
        if argument == "-m":
            return argv[: position + 2], argv[position + 2 :]
        if argument == "--":
            return argv[:position], argv[position + 1 :]
        if argument in _RUN_VALUED:
            position += 2
        elif argument.startswith("-") and argument != "-":
            position += 1
        else:
            break
    return argv[:position], argv[position:]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tracedsync`` command; return its exit status."""
    parser = _parser()
    given = list(sys.argv[1:] if argv is None else argv)
    program: list[str] = []
    if given and given[0] == "run":
        given, program = _split_program(given)
    arguments = parser.parse_args(given)
    arguments.program = program
    if arguments.command == "run":
        return _run(parser, arguments)
    if arguments.command in {"report", "timeline"}:
        return _read_back(arguments)
    from tracedsync._cli.demo import run_demo  # start-up cost: each command loads its own modules

    return run_demo(sys.stdout)


def _run(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> int:
    from tracedsync._cli.run import RunOptions, run  # start-up cost: each command loads its own

    program = list(arguments.program)
    if arguments.module is not None:
        target, module = arguments.module, True
    elif program:
        target, module = program.pop(0), False
    else:
        parser.error("run: give a script to run, or -m MODULE")
    for option, path in (("--trace", arguments.trace), ("--timeline", arguments.timeline)):
        problem = _unwritable(path) if path is not None else None
        if problem is not None:
            print(f"tracedsync run: error: {option} {path}: {problem}", file=sys.stderr)
            return 2
    options = RunOptions(
        target=target,
        arguments=program,
        module=module,
        trace=arguments.trace,
        timeline=arguments.timeline,
        on_deadlock=arguments.on_deadlock,
        hang_timeout=(
            arguments.hang_timeout
            if arguments.hang_timeout is not None
            else 100.0
            if arguments.races
            else 10.0
        ),
        summary=not arguments.no_summary,
        log_level=arguments.log_level,
        races=arguments.races,
        race_paths=arguments.races_path,
        fail_on=tuple(kind for kinds in arguments.fail_on for kind in kinds),
        fail_on_status=FAIL_ON_EXIT_STATUS,
    )
    return run(options)


def _unwritable(path: str) -> str | None:
    """Why ``path`` cannot be written, checked before the program starts (a
    timeline is written at exit, when it is too late to say so), or ``None``."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "is a directory"
    if not os.path.isdir(directory):
        return f"no such directory: {directory}"
    if not os.access(directory, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return "permission denied"
    return None


def _read_back(arguments: argparse.Namespace) -> int:
    """``report`` and ``timeline``: every bad line of the trace is one line on
    stderr and makes the exit status 2; the good ones are still summarised
    or converted."""
    # Start-up cost: each command loads only its own modules.
    from tracedsync._cli import children
    from tracedsync._cli.summary import Summary
    from tracedsync._cli.timeline import write_timeline
    from tracedsync._cli.tracefile import TraceFileError

    bad_records = 0

    def report_bad_record(error: TraceFileError) -> None:
        nonlocal bad_records
        bad_records += 1
        print(f"tracedsync {arguments.command}: error: {error}", file=sys.stderr)

    # The trace and its run's children's (trace.pid-N.jsonl), as one.
    events = children.run_events(arguments.trace, on_bad_record=report_bad_record)
    try:
        if arguments.command == "report":
            summary = Summary()
            summary.pid = children.first_pid(arguments.trace)
            for event in events:
                summary.add_event(event)
            print(summary.render(full=True, top=arguments.top))
            failing = summary.failing(kind for kinds in arguments.fail_on for kind in kinds)
            if failing is not None and not bad_records:
                print(f"tracedsync report: failing (--fail-on): {failing}", file=sys.stderr)
                return FAIL_ON_EXIT_STATUS
        else:
            with open(arguments.output, "w", encoding="utf-8") as output:
                written = write_timeline(events, output)
            print(f"tracedsync: {written:,} timeline events written to {arguments.output}")
    except (TraceFileError, OSError) as error:
        print(f"tracedsync {arguments.command}: error: {error}", file=sys.stderr)
        return 2
    return 2 if bad_records else 0
