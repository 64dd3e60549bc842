"""The bugs of :mod:`bugs` under the peer explorers, run-for-run beside
tracedsync: ``interleave-test`` (random, PCT and bounded DFS) and ``ploom``
(exhaustive, locks only).

    python benchmarks/bug_finding/peers.py --seeds 10 --runs 1000

Run it with the interpreter of an environment of its own, never
tracedsync's (ploom needs CPython 3.13 or later)::

    python3.13 -m venv benchmarks/bug_finding/.venv-peers
    benchmarks/bug_finding/.venv-peers/bin/pip install interleave-test ploom
    benchmarks/bug_finding/.venv-peers/bin/python benchmarks/bug_finding/peers.py > peers.json
    python benchmarks/bug_finding/run.py --peers-json peers.json --output docs/bug-finding.md

It prints one JSON object: per peer and strategy, per bug, the runs until
the first failing one (one per seed), or why the bug could not be run there.

The bugs are the same source: a stand-in ``tracedsync`` module maps
``Lock``, ``RLock``, ``Event``, ``Condition``, ``Thread`` and
``yield_point`` to the peer's own primitives before :mod:`bugs` is imported
(``name=`` dropped).  interleave-test switches between bytecodes of the
program, so ``yield_point`` is a no-op there; ploom switches at its
primitives and ``yield_now``.  A bug using a primitive the peer lacks is
reported as such.  frontrun is not run: its tests are ``setup``,
``workers`` and an ``invariant``, not a program that starts its own
threads, so these bugs would have to be rewritten for it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class Unsupported(Exception):
    """The peer has no equivalent of a primitive the bug uses."""


def _stand_in(**primitives: Any) -> types.ModuleType:
    module = types.ModuleType("tracedsync")

    def factory(name: str) -> Callable[..., Any]:
        made = primitives.get(name)

        def build(*arguments: Any, **options: Any) -> Any:
            if made is None:
                raise Unsupported(name)
            options.pop("name", None)
            return made(*arguments, **options)

        return build

    for name in ("Lock", "RLock", "Event", "Condition", "Semaphore", "Thread"):
        setattr(module, name, factory(name))
    module.yield_point = primitives.get("yield_point", lambda: None)  # type: ignore[attr-defined]
    return module


def _bugs(module: types.ModuleType) -> dict[str, Callable[[], None]]:
    sys.modules["tracedsync"] = module
    sys.modules.pop("bugs", None)
    sys.path.insert(0, str(HERE))
    try:
        bugs = importlib.import_module("bugs")
    finally:
        sys.path.remove(str(HERE))
    return dict(bugs.BUGS)


def interleave_test(seeds: int, limit: int, expensive: tuple[int, int]) -> dict[str, Any]:
    try:
        import interleave_test as it
    except ImportError as error:
        return {"missing": str(error)}
    bugs = _bugs(
        _stand_in(
            Lock=it.Lock,
            RLock=it.RLock,
            Event=it.Event,
            Condition=it.Condition,
            Semaphore=it.Semaphore,
            Thread=it.Thread,
        )
    )
    results: dict[str, Any] = {}
    for strategy in ("pct", "random", "dfs"):
        per_bug: dict[str, Any] = {}
        for name, bug in bugs.items():
            bug_seeds, bug_limit = expensive if "100" in name else (seeds, limit)
            found: list[int | None] = []
            began = time.monotonic()
            for seed in range(1 if strategy == "dfs" else bug_seeds):
                try:
                    result = it.explore(
                        bug,
                        iterations=bug_limit,
                        seed=seed,
                        strategy=strategy,
                        raise_on_failure=False,
                        timeout=10.0,
                    )
                except Exception as error:  # the peer could not run it
                    found = []
                    per_bug[name] = {"error": f"{type(error).__name__}: {error}"[:200]}
                    break
                failure = result.failure
                found.append(None if failure is None else failure.iteration + 1)
            else:
                per_bug[name] = {
                    "found": found,
                    "limit": bug_limit,
                    "seconds": round(time.monotonic() - began, 1),
                }
            print(f"interleave-test {strategy} {name}: {per_bug[name]}", file=sys.stderr)
        results[strategy] = per_bug
    return results


#: The stand-in ``tracedsync`` for ploom, written to a temporary directory:
#: ploom runs every schedule in a worker process that imports the scenario
#: by name, with the parent's ``sys.path``.
_PLOOM_STAND_IN = """
import ploom


class Unsupported(Exception):
    pass


def _dropping_name(made):
    def build(*arguments, **options):
        options.pop("name", None)
        return made(*arguments, **options)

    return build


def _missing(name):
    def build(*arguments, **options):
        raise Unsupported(name)

    return build


Lock = _dropping_name(ploom.Lock)
Thread = _dropping_name(ploom.Thread)
RLock, Event, Condition, Semaphore = (
    _missing(name) for name in ("RLock", "Event", "Condition", "Semaphore")
)
yield_point = ploom.yield_now
"""


def ploom(limit: int, only_bug: str | None = None) -> dict[str, Any]:
    try:
        import ploom
    except ImportError as error:
        return {"missing": str(error)}
    stand_in = Path(tempfile.mkdtemp(prefix="ploom-stand-in-"))
    (stand_in / "tracedsync.py").write_text(_PLOOM_STAND_IN, encoding="utf-8")
    sys.path[:0] = [str(stand_in), str(HERE)]
    sys.modules.pop("tracedsync", None)
    sys.modules.pop("bugs", None)
    bugs = importlib.import_module("bugs")
    per_bug: dict[str, Any] = {}
    config = ploom.Config(max_executions=limit, max_tasks=128, timeout=600.0, minimize_executions=0)
    for name, bug in bugs.BUGS.items():
        if only_bug is not None and name != only_bug:
            continue
        began = time.monotonic()
        try:
            done = ploom.check(
                bug, config=config, trace_dir=stand_in / "traces", on_failure=lambda *_: None
            )
            per_bug[name] = {"found": [None], "runs": done.executions, "complete": True}
        except ploom.IncompleteExplorationError as stopped:
            per_bug[name] = {
                "found": [None],
                "runs": stopped.statistics.executions,
                "stopped": str(stopped.limit),
            }
        except ploom.ModelCheckError as failure:
            detail = str(failure)
            per_bug[name] = (
                {"unsupported": detail.rsplit("Unsupported: ", maxsplit=1)[-1][:40]}
                if "Unsupported" in detail
                else {"found": [_executions(failure)], "kind": type(failure).__name__}
            )
        except Exception as error:
            per_bug[name] = {"error": f"{type(error).__name__}: {error}"[:300]}
        per_bug[name]["seconds"] = round(time.monotonic() - began, 1)
        print(f"ploom {name}: {per_bug[name]}", file=sys.stderr)
    return {"exhaustive": per_bug}


def _executions(failure: Exception) -> int | None:
    """The schedule (counting from 1) that failed, as ploom's error says it."""
    for holder in (failure, getattr(failure, "execution", None)):
        for attribute in ("statistics", "stats"):
            found = getattr(getattr(holder, attribute, None), "executions", None)
            if isinstance(found, int):
                return found
    return None


def median(found: list[int | None], limit: int) -> float | None:
    if not any(value is not None for value in found):
        return None
    return statistics.median(value if value is not None else limit + 1 for value in found)


def _cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "not run"
    if "unsupported" in entry:
        return f"no {entry['unsupported']}"
    if "error" in entry:
        return "could not run"
    stopped = str(entry.get("stopped", ""))
    if stopped and stopped != "schedules":
        return f"stopped by its {stopped.replace('_', ' ')} limit"
    found: list[int | None] = entry["found"]
    limit = entry.get("limit") or entry.get("runs") or 0
    hits = [value for value in found if value is not None]
    if not hits:
        return f"not found in {limit:,}"
    limit = limit or max(hits)  # ploom's failures say only where they were found
    middle = median(found, limit)
    shown = f"> {limit:,}" if middle is None or middle > limit else f"{middle:g}"
    return shown if len(found) == 1 else f"{shown} ({len(hits)}/{len(found)})"


def markdown(measured: dict[str, Any], bugs: list[str]) -> str:
    """The peers' table for the results page, from :func:`main`'s JSON."""
    it = measured.get("interleave-test", {})
    pl = measured.get("ploom", {})
    columns = [
        ("interleave-test PCT", it.get("pct", {})),
        ("interleave-test random", it.get("random", {})),
        ("interleave-test DFS", it.get("dfs", {})),
        ("ploom", pl.get("exhaustive", {})),
    ]
    budgets = sorted(
        {
            (len(entry["found"]), entry["limit"])
            for entry in it.get("pct", {}).values()
            if "found" in entry
        },
        reverse=True,
    )
    ploom_runs = max(
        (entry.get("runs", 0) for entry in pl.get("exhaustive", {}).values()), default=0
    )
    said = "; ".join(f"{seeds} seeds and at most {limit:,} runs" for seeds, limit in budgets)
    lines = [
        f"Budget: interleave-test {said or 'not run'} (the second for the 100-thread "
        f"bug, whose runs take seconds there); ploom at most {ploom_runs:,} schedules "
        "per bug (each in a process of its own).",
        "",
        "| bug | " + " | ".join(title for title, _ in columns) + " |",
        "| --- |" + " ---: |" * len(columns),
    ]
    for bug in bugs:
        cells = [_cell(results.get(bug)) if results else "not run" for _, results in columns]
        lines.append(f"| {bug} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--expensive", type=int, nargs=2, default=(5, 200))
    parser.add_argument("--only", choices=("interleave-test", "ploom"))
    parser.add_argument("--bug", help="only this bug (ploom)")
    arguments = parser.parse_args()
    measured: dict[str, Any] = {"python": sys.version.split()[0]}
    if arguments.only in (None, "interleave-test"):
        measured["interleave-test"] = interleave_test(
            arguments.seeds, arguments.runs, tuple(arguments.expensive)
        )
    if arguments.only in (None, "ploom"):
        measured["ploom"] = ploom(arguments.runs, arguments.bug)
    json.dump(measured, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
