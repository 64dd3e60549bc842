"""Which instructions of a code object access shared state, and on what.

The access capture (:mod:`tracedsync._races.monitor`) is told *where* an
instruction runs (code object and offset) and gets the frame, but Python
exposes no frame's value stack: for ``obj.x`` it cannot see ``obj``.  So
each code object is analysed once, here, and every attribute access gets a
*receiver path*: the variable the receiver was loaded from, followed by the
instance-dictionary attributes leading to it (``self.cache.hits`` is
``self`` then ``cache``).  At run time the path is re-read from the frame,
through instance dictionaries only, so no property, descriptor or
``__getattr__`` is ever invoked.

The analysis looks only at the straight-line instructions just before the
access, and accepts a path only when none of them is a jump target (so
they are the only way to reach it).  Accesses it cannot resolve are not
checked: receivers that are call results (``f().x``), subscripts
(``a[0].x``), conditional expressions, ``super()`` attributes, and method
loads (``obj.method()``: reading a method is almost never a data race, and
there are very many).

Module-level code reads and writes its globals with ``LOAD_NAME`` and
``STORE_NAME``; they are kept as "name" accesses and treated as globals
when the frame's locals are its globals.
"""

from __future__ import annotations

import dis
import sys
from types import CodeType
from typing import NamedTuple

__all__ = [
    "LOCAL_LOADS",
    "NOT_RECEIVER_LOADS",
    "PAIR_LOADS",
    "READ_ATTR",
    "READ_GLOBAL",
    "READ_NAME",
    "WRITE_ATTR",
    "WRITE_GLOBAL",
    "WRITE_NAME",
    "Access",
    "Receiver",
    "analyse",
]

READ_ATTR = 0
WRITE_ATTR = 1
READ_GLOBAL = 2
WRITE_GLOBAL = 3
READ_NAME = 4
WRITE_NAME = 5

#: How a receiver path starts: a local or cell variable, a global, or a
#: name looked up as ``LOAD_NAME`` does (locals, globals, builtins).
FAST = 0
GLOBAL = 1
NAME = 2

#: Attributes a path may go through before the analysis gives up.
_MAX_DEPTH = 4
_METHOD_FLAG = sys.version_info >= (3, 12)  # LOAD_ATTR's low bit: a method load

#: Instructions that push one local or cell variable.  LOAD_FAST_CHECK is
#: 3.12+; LOAD_FAST_BORROW (3.14+) is LOAD_FAST without the reference count,
#: emitted for most loads of a local whose value outlives its use.
LOCAL_LOADS = frozenset(
    {"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW", "LOAD_DEREF", "LOAD_CLOSURE"}
)
#: Super-instructions whose *last* push is a local variable, ``argval`` the
#: pair of names: LOAD_FAST_LOAD_FAST and STORE_FAST_LOAD_FAST (3.13+),
#: LOAD_FAST_BORROW_LOAD_FAST_BORROW (3.14+; ``obj.x = y`` loads y, obj).
PAIR_LOADS = frozenset(
    {"LOAD_FAST_LOAD_FAST", "STORE_FAST_LOAD_FAST", "LOAD_FAST_BORROW_LOAD_FAST_BORROW"}
)
#: Loads of a local that never start a receiver path: LOAD_FAST_AND_CLEAR
#: (3.12+) saves a variable an inlined comprehension shadows, and
#: LOAD_CLASSDEREF/LOAD_FROM_DICT_OR_DEREF (class bodies) read a mapping
#: before the cell.  Listed so that a test can tell a new load form apart
#: from one deliberately left out.
NOT_RECEIVER_LOADS = frozenset(
    {"LOAD_FAST_AND_CLEAR", "LOAD_CLASSDEREF", "LOAD_FROM_DICT_OR_DEREF"}
)


class Receiver(NamedTuple):
    """Where to find the receiver of an attribute access at run time."""

    start: int  # FAST, GLOBAL or NAME
    variable: str
    attributes: tuple[str, ...]


class Access(NamedTuple):
    """One instruction that reads or writes shared state."""

    kind: int  # READ_ATTR ... WRITE_NAME
    name: str
    receiver: Receiver | None  # attribute accesses only
    line: int


def _is_method_load(instruction: dis.Instruction) -> bool:
    return _METHOD_FLAG and instruction.arg is not None and bool(instruction.arg & 1)


def _source(instructions: list[dis.Instruction], index: int, depth: int = 0) -> Receiver | None:
    """The path of the value the instruction at ``index`` pushes last."""
    if index < 0:
        return None
    instruction = instructions[index]
    name = instruction.opname
    if name in LOCAL_LOADS:
        return Receiver(FAST, instruction.argval, ())
    if name in PAIR_LOADS:
        return Receiver(FAST, instruction.argval[1], ())
    if name == "LOAD_GLOBAL":
        return Receiver(GLOBAL, instruction.argval, ())
    if name == "LOAD_NAME":
        return Receiver(NAME, instruction.argval, ())
    if (
        name == "LOAD_ATTR"
        and depth < _MAX_DEPTH
        and not _is_method_load(instruction)
        and not instruction.is_jump_target
    ):
        inner = _source(instructions, index - 1, depth + 1)
        if inner is not None:
            return inner._replace(attributes=(*inner.attributes, instruction.argval))
    return None


def _duplicates_top(instruction: dis.Instruction) -> bool:
    """``COPY 1`` (3.11+) or ``DUP_TOP`` (3.10): an augmented assignment's copy."""
    return (instruction.opname == "COPY" and instruction.arg == 1) or (
        instruction.opname == "DUP_TOP"
    )


def _swaps_top_two(instruction: dis.Instruction) -> bool:
    """``SWAP 2`` (3.11+) or ``ROT_TWO`` (3.10): before an augmented store."""
    return (instruction.opname == "SWAP" and instruction.arg == 2) or (
        instruction.opname == "ROT_TWO"
    )


def _load_receiver(instructions: list[dis.Instruction], index: int) -> Receiver | None:
    """The receiver of the ``LOAD_ATTR`` at ``index`` (``obj.x``, or the
    ``COPY 1`` of an augmented assignment ``obj.x += ...``)."""
    if instructions[index].is_jump_target:
        return None
    before = instructions[index - 1]
    if _duplicates_top(before):
        if before.is_jump_target:
            return None
        return _source(instructions, index - 2)
    return _source(instructions, index - 1)


def _store_receiver(instructions: list[dis.Instruction], index: int) -> Receiver | None:
    """The receiver of the ``STORE_ATTR``/``DELETE_ATTR`` at ``index``."""
    if instructions[index].is_jump_target:
        return None
    before = instructions[index - 1]
    if not _swaps_top_two(before):
        return _source(instructions, index - 1)
    # obj.x += v: LOAD obj; COPY 1; LOAD_ATTR x; <v>; BINARY_OP; SWAP 2; STORE_ATTR x
    name = instructions[index].argval
    for back in range(index - 1, max(index - 16, 1), -1):
        candidate = instructions[back]
        if candidate.is_jump_target and back != index - 1:
            return None
        if candidate.opname == "LOAD_ATTR" and candidate.argval == name:
            return _load_receiver(instructions, back)
    return None


def analyse(code: CodeType) -> dict[int, Access]:
    """Offset -> :class:`Access` for every instruction of ``code`` (not of
    nested code objects) that reads or writes an attribute or a global."""
    instructions = list(dis.get_instructions(code))
    found: dict[int, Access] = {}
    line = code.co_firstlineno
    for index, instruction in enumerate(instructions):
        positions = getattr(instruction, "positions", None)  # 3.11+
        if positions is not None and positions.lineno is not None:
            line = positions.lineno
        elif positions is None and instruction.starts_line is not None:  # 3.10
            line = instruction.starts_line
        name = instruction.opname
        if name == "LOAD_ATTR" and index > 0:
            if _is_method_load(instruction):
                continue
            receiver = _load_receiver(instructions, index)
            if receiver is not None:
                found[instruction.offset] = Access(READ_ATTR, instruction.argval, receiver, line)
        elif name in {"STORE_ATTR", "DELETE_ATTR"} and index > 0:
            receiver = _store_receiver(instructions, index)
            if receiver is not None:
                found[instruction.offset] = Access(WRITE_ATTR, instruction.argval, receiver, line)
        elif name == "LOAD_GLOBAL":
            found[instruction.offset] = Access(READ_GLOBAL, instruction.argval, None, line)
        elif name in {"STORE_GLOBAL", "DELETE_GLOBAL"}:
            found[instruction.offset] = Access(WRITE_GLOBAL, instruction.argval, None, line)
        elif name == "LOAD_NAME":
            found[instruction.offset] = Access(READ_NAME, instruction.argval, None, line)
        elif name in {"STORE_NAME", "DELETE_NAME"}:
            found[instruction.offset] = Access(WRITE_NAME, instruction.argval, None, line)
    return found
