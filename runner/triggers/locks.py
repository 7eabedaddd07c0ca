"""Locks across processes on one machine: a file held with `flock`, released by the
kernel when its holder dies, so a killed runner never leaves a lock held. Its last
holder removes the file, so none piles up (one per job and pushed revision)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold the lock file `path` (made if needed) while the block runs; wait for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except BaseException:  # interrupted while it waited
            handle.close()
            raise
        if _is_at(handle.fileno(), path):
            break
        handle.close()  # its holder removed it while this one waited: take the new one
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while held, so a waiter sees it went
        handle.close()


def _is_at(descriptor: int, path: Path) -> bool:
    """Whether the open file is still the one at `path`."""
    try:
        there = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)


def lock_path(git_dir: Path, name: str) -> Path:
    """Where the lock `name` of a repository lives (beside the hook's log)."""
    return git_dir / "runyard" / "locks" / f"{name}.lock"
