"""Commit files onto a branch with git plumbing only: no checkout, no index, no
working tree touched. The ref moves by compare-and-swap, so concurrent writers
retry on top of each other and lose nothing.

Trees are written directly into the object database. A path such as
`runs/ab/<uid>/run.yaml` only rewrites the trees along that path, so the cost of a
commit does not grow with the number of records already on the branch. Reads go
through one `git cat-file --batch` process, started by the first read and stopped
by `close()`; the branch moves through one `git update-ref --stdin` process as well.
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from hashlib import sha1
from pathlib import Path

from runner.git import GitObject, ObjectReader, RefMover, list_tree

_TREE, _BLOB = b"40000", b"100644"
Entries = dict[bytes, tuple[bytes, bytes]]  # name -> (mode, binary sha)
Derive = Callable[["AtCommit"], Mapping[str, bytes | None]]
# Reads of more paths than this find their objects through one listing of their folders:
# git resolves `COMMIT:PATH` by walking (and inflating) every tree along the path each time.
_LISTED_OVER = 64


class AtCommit:
    """The files of one commit, or of none (a branch yet to be made)."""

    def __init__(self, reader: ObjectReader, commit: str | None) -> None:
        self.reader, self.commit = reader, commit

    def read(self, path: str) -> bytes | None:
        """The file at `path`; None when there is no file there."""
        return None if self.commit is None else self.reader.blob(self.commit, path)

    def exists(self, path: str) -> bool:
        """Whether there is a file or a folder at `path`."""
        return self.commit is not None and self.reader.read(f"{self.commit}:{path}") is not None


class GitStore:
    """Read and write the files of one branch of a repository (bare or not)."""

    def __init__(self, git_dir: Path, branch: str) -> None:
        self.git_dir = git_dir
        self.ref = f"refs/heads/{branch}"
        self.objects = git_dir / "objects"
        self.reader = ObjectReader(git_dir)
        self.refs = RefMover(git_dir)
        self._listed: tuple[str, dict[str, dict[str, str]]] = ("", {})  # commit, folder -> ids
        # The threads of one process commit one at a time: racing each other for the ref,
        # all but one would lose and build their commit again (a git process each time).
        self._committing = threading.Lock()

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
        return self.reader.blob(commit, path)

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
            return [_data(found) for found in self.reader.read_all([f"{commit}:{path}" for path in paths])]
        names = [self._object_name(commit, path) for path in paths]
        read = iter(self.reader.read_all([name for name in names if name]))
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
        found = self.reader.read(f"{commit}:{path}") if commit else None
        if found is None or found.kind != "tree" or found.data is None:
            return {}
        return {name.decode("utf-8", "surrogateescape"): self._read_object(sha)
                for name, (mode, sha) in _entries(found.data).items() if mode == _BLOB}

    def list(self, path: str, commit: str | None = None) -> list[str]:
        """Names in the folder `path` of the branch (empty when it does not exist), read
        from the trees along it (no process, unless they are packed)."""
        commit = commit or self.tip()
        if commit is None:
            return []
        entries = self._tree_entries(self._commit_tree(commit))
        for folder in filter(None, path.split("/")):
            found = entries.get(folder.encode())
            if found is None or found[0] != _TREE:
                return []
            entries = self._tree_entries(found[1])
        return sorted(name.decode("utf-8", "surrogateescape") for name in entries)

    # writing

    def commit(self, files: Mapping[str, bytes | None], message: str, attempts: int = 50,
               derived: Derive | None = None) -> str:
        """Add or replace `files` (path -> content; None removes it) in one commit on the branch.
        `derived` adds the files that depend on what the branch holds (an index): it is given
        a reader of the commit the new one builds on, again on every retry."""
        given = self._blobs(files)
        with self._committing:
            return self._commit(given, message, attempts, derived)

    def _commit(self, given: Mapping[str, bytes | None], message: str, attempts: int,
                derived: Derive | None) -> str:
        for attempt in range(attempts):
            parent = self.head()
            # derived anew on each attempt: what an earlier attempt derived is not kept
            blobs = given if derived is None else {
                **given, **self._blobs(derived(AtCommit(self.reader, parent)))}
            root = self._tree_entries(self._commit_tree(parent)) if parent else {}
            tree = self._with_files(root, blobs) or self._write_tree({})
            commit = self._write_commit(tree, parent, message)
            if self.refs.move(self.ref, commit, parent):
                return commit
            time.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
        raise RuntimeError(f"could not move {self.ref} after {attempts} attempts")

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

    # objects

    def _commit_tree(self, commit: str) -> bytes:
        body = self._read_object(bytes.fromhex(commit))
        return bytes.fromhex(body[5:45].decode())

    def _tree_entries(self, sha: bytes) -> Entries:
        return _entries(self._read_object(sha))

    def _write_tree(self, entries: Entries) -> bytes:
        def order(name: bytes) -> bytes:
            return name + b"/" if entries[name][0] == _TREE else name

        body = b"".join(mode + b" " + name + b"\0" + entries[name][1]
                        for name in sorted(entries, key=order) for mode in [entries[name][0]])
        return self._write_object(b"tree", body)

    def _write_commit(self, tree: bytes, parent: str | None, message: str) -> str:
        stamp = f"runyard <runyard@localhost> {int(time.time())} +0000"
        lines = [f"tree {tree.hex()}"] + ([f"parent {parent}"] if parent else [])
        lines += [f"author {stamp}", f"committer {stamp}", "", message.rstrip() + "\n"]
        return self._write_object(b"commit", "\n".join(lines).encode()).hex()

    def _write_object(self, kind: bytes, body: bytes) -> bytes:
        raw = kind + b" " + str(len(body)).encode() + b"\0" + body
        sha = sha1(raw).digest()
        path = self.objects / sha[:1].hex() / sha[1:].hex()
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f"tmp-{path.name}-{random.getrandbits(32):x}")
            temporary.write_bytes(zlib.compress(raw, 1))
            temporary.replace(path)
        return sha

    def _read_object(self, sha: bytes) -> bytes:
        path = self.objects / sha[:1].hex() / sha[1:].hex()
        if path.exists():
            raw = zlib.decompress(path.read_bytes())
            return raw[raw.index(b"\0") + 1 :]
        found = self.reader.read(sha.hex())  # a packed object
        if found is None or found.data is None:
            raise FileNotFoundError(f"no object {sha.hex()} in {self.git_dir}")
        return found.data


def _data(found: GitObject | None) -> bytes | None:
    return found.data if found is not None and found.kind == "blob" else None


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
