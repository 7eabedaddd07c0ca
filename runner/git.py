"""Every git command runyard starts goes through here: one function runs them, and the
rest name what runyard asks of git (find a repository, resolve a revision, list a tree,
read objects through one long-lived `git cat-file --batch`, read and write the
config, move a ref by compare-and-swap).

Each call names its repository (a git dir, or the folder it starts in), so the
variables that point git at another repository, index or object store are removed
from its environment: a `post-receive` hook runs with GIT_DIR set, and a caller may
have set others.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, NamedTuple

from runner.errors import RunyardError

ZERO = "0" * 40  # the old value of a ref that must not exist yet
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

# git's own `rev-parse --local-env-vars` (less GIT_CONFIG_PARAMETERS and GIT_CONFIG_COUNT,
# a caller's `-c` settings rather than a repository), and the quarantine of a pre-receive hook
_REPOSITORY_VARIABLES = frozenset({
    "GIT_DIR", "GIT_WORK_TREE", "GIT_IMPLICIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH",
    "GIT_CONFIG", "GIT_GRAFT_FILE", "GIT_NO_REPLACE_OBJECTS", "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX", "GIT_INTERNAL_SUPER_PREFIX", "GIT_SHALLOW_FILE",
})
_QUARANTINE = ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH")


class Output(NamedTuple):
    """What a git command ended with."""

    code: int
    out: bytes
    err: bytes

    @property
    def ok(self) -> bool:
        return self.code == 0

    def text(self) -> str:
        return self.out.decode("utf-8", "surrogateescape").strip()

    def checked(self, what: str) -> bytes:
        """The output; a RunyardError saying what failed, in git's words, when it did."""
        if not self.ok:
            raise RunyardError(f"{what} failed: {self.err.decode(errors='replace').strip()}")
        return self.out


def run(*args: str, git_dir: Path | None = None, cwd: Path | None = None,
        stdin: bytes | None = None, quarantine: bool = False) -> Output:
    """Run `git ARGS` on the repository at `git_dir`, or on the one git finds from `cwd`
    (the current folder by default; `init` and `clone` make one there), fed `stdin`; with
    `quarantine`, in a pre-receive hook, seeing the objects being pushed (git keeps them
    apart until it accepts the push)."""
    env = _environment()
    if quarantine:
        env.update({name: os.environ[name] for name in _QUARANTINE if name in os.environ})
    done = subprocess.run(_command(args, git_dir), cwd=cwd, input=stdin, capture_output=True,
                          env=env)
    return Output(done.returncode, done.stdout, done.stderr)


def _command(args: Sequence[str], git_dir: Path | None) -> list[str]:
    return ["git", *(["--git-dir", str(git_dir)] if git_dir is not None else []), *args]


def _environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in _REPOSITORY_VARIABLES}


# finding a repository


class Repository(NamedTuple):
    git_dir: Path
    work_tree: Path | None  # None for a bare repository

    @property
    def bare(self) -> bool:
        return self.work_tree is None


class Location(NamedTuple):
    """A path's repository, and the path's folder inside its work tree ("" at the top, or
    anywhere in a bare repository)."""

    repository: Repository
    prefix: str


def find_repository(path: Path) -> Location | None:
    """The repository `path` is in, looking up from it as git does; None outside any."""
    folder = path if path.is_dir() else path.parent
    if not folder.is_dir():
        return None
    done = run("rev-parse", "--absolute-git-dir", "--is-bare-repository", "--is-inside-work-tree",
               "--show-prefix", "--show-cdup", cwd=folder)  # --show-cdup prints only in a work tree
    if not done.ok:
        return None
    git_dir, bare, inside, prefix, *cdup = done.out.decode("utf-8", "surrogateescape").split("\n")
    if bare == "true":
        return Location(Repository(Path(git_dir), None), "")
    if inside != "true":  # within the git dir of a work tree, which is its parent
        return Location(Repository(Path(git_dir), Path(git_dir).parent), "")
    top = (folder.resolve() / cdup[0]).resolve()
    return Location(Repository(Path(git_dir), top), prefix.rstrip("/"))


def open_repository(git_dir: Path) -> Repository:
    """The repository whose git dir is `git_dir` (bare or not)."""
    found = find_repository(git_dir)
    if found is None or found.repository.git_dir != git_dir.resolve():
        raise RunyardError(f"{git_dir} is not a git repository")
    return found.repository


# revisions and refs


def commit_of(git_dir: Path, revision: str) -> str | None:
    """The commit `revision` names in the repository, or None when it names none."""
    done = run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}",
               git_dir=git_dir)
    return done.text() if done.ok else None


def ancestors(git_dir: Path, revision: str, limit: int) -> list[str]:
    """`revision` and the commits it descends from, the newest first, at most `limit`;
    empty when `revision` names no commit here."""
    done = run("rev-list", f"--max-count={limit}", "--end-of-options", revision, git_dir=git_dir)
    return done.text().split() if done.ok else []


def author_of(git_dir: Path, revision: str) -> str | None:
    """`Name <email>` of the author of the commit `revision`, or None when it names none."""
    done = run("log", "-1", "--format=%an <%ae>", "--end-of-options", revision, git_dir=git_dir)
    return done.text() or None if done.ok else None


def user_name(git_dir: Path) -> str | None:
    """The person git commits as here (`user.name`), or None when it is not set."""
    done = run("config", "--get", "user.name", git_dir=git_dir)
    return done.text() or None if done.ok else None


def symbolic_ref(git_dir: Path, name: str = "HEAD") -> str | None:
    """The ref `name` points to (`refs/heads/main`), or None when it is no symbolic ref."""
    done = run("symbolic-ref", "--quiet", name, git_dir=git_dir)
    return done.text() if done.ok else None


def update_ref(git_dir: Path, ref: str, new: str, old: str | None) -> bool:
    """Move `ref` to `new` if it is still at `old` (None: if it does not exist yet)."""
    return run("update-ref", ref, new, old or ZERO, git_dir=git_dir).ok


class _GitProcess:
    """One long-lived git process of a repository, fed requests on its input: started by
    the first request, stopped by `close()` (a later request starts it again)."""

    _ARGS: ClassVar[list[str]]
    _KILL_ON_STOP: ClassVar[bool] = False  # rather than let it end when its input does

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(_command(self._ARGS, self.git_dir),
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL, env=_environment())
        return self._process

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None and process.stdout is not None
        if self._KILL_ON_STOP and process.poll() is None:
            process.kill()
        with contextlib.suppress(BrokenPipeError):  # a request it never got: no one to tell
            process.stdin.close()  # its input ends: git ends
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


class RefMover(_GitProcess):
    """`update_ref` for one repository through one `git update-ref --stdin` process, a
    transaction per move: started by the first move, stopped by `close()`. git ends that
    process when a transaction fails (a lost race, told as False), and the next move starts
    a new process. A git without transactions (before 2.27) gets `update_ref` for every
    move. Threads may share it; it makes one move at a time."""

    _ARGS: ClassVar[list[str]] = ["update-ref", "--stdin"]
    _ANSWERS: ClassVar[list[bytes]] = [b"start: ok\n", b"prepare: ok\n", b"commit: ok\n"]

    def __init__(self, git_dir: Path) -> None:
        super().__init__(git_dir)
        self._transactions = True

    def move(self, ref: str, new: str, old: str | None) -> bool:
        """Move `ref` to `new` if it is still at `old` (None: if it does not exist yet)."""
        with self._lock:
            if not self._transactions:
                return update_ref(self.git_dir, ref, new, old)
            moved = self._transaction(ref, new, old)
            # A git that knows transactions refused this one: the race was lost (or the ref
            # is locked by another writer), and the caller tries again on the new tip. One
            # that does not know them learns it here, and gets its answer the old way.
            return moved or (not self._transactions and update_ref(self.git_dir, ref, new, old))

    def _transaction(self, ref: str, new: str, old: str | None) -> bool:
        process = self._started()
        assert process.stdin is not None and process.stdout is not None
        answers: list[bytes] = []
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(f"start\nupdate {ref} {new} {old or ZERO}\nprepare\ncommit\n"
                                .encode("utf-8", "surrogateescape"))
            process.stdin.flush()
            answers = [process.stdout.readline() for _ in self._ANSWERS]
        if answers == self._ANSWERS:
            return True
        self._transactions = answers[:1] == self._ANSWERS[:1]  # else git knows no `start`
        self._stop()
        return False



# trees


class TreeEntry(NamedTuple):
    """One line of `git ls-tree`."""

    mode: str
    kind: str  # blob, tree or commit
    object_id: str
    path: str


def list_tree(git_dir: Path, tree: str, *, recursive: bool = False, folders_only: bool = False,
              quarantine: bool = False) -> list[TreeEntry] | None:
    """The entries of `tree` (`REV` or `REV:PATH`), with the folders along the way when
    `recursive`; None when there is no such tree. (`quarantine`: see `run`.)"""
    options = (["-r"] if recursive else []) + (["-d"] if folders_only else ["-t"] if recursive else [])
    done = run("ls-tree", "-z", "--full-name", *options, "--end-of-options", tree, git_dir=git_dir,
               quarantine=quarantine)
    if not done.ok:
        return None
    entries = []
    for item in done.out.decode("utf-8", "surrogateescape").split("\0"):
        if item:
            meta, _, path = item.partition("\t")
            mode, kind, object_id = meta.split()
            entries.append(TreeEntry(mode, kind, object_id, path))
    return entries


def changed_paths(git_dir: Path, old: str | None, new: str, prefix: str = "") -> list[str]:
    """The files under `prefix` that differ between `old` (None: nothing) and `new`,
    relative to `prefix`, sorted."""
    limit = ["--", prefix] if prefix else []
    out = run("diff", "--name-only", "--no-renames", "-z", old or _EMPTY_TREE, new, *limit,
              git_dir=git_dir).checked(f"git diff {old}..{new}")
    strip = len(prefix) + 1 if prefix else 0
    return sorted(path[strip:] for path in out.decode("utf-8", "surrogateescape").split("\0") if path)


class Commit(NamedTuple):
    """One commit of `git log`."""

    commit: str
    date: str  # the committer's, ISO 8601
    subject: str


def log(git_dir: Path, revision: str, paths: Sequence[str] = ()) -> list[Commit]:
    """The commits reachable from `revision`, newest first; with `paths`, only those that
    changed a file under one of them."""
    limit = ["--", *paths] if paths else []
    out = run("log", "-z", "--format=%H%x1f%cI%x1f%s", "--end-of-options", revision, *limit,
              git_dir=git_dir).checked(f"git log {revision}")
    entries = [item.split("\x1f") for item in out.decode("utf-8", "surrogateescape").split("\0")]
    return [Commit(*entry) for entry in entries if len(entry) == 3]


# config


def read_config(git_dir: Path, pattern: str) -> list[tuple[str, str]]:
    """(name, value) of every setting whose name matches the regular expression `pattern`."""
    done = run("config", "-z", "--get-regexp", pattern, git_dir=git_dir)
    pairs = [item.partition("\n") for item in done.out.decode("utf-8", "surrogateescape").split("\0")]
    return [(name, value) for name, _, value in pairs if name]


def set_config(git_dir: Path, name: str, values: Sequence[str]) -> None:
    """Give the setting `name` these values, in place of any it had."""
    run("config", "--unset-all", name, git_dir=git_dir)  # fails when it had none: fine
    for value in values:
        run("config", "--add", name, value, git_dir=git_dir).checked(f"git config {name}")


# objects


class GitObject(NamedTuple):
    kind: str  # blob, tree, commit or tag
    size: int
    data: bytes | None  # None when it was over the limit it was read with


_AHEAD = 64  # names sent before their answers are read: ~6 KiB, far below a pipe's 64 KiB
_SKIPPED_PIECE = 1 << 20  # how much of an object over the limit is read at once, to pass it over


class ObjectReader(_GitProcess):
    """Objects of one repository, read through one `git cat-file --batch` process: started
    by the first read, stopped by `close()` or the end of a `with` block (a later read
    starts it again). Threads may share it; it answers one request at a time."""

    _ARGS: ClassVar[list[str]] = ["cat-file", "--batch"]
    _KILL_ON_STOP: ClassVar[bool] = True  # an answer may be half read: no waiting for it

    def read(self, name: str, limit: int | None = None) -> GitObject | None:
        """The object `name` names (an id, or `REV:PATH`), or None when there is none.
        Over `limit` bytes, its data is not read."""
        if "\n" in name:
            return None  # one request is one line
        with self._lock:
            try:
                return self._request(name, limit)
            except BaseException:
                self._stop()  # the answer is half read: the next request starts afresh
                raise

    def read_all(self, names: Sequence[str], limit: int | None = None) -> list[GitObject | None]:
        """`read` of each name, the requests sent some at a time ahead of the answers (no
        round trip per object). A batch of names stays well under a pipe's buffer, so git
        never waits for its next name while its answers wait to be read. Over `limit`
        bytes, an object's data is passed over, a piece at a time, never all in memory."""
        found: list[GitObject | None] = []
        with self._lock:
            try:
                for at in range(0, len(names), _AHEAD):
                    found += self._requests(names[at:at + _AHEAD], limit)
            except BaseException:
                self._stop()
                raise
        return found

    def _requests(self, names: Sequence[str], limit: int | None) -> list[GitObject | None]:
        process = self._started()
        assert process.stdin is not None
        asked = [name for name in names if "\n" not in name]
        process.stdin.write(b"".join(name.encode("utf-8", "surrogateescape") + b"\n"
                                     for name in asked))
        process.stdin.flush()
        answers = iter([self._answer(process, limit, skip=True) for _ in asked])
        return [None if "\n" in name else next(answers) for name in names]

    def commit_of(self, revision: str) -> str | None:
        """The commit `revision` names (as `commit_of` says it, without a process of its
        own), or None when it names none."""
        return self._id_of(f"{revision}^{{commit}}", "commit")

    def tree_of(self, revision: str) -> str | None:
        """The tree of the commit `revision` names, or None when it names none."""
        return self._id_of(f"{revision}^{{tree}}", "tree")

    def _id_of(self, name: str, kind: str) -> str | None:
        if "\n" in name:
            return None
        with self._lock:
            try:
                process = self._started()
                assert process.stdin is not None
                process.stdin.write(name.encode("utf-8", "surrogateescape") + b"\n")
                process.stdin.flush()
                found = self._identified(process, None)
            except BaseException:
                self._stop()
                raise
        return found[0] if found is not None and found[1].kind == kind else None

    def blob(self, revision: str, path: str) -> bytes | None:
        """The content of the file at `path` in `revision`; None when there is no file there."""
        found = self.read(f"{revision}:{path}")
        return found.data if found is not None and found.kind == "blob" else None

    def _request(self, name: str, limit: int | None) -> GitObject | None:
        process = self._started()
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(name.encode("utf-8", "surrogateescape") + b"\n")
        process.stdin.flush()
        return self._answer(process, limit)

    def _answer(self, process: subprocess.Popen[bytes], limit: int | None,
                skip: bool = False) -> GitObject | None:
        found = self._identified(process, limit, skip)
        return found[1] if found is not None else None

    def _identified(self, process: subprocess.Popen[bytes], limit: int | None,
                    skip: bool = False) -> tuple[str, GitObject] | None:
        """The next answer: the object's id and the object. Over `limit`, the process is
        stopped rather than read; with `skip` (more answers follow), its data is passed over."""
        assert process.stdout is not None
        header = process.stdout.readline()
        if not header:
            raise RunyardError(f"git cat-file stopped reading {self.git_dir}")
        if header.endswith((b" missing\n", b" ambiguous\n")):
            return None
        object_id, kind, size = header.decode().split()
        if limit is not None and int(size) > limit:
            if not skip:
                self._stop()  # rather than read what is not wanted
                return object_id, GitObject(kind, int(size), None)
            left = int(size) + 1  # and the newline after it
            while left:
                piece = process.stdout.read(min(left, _SKIPPED_PIECE))
                if not piece:
                    raise RunyardError(f"git cat-file stopped reading {self.git_dir}")
                left -= len(piece)
            return object_id, GitObject(kind, int(size), None)
        data = process.stdout.read(int(size) + 1)  # and the newline after it
        return object_id, GitObject(kind, int(size), data[:-1])

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
