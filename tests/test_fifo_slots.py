"""The search gate: at most n searches at once, the others let in first come, first served."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from indexer.tantivy_engine import FifoSlots


def _wait_until(count: Callable[[], int], value: int, what: str) -> None:
    deadline = time.monotonic() + 10
    while count() != value:
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.001)


def test_at_most_n_holders_and_the_rest_in_arrival_order() -> None:
    slots = FifoSlots(2)
    release = {k: threading.Event() for k in range(7)}
    entered: list[int] = []
    inside = 0
    most = 0
    lock = threading.Lock()

    def search(k: int) -> None:
        nonlocal inside, most
        with slots:
            with lock:
                entered.append(k)
                inside += 1
                most = max(most, inside)
            release[k].wait(10)
            with lock:
                inside -= 1

    threads = []
    for k in range(7):
        t = threading.Thread(target=search, args=(k,))
        t.start()
        threads.append(t)
        if k < 2:
            _wait_until(lambda: len(entered), k + 1, f"search {k} to start")
        else:  # queued before the next one arrives
            _wait_until(lambda: len(slots._waiting), k - 1, f"search {k} to queue")
    assert entered == [0, 1]
    for k in range(7):
        release[k].set()
        _wait_until(lambda: len(entered), min(7, k + 3), f"search {min(6, k + 2)} to be let in")
    for t in threads:
        t.join(10)
    assert entered == list(range(7))
    assert most == 2


def test_a_slot_freed_with_nobody_waiting_is_taken_at_once() -> None:
    slots = FifoSlots(1)
    with slots:
        pass
    done = threading.Event()

    def search() -> None:
        with slots:
            done.set()

    t = threading.Thread(target=search)
    t.start()
    t.join(10)
    assert done.is_set()
    assert slots._free == 1 and not slots._waiting


def test_a_failing_search_gives_its_slot_back() -> None:
    slots = FifoSlots(1)
    with pytest.raises(ValueError), slots:
        raise ValueError("engine error")
    assert slots._free == 1


class _Interrupted(Exception):
    pass


def test_a_search_interrupted_while_waiting_leaves_the_line() -> None:
    import signal

    slots = FifoSlots(1)
    holding, done = threading.Event(), threading.Event()

    def holder() -> None:
        with slots:
            holding.set()
            done.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    holding.wait(10)

    def interrupt(signum: int, frame: object) -> None:
        raise _Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(_Interrupted), slots:
            pytest.fail("let in while the only slot was held")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not slots._waiting
    done.set()
    t.join(10)
    assert slots._free == 1  # the holder's slot came back, not handed to the one who left


def test_a_holder_passes_through_again_and_frees_the_slot_only_at_the_outer_exit() -> None:
    """The OPAC holds a slot for a whole request and the engine's search takes it again inside."""
    slots = FifoSlots(1)
    other_in = threading.Event()
    inner_done = threading.Event()

    def other() -> None:
        with slots:
            other_in.set()

    def request() -> None:
        with slots:
            waiting = threading.Thread(target=other, daemon=True)
            waiting.start()
            _wait_until(lambda: len(slots._waiting), 1, "the other request to queue")
            with slots, slots:  # the engine's search inside the request, and again inside that
                pass
            inner_done.set()
            assert not other_in.wait(0.05), "the slot was given away while its holder still held it"
        waiting.join(10)

    t = threading.Thread(target=request, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "a holder entering again waited for itself"
    assert inner_done.is_set() and other_in.is_set()
    assert slots._free == 1 and not slots._waiting
