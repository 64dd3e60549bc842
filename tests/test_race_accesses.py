"""Every kind of access the race detector claims to check (``docs/races.md``,
"What is checked") is decoded from the running Python's bytecode and caught.

The bytecode differs per version: 3.10 has ``DUP_TOP``/``ROT_TWO`` and
``LOAD_METHOD``; 3.11 ``COPY``/``SWAP``; 3.12 folds method loads into
``LOAD_ATTR`` (low bit) and adds ``LOAD_FAST_CHECK``; 3.13 adds the
super-instructions ``LOAD_FAST_LOAD_FAST``/``STORE_FAST_LOAD_FAST``; 3.14
adds ``LOAD_FAST_BORROW`` and ``LOAD_FAST_BORROW_LOAD_FAST_BORROW``.  Each
probe below is one access form, checked twice on whatever version runs the
suite: statically (:func:`analyse` finds the access with its receiver
path), and end to end (two unordered threads running the probe are
reported, with the right read/write kinds).
"""

from __future__ import annotations

import _thread
import dis
import os
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import tracedsync
from tracedsync._races import RaceDetector
from tracedsync._races.accesses import (
    FAST,
    GLOBAL,
    LOCAL_LOADS,
    NOT_RECEIVER_LOADS,
    PAIR_LOADS,
    READ_ATTR,
    READ_GLOBAL,
    READ_NAME,
    WRITE_ATTR,
    WRITE_GLOBAL,
    WRITE_NAME,
    Receiver,
    analyse,
)

HERE = os.path.dirname(os.path.abspath(__file__))
WAIT = 10.0

pytestmark = pytest.mark.timeout(60)


class Box:
    count = 0

    def __init__(self) -> None:
        self.value = 0

    def bump(self) -> None:
        self.value += 1

    def peek(self) -> int:
        return self.value


class Holder:
    def __init__(self) -> None:
        self.box = Box()


SHARED = Box()
counter = 0


# -- the probes: one access form each ----------------------------------------


def write_attr(box: Box) -> None:
    box.value = 1


def write_attr_from_local(box: Box, value: int) -> None:
    box.value = value  # 3.13+: one super-instruction loads value, then box


def read_attr(box: Box) -> int:
    return box.value


def augment_attr(box: Box) -> None:
    box.value += 1


def delete_attr(box: Box) -> None:
    del box.value


def write_nested(holder: Holder) -> None:
    holder.box.value = 1


def augment_nested(holder: Holder) -> None:
    holder.box.value += 1


def read_nested(holder: Holder) -> int:
    return holder.box.value


def augment_through_global() -> None:
    SHARED.value += 1


def read_through_global() -> int:
    return SHARED.value


def augment_class_attribute() -> None:
    Box.count += 1


def read_class_attribute() -> int:
    return Box.count


def augment_in_loop(boxes: list[Box]) -> None:
    for box in boxes:
        box.value += 1


def read_in_comprehension(boxes: list[Box]) -> list[int]:
    return [box.value for box in boxes]  # 3.12+: inlined, box a hidden local


def read_in_condition(box: Box) -> int:
    if box.value is None:
        return 0
    return 1


def make_closure(box: Box) -> Callable[[], None]:
    def augment() -> None:
        box.value += 1  # the receiver is a cell variable

    return augment


def write_global() -> None:
    global counter
    counter = 1


def read_global() -> int:
    return counter


def augment_global() -> None:
    global counter
    counter += 1


def through_self(box: Box) -> None:
    box.bump()


def read_through_self(box: Box) -> int:
    return box.peek()


def local(name: str, *attributes: str) -> Receiver:
    return Receiver(FAST, name, attributes)


# -- statically: analyse() finds each access ------------------------------------


STATIC = [
    (write_attr, [(WRITE_ATTR, "value", local("box"))]),
    (write_attr_from_local, [(WRITE_ATTR, "value", local("box"))]),
    (read_attr, [(READ_ATTR, "value", local("box"))]),
    (augment_attr, [(READ_ATTR, "value", local("box")), (WRITE_ATTR, "value", local("box"))]),
    (delete_attr, [(WRITE_ATTR, "value", local("box"))]),
    (
        write_nested,
        [(READ_ATTR, "box", local("holder")), (WRITE_ATTR, "value", local("holder", "box"))],
    ),
    (
        augment_nested,
        [
            (READ_ATTR, "box", local("holder")),
            (READ_ATTR, "value", local("holder", "box")),
            (WRITE_ATTR, "value", local("holder", "box")),
        ],
    ),
    (
        augment_through_global,
        [
            (READ_GLOBAL, "SHARED", None),
            (READ_ATTR, "value", Receiver(GLOBAL, "SHARED", ())),
            (WRITE_ATTR, "value", Receiver(GLOBAL, "SHARED", ())),
        ],
    ),
    (
        augment_class_attribute,
        [
            (READ_GLOBAL, "Box", None),
            (READ_ATTR, "count", Receiver(GLOBAL, "Box", ())),
            (WRITE_ATTR, "count", Receiver(GLOBAL, "Box", ())),
        ],
    ),
    (augment_in_loop, [(READ_ATTR, "value", local("box")), (WRITE_ATTR, "value", local("box"))]),
    (read_in_condition, [(READ_ATTR, "value", local("box"))]),
    (
        make_closure(Box()),
        [(READ_ATTR, "value", local("box")), (WRITE_ATTR, "value", local("box"))],
    ),
    (Box.bump, [(READ_ATTR, "value", local("self")), (WRITE_ATTR, "value", local("self"))]),
    (write_global, [(WRITE_GLOBAL, "counter", None)]),
    (read_global, [(READ_GLOBAL, "counter", None)]),
    (augment_global, [(READ_GLOBAL, "counter", None), (WRITE_GLOBAL, "counter", None)]),
]


@pytest.mark.parametrize(("probe", "expected"), STATIC, ids=[probe.__name__ for probe, _ in STATIC])
def test_each_access_form_is_decoded(probe: Callable[..., Any], expected: list[Any]) -> None:
    found = Counter(
        (access.kind, access.name, access.receiver) for access in analyse(probe.__code__).values()
    )
    listing = "\n".join(f"{i.opname} {i.argrepr}" for i in dis.get_instructions(probe))
    assert found == Counter(expected), listing


MODULE_CODE = """\
shared = 0
shared = shared + 1
del shared
"""


def test_module_level_names_are_decoded() -> None:
    code = compile(MODULE_CODE, os.path.join(HERE, "module_probe.py"), "exec")
    found = Counter((access.kind, access.name) for access in analyse(code).values())
    assert found == Counter({(WRITE_NAME, "shared"): 3, (READ_NAME, "shared"): 1})


def test_every_local_load_of_this_python_is_classified() -> None:
    """A load form a new CPython adds (as 3.14 added LOAD_FAST_BORROW) fails
    here instead of silently hiding every access whose receiver it loads."""
    loads = {dis.opname[op] for op in [*dis.haslocal, *dis.hasfree] if "LOAD" in dis.opname[op]}
    assert loads - (LOCAL_LOADS | PAIR_LOADS | NOT_RECEIVER_LOADS) == set()
    assert loads & (LOCAL_LOADS | PAIR_LOADS)  # the tables name real instructions


# -- end to end: two unordered threads are reported ---------------------------------


def races_between(first: Callable[[], object], second: Callable[[], object]) -> list[Any]:
    """Races reported when ``first`` runs in one thread and then ``second``
    in another, ordered only by a raw lock tracedsync does not see."""
    detector = RaceDetector([HERE])
    turn = _thread.allocate_lock()
    turn.acquire()

    def one() -> None:
        first()
        turn.release()

    def two() -> None:
        assert turn.acquire(timeout=WAIT)
        second()

    with tracedsync.patched():
        detector.start()
        try:
            threads = [threading.Thread(target=one), threading.Thread(target=two)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(WAIT)
                assert not thread.is_alive()
        finally:
            detector.stop()
    return detector.races


def _scenarios() -> list[Any]:
    box, holder, boxes = Box(), Holder(), [Box(), Box()]
    closure = make_closure(box)
    return [
        ("write/read", lambda: write_attr(box), lambda: read_attr(box), "Box.value"),
        (
            "write-from-local/read",
            lambda: write_attr_from_local(box, 5),
            lambda: read_attr(box),
            "Box.value",
        ),
        ("augmented", lambda: augment_attr(box), lambda: augment_attr(box), "Box.value"),
        ("delete/write", lambda: delete_attr(box), lambda: write_attr(box), "Box.value"),
        ("nested", lambda: augment_nested(holder), lambda: read_nested(holder), "Box.value"),
        (
            "through-global",
            augment_through_global,
            read_through_global,
            "Box.value",
        ),
        (
            "class-attribute",
            augment_class_attribute,
            read_class_attribute,
            "Box.count",
        ),
        ("loop", lambda: augment_in_loop(boxes), lambda: augment_in_loop(boxes), "Box.value"),
        (
            "comprehension",
            lambda: augment_in_loop(boxes),
            lambda: read_in_comprehension(boxes),
            "Box.value",
        ),
        ("condition", lambda: write_attr(box), lambda: read_in_condition(box), "Box.value"),
        ("closure", closure, closure, "Box.value"),
        ("self", lambda: through_self(box), lambda: read_through_self(box), "Box.value"),
        ("global", write_global, read_global, f"{__name__}.counter"),
        ("global-augmented", augment_global, augment_global, f"{__name__}.counter"),
    ]


@pytest.mark.parametrize("index", range(len(_scenarios())), ids=[s[0] for s in _scenarios()])
def test_each_access_form_is_reported(index: int) -> None:
    Box.count = 0
    _, first, second, location = _scenarios()[index]
    races = races_between(first, second)
    assert races, "no race reported"
    assert {race["location"] for race in races} == {location}, races
    for race in races:
        earlier, later = race["accesses"]
        assert earlier["thread"] != later["thread"]
        assert "write" in (earlier["access"], later["access"])


def test_module_level_code_is_reported() -> None:
    code = compile(MODULE_CODE, os.path.join(HERE, "module_probe.py"), "exec")
    namespace: dict[str, Any] = {"__name__": "module_probe"}
    races = races_between(lambda: exec(code, namespace), lambda: exec(code, namespace))
    assert races
    assert {race["location"] for race in races} == {"module_probe.shared"}
    assert all(race["object_type"] == "module global" for race in races)
