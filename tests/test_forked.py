"""Work split over forked processes (runner.forked): the same answer as in one process.

forked_map forks only from a single-threaded process, and a test process may hold threads
of other tests: each check that forks runs in a fresh interpreter (`_in_a_fresh_process`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from runner.errors import RunyardError
from runner.forked import forked_map

ROOT = Path(__file__).resolve().parents[1]
forks = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: nothing forks")


def _in_a_fresh_process(check: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import tests.test_forked as t; t.{check}()"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _pids(items: Sequence[int]) -> list[tuple[int, int]]:
    return [(item * item, os.getpid()) for item in items]


def check_the_answer_is_in_order_and_the_work_shared() -> None:
    found = forked_map(_pids, range(1000), least=10)
    assert [square for square, _ in found] == [n * n for n in range(1000)]
    workers = {pid for _, pid in found}
    assert os.getpid() in workers
    assert len(workers) == min(os.cpu_count() or 1, 100)


@forks
def test_the_answer_is_in_order_and_the_work_shared() -> None:
    _in_a_fresh_process("check_the_answer_is_in_order_and_the_work_shared")


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


def check_what_a_child_raises_is_raised_here_and_no_child_is_left() -> None:
    with pytest.raises(RunyardError, match="the child's error"):
        forked_map(_fails_after, range(1000), least=10)
    with pytest.raises(RuntimeError, match="ended without an answer"):
        forked_map(_dies, range(1000), least=10)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # every child reaped


@forks
def test_what_a_child_raises_is_raised_here_and_no_child_is_left() -> None:
    _in_a_fresh_process("check_what_a_child_raises_is_raised_here_and_no_child_is_left")


def _one_short(items: Sequence[int]) -> list[int]:
    return list(items)[:-1]


def check_work_that_answers_for_fewer_items_than_it_was_given_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="results of"):
        forked_map(_one_short, range(1000), least=10)


@forks
def test_work_that_answers_for_fewer_items_than_it_was_given_is_a_bug() -> None:
    _in_a_fresh_process("check_work_that_answers_for_fewer_items_than_it_was_given_is_a_bug")


def _interrupted(items: Sequence[int]) -> list[int]:
    if items[-1] == 999:  # a child's share: as if Ctrl-C reached the process group
        os.kill(os.getpid(), signal.SIGINT)
    return list(items)


def check_a_signal_ends_a_child_without_its_parents_handlers() -> None:
    handled: list[int] = []
    signal.signal(signal.SIGINT, lambda number, frame: handled.append(number))
    with pytest.raises(RuntimeError, match="ended without an answer"):
        forked_map(_interrupted, range(1000), least=10)
    assert handled == []  # the child did not run the parent's handler


@forks
def test_a_signal_ends_a_child_without_its_parents_handlers() -> None:
    _in_a_fresh_process("check_a_signal_ends_a_child_without_its_parents_handlers")
