"""`runyard init`: a new project from a template, or from an existing project."""

from __future__ import annotations

import re
import shutil
import tempfile
from importlib.resources.abc import Traversable
from pathlib import Path

import jinja2

from runner.errors import RunyardError
from runner.files import package_file
from runner.git import run
from runner.project.loader import PROJECT_FILE
from runner.project.yamlread import read_document

TEMPLATES = ("basic", "pipeline")
SCHEMA_BASE = "https://runyard.dev/schemas/v1"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_SKIP = {".git", ".runyard", "__pycache__"}


def init_project(target: Path, name: str | None, template: str = "basic",
                 baseline: str | None = None, force: bool = False) -> str:
    """Make a project in `target`; return its name."""
    name = _name_from(target) if name is None else name  # `--name ""` is refused, not ignored
    if not _NAME.fullmatch(name):
        raise RunyardError(f"{name!r} is not a valid project name: lower-case letters, digits "
                           "and '-', starting with a letter (use --name)")
    if target.exists() and any(target.iterdir()) and not force:
        raise RunyardError(f"{target} is not empty; use --force to write into it anyway")
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunyardError(f"cannot make the folder {target}: "
                           f"{error.strerror or error}") from None
    try:
        if baseline is None:
            _render(package_file("templates", "init", template), target, name)
        else:
            _copy_baseline(baseline, target, name)
    except BaseException:
        if created:  # leave nothing behind of a project that was not made
            shutil.rmtree(target, ignore_errors=True)
        raise
    return name


def init_git(target: Path) -> None:
    """Make `target` a git repository with everything in a first commit."""
    steps = {"init": ["--quiet"], "add": ["--all"], "commit": ["--quiet", "-m", "A new runyard project"]}
    for command, args in steps.items():
        run("-c", "user.name=runyard", "-c", "user.email=runyard@localhost", command, *args,
            cwd=target).checked(f"git {command}")


def _name_from(target: Path) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", target.resolve().name.lower()).strip("-") or "project"


def _render(folder: Traversable, target: Path, name: str) -> None:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    values = {"name": name, "description": f"The {name} project", "schema_base": SCHEMA_BASE}
    for source, relative in _walk(folder, Path()):
        text = source.read_text("utf-8")
        out = target / relative.with_suffix("") if relative.suffix == ".j2" else target / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(env.from_string(text).render(values) if relative.suffix == ".j2" else text)


def _walk(folder: Traversable, relative: Path) -> list[tuple[Traversable, Path]]:
    found = []
    for item in folder.iterdir():
        if item.is_dir():
            found += _walk(item, relative / item.name)
        else:
            found.append((item, relative / item.name))
    return found


def _copy_baseline(baseline: str, target: Path, name: str) -> None:
    folder = Path(baseline)
    if folder.is_dir() and ((folder / PROJECT_FILE).is_file() or not _is_repository(folder)):
        _copy_project(folder, target, name)
        return
    with tempfile.TemporaryDirectory(prefix="runyard-init-") as tmp:
        clone_repository(baseline, Path(tmp) / "baseline", "--depth", "1")
        _copy_project(Path(tmp) / "baseline", target, name, label=baseline)


def clone_repository(url: str, target: Path, *options: str) -> None:
    """`git clone URL TARGET`, refused with git's own reason."""
    done = run("clone", "--quiet", *options, "--end-of-options", url, str(target))
    if not done.ok:
        raise RunyardError(f"cannot clone {url}: {done.err.decode(errors='replace').strip()}")


def _is_repository(folder: Path) -> bool:
    """A working tree's top, or a bare repository: something to clone, not to copy."""
    bare = (folder / "HEAD").is_file() and (folder / "objects").is_dir()
    return bare or (folder / ".git").exists()


def _copy_project(source: Path, target: Path, name: str, label: str | None = None) -> None:
    if not (source / PROJECT_FILE).is_file():
        raise RunyardError(f"{label or source} has no {PROJECT_FILE} at its top: "
                           "not a runyard project to start from")
    for item in source.iterdir():
        if item.name in _SKIP:
            continue
        if item.is_dir():
            shutil.copytree(item, target / item.name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(*_SKIP))
        else:
            shutil.copy2(item, target / item.name)
    _rename(target / PROJECT_FILE, name)


def _rename(project_file: Path, name: str) -> None:
    """Set the project's name, keeping the file's comments and layout."""
    raw = project_file.read_bytes()
    doc = read_document(PROJECT_FILE, raw)
    line, col = doc.positions[("name",)]
    lines = project_file.read_text("utf-8").splitlines(keepends=True)
    text = lines[line - 1]
    end = len(text.rstrip("\r\n"))
    old = str(doc.data["name"])
    start = col - 1
    stop = text.index(old, start) + len(old) if old in text[start:] else end
    lines[line - 1] = text[:start] + name + text[stop:]
    project_file.write_text("".join(lines), "utf-8")
