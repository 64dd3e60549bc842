"""The results as Markdown: the generated part of ``docs/performance.md``.

The generated part lies between two marker comments; everything outside them
(the prose) is kept when the file is regenerated.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from modes import MODES
from uncontended import OPERATIONS

__all__ = ["BEGIN", "END", "render", "targets", "write"]

BEGIN = "<!-- BEGIN GENERATED RESULTS (python benchmarks/run.py) -->"
END = "<!-- END GENERATED RESULTS -->"

#: The issue's targets.
MAX_RECORDING_RATIO = 5.0
MIN_JSON_LINES_RATE = 250_000
MAX_LOCK_BYTES = 500
MAX_FLOOR_RATIO = 1.5


def _x(value: float) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x" if value < 100 else f"{value:.0f}x"


def _ns(value: float) -> str:
    return f"{value:,.0f} ns" if value < 100_000 else f"{value / 1e6:,.2f} ms"


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured figure and whether it is met."""
    operations = results["uncontended"]["operations"]
    off = [operations[op.key]["off"] for op in OPERATIONS]
    off_ratios = [figures["ratio"] for figures in off]
    same = all(figures["same_type"] for figures in off)
    recording = operations["lock_pair"]["recorded_detectors"]["ratio"]
    json_lines = results["sinks"]["json_lines_events_per_s"]
    lock_bytes = results["memory"]["per_lock"]["tracedsync.Lock (after one acquire/release)"]
    floor_ratios = [
        (interval, workload, figures["default"]["ratio_floor"])
        for interval, per_workload in results["contended"]["intervals"].items()
        for workload, figures in per_workload.items()
    ]
    worst_floor = max(floor_ratios, key=lambda item: item[2])
    return [
        {
            # The same objects cost the same by construction: the measured
            # spread around 1.0x is the machine's noise, shown, not judged.
            "target": "off switch: the same objects, 1.0x",
            "measured": f"{'the same types' if same else 'DIFFERENT types'} for all "
            f"{len(off)} operations; measured {_x(min(off_ratios))} to {_x(max(off_ratios))} "
            "(noise)",
            "met": same,
        },
        {
            "target": f"recording + every detector: Lock pair at most {MAX_RECORDING_RATIO:g}x "
            "threading.Lock",
            "measured": _x(recording),
            "met": recording <= MAX_RECORDING_RATIO,
        },
        {
            "target": f"JSON Lines sink: at least {MIN_JSON_LINES_RATE:,} events/s on one core",
            "measured": _rate(json_lines),
            "met": json_lines >= MIN_JSON_LINES_RATE,
        },
        {
            "target": f"memory per live traced Lock under {MAX_LOCK_BYTES} bytes",
            "measured": f"{lock_bytes:.0f} bytes",
            "met": lock_bytes < MAX_LOCK_BYTES,
        },
        {
            "target": f"contended (defaults): at most {MAX_FLOOR_RATIO:g}x the pass-through floor",
            "measured": f"worst {_x(worst_floor[2])} ({worst_floor[1]}, switch interval "
            f"{float(worst_floor[0]) * 1000:g} ms)",
            "met": worst_floor[2] <= MAX_FLOOR_RATIO,
        },
    ]


def _header(results: dict[str, Any]) -> list[str]:
    about = results["about"]
    lines = [
        f"- **Date:** {about['date']}",
        f"- **Machine:** {about['machine']}",
        f"- **Python:** {about['python']}",
        f"- **tracedsync:** {about['tracedsync']}"
        + (f", {about['implementation']}" if "implementation" in about else ""),
        f"- **Command:** `{about['command']}`"
        + (" (smoke mode: figures meaningless)" if about["smoke"] else ""),
        "",
    ]
    return lines


def _targets_section(results: dict[str, Any]) -> list[str]:
    rows = [
        [item["target"], item["measured"], "met" if item["met"] else "**missed**"]
        for item in targets(results)
    ]
    return ["### Targets", "", *_table(["target", "measured", ""], rows)]


def _uncontended_section(results: dict[str, Any]) -> list[str]:
    operations = results["uncontended"]["operations"]
    header = ["operation", "threading", *[mode.title for mode in MODES]]
    rows = []
    for operation in OPERATIONS:
        figures = operations[operation.key]
        baseline = min(figures[mode.key]["baseline_ns"] for mode in MODES)
        rows.append(
            [operation.title, _ns(baseline), *[_x(figures[mode.key]["ratio"]) for mode in MODES]]
        )
    floor = results["uncontended"]["floor"]
    return [
        "### Uncontended operations",
        "",
        "Cost of one operation as a multiple of the same operation on the `threading` "
        "primitive, measured in the same process in interleaved rounds (best round of each); "
        "the `threading` column is its absolute cost (best over all modes).",
        "",
        *_table(header, rows),
        f"Floor: a pass-through Python wrapper around a raw lock costs {_x(floor['ratio'])} "
        f"a `threading.Lock` acquire/release pair ({_ns(floor['subject_ns'])} against "
        f"{_ns(floor['baseline_ns'])}).",
        "",
        "Modes: " + "; ".join(f"**{mode.title}**: {mode.description}" for mode in MODES) + ".",
        "",
    ]


def _contended_section(results: dict[str, Any]) -> list[str]:
    contended = results["contended"]
    subjects = {k: v for k, v in contended["subjects"].items() if k != "threading"}
    lines = [
        "### Contended workloads",
        "",
        "Wall time as a multiple of the same workload on `threading`'s primitives, then "
        "(after the slash) as a multiple of the pass-through wrapper floor; best of "
        f"{results['about']['repetitions']} runs.",
        "",
    ]
    for interval, per_workload in contended["intervals"].items():
        lines += [f"Switch interval {float(interval) * 1000:g} ms:", ""]
        header = ["workload", "threading", *subjects.values()]
        rows = []
        for workload, figures in per_workload.items():
            cells = [contended["titles"][workload], _ns(figures["threading"]["wall_ns"])]
            for key in subjects:
                item = figures[key]
                cells.append(
                    _x(item["ratio_threading"])
                    if key == "floor"
                    else f"{_x(item['ratio_threading'])} / {_x(item['ratio_floor'])}"
                )
            rows.append(cells)
        lines += _table(header, rows)
    return lines


def _sinks_section(results: dict[str, Any]) -> list[str]:
    sinks = results["sinks"]
    rows = [
        ["JSON Lines sink alone (records to file)", _rate(sinks["json_lines_events_per_s"])],
        [
            "Lock pairs with the JSON Lines file configured (events, end to end)",
            _rate(sinks["json_lines_end_to_end_events_per_s"]),
        ],
        ["structlog JSON rendering to `os.devnull`", _rate(sinks["structlog_json_events_per_s"])],
    ]
    return [
        "### Event sinks",
        "",
        f"Events per second on one thread, over {sinks['events']:,} recorded events of a "
        "typical mix (Lock, RLock, Event, Semaphore).",
        "",
        *_table(["sink", "events per second"], rows),
    ]


def _races_section(results: dict[str, Any]) -> list[str]:
    if "races" not in results:
        return []
    import races

    found = results["races"]
    return [
        "### Data-race checking",
        "",
        "Wall time of whole programs (`benchmarks/race_workloads/`, no race in them), each "
        "a separate process: plainly, under `tracedsync run --no-summary` and under "
        "`tracedsync run --races --fail-on race --no-summary`, alternating, median of "
        f"{found['repetitions']}; {found['checked']}.",
        "",
        *races.render(found),
        "",
    ]


def _memory_section(results: dict[str, Any]) -> list[str]:
    memory = results["memory"]
    rows = [[what, f"{size:.0f}"] for what, size in memory["per_lock"].items()]
    rows.append(
        ["one recorded event (`tracedsync.record()`), read", f"{memory['per_recorded_event']:.0f}"]
    )
    if "per_recorded_event_unread" in memory:
        rows.append(
            [
                "one recorded event (`tracedsync.record()`), before any read",
                f"{memory['per_recorded_event_unread']:.0f}",
            ]
        )
    breakdown = ", ".join(f"{part} {size} B" for part, size in memory["breakdown"].items())
    return [
        "### Memory",
        "",
        "Bytes allocated per live object (`tracemalloc`, over many of them).",
        "",
        *_table(["object", "bytes"], rows),
        f"`sys.getsizeof` of a used traced Lock's parts: {breakdown}.",
        "",
    ]


def _peers_section(results: dict[str, Any]) -> list[str]:
    peers = results["peers"]
    lines = ["### Peer libraries", ""]
    if "error" in peers:
        return [*lines, f"Not measured: {peers['error']}", ""]
    versions = ", ".join(f"{name} {version}" for name, version in peers["versions"].items())
    lines += [
        f"Measured with the interpreter of `{peers['environment']}` ({versions}; "
        f"Python {peers['python']}), each against `threading` in that process; tracedsync's "
        "rows are from the tables above.",
        "",
    ]
    rows = []
    for row in peers["uncontended"]:
        if "missing" in row:
            rows.append([row["library"], row["missing"], "", ""])
        else:
            rows.append([row["library"], row["subject"], row["operation"], _x(row["ratio"])])
    ours = results["uncontended"]["operations"]
    rows.append(
        ["tracedsync", "Lock, defaults", "lock_pair", _x(ours["lock_pair"]["default"]["ratio"])]
    )
    rows.append(
        [
            "tracedsync",
            "Lock, recording + every detector",
            "lock_pair",
            _x(ours["lock_pair"]["recorded_detectors"]["ratio"]),
        ]
    )
    rows.append(
        [
            "tracedsync",
            "RLock, defaults",
            "rlock_reentrant",
            _x(ours["rlock_reentrant"]["default"]["ratio"]),
        ]
    )
    lines += ["Uncontended:", "", *_table(["library", "subject", "operation", "ratio"], rows)]
    contended_rows = []
    ours_contended = results["contended"]["intervals"]
    for interval, subjects in peers["contended"].items():
        for subject, figures in subjects.items():
            contended_rows.append(
                [
                    subject,
                    f"{float(interval) * 1000:g} ms",
                    _x(figures["ratio_threading"]),
                    _x(figures["ratio_floor"]),
                ]
            )
        mine = ours_contended[interval]["increments"]["default"]
        contended_rows.append(
            [
                "tracedsync Lock, defaults",
                f"{float(interval) * 1000:g} ms",
                _x(mine["ratio_threading"]),
                _x(mine["ratio_floor"]),
            ]
        )
    lines += [
        "Contended (the increments workload):",
        "",
        *_table(["subject", "switch interval", "vs threading", "vs floor"], contended_rows),
    ]
    for workload, reason in peers["not_applicable"].items():
        lines.append(f"- {workload}: not measured, {reason}.")
    return [*lines, ""]


#: Issue 18's targets: the C accelerator (uncontended Lock pair as a multiple
#: of threading.Lock's, by mode) and the pure-Python floor (pair, with block).
C_TARGETS = {"default": 1.5, "recorded_detectors": 2.0}
C_MAX_CONTENDED_FLOOR = 1.2
C_MIN_JSON_LINES_RATE = 1_000_000
PYTHON_TARGETS = {
    ("lock_pair", "default"): 5.0,
    ("lock_with", "default"): 3.0,
    ("lock_pair", "recorded_detectors"): 9.0,
    ("lock_with", "recorded_detectors"): 5.5,
}


def _implementation_targets(results: dict[str, Any]) -> list[list[str]]:
    found = results["implementations"]["implementations"]
    rows: list[list[str]] = []

    def row(target: str, value: float | None, limit: float) -> None:
        if value is None:
            rows.append([target, "not measured", ""])
        else:
            rows.append([target, _x(value), "met" if value <= limit else "**missed**"])

    c = found.get("c")
    for mode, limit in C_TARGETS.items():
        value = None if c is None else c["uncontended"]["lock_pair"][mode]
        row(f"C: Lock pair, {mode.replace('_', ' ')}, at most {limit:g}x", value, limit)
    for interval in ("0.005", "0.0005"):
        value = None if c is None else c["increments"][interval]["ratio_floor"]
        row(
            f"C: contended increments at {float(interval) * 1000:g} ms, at most "
            f"{C_MAX_CONTENDED_FLOOR:g}x the floor",
            value,
            C_MAX_CONTENDED_FLOOR,
        )
    rate = None if c is None else c.get("json_lines_events_per_s")
    if rate is None:
        rows.append(
            [f"C: JSON Lines sink at least {C_MIN_JSON_LINES_RATE:,} events/s", "not measured", ""]
        )
    else:
        met = rate >= C_MIN_JSON_LINES_RATE
        rows.append(
            [
                f"C: JSON Lines sink at least {C_MIN_JSON_LINES_RATE:,} events/s",
                _rate(rate),
                "met" if met else "**missed**",
            ]
        )
    python = found["python"]["uncontended"]
    for (operation, mode), limit in PYTHON_TARGETS.items():
        what = "pair" if operation == "lock_pair" else "`with`"
        row(
            f"pure Python: Lock {what}, {mode.replace('_', ' ')}, at most {limit:g}x",
            python[operation][mode],
            limit,
        )
    return rows


def _implementations_section(results: dict[str, Any]) -> list[str]:
    if "implementations" not in results:
        return []
    section = results["implementations"]
    found = section["implementations"]
    lines = [
        "### C accelerator and pure Python",
        "",
        "The same measurements with `Lock`'s methods switched between the two "
        "implementations in this process (`tracedsync._accel.select`): uncontended cost as a "
        "multiple of `threading.Lock`'s, and the contended increments (defaults) as a "
        "multiple of `threading` / of the pass-through floor.",
        "",
    ]
    if section["note"]:
        lines += [section["note"] + ".", ""]
    header = ["operation", "mode", *[f"{name}" for name in found]]
    rows = []
    for operation, title in section["operations"].items():
        for mode, mode_title in section["modes"].items():
            rows.append(
                [
                    title,
                    mode_title,
                    *[_x(found[name]["uncontended"][operation][mode]) for name in found],
                ]
            )
    for interval in ("0.005", "0.0005"):
        rows.append(
            [
                f"contended increments, switch interval {float(interval) * 1000:g} ms",
                "default",
                *[
                    f"{_x(found[name]['increments'][interval]['ratio_threading'])} / "
                    f"{_x(found[name]['increments'][interval]['ratio_floor'])}"
                    for name in found
                ],
            ]
        )
    rows.append(
        [
            "JSON Lines sink, events per second",
            "",
            *[_rate(found[name]["json_lines_events_per_s"]) for name in found],
        ]
    )
    lines += _table(header, rows)
    lines += ["Targets:", "", *_table(["target", "measured", ""], _implementation_targets(results))]
    return lines


def _instructions_section(results: dict[str, Any]) -> list[str]:
    if "instructions" not in results:
        return []
    import instructions

    return [
        "### Instruction counts",
        "",
        "Instructions per loop iteration (`valgrind --tool=callgrind`, the difference of two "
        f"runs of {instructions.SHORT:,} and {instructions.LONG:,} iterations; the loop's own "
        "`for` is included in every row), and the multiple of `threading.Lock`'s.",
        "",
        *instructions.render(results["instructions"]),
        "",
    ]


def render(results: dict[str, Any]) -> str:
    """The generated Markdown, markers included."""
    lines = [
        BEGIN,
        "",
        *_header(results),
        *_targets_section(results),
        *_uncontended_section(results),
        *_contended_section(results),
        *_implementations_section(results),
        *_instructions_section(results),
        *_sinks_section(results),
        *_races_section(results),
        *_memory_section(results),
        *_peers_section(results),
        END,
    ]
    return "\n".join(lines) + "\n"


def write(path: Path, generated: str) -> None:
    """Replace the generated part of ``path`` (or create the file around it)."""
    if path.exists():
        text = path.read_text(encoding="utf-8")
        pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.DOTALL)
        if pattern.search(text):
            path.write_text(pattern.sub(lambda _: generated, text, count=1), encoding="utf-8")
            return
        path.write_text(text.rstrip("\n") + "\n\n" + generated, encoding="utf-8")
        return
    path.write_text("# Performance\n\n" + generated, encoding="utf-8")
