"""`runyard functions [list]|history|show`: the project's functions and their versions."""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli.common import closed_at_end, echo_file, echo_json, echo_lines
from runner.errors import RunyardError
from runner.git import find_repository
from runner.project.loader import find_project_root, load_project
from runner.project.model import Project
from runner.project.source import GitSource
from runner.record.results import ResultsBranch
from runner.views.functions import (
    Engine,
    FunctionCode,
    function_code,
    function_history,
    function_list,
    require,
    walk,
)
from runner.views.tables import table

_project_option = click.option(
    "-C", "--project", "project_dir", type=click.Path(path_type=Path), default=Path("."),
    show_default=True, help="The project folder (its repository's HEAD is read).")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def project_at(project_dir: Path, revision: str) -> tuple[Project, GitSource]:
    """The project (unchecked: an old revision need not be valid) as committed at `revision`."""
    root = find_project_root(project_dir)
    found = find_repository(root)
    if found is None:
        raise RunyardError(f"{root} is not in a git repository")
    source = closed_at_end(GitSource(found.repository, revision, found.prefix))
    return load_project(source, check=False), source


def _engine(project: Project) -> Engine:
    """What the engine holds; an empty Engine when none answers (images then unknown)."""
    from runner.build.builder import LocalImages, ids_by_name
    from runner.build.engine import connect
    from runner.build.inventory import tags_by_env_hash

    try:
        engine = connect(lambda _: None, start=False)
    except RunyardError:
        return Engine()
    return Engine(ids_by_name(LocalImages.read(engine).ids), tags_by_env_hash(engine, project.name))


def _image(engine: Engine, tag: str | None) -> str:
    return tag or ("unknown" if engine.images is None else "-")


@click.group(invoke_without_command=True)
@click.pass_context
def functions(ctx: click.Context) -> None:
    """The project's functions, their history and their code at any revision."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_)


@functions.command("list")
@_project_option
@_json_option
def list_(project_dir: Path = Path("."), as_json: bool = False) -> None:
    """Each function at HEAD: code, handler, environment hash, image, last change."""
    project, source = project_at(project_dir, "HEAD")
    engine = _engine(project)
    found = function_list(project, source, walk(source.repo, "HEAD", source.prefix, engine), engine)
    if as_json:
        echo_json([summary._asdict() for summary in found])
        return
    rows = [[f.name, f.code or "-", f.handler or "-", (f.env_hash or "-")[:12],
             _image(engine, f.image), (f.changed or "-")[:12], (f.changed_date or "")[:19]]
            for f in found]
    for line in table(["NAME", "CODE", "HANDLER", "ENV", "IMAGE", "CHANGED", "AT"], rows):
        click.echo(line)  # (table writes out what a terminal would obey)


@functions.command()
@click.argument("name")
@_project_option
@_json_option
def history(name: str, project_dir: Path, as_json: bool) -> None:
    """The revisions at which function NAME changed, newest first, with their runs."""
    project, source = project_at(project_dir, "HEAD")
    require(project, name)
    engine = _engine(project)
    results = closed_at_end(ResultsBranch(source.git_dir, project.results_branch))
    versions = function_history(name, project, walk(source.repo, "HEAD", source.prefix, engine),
                                list(results.records()), engine)
    if as_json:
        echo_json([{**v._asdict(), "reasons": list(v.reasons), "runs": [r._asdict() for r in v.runs]}
                   for v in versions])
        return
    for version in versions:  # a commit's subject is the pusher's words
        echo_lines([f"{version.revision[:12]}  {version.date[:19]}  {', '.join(version.reasons)}"
                    f"  {version.subject}",
                    f"  env {(version.env_hash or '-')[:12]}  image {_image(engine, version.image)}",
                    *[f"  run {run.uid}  {run.state:<9} {run.job or '-'}  {(run.start or '')[:19]}"
                      for run in version.runs]])


@functions.command()
@click.argument("name_at", metavar="NAME[@REV]")
@_project_option
@_json_option
def show(name_at: str, project_dir: Path, as_json: bool) -> None:
    """The definition and code files of a function, at HEAD or at revision REV."""
    name, _, revision = name_at.partition("@")
    project, source = project_at(project_dir, revision or "HEAD")
    print_code(function_code(project, source, name), as_json)


def print_code(code: FunctionCode, as_json: bool) -> None:
    """A function's definition and code, as `functions show` and `runs show --code` print it."""
    if as_json:
        echo_json({**code._asdict(), "files": [f._asdict() for f in code.files]})
        return
    click.echo(f"# function {code.name} at {code.revision}")
    for path, text in [(code.file, code.definition), *code.files]:
        echo_file(f"\n--- {path}\n{text}")
