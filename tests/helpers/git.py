"""Real git for tests: every call runs the `git` program with a fixed identity."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

IDENTITY = (
    "-c", "user.name=test",
    "-c", "user.email=test@example.com",
    "-c", "commit.gpgsign=false",
)
_IGNORED = (".runyard", "__pycache__")


def git(cwd: Path, *args: str, stdin: str | None = None) -> str:
    """Run `git ARGS` in `cwd` (check=True), fed `stdin`, and return its standard output."""
    done = subprocess.run(
        ["git", *IDENTITY, *args],
        cwd=cwd,
        input=stdin,
        check=True,
        capture_output=True,
        text=True,
        env=_git_env(),
    )
    return done.stdout


def make_repo(path: Path) -> Path:
    """`path` (made if needed) as a new git repository whose branch is `main`."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "--quiet", "-b", "main")
    return path


def commit_all(repo: Path, message: str) -> str:
    """Stage everything in `repo`, commit it, and return the new commit's sha."""
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--no-verify", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def bare_clone(repo: Path, dest: Path) -> Path:
    """A bare clone of `repo` at `dest` (no working tree, as a server holds it)."""
    git(repo.parent, "clone", "--quiet", "--bare", str(repo), str(dest))
    return dest


def copy_project(src: Path, dest: Path) -> Path:
    """A copy of the project tree `src` at `dest`, without run state or byte code."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*_IGNORED), symlinks=True)
    return dest


def _git_env() -> dict[str, str]:
    """The environment, minus what would point git at another repository or config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    return env
