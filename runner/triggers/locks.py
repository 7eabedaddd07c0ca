"""Locks across processes on one machine: a file held with `flock`, released by the
kernel when its holder dies, so a killed runner never leaves a lock behind."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold the lock file `path` (made if needed) while the block runs; wait for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_path(git_dir: Path, name: str) -> Path:
    """Where the lock `name` of a repository lives (beside the hook's log)."""
    return git_dir / "runyard" / "locks" / f"{name}.lock"
