"""Helpers for runyard's tests: real git repositories and project copies, no mocks."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.helpers.git import bare_clone, commit_all, copy_project, git, make_repo

__all__ = [
    "CHECKOUT", "SAMPLE_PROJECT", "RunCli",
    "bare_clone", "commit_all", "copy_project", "edit_file", "git", "make_repo",
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
