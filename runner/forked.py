"""Work that is all CPU (parsing thousands of records, rendering thousands of pages) split
over forked processes, one a core. A child inherits the parent's memory, so nothing is
copied going in; it sends its share's results back pickled through a pipe.

Only a single-threaded process forks: a thread holding a lock at the fork would leave the
child waiting for it forever. Elsewhere, and for little work, it all runs in this process.
A process that reads git through a long-lived process stops it before it forks (the
caller's `before_fork`), so that each process starts its own (runner.git: `close()`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
Child = tuple[int, BinaryIO]  # process id, the read end of its pipe


def forked_map(work: Callable[[Sequence[Item]], list[Result]], items: Sequence[Item],
               least: int, before_fork: Callable[[], None] = lambda: None) -> list[Result]:
    """`work(items)`: one result an item, in their order. The items are dealt into up to
    one share a core (item i to share i % shares, so costly items that come together are
    spread), each of at least `least` items; this process works on the first share while
    children work on the others, after `before_fork()`. What a child raises is raised here."""
    with _collection_paused():
        return _split(work, items, least, before_fork)


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """The cyclic garbage collector paused: such work makes many objects that live on (a
    record, a page), and each full collection would walk all the ones made so far. What
    it makes holds no cycles, so reference counting frees what it drops."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _split(work: Callable[[Sequence[Item]], list[Result]], items: Sequence[Item],
           least: int, before_fork: Callable[[], None]) -> list[Result]:
    shares = min(os.cpu_count() or 1, len(items) // max(least, 1))
    if shares < 2 or threading.active_count() > 1:
        return work(items)
    before_fork()
    parts = [items[share::shares] for share in range(shares)]
    children: list[Child] = []
    try:
        for part in parts[1:]:
            children.append(_start(work, part))
        dealt = [work(parts[0])]
        while children:
            dealt.append(_result(children.pop(0)))
        results: list[Result] = [None] * len(items)  # type: ignore[list-item]
        for share, (part, done) in enumerate(zip(parts, dealt, strict=True)):
            if len(done) != len(part):
                raise RuntimeError(f"{len(done)} results of {len(part)} items")
            results[share::shares] = done
        return results
    finally:
        for child in children:  # not collected: something went wrong here
            _stop(child)


def _start(work: Callable[[Sequence[Item]], list[Result]], part: Sequence[Item]) -> Child:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: work, answer, and leave without running the parent's exit code
        os.close(read_end)
        for number in (signal.SIGINT, signal.SIGTERM):  # the parent's handlers are the parent's:
            signal.signal(number, signal.SIG_DFL)  # a signal ends a child, its parent cleans up
        code = 0
        try:
            answer = pickle.dumps((True, work(part)), pickle.HIGHEST_PROTOCOL)
        except BaseException as error:  # everything goes back to the parent
            answer, code = _failure(error), 1
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(answer)
        os._exit(code)
    os.close(write_end)
    return pid, os.fdopen(read_end, "rb")


def _failure(error: BaseException) -> bytes:
    try:
        return pickle.dumps((False, error), pickle.HIGHEST_PROTOCOL)
    except Exception:  # an error that does not pickle goes back as its text
        return pickle.dumps((False, RuntimeError(f"{type(error).__name__}: {error}")))


def _result(child: Child) -> list[Result]:
    pid, pipe = child
    try:
        answer = pipe.read()
    except BaseException:
        _stop(child)
        raise
    pipe.close()
    _, status = os.waitpid(pid, 0)
    if not answer:
        raise RuntimeError(f"a forked worker ended without an answer (wait status {status})")
    done, value = pickle.loads(answer)
    if not done:
        raise value
    result: list[Result] = value
    return result


def _stop(child: Child) -> None:
    pid, pipe = child
    pipe.close()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
