"""Instruction counts per lock operation, with ``valgrind --tool=callgrind``.

Wall time on a shared machine moves from run to run; the number of
instructions an operation executes does not.  Each figure here is measured in
a fresh interpreter under callgrind, twice (``SHORT`` and ``LONG`` loop
iterations), and is the difference divided by the difference in iterations:
start-up, imports and the loop's set-up cancel out, the loop's own ``for``
does not (it is the same small cost in every row, ``threading`` included).

    python benchmarks/instructions.py [--smoke]        # prints a Markdown table
    python benchmarks/instructions.py --only rlock_pair,rlock_with --subjects c_default \
        --counts 500,4500                              # some rows, fewer iterations
    python benchmarks/run.py --instructions            # the same, inside the report

The ``threading`` row measures ``threading.Lock`` for the ``Lock`` operations
and ``threading.RLock`` for the ``RLock`` ones; every ratio is to that row.

The subject runs in this interpreter's environment, with the checkout's
``src`` first on the path (as ``run.py`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

#: Loop iterations of the two runs whose difference is measured.
SHORT, LONG = 2_000, 22_000

#: (key, title): the operations measured, each a loop of ``n`` iterations.
OPERATIONS = [
    ("lock_pair", "Lock acquire/release"),
    ("lock_with", "Lock `with` block"),
    ("rlock_pair", "RLock acquire/release"),
    ("rlock_with", "RLock `with` block"),
]

#: (key, title, implementation, mode): the subjects, ``threading`` first.
SUBJECTS = [
    ("threading", "`threading.Lock` / `threading.RLock`", None, None),
    ("c_default", "C accelerator, defaults", "c", "default"),
    ("python_default", "pure Python, defaults", "python", "default"),
    ("c_record", "C accelerator, `record()` + every detector", "c", "record"),
    ("python_record", "pure Python, `record()` + every detector", "python", "record"),
    ("c_jsonl", "C accelerator, JSON Lines file", "c", "jsonl"),
    ("python_jsonl", "pure Python, JSON Lines file", "python", "jsonl"),
]

#: The program run under callgrind: argv = operation, implementation, mode, n.
CHILD = r"""
import os, sys, tempfile, threading
operation, implementation, mode, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
kind = "RLock" if operation.startswith("rlock") else "Lock"
if implementation == "threading":
    lock = getattr(threading, kind)()
else:
    import tracedsync
    from tracedsync import _accel, _jsonl
    _accel.select(implementation)
    if mode == "record":
        tracedsync.configure(wait_warning=30.0)
        trace = tracedsync.record().start()
    elif mode == "jsonl":
        sink = _jsonl.open_log_file(os.path.join(tempfile.mkdtemp(), "events.jsonl"))
    lock = getattr(tracedsync, kind)()
lock.acquire(); lock.release()
def pairs(n, acquire=lock.acquire, release=lock.release):
    for _ in range(n):
        acquire(); release()
def blocks(n, lock=lock):
    for _ in range(n):
        with lock:
            pass
(pairs if operation.endswith("_pair") else blocks)(n)
if mode == "record":
    trace.stop()
os._exit(0)
"""


def available() -> str | None:
    """Why instruction counts cannot be taken here, or ``None``."""
    if shutil.which("valgrind") is None:
        return "valgrind is not installed"
    return None


def _instructions(operation: str, implementation: str, mode: str, n: int) -> int:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)])}
    environment.pop("TRACEDSYNC_IMPL", None)
    finished = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            CHILD,
            operation,
            implementation,
            mode,
            str(n),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    found = re.search(r"Collected\s*:\s*(\d+)", finished.stderr)
    if finished.returncode != 0 or found is None:
        tail = finished.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"callgrind run failed ({operation}, {implementation}): {tail}")
    return int(found.group(1))


#: ``--counts SHORT,LONG`` (fewer iterations, for a loaded machine).
_counts: tuple[int, int] | None = None


def per_operation(operation: str, implementation: str, mode: str, smoke: bool = False) -> float:
    """Instructions per iteration of ``operation``'s loop."""
    short, long = (50, 250) if smoke else _counts or (SHORT, LONG)
    counts = [_instructions(operation, implementation, mode, n) for n in (short, long)]
    return (counts[1] - counts[0]) / (long - short)


def run(
    smoke: bool = False,
    progress: Any = None,
    only: list[str] | None = None,
    subjects: list[str] | None = None,
) -> dict[str, Any]:
    """Every subject's instructions per operation (those named in ``only`` and
    ``subjects``, if given), or why they were not measured."""
    reason = available()
    if reason is not None:
        return {"error": reason}
    sys.path.insert(0, str(SRC))
    from tracedsync import _accel

    results: dict[str, Any] = {"operations": {}, "subjects": {}}
    operations = [(key, title) for key, title in OPERATIONS if only is None or key in only]
    results["titles"] = dict(operations)
    for key, title, implementation, mode in SUBJECTS:
        if implementation == "c" and not _accel.available():
            continue
        if subjects is not None and key not in subjects and key != "threading":
            continue
        results["subjects"][key] = title
        for operation, _ in operations:
            if progress is not None:
                progress(f"instructions: {operation}, {title}")
            measured = per_operation(
                operation, implementation or "threading", mode or "default", smoke
            )
            results["operations"].setdefault(operation, {})[key] = measured
    if not _accel.available():
        results["note"] = f"C accelerator not measured: {_accel.reason()}"
    return results


def render(results: dict[str, Any]) -> list[str]:
    """The Markdown table of :func:`run`'s results."""
    if "error" in results:
        return [f"Instruction counts not measured: {results['error']}."]
    operations = list(results.get("titles", dict(OPERATIONS)).items())
    lines = [
        "| subject | " + " | ".join(title for _, title in operations) + " |",
        "|---|" + "---|" * len(operations),
    ]
    base = results["operations"]
    for key, title in results["subjects"].items():
        cells = []
        for operation, _ in operations:
            value = base[operation][key]
            ratio = value / base[operation]["threading"]
            cells.append(f"{value:,.0f} ({ratio:.2f}x)")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    if "note" in results:
        lines += ["", results["note"]]
    return lines


def _listed(text: str, known: list[str], what: str) -> list[str]:
    """A comma-separated list of names, each one of ``known``."""
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown) or repr(text)}: choose from {', '.join(known)}"
        )
    return names


def _counts_option(text: str) -> tuple[int, int]:
    try:
        short, long = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--counts takes SHORT,LONG, not {text!r}") from None
    if not 0 < short < long:
        raise argparse.ArgumentTypeError(f"--counts needs 0 < SHORT < LONG, not {text!r}")
    return short, long


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/instructions.py",
        description="Instructions per Lock and RLock operation, with valgrind --tool=callgrind.",
    )
    operations = [key for key, _ in OPERATIONS]
    subjects = [key for key, *_ in SUBJECTS]
    parser.add_argument("--smoke", action="store_true", help="tiny loops, only a check")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--only",
        type=lambda text: _listed(text, operations, "operation"),
        help=f"some of the operations: {','.join(operations)}",
    )
    parser.add_argument(
        "--subjects",
        type=lambda text: _listed(text, subjects, "subject"),
        help=f"some of the subjects (threading is always measured): {','.join(subjects)}",
    )
    parser.add_argument(
        "--counts", type=_counts_option, help=f"SHORT,LONG loop iterations (default {SHORT},{LONG})"
    )
    arguments = parser.parse_args(argv)
    global _counts
    _counts = arguments.counts
    results = run(
        arguments.smoke,
        lambda message: print(f"[instructions] {message}", file=sys.stderr),
        only=arguments.only,
        subjects=arguments.subjects,
    )
    if arguments.json:
        print(json.dumps(results, indent=2))
    else:
        print("\n".join(render(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
