"""Where a project's files come from: a directory, or a revision of a git repository.

Reading from a revision goes straight to git's objects, so it works in a bare
repository (a `post-receive` hook has no working tree) and never sees
uncommitted changes.
"""

from __future__ import annotations

import os
import subprocess
import threading
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
    """A project at one revision of a git repository, possibly under a sub-folder.

    The revision's tree is listed once (`git ls-tree`), and files are read through
    one `git cat-file --batch` process guarded by a lock, so lookups are cheap
    and threads may read at once.
    """

    def __init__(self, repo: git.Repo, revision: str, prefix: str = "") -> None:
        self.repo = repo
        self.git_dir = str(repo.git_dir)
        self.prefix = prefix.strip("/")
        found = commit_of(self.git_dir, revision)
        if found is None:
            raise RunyardError(f"no revision {revision!r} in {self.git_dir}")
        self.revision: str | None = found
        self.entries = self._list_tree(revision)
        self.reader = _BlobReader(self.git_dir)

    def _list_tree(self, revision: str) -> dict[str, tuple[str, str]]:
        """path -> (type, object id) for every file and folder below the prefix."""
        tree = f"{self.revision}:{self.prefix}" if self.prefix else str(self.revision)
        listing = _git(self.git_dir, "ls-tree", "-r", "-t", "-z", "--full-name", tree)
        if listing is None:
            raise RunyardError(f"no folder {self.prefix!r} at revision {revision}")
        entries = {"": ("tree", "")}
        for item in listing.decode("utf-8", "surrogateescape").split("\0"):
            if item:
                meta, _, path = item.partition("\t")
                _, kind, object_id = meta.split()
                entries[path] = (kind, object_id)
        return entries

    @property
    def state_dir(self) -> Path:
        """Beside the project in a working tree; in a bare repository, inside it."""
        top = self.repo.working_tree_dir
        base = Path(top) / self.prefix if top is not None else Path(self.git_dir)
        return base / ".runyard"

    @property
    def label(self) -> str:
        where = f":{self.prefix}" if self.prefix else ""
        return f"{(self.revision or '')[:12]}{where}"

    def object_id(self, path: str) -> str | None:
        """The git object id of a file or folder at this revision (None when absent)."""
        found = self.entries.get(path)
        return found[1] if found else None

    def read(self, path: str) -> bytes:
        found = self.entries.get(path)
        if found is None or found[0] != "blob":
            raise FileNotFoundError(path)
        return self.reader.read(found[1])

    def is_file(self, path: str) -> bool:
        return self.entries.get(path, ("",))[0] == "blob"

    def is_dir(self, path: str) -> bool:
        return self.entries.get(path, ("",))[0] == "tree"

    def files(self, path: str = "") -> list[str]:
        if self.is_file(path):
            return [path]
        folder = f"{path.rstrip('/')}/" if path else ""
        return sorted(p for p, (kind, _) in self.entries.items()
                      if kind == "blob" and p.startswith(folder))


class _BlobReader:
    """One `git cat-file --batch` process, started on first use, one request at a time."""

    def __init__(self, git_dir: str) -> None:
        self.git_dir = git_dir
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None

    def read(self, object_id: str) -> bytes:
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                self.process = subprocess.Popen(
                    ["git", "--git-dir", self.git_dir, "cat-file", "--batch"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.write(object_id.encode() + b"\n")
            self.process.stdin.flush()
            header = self.process.stdout.readline().split()
            if len(header) != 3:
                raise FileNotFoundError(object_id)
            data = self.process.stdout.read(int(header[2]) + 1)
            return data[:-1]

    def __del__(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def commit_of(git_dir: str, revision: str) -> str | None:
    """The commit `revision` names in the repository, or None when it has none."""
    found = _git(git_dir, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    return found.decode().strip() if found else None


def _git(git_dir: str, *args: str) -> bytes | None:
    """git's output, or None when it fails."""
    done = subprocess.run(["git", "--git-dir", git_dir, *args], capture_output=True)
    return done.stdout if done.returncode == 0 else None


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
