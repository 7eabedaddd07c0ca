"""Where a project's files come from: a directory, or a revision of a git repository.

Reading from a revision goes straight to git's objects, so it works in a bare
repository (a `post-receive` hook has no working tree) and never sees
uncommitted changes.

Both read a path the same way, so that the pre-commit check and the check at push
time agree: symbolic links are followed only while they stay inside the project
(never to an absolute path, at most MAX_LINKS of them), only regular files are
read, and never more than a limit.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from runner.errors import RunyardError
from runner.git import (
    ObjectReader,
    Repository,
    TreeEntry,
    commit_of,
    find_repository,
    list_tree,
)

MAX_LINKS = 40  # as many as Linux follows in one path
MAX_FILE_BYTES = 16 * 1024 * 1024
_LINK_MODE = "120000"
_SKIPPED_FOLDERS = ("__pycache__",)  # and every folder whose name starts with "."


class SourceError(RunyardError):
    """A path of the project that cannot be read: `reason` says why, without the path."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ProjectSource(Protocol):
    """Read access to the files of one project; paths are POSIX, relative to its root."""

    @property
    def label(self) -> str: ...

    @property
    def revision(self) -> str | None: ...

    @property
    def state_dir(self) -> Path:
        """Where runyard keeps its own files for this project (logs, caches, locks)."""
        ...

    def read(self, path: str, limit: int = MAX_FILE_BYTES) -> bytes:
        """The bytes of a regular file, at most `limit` of them; SourceError otherwise."""
        ...

    def resolve(self, path: str) -> str:
        """`path` with its symbolic links followed; SourceError for one leaving the project."""
        ...

    def lexists(self, path: str) -> bool:
        """Whether `path` is there, as a file, a folder or a link (even a broken one)."""
        ...

    def is_file(self, path: str) -> bool: ...

    def is_dir(self, path: str) -> bool: ...

    def files(self, path: str = "") -> list[str]:
        """Every file below `path` (recursively, links not followed, folders named `.*`
        and `__pycache__` left out), sorted, relative to the root."""
        ...

    def close(self) -> None:
        """Let go of what reading holds open (a git process); a later read opens it again."""
        ...


def resolve_links(path: str, link_of: Callable[[str], str | None]) -> str:
    """`path`, relative to the project, with every symbolic link along it followed;
    `link_of(p)` is the target of the link at `p`, or None when `p` is no link."""
    todo = path.split("/")
    done: list[str] = []
    links, via = 0, "it"
    while todo:
        part = todo.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                raise SourceError(path, f"{via} leads out of the project")
            done.pop()
            continue
        here = "/".join([*done, part])
        target = link_of(here)
        if target is None:
            done.append(part)
            continue
        links += 1
        subject = "it is" if here == _normal(path) else f"{here!r} is"
        if links > MAX_LINKS:
            raise SourceError(path, f"{subject} a symbolic link in a loop")
        via = f"{subject} a symbolic link to {target!r}, which"
        if target.startswith("/"):
            raise SourceError(path, f"{via} leads out of the project")
        todo = [*target.split("/"), *todo]
    return "/".join(done)


def _normal(path: str) -> str:
    return "/".join(part for part in path.split("/") if part not in ("", "."))


def _in_folder(source: ProjectSource, path: str, exists: Callable[[str], bool]) -> bool:
    """Whether `path` is there, its folder's links followed but not its own."""
    folder, _, name = _normal(path).rpartition("/")
    try:
        return exists(_below(source.resolve(folder), name))
    except SourceError:
        return False


def _below(folder: str, path: str) -> str:
    return f"{folder.rstrip('/')}/{path}" if folder else path


def _missing(path: str, real: str) -> str:
    if real == _normal(path):
        return "it does not exist"
    return f"it is a symbolic link to {real!r}, which does not exist"


def _check_kind(path: str, mode: int, size: int, limit: int) -> None:
    """Refuse what is not a regular file of at most `limit` bytes."""
    if stat.S_ISDIR(mode):
        raise SourceError(path, "it is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise SourceError(path, "it is not a regular file (a pipe, a device or a socket?)")
    if size > limit:
        raise SourceError(path, _too_big(limit))


def _too_big(limit: int) -> str:
    return f"it is over the limit of {limit} bytes ({limit / 2**20:g} MiB)"


def _listed(path: str) -> bool:
    """Whether `files()` lists `path`: no part of it is a skipped folder."""
    folders = path.split("/")[:-1]
    return not any(part.startswith(".") or part in _SKIPPED_FOLDERS for part in folders)


class DirectorySource:
    """A project in a directory of the file system, as it is now."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.revision: str | None = None

    @property
    def label(self) -> str:
        return str(self.root)

    @property
    def state_dir(self) -> Path:
        return self.root / ".runyard"

    def read(self, path: str, limit: int = MAX_FILE_BYTES) -> bytes:
        real = self.resolve(path)
        try:
            fd = os.open(self.root / real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SourceError(path, _missing(path, real)) from None
        except OSError as error:
            raise SourceError(path, f"it cannot be read: {error.strerror}") from None
        except ValueError:
            raise SourceError(path, "its name holds a NUL character") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(fd)
            _check_kind(path, info.st_mode, info.st_size, limit)
            data = handle.read(limit + 1)
        _check_kind(path, info.st_mode, len(data), limit)  # it may have grown
        return data

    def resolve(self, path: str) -> str:
        return resolve_links(path, self._link)

    def _link(self, path: str) -> str | None:
        try:
            return os.readlink(self.root / path)
        except (OSError, ValueError):  # not a link, not there, or a NUL in the path
            return None

    def lexists(self, path: str) -> bool:
        return _in_folder(self, path, lambda entry: os.path.lexists(self.root / entry))

    def is_file(self, path: str) -> bool:
        return self._is(path, stat.S_ISREG)

    def is_dir(self, path: str) -> bool:
        return self._is(path, stat.S_ISDIR)

    def _is(self, path: str, kind: Callable[[int], bool]) -> bool:
        try:
            return kind(os.lstat(self.root / self.resolve(path)).st_mode)
        except (SourceError, OSError, ValueError):  # ValueError: a NUL in the path
            return False

    def files(self, path: str = "") -> list[str]:
        top = self.root / self.resolve(path)
        if not top.is_dir():
            return [path] if path and self.lexists(path) else []
        found: list[str] = []
        for folder, dirs, names in os.walk(top):
            below = Path(folder).relative_to(top)
            links = [d for d in dirs if os.path.islink(os.path.join(folder, d))]  # listed, as git does
            dirs[:] = [d for d in dirs if d not in links and _listed(f"{d}/")]
            found.extend(_below(path, (below / name).as_posix()) for name in [*names, *links])
        return sorted(found)

    def close(self) -> None:
        """Nothing is held open between reads of a directory."""


def commit_named(git_dir: Path, revision: str) -> str:
    """The commit a revision the user named is; a typo is their error."""
    found = commit_of(git_dir, revision)
    if found is None:
        raise no_revision(git_dir, revision)
    return found


def no_revision(git_dir: Path, revision: str) -> RunyardError:
    """The error for a revision that names no commit: in a repository with no commit
    yet, that is what the user has to hear, not that HEAD is unknown."""
    if commit_of(git_dir, "HEAD") is None:
        return RunyardError(f"no revision {revision!r} in {git_dir}: the repository has no "
                            "commit yet (commit the project first)")
    return RunyardError(f"no revision {revision!r} in {git_dir}")


class GitSource:
    """A project at one revision of a git repository, possibly under a sub-folder.

    The revision is resolved and its files are read through one `git cat-file --batch`
    process (runner.git.ObjectReader), and its tree is listed once (`git ls-tree`), so
    lookups are cheap and threads may read at once. `close()` stops that process.
    """

    def __init__(self, repo: Repository, revision: str, prefix: str = "") -> None:
        self.repo = repo
        self.git_dir = repo.git_dir
        self.prefix = prefix.strip("/")
        self.reader = ObjectReader(self.git_dir)
        found = self.reader.commit_of(revision)
        if found is None:
            self.reader.close()
            raise no_revision(self.git_dir, revision)
        self.revision: str | None = found
        try:
            self.entries = self._list_tree(revision)
        except RunyardError:
            self.reader.close()
            raise

    def _list_tree(self, revision: str) -> dict[str, TreeEntry]:
        """Every file and folder below the prefix, by path."""
        tree = f"{self.revision}:{self.prefix}" if self.prefix else str(self.revision)
        listing = list_tree(self.git_dir, tree, recursive=True)
        if listing is None:
            raise RunyardError(f"no folder {self.prefix!r} at revision {revision}")
        return {"": TreeEntry("040000", "tree", "", ""), **{entry.path: entry for entry in listing}}

    def close(self) -> None:
        self.reader.close()

    def tree(self) -> str | None:
        """The id of the revision's whole tree (the repository's, whatever the prefix)."""
        return self.reader.tree_of(self.revision or "")

    @property
    def state_dir(self) -> Path:
        """Beside the project in a working tree; in a bare repository, inside it."""
        top = self.repo.work_tree
        base = top / self.prefix if top is not None else self.git_dir
        return base / ".runyard"

    @property
    def label(self) -> str:
        where = f":{self.prefix}" if self.prefix else ""
        return f"{(self.revision or '')[:12]}{where}"

    def object_id(self, path: str) -> str | None:
        """The git object id of a file or folder at this revision (None when absent)."""
        found = self.entries.get(path)
        return found.object_id if found else None

    def read(self, path: str, limit: int = MAX_FILE_BYTES) -> bytes:
        real = self.resolve(path)
        found = self.entries.get(real)
        if found is None:
            raise SourceError(path, _missing(path, real))
        _check_kind(path, int(found.mode, 8), 0, limit)  # git's modes are stat's
        return self._read(found.object_id, path, limit)

    def _read(self, object_id: str, path: str, limit: int) -> bytes:
        found = self.reader.read(object_id, limit)
        if found is None:
            raise FileNotFoundError(f"{object_id} ({path}) is listed in {self.revision} but missing")
        if found.data is None:
            raise SourceError(path, _too_big(limit))
        return found.data

    def resolve(self, path: str) -> str:
        return resolve_links(path, self._link)

    def _link(self, path: str) -> str | None:
        found = self.entries.get(path)
        if found is None or found.mode != _LINK_MODE:
            return None
        return self._read(found.object_id, path, MAX_FILE_BYTES).decode("utf-8", "surrogateescape")

    def lexists(self, path: str) -> bool:
        return _in_folder(self, path, lambda entry: entry in self.entries)

    def is_file(self, path: str) -> bool:
        return self._kind(path) == "blob"

    def is_dir(self, path: str) -> bool:
        return self._kind(path) == "tree"

    def _kind(self, path: str) -> str | None:
        try:
            found = self.entries.get(self.resolve(path))
        except SourceError:
            return None
        return found.kind if found else None

    def files(self, path: str = "") -> list[str]:
        real = self.resolve(path)
        if self._kind(real) != "tree":
            return [path] if path and self.lexists(path) else []
        folder = f"{real}/" if real else ""
        return sorted(_below(path, p[len(folder):]) for p, entry in self.entries.items()
                      if entry.kind == "blob" and p.startswith(folder) and _listed(p[len(folder):]))


def prepare_state_dir(path: Path) -> Path:
    """Make runyard's own folder, ignored by git so a run leaves the checkout clean."""
    path.mkdir(parents=True, exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# runyard's own files: logs, caches, the artifact store\n*\n")
    return path


def open_source(path: Path, revision: str | None = None) -> ProjectSource:
    """The project at `path`: its files as they are, or as they were at `revision`."""
    if revision is None:
        return DirectorySource(path)
    found = find_repository(path)
    if found is None:
        raise RunyardError(f"{path} is not in a git repository (needed for --revision)")
    return GitSource(found.repository, revision, found.prefix)
