"""Reading a hub: the function folders it holds, each checked as untrusted input.

A hub is read from the package (the default hub, a folder) or from a bare clone of
a git repository in a temporary folder. Either way a function folder is first
listed as entries (path, kind, size), and one set of checks decides what of it is
used: names and paths of a safe form, regular files only (no links, no
submodules), bounded sizes, and a `function.yaml` that passes the function schema.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from runner.errors import RunyardError
from runner.frozen import frozen
from runner.git import ObjectReader, commit_of, list_tree, log
from runner.project.checks import repo_path_problem
from runner.project.scaffold import clone_repository
from runner.project.schema import NAME_PATTERN, SchemaSet
from runner.project.yamlread import read_document

DEFAULT_HUB = "builtin"
DEFAULT_FOLDER = Path(__file__).resolve().parent / "default"
FUNCTIONS = "functions"
DEFINITION = "function.yaml"
README = "README.md"
MAX_FILES = 100
MAX_FILE_BYTES = 1 << 20
MAX_FUNCTION_BYTES = 4 << 20
MAX_DEPTH = 8

_NAME = re.compile(NAME_PATTERN)
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")
_PART = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.+-]{0,99}$")
_SKIPPED = "__pycache__"  # Python's byte code, left by running the code where it lies


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


class HubError(RunyardError):
    """A hub that cannot be read, or whose content is not a hub's."""


class Entry(NamedTuple):
    """One thing in a function folder, as its hub lists it."""

    path: str  # relative to the function folder, `/`-separated
    kind: str  # file, folder, link or other
    size: int


@frozen
class HubFunction:
    """One version of a hub function: its definition and its files, checked."""

    name: str
    version: str
    description: str
    hub: str  # the hub's label: `builtin`, a URL, or an absolute path
    revision: str  # the commit that last changed it, or `sha256:...` of the folder's content
    definition: Mapping[str, Any]  # function.yaml, as read
    files: Mapping[str, bytes]  # everything else of the folder, by path in it

    @property
    def code(self) -> str:
        return str(self.definition["code"])

    @property
    def readme(self) -> str:
        return self.files[README].decode("utf-8", "replace")


class Hub(Protocol):
    label: str

    def names(self) -> list[str]:
        """The function folders' names, sorted."""

    def function(self, name: str, version: str | None = None) -> HubFunction:
        """The newest version of a function, or the one named `version`."""


# --- the hub in the package ------------------------------------------------------------------


class FolderHub:
    """A hub in a folder: the one runyard ships. It has one version of each function."""

    def __init__(self, root: Path, label: str = DEFAULT_HUB) -> None:
        self.root = root
        self.label = label

    def names(self) -> list[str]:
        folder = self.root / FUNCTIONS
        return _checked_names([item.name for item in folder.iterdir() if item.is_dir()], self.label)

    def function(self, name: str, version: str | None = None) -> HubFunction:
        folder = self.root / FUNCTIONS / _checked_name(name)
        if not folder.is_dir():
            raise _no_such_function(name, self.label, self.names())
        found = read_function(name, self.label, _folder_entries(folder),
                              lambda path: (folder / path).read_bytes(), revision=None)
        if version is not None and version != found.version:
            raise HubError(f"hub {self.label}: {name} has version {found.version} only, not {version}")
        return found


def _folder_entries(folder: Path) -> list[Entry]:
    entries = []
    for top, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if name != _SKIPPED)
        for name in [*folders, *sorted(files)]:
            path = os.path.join(top, name)
            stat = os.lstat(path)
            kind = ("link" if os.path.islink(path) else "folder" if os.path.isdir(path)
                    else "file" if os.path.isfile(path) else "other")
            entries.append(Entry(os.path.relpath(path, folder).replace(os.sep, "/"), kind, stat.st_size))
    return entries


# --- a git hub -------------------------------------------------------------------------------


class GitHub:
    """A hub in a git repository, read from a bare clone: its default branch's tip is the
    newest version of each function; `NAME@VERSION` finds the newest commit at which the
    function's `labels.version` was VERSION."""

    def __init__(self, git_dir: Path, label: str) -> None:
        self.git_dir = git_dir
        self.label = label
        self.reader = ObjectReader(git_dir)
        head = commit_of(git_dir, "HEAD")
        if head is None:
            raise HubError(f"hub {label} has no commits: not a hub")
        self.head = head

    def names(self) -> list[str]:
        entries = list_tree(self.git_dir, f"{self.head}:{FUNCTIONS}")
        if entries is None:
            raise HubError(f"hub {self.label} has no {FUNCTIONS}/ folder: not a hub")
        return _checked_names([entry.path.rsplit("/", 1)[-1] for entry in entries if entry.kind == "tree"],
                              self.label)

    def function(self, name: str, version: str | None = None) -> HubFunction:
        folder = f"{FUNCTIONS}/{_checked_name(name)}"
        commits = [commit.commit for commit in log(self.git_dir, self.head, [folder])]
        if not commits or list_tree(self.git_dir, f"{self.head}:{folder}") is None:
            raise _no_such_function(name, self.label, self.names())
        if version is None:
            return self._read(name, commits[0])
        for commit in commits:
            if list_tree(self.git_dir, f"{commit}:{folder}") is None:
                continue  # the function was removed at this commit
            if self._version_at(name, commit) == version:
                return self._read(name, commit)
        raise HubError(f"hub {self.label}: {name} has no version {version}")

    def _version_at(self, name: str, commit: str) -> str | None:
        data = self.reader.blob(commit, f"{FUNCTIONS}/{name}/{DEFINITION}")
        try:
            labels = read_document(DEFINITION, data or b"").data.get("labels")
        except (RunyardError, AttributeError):
            return None
        return labels.get("version") if isinstance(labels, dict) else None

    def _read(self, name: str, commit: str) -> HubFunction:
        folder = f"{FUNCTIONS}/{name}"
        tree = list_tree(self.git_dir, f"{commit}:{folder}", recursive=True) or []
        if sum(entry.kind == "blob" for entry in tree) > MAX_FILES:  # before reading any
            raise HubError(f"hub {self.label}: {folder} holds more than {MAX_FILES} files")
        kinds = {"blob": "file", "tree": "folder"}
        entries, contents = [], {}
        for entry in tree:
            path = entry.path.removeprefix(folder + "/")
            kind = "link" if entry.mode == "120000" else kinds.get(entry.kind, "other")
            found = self.reader.read(entry.object_id, limit=MAX_FILE_BYTES) if kind == "file" else None
            if found is not None and found.data is not None:
                contents[path] = found.data
            entries.append(Entry(path, kind, found.size if found else 0))
        return read_function(name, self.label, entries, contents.__getitem__, revision=commit)

    def close(self) -> None:
        self.reader.close()


@contextmanager
def open_hub(location: str | None) -> Iterator[Hub]:
    """The hub at `location` (a git URL or path; None or `builtin` for runyard's own),
    with its temporary clone removed at the end."""
    if location is None or location == DEFAULT_HUB:
        yield FolderHub(DEFAULT_FOLDER)
        return
    label = str(Path(location).resolve()) if os.path.exists(location) else location
    temporary = Path(tempfile.mkdtemp(prefix="runyard-hub-"))
    try:
        try:
            clone_repository(location, temporary / "hub.git", "--bare", "--no-tags")
        except RunyardError as error:
            raise HubError(f"cannot read the hub {label}: {error.message}") from None
        hub = GitHub(temporary / "hub.git", label)
        try:
            yield hub
        finally:
            hub.close()
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


# --- the checks ------------------------------------------------------------------------------


def _checked_names(names: list[str], label: str) -> list[str]:
    bad = [name for name in names if not _NAME.fullmatch(name)]
    if bad:
        raise HubError(f"hub {label}: {FUNCTIONS}/{bad[0]!r} is not a valid function name "
                       "(lower-case letters, digits and '-', starting with a letter)")
    return sorted(names)


def _checked_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise HubError(f"{name!r} is not a valid function name (lower-case letters, digits and '-', "
                       "starting with a letter)")
    return name


def _no_such_function(name: str, label: str, names: list[str]) -> HubError:
    return HubError(f"hub {label} has no function {name!r}; it has: {', '.join(names) or 'none'}")


def read_function(name: str, label: str, entries: list[Entry], read: Callable[[str], bytes],
                  revision: str | None) -> HubFunction:
    """The function in a folder of these entries, after every check; `revision` None: the
    content's hash stands for it."""
    where = f"hub {label}: {FUNCTIONS}/{name}"
    files = _checked_files(where, entries)
    contents = {path: read(path) for path in files}
    if any(len(data) != files[path] for path, data in contents.items()):
        raise HubError(f"{where}: a file changed while it was read")
    for required in (DEFINITION, README):
        if required not in contents:
            raise HubError(f"{where} has no {required}: each hub function has its definition and a README")
    definition = _definition(where, name, contents.pop(DEFINITION), contents)
    if revision is None:
        revision = "sha256:" + _digest(definition, contents)[:16]
    return HubFunction(name, str(definition["labels"]["version"]), str(definition.get("description", "")),
                       label, revision, definition, contents)


def _checked_files(where: str, entries: list[Entry]) -> dict[str, int]:
    """The regular files (path: size) of the entries, refusing what a hub may not hold."""
    files: dict[str, int] = {}
    for entry in entries:
        problem = _path_problem(entry.path)
        if problem:
            raise HubError(f"{where}: {entry.path!r} {problem}")
        if _SKIPPED in entry.path.split("/"):
            continue
        if entry.kind == "link":
            raise HubError(f"{where}/{entry.path} is a symbolic link: a hub function holds regular "
                           "files only")
        if entry.kind == "file":
            if entry.size > MAX_FILE_BYTES:
                raise HubError(f"{where}/{entry.path} is {entry.size} bytes; the limit is {MAX_FILE_BYTES}")
            files[entry.path] = entry.size
        elif entry.kind != "folder":
            raise HubError(f"{where}/{entry.path} is neither a file nor a folder (a submodule?)")
    if len(files) > MAX_FILES:
        raise HubError(f"{where} holds {len(files)} files; the limit is {MAX_FILES}")
    if sum(files.values()) > MAX_FUNCTION_BYTES:
        raise HubError(f"{where} holds {sum(files.values())} bytes; the limit is {MAX_FUNCTION_BYTES}")
    return files


def _path_problem(path: str) -> str | None:
    parts = path.split("/")
    if len(parts) > MAX_DEPTH:
        return f"is more than {MAX_DEPTH} folders deep"
    for part in parts:
        if part in (".", "..") or part.lower() == ".git" or not _PART.fullmatch(part):
            return ("is not a safe path: each part letters, digits, '_', '.', '+' or '-', "
                    "not '.', '..' or '.git'")
    return None


def _definition(where: str, name: str, raw: bytes, files: Mapping[str, bytes]) -> dict[str, Any]:
    file = f"{where}/{DEFINITION}"
    try:
        doc = read_document(file, raw)
    except RunyardError as error:
        raise HubError(f"{where}: {error}") from None
    checked = SchemaSet().check("function", doc)
    if checked.problems:
        raise HubError(f"{file} is not a valid function", checked.problems)
    data: dict[str, Any] = doc.data
    if data["name"] != name:
        raise HubError(f"{file}: its name is {data['name']!r}, not its folder's name {name!r}")
    version = data.get("labels", {}).get("version")
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise HubError(f"{file}: labels.version must give the function's version (`version: \"1.0.0\"`)")
    code = data.get("code")
    if not isinstance(code, str):
        raise HubError(f"{file}: a hub function names its code (`code:`), a file or folder of its own")
    for key, path in (("code", code), ("environment.requirements_file",
                                       data.get("environment", {}).get("requirements_file"))):
        if path is None:
            continue
        problem = repo_path_problem(path)
        if problem or not any(file == path or file.startswith(path + "/") for file in files):
            raise HubError(f"{file}: {key} {path!r} is not a file or folder of the function"
                           + (f" ({problem})" if problem else ""))
    return data


def _digest(definition: Mapping[str, Any], files: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True, default=str).encode())
    for path in sorted(files):
        digest.update(f"\0{path}\0{len(files[path])}\0".encode())
        digest.update(files[path])
    return digest.hexdigest()
