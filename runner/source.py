"""Where a project's files come from: a directory, or a revision of a git repository.

Reading from a revision goes straight to git's objects, so it works in a bare
repository (a `post-receive` hook has no working tree) and never sees
uncommitted changes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from runner.errors import RunyardError

if TYPE_CHECKING:
    import git


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

    def read(self, path: str) -> bytes: ...

    def is_file(self, path: str) -> bool: ...

    def is_dir(self, path: str) -> bool: ...

    def files(self, path: str = "") -> list[str]:
        """Every file below `path` (recursively), sorted, relative to the root."""
        ...


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

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def is_file(self, path: str) -> bool:
        return (self.root / path).is_file()

    def is_dir(self, path: str) -> bool:
        return (self.root / path).is_dir()

    def files(self, path: str = "") -> list[str]:
        top = self.root / path
        if top.is_file():
            return [path]
        found: list[str] = []
        for folder, dirs, names in os.walk(top):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
            relative = Path(folder).relative_to(self.root)
            found.extend((relative / name).as_posix() for name in names)
        return sorted(found)


class GitSource:
    """A project at one revision of a git repository, possibly under a sub-folder."""

    def __init__(self, repo: git.Repo, revision: str, prefix: str = "") -> None:
        import git

        try:
            self.commit = repo.commit(revision)
        except (git.BadName, ValueError) as error:
            raise RunyardError(f"no revision {revision!r} in {repo.git_dir}") from error
        self.repo = repo
        self.prefix = prefix.strip("/")
        self.revision: str | None = self.commit.hexsha
        try:
            self.tree = self.commit.tree / self.prefix if self.prefix else self.commit.tree
        except KeyError as error:
            raise RunyardError(f"no folder {self.prefix!r} at revision {revision}") from error

    @property
    def state_dir(self) -> Path:
        """Beside the project in a working tree; in a bare repository, inside it."""
        top = self.repo.working_tree_dir
        base = Path(top) / self.prefix if top is not None else Path(self.repo.git_dir)
        return base / ".runyard"

    @property
    def label(self) -> str:
        where = f":{self.prefix}" if self.prefix else ""
        return f"{self.commit.hexsha[:12]}{where}"

    def _object(self, path: str) -> git.Blob | git.Tree | None:
        try:
            return self.tree / path if path else self.tree
        except KeyError:
            return None

    def object_id(self, path: str) -> str | None:
        """The git object id of a file or folder at this revision (None when absent)."""
        found = self._object(path)
        return None if found is None else str(found.hexsha)

    def read(self, path: str) -> bytes:
        blob = self._object(path)
        if blob is None or blob.type != "blob":
            raise FileNotFoundError(path)
        data: bytes = blob.data_stream.read()
        return data

    def is_file(self, path: str) -> bool:
        found = self._object(path)
        return found is not None and found.type == "blob"

    def is_dir(self, path: str) -> bool:
        found = self._object(path)
        return found is not None and found.type == "tree"

    def files(self, path: str = "") -> list[str]:
        found = self._object(path)
        if found is None:
            return []
        if found.type == "blob":
            return [path]
        strip = len(self.prefix) + 1 if self.prefix else 0
        import git

        blobs = [item for item in found.traverse() if isinstance(item, git.Blob)]
        return sorted(str(blob.path)[strip:] for blob in blobs)


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
    import git

    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as error:
        raise RunyardError(f"{path} is not in a git repository (needed for --revision)") from error
    top = repo.working_tree_dir
    prefix = "" if top is None else Path(path).resolve().relative_to(Path(top).resolve()).as_posix()
    return GitSource(repo, revision, "" if prefix == "." else prefix)
