"""The code a run sees: a snapshot of its revision (`git archive`), or the working tree."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

from runner.errors import RunyardError
from runner.git import archive
from runner.project.source import DirectorySource, GitSource, ProjectSource

_SKIP = (".git", ".runyard", "__pycache__")


def make_snapshot(source: ProjectSource, dest: Path) -> Path:
    """Write the project's files as the run must see them into `dest` (made read-only)."""
    dest.mkdir(parents=True)
    if isinstance(source, GitSource):
        tree = f"{source.revision}:{source.prefix}" if source.prefix else f"{source.revision}"
        with tarfile.open(fileobj=io.BytesIO(archive(source.git_dir, tree))) as tar:
            try:
                tar.extractall(dest, filter="data")
            except tarfile.FilterError as error:  # a link out of the project, say
                raise RunyardError(f"{source.label}: {error}: links out of the project are "
                                   "refused") from error
    elif isinstance(source, DirectorySource):
        shutil.copytree(source.root, dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(*_SKIP))
    _read_only(dest)
    return dest


def _read_only(top: Path) -> None:
    for path in [top, *top.rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod(0o555 if path.is_dir() else (0o555 if path.stat().st_mode & 0o111 else 0o444))


def remove_tree(top: Path) -> None:
    """Remove a folder, read-only parts included."""
    for path in [top, *top.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(top, ignore_errors=True)
