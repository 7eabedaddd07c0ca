"""Commit files onto a branch with git plumbing only: no checkout, no index, no
working tree touched. The ref moves by compare-and-swap, so concurrent writers
retry on top of each other and lose nothing.

Trees are written directly into the object database. A path such as
`runs/ab/<uid>/run.yaml` only rewrites the trees along that path, so the cost of a
commit does not grow with the number of records already on the branch. The trees a
store writes or reads are kept (parsed) for the commits after, which read them again. Reads go
through one `git cat-file --batch` process, started by the first read and stopped
by `close()`; the branch moves through one `git update-ref --stdin` process as well.

The threads of one process commit one at a time (racing each other for the ref, all but
one would lose and build their commit again). Commits asked for with `group` while
another is being made wait in a queue, and the next commit carries all of them, in the
order they were asked for: under load a commit carries the records of several runs, and
each caller returns once the commit holding its files has landed.
"""

from __future__ import annotations

import os
import random
import threading
import time
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from hashlib import sha1
from pathlib import Path
from typing import TypeVar

from runner.errors import RunyardError
from runner.git import GitObject, ObjectReader, RefMover, list_tree
from runner.project.refs import branch_problem

_TREE, _BLOB = b"40000", b"100644"
Entries = dict[bytes, tuple[bytes, bytes]]  # name -> (mode, binary sha)
Derive = Callable[["AtCommit"], Mapping[str, bytes | None]]
# Reads of more paths than this find their objects through one listing of their folders:
# git resolves `COMMIT:PATH` by walking (and inflating) every tree along the path each time.
_LISTED_OVER = 64
# The most runyard reads of one object of a results branch: a record, an index shard, a log
# (cut to the log limit) are far smaller; a branch pushed by hand may hold gigabytes of zeros.
READ_LIMIT = 256 << 20
_HEAD_BYTES = 32  # of a loose object, unpacked first: its kind and size
# Seconds after which git's lock file of the branch is taken for one a killed git left
# (git holds it for the milliseconds it writes the ref).
STALE_LOCK = 30.0
_KEPT_TREES = 4096  # parsed trees a store keeps; past this it forgets them all and starts again
K = TypeVar("K")
V = TypeVar("V")


class AtCommit:
    """The files of one commit, or of none (a branch yet to be made), with `changed` on top:
    what the commits grouped before this one in the same commit write (None: removed).
    Read from the trees along each path (no git process, no round trip)."""

    def __init__(self, store: GitStore, commit: str | None,
                 changed: Mapping[str, bytes | None] | None = None) -> None:
        self.store, self.commit = store, commit
        self.changed: Mapping[str, bytes | None] = changed or {}

    def read(self, path: str) -> bytes | None:
        """The file at `path`; None when there is no file there."""
        if path in self.changed:
            return self.changed[path]
        found = self.store.entry(self.commit, path) if self.commit else None
        return None if found is None or found[0] == _TREE else self.store.read_object(found[1])

    def exists(self, path: str) -> bool:
        """Whether there is a file or a folder at `path`."""
        if path in self.changed:
            return self.changed[path] is not None
        below = f"{path}/"
        if any(data is not None and name.startswith(below) for name, data in self.changed.items()):
            return True
        return self.commit is not None and self.store.entry(self.commit, path) is not None


class _Asked:
    """One commit asked for: its files, and once the commit carrying them is made, that
    commit or what went wrong."""

    def __init__(self, files: Mapping[str, bytes | None], blobs: Mapping[str, bytes | None],
                 message: str, derived: Derive | None, group: bool) -> None:
        self.files, self.blobs, self.message = files, blobs, message
        self.derived, self.group = derived, group
        self.done = False
        self.commit = ""
        self.error: BaseException | None = None


class GitStore:
    """Read and write the files of one branch of a repository (bare or not)."""

    def __init__(self, git_dir: Path, branch: str, own: Collection[str] | None = None) -> None:
        """`own`: the only names the branch's top folder may hold for it to be written
        (None: any). A branch of other files is someone else's: the code, a site."""
        why = branch_problem(branch)
        if why is not None:  # its ref is read as a file: `../../x` would be a host file
            raise RunyardError(f"no results branch: {why}")
        self.git_dir = git_dir
        self.branch = branch
        self.ref = f"refs/heads/{branch}"
        self.own = None if own is None else frozenset(own)
        self.objects = git_dir / "objects"
        self.reader = ObjectReader(git_dir)
        self.refs = RefMover(git_dir)
        self._trees: dict[bytes, Entries] = {}  # tree id -> its entries, of trees seen here
        self._commit_trees: dict[str, bytes] = {}  # commit -> its tree, of commits seen here
        self._listed: tuple[str, dict[str, dict[str, str]]] = ("", {})  # commit, folder -> ids
        # The commits asked for and not yet being made, the oldest first, and whether a
        # thread is making one (it takes the next from the queue when it is done).
        self._turn = threading.Condition()
        self._queue: list[_Asked] = []
        self._making = False

    def close(self) -> None:
        """Stop the processes reads and commits go through (the next starts them again)."""
        self.reader.close()
        self.refs.close()

    # reading

    def head(self) -> str | None:
        """The branch's commit here (what a write builds on)."""
        return self._resolve(self.ref)

    def tip(self) -> str | None:
        """What to read: the branch, or in a clone that only fetched it, origin's copy."""
        return self.head() or self._resolve(self.ref.replace("refs/heads/", "refs/remotes/origin/"))

    def strangers(self, commit: str | None = None) -> list[str]:
        """The names in the top folder of the branch (at `commit`, by default its head)
        that are not its own: a branch holding any is never written."""
        tip = commit or self.head()
        if tip is None or self.own is None:
            return []
        names = (name.decode("utf-8", "replace") for name in self._tree_entries(self._commit_tree(tip)))
        return sorted(name for name in names if name not in self.own)

    def _resolve(self, ref: str) -> str | None:
        """The commit a ref names, read from the ref files (no process per record)."""
        loose = self.git_dir / ref
        try:
            value = loose.read_text().strip()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return self._packed(ref)
        return value if len(value) == 40 else None

    def _packed(self, ref: str) -> str | None:
        try:
            lines = (self.git_dir / "packed-refs").read_text().splitlines()
        except FileNotFoundError:
            return None
        for line in lines:
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha
        return None

    def read(self, path: str, commit: str | None = None) -> bytes | None:
        commit = commit or self.tip()
        if commit is None:
            return None
        found = self.reader.read(f"{commit}:{path}", READ_LIMIT)
        if found is None or found.kind != "blob":
            return None
        return _within(found, f"{path} of branch {self.branch}")

    def folders(self, path: str, commit: str | None = None) -> list[str]:
        """Every folder below the folder `path` of the branch, at any depth, relative to it."""
        commit = commit or self.tip()
        entries = list_tree(self.git_dir, f"{commit}:{path}", recursive=True,
                            folders_only=True) if commit else None
        return [entry.path for entry in entries or []]

    def files(self, path: str, commit: str | None = None) -> list[str]:
        """Every file below the folder `path` of the branch, at any depth, relative to it."""
        commit = commit or self.tip()
        entries = list_tree(self.git_dir, f"{commit}:{path}", recursive=True) if commit else None
        return [entry.path for entry in entries or [] if entry.kind == "blob"]

    def read_all(self, paths: Sequence[str], commit: str | None = None) -> list[bytes | None]:
        """`read` of each path, through the one reading process without a round trip each."""
        commit = commit or self.tip()
        if commit is None:
            return [None] * len(paths)
        if len(paths) <= _LISTED_OVER:
            return [_data(found) for found in
                    self.reader.read_all([f"{commit}:{path}" for path in paths], READ_LIMIT)]
        names = [self._object_name(commit, path) for path in paths]
        read = iter(self.reader.read_all([name for name in names if name], READ_LIMIT))
        return [_data(next(read)) if name else None for name in names]

    def _object_name(self, commit: str, path: str) -> str | None:
        """What names the file at `path` for git: its id, from one listing of its top folder
        a commit (kept for the newest commit asked about); None when there is no file."""
        folder, slash, rest = path.partition("/")
        if not slash:
            return f"{commit}:{path}"
        if self._listed[0] != commit:
            self._listed = (commit, {})
        listed = self._listed[1]
        if folder not in listed:
            entries = list_tree(self.git_dir, f"{commit}:{folder}", recursive=True) or []
            listed[folder] = {entry.path: entry.object_id for entry in entries
                              if entry.kind == "blob"}
        return listed[folder].get(rest)

    def contents(self, path: str) -> dict[str, bytes]:
        """The files directly in the folder `path` of the branch, name -> content, read
        through the one reading process (no process per file)."""
        commit = self.tip()
        found = self.reader.read(f"{commit}:{path}", READ_LIMIT) if commit else None
        if found is None or found.kind != "tree" or found.data is None:
            return {}
        return {name.decode("utf-8", "surrogateescape"): self.read_object(sha)
                for name, (mode, sha) in _entries(found.data).items() if mode == _BLOB}

    def list(self, path: str, commit: str | None = None) -> list[str]:
        """Names in the folder `path` of the branch (empty when it does not exist), read
        from the trees along it (no process, unless they are packed)."""
        commit = commit or self.tip()
        found = self.entry(commit, path.strip("/")) if commit else None
        if found is None or found[0] != _TREE:
            return []
        return sorted(name.decode("utf-8", "surrogateescape")
                      for name in self._tree_entries(found[1]))

    def entry(self, commit: str, path: str) -> tuple[bytes, bytes] | None:
        """The mode and binary id of what is at `path` (the root when empty) in `commit`,
        found through the trees along it; None when there is nothing there."""
        found: tuple[bytes, bytes] | None = (_TREE, self._commit_tree(commit))
        for name in filter(None, path.split("/")):
            if found is None or found[0] != _TREE:
                return None
            found = self._tree_entries(found[1]).get(name.encode())
        return found

    # writing

    def commit(self, files: Mapping[str, bytes | None], message: str,
               derived: Derive | None = None, group: bool = False) -> str:
        """Add or replace `files` (path -> content; None removes it) in one commit on the branch.
        `derived` adds the files that depend on what the branch holds (an index): it is given
        a reader of the commit the new one builds on, again on every retry. With `group`,
        the commit may also carry other grouped commits asked for meanwhile (each `derived`
        then reads the files of those before it too); the one made is returned."""
        asked = _Asked(files, self._blobs(files), message, derived, group)
        with self._turn:
            self._queue.append(asked)
        while True:
            with self._turn:
                while self._making and not asked.done:
                    self._turn.wait()
                if asked.done:
                    break
                self._making = True
                batch = self._next_batch()
            try:
                self._make(batch)
            except BaseException:  # interrupted: this thread's commit is no longer asked for
                with self._turn:
                    if asked in self._queue:
                        self._queue.remove(asked)
                raise
            finally:
                with self._turn:
                    for done in batch:
                        done.done = True
                    self._making = False
                    self._turn.notify_all()
        if asked.error is not None:
            raise asked.error
        return asked.commit

    def _next_batch(self) -> Sequence[_Asked]:
        """The oldest commit asked for, and when it may be grouped, the grouped ones after it."""
        count = 1
        if self._queue[0].group:
            while count < len(self._queue) and self._queue[count].group:
                count += 1
        batch = self._queue[:count]
        del self._queue[:count]
        return batch

    def _make(self, batch: Sequence[_Asked]) -> None:
        """Make one commit of `batch`, and tell each what was made, or what went wrong."""
        try:
            made, error = self._commit(batch), None
        except BaseException as failed:  # every caller of this commit is told, and raises it
            made, error = "", failed
        for asked in batch:
            asked.commit, asked.error = made, error
        if error is not None and not isinstance(error, Exception):
            raise error  # an interruption stops the thread that was making the commit too

    def _commit(self, batch: Sequence[_Asked], attempts: int = 50) -> str:
        message = batch[0].message if len(batch) == 1 else "\n".join(
            [f"{len(batch)} changes", "", *(asked.message for asked in batch)])
        attempt = 0
        while attempt < attempts:
            parent = self.head()
            strangers = self.strangers(parent)
            if strangers:
                raise RunyardError(f"branch {self.branch} holds {', '.join(strangers[:5])}, which "
                                   "runyard does not write: it is not a results branch, and is "
                                   "left alone (name another as `results: {branch: ...}`)")
            blobs = self._merged(batch, parent)  # derived anew on each attempt
            root = self._tree_entries(self._commit_tree(parent)) if parent else {}
            tree = self._with_files(root, blobs) or self._write_tree({})
            commit = self._write_commit(tree, parent, message)
            if self.refs.move(self.ref, commit, parent):
                return commit
            if self._locked():  # not a lost race: the ref is locked; waits do not count
                self._wait_for_the_lock()
                continue
            attempt += 1
            time.sleep(random.uniform(0.001, 0.01) * attempt)
        raise RuntimeError(f"could not move {self.ref} after {attempts} attempts")

    def _wait_for_the_lock(self) -> None:
        """Until git's lock of the branch is released (or found stale and removed)."""
        delay = 0.001
        while self._locked():
            time.sleep(delay)
            delay = min(0.05, delay * 2)

    def _locked(self) -> bool:
        """Whether git's lock of the branch is held. A git process holds it for the
        moment it writes the ref; one that was killed meanwhile (or a machine that went
        down) leaves it for good, and no git command moves the branch again: a lock older
        than STALE_LOCK is taken for such a one and removed. A younger one is waited for."""
        lock = self.git_dir / f"{self.ref}.lock"
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return False
        if abs(age) > STALE_LOCK:  # (a time in the future: a clock that was set back)
            lock.unlink(missing_ok=True)
            return False
        return True

    def _merged(self, batch: Sequence[_Asked], parent: str | None) -> dict[str, bytes | None]:
        """The blobs of every commit of `batch` in order (a later one's file wins), each with
        what it derives from `parent` and the files of those before it."""
        blobs: dict[str, bytes | None] = {}
        changed: dict[str, bytes | None] = {}
        for asked in batch:
            derived = asked.derived(AtCommit(self, parent, dict(changed))) \
                if asked.derived else {}
            blobs.update(asked.blobs)
            blobs.update(self._blobs(derived))
            changed.update(asked.files)
            changed.update(derived)
        return blobs

    def _blobs(self, files: Mapping[str, bytes | None]) -> dict[str, bytes | None]:
        for path in files:
            _check_path(path)
        return {path: None if data is None else self._write_object(b"blob", data)
                for path, data in files.items()}

    def _with_files(self, root: Entries, blobs: Mapping[str, bytes | None]) -> bytes | None:
        nested: dict[str, object] = {}
        for path, sha in blobs.items():
            *folders, name = path.split("/")
            node = nested
            for folder in folders:
                node = node.setdefault(folder, {})  # type: ignore[assignment]
            node[name] = sha
        return self._merge(root, nested)

    def _merge(self, entries: Entries, changes: Mapping[str, object]) -> bytes | None:
        """The tree of `entries` with `changes` made; None when nothing is left in it."""
        entries = dict(entries)
        for name, change in changes.items():
            key = name.encode()
            if change is None:
                entries.pop(key, None)
            elif isinstance(change, bytes):
                entries[key] = (_BLOB, change)
            else:
                assert isinstance(change, dict)
                existing = entries.get(key)
                below = self._tree_entries(existing[1]) if existing and existing[0] == _TREE else {}
                merged = self._merge(below, change)
                if merged is None:
                    entries.pop(key, None)
                else:
                    entries[key] = (_TREE, merged)
        return self._write_tree(entries) if entries else None

    # objects (they never change: what is kept by id stays true whoever writes the repository)

    def _commit_tree(self, commit: str) -> bytes:
        tree = self._commit_trees.get(commit)
        if tree is None:
            body = self.read_object(bytes.fromhex(commit))
            tree = _keep(self._commit_trees, commit, bytes.fromhex(body[5:45].decode()))
        return tree

    def _tree_entries(self, sha: bytes) -> Entries:
        """The entries of the tree `sha`, kept: callers do not change them (they copy)."""
        entries = self._trees.get(sha)
        if entries is None:
            entries = _keep(self._trees, sha, _entries(self.read_object(sha)))
        return entries

    def _write_tree(self, entries: Entries) -> bytes:
        def order(name: bytes) -> bytes:
            return name + b"/" if entries[name][0] == _TREE else name

        body = b"".join(mode + b" " + name + b"\0" + entries[name][1]
                        for name in sorted(entries, key=order) for mode in [entries[name][0]])
        sha = self._write_object(b"tree", body)
        _keep(self._trees, sha, entries)
        return sha

    def _write_commit(self, tree: bytes, parent: str | None, message: str) -> str:
        stamp = f"runyard <runyard@localhost> {int(time.time())} +0000"
        lines = [f"tree {tree.hex()}"] + ([f"parent {parent}"] if parent else [])
        lines += [f"author {stamp}", f"committer {stamp}", "", message.rstrip() + "\n"]
        commit = self._write_object(b"commit", "\n".join(lines).encode()).hex()
        _keep(self._commit_trees, commit, tree)
        return commit

    def _write_object(self, kind: bytes, body: bytes) -> bytes:
        """Write a loose object as git does: whole under its name (through a temporary file
        renamed), or not at all; with few system calls, each of which lets other threads run.
        The temporary file is named as git names its own (tmp_obj_*), so that one a killed
        runner left is git's to prune (`git gc`), not garbage it warns of for good."""
        raw = kind + b" " + str(len(body)).encode() + b"\0" + body
        sha = sha1(raw).digest()
        folder = f"{self.objects}/{sha[:1].hex()}"
        path = f"{folder}/{sha[1:].hex()}"
        if os.path.exists(path):
            return sha
        data = zlib.compress(raw, 1)
        temporary = f"{folder}/tmp_obj_{random.getrandbits(48):012x}"
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileNotFoundError:  # the first object of its folder (or git pruned the folder)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            try:
                while data:
                    data = data[os.write(handle, data):]
            finally:
                os.close(handle)
            os.replace(temporary, path)
        except BaseException:  # (a full disk): nothing half written is left
            os.unlink(temporary)
            raise
        return sha

    def read_object(self, sha: bytes) -> bytes:
        """The content of the object `sha` (binary id), loose or packed; RunyardError over
        READ_LIMIT bytes."""
        try:
            with open(f"{self.objects}/{sha[:1].hex()}/{sha[1:].hex()}", "rb", buffering=0) as loose:
                unpacking = zlib.decompressobj()
                head, _, body = unpacking.decompress(loose.readall(), _HEAD_BYTES).partition(b"\0")
            size = int(head.split()[1])  # `blob 123`: known before the body is unpacked
            if size > READ_LIMIT:
                raise RunyardError(_too_big(f"object {sha.hex()}", size))
            return body + unpacking.decompress(unpacking.unconsumed_tail) + unpacking.flush()
        except FileNotFoundError:
            pass
        found = self.reader.read(sha.hex(), READ_LIMIT)  # a packed object
        if found is None:
            raise FileNotFoundError(f"no object {sha.hex()} in {self.git_dir}")
        return _within(found, f"object {sha.hex()}")


def _keep(kept: dict[K, V], key: K, value: V) -> V:
    """`value`, kept under `key`; past _KEPT_TREES entries, the others are forgotten."""
    if len(kept) >= _KEPT_TREES:
        kept.clear()
    kept[key] = value
    return value


def _data(found: GitObject | None) -> bytes | None:
    """A file's content; None for none, or for one over READ_LIMIT (read_all's reads pass
    such a file over: no file runyard writes is that big)."""
    return found.data if found is not None and found.kind == "blob" else None


def _within(found: GitObject, what: str) -> bytes:
    if found.data is None:
        raise RunyardError(_too_big(what, found.size))
    return found.data


def _too_big(what: str, size: int) -> str:
    return (f"{what} holds {size} bytes, over the {READ_LIMIT} runyard reads of one file of a "
            "results branch: no file runyard writes is that big (was the branch pushed by hand?)")


def _entries(tree: bytes) -> Entries:
    entries: Entries = {}
    at = 0
    while at < len(tree):
        space = tree.index(b" ", at)
        nul = tree.index(b"\0", space)
        entries[tree[space + 1 : nul]] = (tree[at:space], tree[nul + 1 : nul + 21])
        at = nul + 21
    return entries


def _check_path(path: str) -> None:
    """A path git accepts in a tree (`git fsck --strict`); anything else is a bug here."""
    parts = path.split("/")
    if any(part in ("", ".", "..") or part.lower() == ".git" or "\0" in part for part in parts):
        raise ValueError(f"not a path for a git tree: {path!r}")
