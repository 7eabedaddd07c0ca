"""Adding a hub function to a project, and updating it: GitOps, the files are copied in.

A function added as NAME becomes `functions/NAME.yaml` and the folder `src/NAME/`
(its code, README and any other file of its hub folder). Its `code`,
`requirements_file` and the `command` arguments that name its files are moved
under that folder; its `labels` record where it came from (`hub-source`,
`hub-function`, `hub-version`, `hub-revision`). The project is checked before
anything is written and again after; a project the change leaves invalid is put
back as it was.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml

from runner.errors import ProjectInvalid, RunyardError
from runner.frozen import frozen
from runner.hub.catalog import HubFunction
from runner.project.loader import load_project
from runner.project.model import Project
from runner.project.scaffold import SCHEMA_BASE
from runner.project.source import DirectorySource, SourceError

CODE_FOLDER = "src"
LABELS = ("hub-source", "hub-function", "hub-version", "hub-revision")


@frozen
class Change:
    """One file of the project: what it holds now and what it will hold (None: no file)."""

    path: str
    old: bytes | None
    new: bytes | None


def code_folder(name: str) -> str:
    return f"{CODE_FOLDER}/{name}"


def project_files(function: HubFunction, name: str) -> dict[str, bytes]:
    """The files that adding `function` as `name` writes, by path in the project."""
    folder = code_folder(name)
    files = {f"functions/{name}.yaml": _definition_text(function, name, folder).encode()}
    files.update({f"{folder}/{path}": data for path, data in function.files.items()})
    return files


def _definition_text(function: HubFunction, name: str, folder: str) -> str:
    data: dict[str, Any] = {key: value for key, value in function.definition.items()}
    data["name"] = name
    data["code"] = f"{folder}/{function.code}"
    environment = dict(data.get("environment") or {})
    if "requirements_file" in environment:
        environment["requirements_file"] = f"{folder}/{environment['requirements_file']}"
        data["environment"] = environment
    if "command" in data:
        data["command"] = [_moved(arg, function, folder) for arg in data["command"]]
    labels = {key: value for key, value in dict(data.get("labels") or {}).items() if key != "version"}
    labels.update(zip(LABELS, (function.hub, function.name, function.version, function.revision),
                      strict=True))
    data["labels"] = labels
    header = (f"# yaml-language-server: $schema={SCHEMA_BASE}/function.schema.json\n"
              f"# From the runyard hub ({function.hub}): {function.name} {function.version}.\n"
              f"# {folder}/README.md says how to use it; `runyard hub update {name}` updates it.\n")
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=4096)


def _moved(arg: str, function: HubFunction, folder: str) -> str:
    """A command argument that names a file or folder of the function, as its project path."""
    names = arg in function.files or any(path.startswith(arg + "/") for path in function.files)
    return f"{folder}/{arg}" if names else arg


def add_function(root: Path, function: HubFunction, name: str) -> list[str]:
    """Write `function` into the project at `root` as `name`; the paths written."""
    project = _valid_project(root, "adding a function")
    if name in project.functions:
        raise RunyardError(f"the project has a function {name!r} already "
                           f"({project.functions[name].file}); add it under another name with --as")
    files = project_files(function, name)
    taken = [path for path in [*files, code_folder(name)] if os.path.lexists(root / path)]
    if taken:
        raise RunyardError(f"{taken[0]} exists already; add the function under another name with --as")
    _apply(root, [Change(path, None, data) for path, data in files.items()],
           f"adding {function.name} as {name}")
    return sorted(files)


def update_changes(root: Path, name: str, function: HubFunction) -> list[Change]:
    """What updating the project's function `name` to `function` changes, file by file
    (unchanged files left out)."""
    project = _valid_project(root, "updating a function")
    hub_origin(project, name)  # it is there, and from a hub
    current = project.functions[name]
    folder = code_folder(name)
    if not (current.code or "").startswith(folder + "/"):
        raise RunyardError(f"{current.file}: its code is not in {folder}/, where `hub add` puts it; "
                           "move it back to update it from the hub")
    source = DirectorySource(root)
    old = {path: _read(source, path) for path in source.files(folder)}
    old[current.file] = _read(source, current.file)
    new = project_files(function, name)
    new[current.file] = new.pop(f"functions/{name}.yaml")
    return [Change(path, old.get(path), new.get(path)) for path in sorted({*old, *new})
            if old.get(path) != new.get(path)]


def apply_update(root: Path, name: str, changes: list[Change]) -> None:
    _apply(root, changes, f"updating {name}")


def hub_origin(project: Project, name: str) -> tuple[str, str]:
    """(hub, function in it) the project's function `name` was added from."""
    function = project.functions.get(name)
    if function is None:
        raise RunyardError(f"the project has no function {name!r}; it has: "
                           f"{', '.join(sorted(project.functions)) or 'none'}")
    hub, origin = function.labels.get("hub-source"), function.labels.get("hub-function")
    if not hub or not origin:
        raise RunyardError(f"{function.file}: function {name!r} was not added from a hub "
                           "(its labels have no hub-source and hub-function)")
    return hub, origin


def diff_text(changes: list[Change]) -> str:
    """The changes as a unified diff (binary files named only)."""
    out: list[str] = []
    for change in changes:
        old_label = f"a/{change.path}" if change.old is not None else "/dev/null"
        new_label = f"b/{change.path}" if change.new is not None else "/dev/null"
        old_text, new_text = _text(change.old), _text(change.new)
        if old_text is None or new_text is None:
            out.append(f"Binary files {old_label} and {new_label} differ\n")
            continue
        out += difflib.unified_diff(old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                    old_label, new_label)
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n\\ No newline at end of file\n"
    return "".join(out)


def load_checked(root: Path) -> Project:
    return load_project(DirectorySource(root))


def _valid_project(root: Path, doing: str) -> Project:
    try:
        return load_checked(root)
    except ProjectInvalid as error:
        raise RunyardError(f"the project at {root} does not validate now; fix it before {doing}",
                           error.problems) from None


def _apply(root: Path, changes: list[Change], doing: str) -> None:
    """Make the changes, check the project, and undo them all when it does not validate."""
    made: list[Change] = []
    folders: list[Path] = []
    try:
        for change in changes:
            _write(root, change, folders)
            made.append(change)
        load_checked(root)
    except BaseException as error:
        for change in reversed(made):
            _write(root, Change(change.path, change.new, change.old), folders)
        for folder in reversed(folders):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if isinstance(error, ProjectInvalid):
            raise RunyardError(f"{doing} would leave the project invalid; nothing was changed",
                               error.problems) from None
        raise


def _write(root: Path, change: Change, folders: list[Path]) -> None:
    target = root / change.path
    if change.new is None:
        if change.old is not None:
            target.unlink()
        return
    between = list(target.relative_to(root).parents)[:-1]  # the folders from root down to target's
    if any(os.path.islink(root / folder) for folder in between):
        raise RunyardError(f"{change.path}: a folder on its way is a symbolic link; nothing is written "
                           "through it")
    missing = [root / folder for folder in between if not os.path.lexists(root / folder)]
    for folder in reversed(missing):
        folder.mkdir()
        folders.append(folder)
    if os.path.islink(target) or (target.exists() and not target.is_file()):
        raise RunyardError(f"{change.path} is not a regular file; it is not overwritten")
    with open(target, "wb" if change.old is not None else "xb") as handle:
        handle.write(change.new)


def _read(source: DirectorySource, path: str) -> bytes:
    try:
        return source.read(path)
    except SourceError as error:
        raise RunyardError(f"{path}: {error.reason}") from None


def _text(data: bytes | None) -> str | None:
    if data is None:
        return ""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
