"""The code a run sees: a snapshot of its revision, or the working tree.

A revision's snapshot is the bytes of its tree's objects, as committed and as the
checks read them. Not `git archive`: that applies the pushed tree's `.gitattributes`
(`export-subst`, `export-ignore`, `ident`, eol and encoding conversions) and runs the
runner's own filter drivers (`filter=lfs` and its smudge command) on what was pushed.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import IO

from runner.errors import RunyardError
from runner.project import units
from runner.project.source import DirectorySource, GitSource, ProjectSource

_SKIP = (".git", ".runyard", "__pycache__")
_FOLDER_KINDS = ("tree", "commit")  # a submodule (a commit in the tree) is an empty folder


def make_snapshot(source: ProjectSource, dest: Path, limit: int | None = None) -> Path:
    """Write the project's files as the run must see them into `dest` (made read-only).
    A revision's files that hold more than `limit` bytes in all are refused before any is
    written, and before git inflates the one past it: git stores them compressed, so a
    small push may hold gigabytes of zeros."""
    dest.mkdir(parents=True)
    if isinstance(source, GitSource):
        with tempfile.TemporaryFile(dir=dest.parent) as archive:
            write_tree_archive(source, archive, limit)
            archive.seek(0)
            with tarfile.open(fileobj=archive, mode="r:") as tar:  # plain, as written above
                try:  # the filter refuses what would land outside `dest`, links included
                    tar.extractall(dest, filter="data")
                except tarfile.FilterError as error:  # a link out of the project, say
                    raise RunyardError(f"{source.label}: {error}: links out of the project are "
                                       "refused") from error
    elif isinstance(source, DirectorySource):
        shutil.copytree(source.root, dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(*_SKIP))
    _read_only(dest)
    return dest


def write_tree_archive(source: GitSource, into: IO[bytes], limit: int | None = None) -> None:
    """The revision's files below the project's folder as a tar archive written to `into`:
    each file's committed bytes, folders, links as links, nothing converted; one file in
    memory at a time. Past `limit` bytes in all, git is stopped before it inflates the
    file that would pass it, and the archive is refused."""
    left = limit
    with tarfile.open(fileobj=into, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, entry in sorted(source.entries.items()):
            if not path:
                continue
            info = tarfile.TarInfo(entry.path)
            if entry.kind in _FOLDER_KINDS:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            found = source.reader.read(entry.object_id, left)
            if found is None:
                raise RunyardError(f"{source.label}: {entry.path} is listed but its object "
                                   f"{entry.object_id} is missing")
            if found.data is None:
                assert limit is not None
                raise RunyardError(f"{source.label}: its files hold more than "
                                   f"{units.format_bytes(limit)}, what a run may have on disk "
                                   "(--max-disk, or the project's limits.disk): the code is not "
                                   "unpacked")
            if left is not None:
                left -= found.size
            if entry.mode == "120000":
                info.type = tarfile.SYMTYPE
                info.linkname = found.data.decode("utf-8", "surrogateescape")
                tar.addfile(info)
                continue
            info.size, info.mode = len(found.data), 0o755 if entry.mode == "100755" else 0o644
            tar.addfile(info, io.BytesIO(found.data))


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
