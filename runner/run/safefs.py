"""Reading files that someone else controls: no link followed, only regular files.

Paths are opened one component at a time, each relative to the folder before it
and with O_NOFOLLOW, so neither a link nor a folder swapped for one leads out of
the tree; a pipe, socket or device is refused before it is opened.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_PART = re.compile(r"^[^/\x00]{1,255}$")


class Refused(Exception):
    """A file cannot be taken; the message says which and why."""


@contextlib.contextmanager
def opened_dir(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def open_folder(path: Path) -> int:
    """The folder at `path` (a path the runner made, so its parents are trusted)."""
    if path == path.parent:  # the root
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    with opened_dir(os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)) as parent:
        return open_dir_at(parent, path.name)


def open_dir_at(folder: int, name: str) -> int:
    try:
        return os.open(name, _OPEN_FLAGS | os.O_DIRECTORY, dir_fd=folder)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Refused(f"{name[:200]} is not a folder (a link is never followed)") from error
        raise


def open_regular_at(folder: int, name: str, shown: str) -> int:
    """`name` in `folder`, opened only if it is a regular file."""
    mode = os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
    if not stat.S_ISREG(mode):
        raise Refused(f"{shown[:200]} is {describe(mode)}, not a regular file")
    fd = os.open(name, _OPEN_FLAGS, dir_fd=folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # it changed in between
        os.close(fd)
        raise Refused(f"{shown[:200]} is not a regular file")
    return fd


def split_relative(path: str) -> list[str]:
    """The components of a plain relative path: no empty part, no `.` or `..`."""
    parts = path.split("/")
    if any(part in ("", ".", "..") or not _PART.fullmatch(part) for part in parts):
        raise Refused(f"{path[:200]!r} is not a plain relative path")
    return parts


def open_beneath(root: Path, relative: str) -> int:
    """The regular file at `relative` under `root`, with no link on the way."""
    parts = split_relative(relative)
    with contextlib.ExitStack() as stack:
        fd = stack.enter_context(opened_dir(open_folder(root)))
        for part in parts[:-1]:
            fd = stack.enter_context(opened_dir(open_dir_at(fd, part)))
        return open_regular_at(fd, parts[-1], relative)
    raise AssertionError("unreachable")


def describe(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a folder" if stat.S_ISDIR(mode) else "not a regular file"
