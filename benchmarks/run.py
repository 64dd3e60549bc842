"""tracedsync's benchmark suite: ``python benchmarks/run.py [--smoke] [--output PATH]``.

Measures every primitive against its ``threading`` equivalent in the same
process, in every mode (off switch, defaults, events in memory, recording
plus every detector, JSON Lines file, structlog JSON), the contended
workloads against ``threading`` and a pure-Python floor, the sinks' event
rates, memory per lock and per event, the cost of ``tracedsync run --races``
on two race-free programs (:mod:`races`), and the peer libraries ``locklib`` and
``threadle`` (installed into ``benchmarks/.venv-peers`` on first use, never
into the environment running this).  Prints the results as Markdown and, with
``--output``, writes them into that file (``docs/performance.md``).

``--smoke`` runs everything with tiny counts in seconds and only checks that
it all runs and every ratio is finite: CI runs it, and it never judges speed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Measure this checkout's tracedsync, whatever else is installed.
sys.path.insert(0, str(ROOT / "src"))

import contended  # noqa: E402
import implementations  # noqa: E402
import instructions  # noqa: E402
import measure  # noqa: E402
import memory  # noqa: E402
import races  # noqa: E402
import report  # noqa: E402
import sinks  # noqa: E402
import tracedsync  # noqa: E402
import uncontended  # noqa: E402

PEERS_VENV = HERE / ".venv-peers"
PEER_PACKAGES = ("locklib", "threadle")


def _progress(message: str) -> None:
    print(f"[benchmarks] {message}", file=sys.stderr, flush=True)


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def _revision() -> str:
    try:
        found = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return tracedsync.__version__
    return f"{tracedsync.__version__} (commit {found})"


def _peers_python(smoke: bool) -> tuple[str | None, str]:
    """The interpreter to measure the peers with, or ``None`` and why not.

    A full run creates ``benchmarks/.venv-peers`` (same Python version) and
    installs the peers there with pip; a smoke run uses the running
    interpreter, where the peers are normally absent and reported as such.
    """
    if smoke:
        return sys.executable, "running interpreter"
    python = PEERS_VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    try:
        if not python.exists():
            _progress(f"peers: creating {PEERS_VENV.relative_to(ROOT)}")
            venv.create(PEERS_VENV, with_pip=True, clear=True)
        check = subprocess.run(
            [str(python), "-c", "import " + ", ".join(PEER_PACKAGES)],
            check=False,
            capture_output=True,
        )
        if check.returncode != 0:
            _progress("peers: pip install " + " ".join(PEER_PACKAGES))
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES],
                check=True,
                capture_output=True,
            )
    except (OSError, subprocess.CalledProcessError) as error:
        return None, f"could not install {', '.join(PEER_PACKAGES)}: {error}"
    return str(python), str(PEERS_VENV.relative_to(ROOT))


def _peers(smoke: bool) -> dict[str, Any]:
    python, where = _peers_python(smoke)
    if python is None:
        return {"error": where}
    _progress(f"peers: measuring with {where}")
    command = [python, str(HERE / "peers.py")] + (["--smoke"] if smoke else [])
    finished = subprocess.run(command, check=False, capture_output=True, text=True, cwd=HERE)
    if finished.returncode != 0:
        return {"error": f"peers.py failed: {finished.stderr.strip().splitlines()[-1:]}"}
    measured: dict[str, Any] = json.loads(finished.stdout)
    measured["environment"] = where
    return measured


def _non_finite(value: Any, path: str = "") -> list[str]:
    """Every number in ``value`` that is not finite (``nan`` or infinite)."""
    if isinstance(value, dict):
        return [bad for key, item in value.items() for bad in _non_finite(item, f"{path}/{key}")]
    if isinstance(value, list):
        return [bad for i, item in enumerate(value) for bad in _non_finite(item, f"{path}/{i}")]
    if isinstance(value, float) and not math.isfinite(value):
        return [path]
    return []


def run(smoke: bool, peers: bool, count_instructions: bool = False) -> dict[str, Any]:
    """Every benchmark group; the results as one JSON-ready dictionary."""
    budget = measure.Budget.quick() if smoke else measure.Budget.full()
    command = "python benchmarks/run.py" + (" --smoke" if smoke else "")
    results: dict[str, Any] = {
        "about": {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": _machine(),
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "tracedsync": _revision(),
            "implementation": tracedsync._accel.describe(),
            "command": command,
            "smoke": smoke,
            "repetitions": budget.repetitions,
        }
    }
    results["uncontended"] = uncontended.run(budget, _progress)
    results["contended"] = contended.run(budget, _progress)
    results["implementations"] = implementations.run(budget, _progress)
    if count_instructions:
        results["instructions"] = instructions.run(smoke, _progress)
    results["sinks"] = sinks.run(budget, _progress)
    results["memory"] = memory.run(budget, _progress)
    results["races"] = races.run(budget, _progress)
    results["peers"] = _peers(smoke) if peers else {"error": "skipped (--no-peers)"}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts: check it all runs")
    parser.add_argument("--output", type=Path, help="write the results into this Markdown file")
    parser.add_argument("--json", type=Path, help="also write the raw results as JSON")
    parser.add_argument("--no-peers", action="store_true", help="skip locklib and threadle")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions per Lock and RLock operation with valgrind (callgrind)",
    )
    arguments = parser.parse_args(argv)
    results = run(arguments.smoke, not arguments.no_peers, arguments.instructions)
    generated = report.render(results)
    print(generated)
    if arguments.output is not None:
        report.write(arguments.output, generated)
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    bad = _non_finite(results)
    if bad:
        print("non-finite results: " + ", ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
