"""One side of the deadlock is a lock tracedsync cannot see (a raw _thread lock)."""

import _thread
import threading

hidden = _thread.allocate_lock()  # not traced: no cycle can be proven
shown = threading.Lock()
both_hold_one = threading.Barrier(2)


def one():
    with shown:
        both_hold_one.wait()
        hidden.acquire()


def two():
    hidden.acquire()
    both_hold_one.wait()
    with shown:
        pass


threads = [threading.Thread(target=f, name=f.__name__) for f in (one, two)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
