"""Two tellers move money between accounts; one takes the locks in the other order."""

import threading
import time

accounts = {"alice": 100, "bob": 100}
alice_lock = threading.Lock()
bob_lock = threading.Lock()
locks = {"alice": alice_lock, "bob": bob_lock}
ledger_lock = threading.Lock()
ledger = []
opened = threading.Event()


def transfer(source, target, amount):
    with locks[source]:
        time.sleep(0.002)  # validate the account
        with locks[target]:
            accounts[source] -= amount
            accounts[target] += amount
    with ledger_lock:
        ledger.append((source, target, amount))


def teller(source, target, reverse_at=None):
    opened.wait()
    for number in range(20):
        if number == reverse_at:  # a refund: the other way round
            source, target = target, source
        transfer(source, target, 1)


tellers = [
    threading.Thread(target=teller, args=("alice", "bob"), name="teller-1"),
    threading.Thread(target=teller, args=("alice", "bob"), name="teller-2"),
    threading.Thread(target=teller, args=("alice", "bob", 10), name="teller-3"),
]
for thread in tellers:
    thread.start()
opened.set()
for thread in tellers:
    thread.join()
print(accounts, len(ledger), "transfers")
