"""`runyard validate` and `runyard schema`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from runner.cli.common import closed_at_end
from runner.errors import Problem, ProjectInvalid, RunyardError
from runner.git import find_repository
from runner.project.loader import find_project_root, load_project
from runner.project.model import Project
from runner.project.schema import KINDS, schema_text
from runner.project.source import DirectorySource, GitSource, ProjectSource, open_source


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--revision", "-r", metavar="REV", help="Check the project as committed at REV.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
def validate(paths: tuple[Path, ...], revision: str | None, as_json: bool) -> None:
    """Check a project: schemas, references, code, DAGs and expressions.

    PATHS is the project folder (default: the current one) or files inside
    projects, as pre-commit passes them; every project they belong to is
    checked whole, so errors across files are caught. With --revision, a
    PATH may also be a bare repository, or a folder inside one (which then
    names that folder of the revision's tree). Problems name files relative
    to the current folder (or to the repository, for a bare one).
    """
    try:
        checked, problems, warnings = _check(paths, revision)
    except RunyardError as error:
        if as_json:  # a report all the same, for the machine that reads it
            _echo_report([], [], [], error.message)
        raise
    if as_json:
        _echo_report(checked, problems, warnings)
        return
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if problems:
        raise ProjectInvalid(problems)
    if not checked:  # only files outside any project: fine for pre-commit, said for a person
        click.echo(f"nothing to check: no runyard project holds {', '.join(map(str, paths))}",
                   err=True)
    for project in checked:
        click.echo(
            f"ok: project {project.name!r}: {_count(project.functions, 'function')}, "
            f"{_count(project.pipelines, 'pipeline')}, {_count(project.jobs, 'job')}"
        )


def _check(paths: tuple[Path, ...], revision: str | None
           ) -> tuple[list[Project], list[Problem], list[Problem]]:
    """The projects that are valid, the problems of the others, and the warnings: what the
    runner on push refuses or withholds by default, so the pusher learns it now."""
    from runner.project.policy import Policy, push_warnings

    missing = [str(path) for path in paths if not os.path.lexists(path)]
    if missing and revision is None:
        raise RunyardError(f"no such file or folder: {', '.join(missing)}")
    checked: list[Project] = []
    problems: list[Problem] = []
    warnings: list[Problem] = []
    for source, shown in _sources(paths, revision):
        try:
            checked.append(load_project(source))
        except ProjectInvalid as error:
            problems += [_relocate(problem, shown) for problem in error.problems]
        else:
            found = [*push_warnings(checked[-1], Policy()), *_swarm_warnings(checked[-1])]
            warnings += [_relocate(w, shown) for w in found]
    return checked, problems, warnings


def _swarm_warnings(project: Project) -> list[Problem]:
    """A swarm runs tasks on other machines: without a shared folder every run is pinned to
    the runner's node, and a store in a folder of this machine ties the project to it."""
    on_swarm = project.backend == "swarm" or any(j.backend == "swarm" for j in project.jobs.values())
    if not on_swarm or project.doc is None:
        return []
    found = []
    if project.shared is None:
        found.append(project.doc.problem(
            ("execution",),
            "the swarm backend stages a run's inputs and outputs on the runner's disk, so every "
            "run is pinned to the runner's node: set execution.shared to a folder every node "
            "mounts at the same path (/mnt/runyard, say) to spread runs over the swarm "
            "(README: Swarm)"))
    store = project.artifact_store
    if "://" not in store or store.startswith("file://"):
        found.append(project.doc.problem(
            ("artifacts", "store"),
            f"the artifact store {store!r} is a folder of the runner's machine, but the swarm "
            "backend runs tasks on any node: they reach the store only through this runner, so "
            "only a runner on this machine can run the project and resolve its artifact:// "
            "inputs; use a store every manager reaches (s3://..., or a path every node mounts)"))
    return found


def _echo_report(checked: list[Project], problems: list[Problem], warnings: list[Problem],
                 error: str | None = None) -> None:
    """The JSON report; exit 1 unless the projects are valid."""
    report: dict[str, object] = {
        "valid": not problems and error is None,
        "projects": [project.name for project in checked],
        "problems": [problem.to_dict() for problem in problems],
        "warnings": [warning.to_dict() for warning in warnings],
    }
    if error is not None:
        report["error"] = error
    click.echo(json.dumps(report, indent=2))
    if not report["valid"]:
        raise SystemExit(1)


@click.command()
@click.argument("kind", type=click.Choice([*KINDS, "run"]))
def schema(kind: str) -> None:
    """Print the JSON Schema of a KIND of file (or of the run record)."""
    click.echo(schema_text(kind), nl=False)


def _sources(paths: tuple[Path, ...], revision: str | None) -> list[tuple[ProjectSource, str]]:
    """Each project to check once, with the folder its files are shown under."""
    if revision is None:
        return [(DirectorySource(root), _shown(root)) for root in _project_roots(paths)]
    found: dict[str, tuple[ProjectSource, str]] = {}
    for path in paths or (Path("."),):
        if not path.exists():
            found.setdefault(str(path.resolve()), _bare_source(path, revision))
            continue
        try:
            root = find_project_root(path)
        except RunyardError:
            if path.is_file():
                continue  # a file outside any project
            root = path  # maybe a project at the revision only, or a bare repository
        key = str(root.resolve())
        if key not in found:
            source = closed_at_end(open_source(root, revision))
            in_bare = isinstance(source, GitSource) and source.repo.bare
            found[key] = (source, "" if in_bare else _shown(root))  # no files to show in a bare one
    return list(found.values())


def _bare_source(path: Path, revision: str) -> tuple[ProjectSource, str]:
    """A folder inside a bare repository: that folder of the revision's tree."""
    existing = path.resolve()
    while not existing.exists():
        existing = existing.parent
    found = find_repository(existing)
    if found is None or not found.repository.bare:
        raise RunyardError(f"{path} does not exist")
    prefix = path.resolve().relative_to(found.repository.git_dir).as_posix()
    return closed_at_end(GitSource(found.repository, revision, prefix)), prefix


def _shown(root: Path) -> str:
    """`root` as the prefix of the paths shown to the user: relative to here, if it can be."""
    try:
        shown = os.path.relpath(root.resolve(), Path.cwd())
    except ValueError:
        shown = str(root.resolve())
    return "" if shown == "." else Path(shown).as_posix()


def _relocate(problem: Problem, shown: str) -> Problem:
    return problem._replace(file=f"{shown}/{problem.file}") if shown else problem


def _project_roots(paths: tuple[Path, ...]) -> list[Path]:
    if not paths:
        return [find_project_root(Path("."))]
    roots: list[Path] = []
    for path in paths:
        if path.is_dir():
            root = find_project_root(path)
        else:
            try:
                root = find_project_root(path)
            except RunyardError:
                continue  # a file outside any project (pre-commit passes every file)
        if root not in roots:
            roots.append(root)
    return roots


def _count(items: object, noun: str) -> str:
    n = len(items)  # type: ignore[arg-type]
    return f"{n} {noun}{'' if n == 1 else 's'}"
