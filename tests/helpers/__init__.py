"""Helpers for runyard's tests: real git repositories and project copies, no mocks."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from runner.record.results import run_folder
from tests.helpers.git import bare_clone, commit_all, copy_project, git, make_repo

RESULTS_BRANCH = "runyard/results"

__all__ = [
    "CHECKOUT", "SAMPLE_PROJECT", "RunCli",
    "bare_clone", "commit_all", "committed_copy", "copy_project", "edit_file", "git",
    "left_by_the_engine", "make_repo", "most_at_once", "on_a_terminal", "read_record", "sha256",
]

CHECKOUT = Path(__file__).resolve().parents[2]
SAMPLE_PROJECT = CHECKOUT / "sample-project"

T = TypeVar("T")

RunCli = Callable[..., "subprocess.CompletedProcess[str]"]
"""The `run_cli` fixture: `run_cli(*args, cwd=None, env=None)` runs `python -m runner ARGS`."""


def left_by_the_engine(listing: Callable[[], list[T]], patience: float = 10) -> list[T]:
    """What `listing` (a test's containers) still holds once the engine has had `patience`
    seconds to remove those that ended: a run's container goes by itself, moments after
    the runner is told of its end."""
    deadline = time.monotonic() + patience
    while (left := listing()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def edit_file(path: Path, old: str, new: str) -> None:
    """Replace `old` (which must be there, once) by `new` in the file at `path`."""
    text = path.read_text("utf-8")
    assert text.count(old) == 1, f"{old!r} is not in {path} exactly once"
    path.write_text(text.replace(old, new), "utf-8")


def committed_copy(project: Path, dest: Path, name: tuple[str, str], message: str) -> Path:
    """A copy of a test project, renamed from name[0] to name[1], committed on branch main."""
    copy_project(project, dest)
    edit_file(dest / "project.yaml", f"name: {name[0]}\n", f"name: {name[1]}\n")
    make_repo(dest)
    commit_all(dest, message)
    return dest


def sha256(data: bytes) -> str:
    """A content hash as runyard records it."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """How many of the (start, end) intervals were open at the same moment, at most."""
    events = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    open_now = peak = 0
    for _, change in events:  # at equal times an end sorts before a start
        open_now += change
        peak = max(peak, open_now)
    return peak


def read_record(repo: Path, uid: str) -> dict[str, Any]:
    """A run's record on the results branch, read with plain `git show`."""
    record: dict[str, Any] = yaml.safe_load(
        git(repo, "show", f"{RESULTS_BRANCH}:{run_folder(uid)}/run.yaml"))
    return record


def on_a_terminal(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> str:
    """What `runyard ARGS` prints with a terminal as its output: a pty of 50 x 400, read
    once (under its buffer's size), NO_COLOR unset unless `env` sets it; the pty's own
    \\r\\n made \\n."""
    base = {key: value for key, value in os.environ.items() if key != "NO_COLOR"}
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 400, 0, 0))
    with os.fdopen(leader, "rb", buffering=0) as reader:
        done = subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, stdout=follower,
                              stderr=subprocess.PIPE, timeout=120,
                              env={**base, "TERM": "xterm-256color", **(env or {})})
        os.close(follower)
        assert done.returncode == 0, done.stderr
        return reader.read(1 << 20).decode().replace("\r\n", "\n")
