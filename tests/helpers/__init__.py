"""Helpers for runyard's tests: real git repositories and project copies, no mocks."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from runner.record.results import run_folder
from tests.helpers.git import bare_clone, commit_all, copy_project, git, make_repo

RESULTS_BRANCH = "runyard/results"

__all__ = [
    "CHECKOUT", "SAMPLE_PROJECT", "RunCli",
    "bare_clone", "commit_all", "committed_copy", "copy_project", "edit_file", "git",
    "make_repo", "most_at_once", "read_record", "sha256",
]

CHECKOUT = Path(__file__).resolve().parents[2]
SAMPLE_PROJECT = CHECKOUT / "sample-project"

RunCli = Callable[..., "subprocess.CompletedProcess[str]"]
"""The `run_cli` fixture: `run_cli(*args, cwd=None, env=None)` runs `python -m runner ARGS`."""


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
