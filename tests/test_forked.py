"""Work split over forked processes (runner.forked): the same answer as in one process."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence

import pytest

from runner.errors import RunyardError
from runner.forked import forked_map


def _pids(items: Sequence[int]) -> list[tuple[int, int]]:
    return [(item * item, os.getpid()) for item in items]


def test_the_answer_is_in_order_and_the_work_shared() -> None:
    found = forked_map(_pids, range(1000), least=10)
    assert [square for square, _ in found] == [n * n for n in range(1000)]
    workers = {pid for _, pid in found}
    assert os.getpid() in workers
    assert len(workers) == min(os.cpu_count() or 1, 100)


def test_little_work_stays_in_this_process() -> None:
    assert {pid for _, pid in forked_map(_pids, range(15), least=10)} == {os.getpid()}


def test_a_threaded_process_does_not_fork() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert {pid for _, pid in forked_map(_pids, range(1000), least=10)} == {os.getpid()}
    finally:
        stop.set()
        thread.join()


def _fails_after(items: Sequence[int]) -> list[int]:
    if items[-1] == 999:  # the last share: a child's
        raise RunyardError("the child's error")
    return list(items)


def _dies(items: Sequence[int]) -> list[int]:
    if items[-1] == 999:
        os._exit(7)
    return list(items)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: nothing forks")
def test_what_a_child_raises_is_raised_here_and_no_child_is_left() -> None:
    with pytest.raises(RunyardError, match="the child's error"):
        forked_map(_fails_after, range(1000), least=10)
    with pytest.raises(RuntimeError, match="ended without an answer"):
        forked_map(_dies, range(1000), least=10)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # every child reaped


def _one_short(items: Sequence[int]) -> list[int]:
    return list(items)[:-1]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: nothing forks")
def test_work_that_answers_for_fewer_items_than_it_was_given_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="results of"):
        forked_map(_one_short, range(1000), least=10)


def _interrupted(items: Sequence[int]) -> list[int]:
    if items[-1] == 999:  # a child's share: as if Ctrl-C reached the process group
        os.kill(os.getpid(), signal.SIGINT)
    return list(items)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: nothing forks")
def test_a_signal_ends_a_child_without_its_parents_handlers() -> None:
    handled: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: handled.append(number))
    try:
        with pytest.raises(RuntimeError, match="ended without an answer"):
            forked_map(_interrupted, range(1000), least=10)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert handled == []  # the child did not run the parent's handler
