"""`runyard runs list|show|logs|artifact|compare`: views on the results branch."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_args

import click

from runner.cli.common import closed_at_end, echo_json, echo_lines
from runner.errors import RunyardError
from runner.git import find_repository
from runner.record.model import RunRecord, State
from runner.record.results import ResultsBranch
from runner.views.tables import compare_lines
from runner.views.terminal import printable


def open_results(project_dir: Path, branch: str | None) -> ResultsBranch:
    found = find_repository(project_dir)
    if found is None:
        raise RunyardError(f"{project_dir} is not in a git repository")
    results = closed_at_end(ResultsBranch(found.repository.git_dir,
                                          branch or _branch_of(project_dir)))
    if branch is not None and results.store.tip() is None:
        # the project's own branch before its first run is empty; one named by hand is a typo
        raise RunyardError(f"no branch {branch!r} in {found.repository.git_dir} (nor "
                           f"origin/{branch}): name the results branch, or leave --branch out")
    return results


def _branch_of(project_dir: Path) -> str:
    from runner.project.loader import Settings, find_project_root, read_settings
    from runner.project.source import DirectorySource

    try:
        return read_settings(DirectorySource(find_project_root(project_dir))).results_branch
    except RunyardError:  # a clone holding only the results branch
        return Settings().results_branch


F = TypeVar("F", bound=Callable[..., Any])


def results_options(command: F) -> F:
    command = click.option("--branch", help="The results branch (default: the project's).")(command)
    return click.option("-C", "--project", "project_dir", type=click.Path(path_type=Path),
                        default=Path("."), show_default=True,
                        help="A folder of the repository holding the records.")(command)


@click.group()
def runs() -> None:
    """Read the run records on the results branch."""


@runs.command("list")
@results_options
@click.option("--job", help="Only the runs of this job (or of this function or pipeline, run by "
              "itself).")
@click.option("--state", type=click.Choice(get_args(State)), help="Only runs in this state.")
@click.option("--where", metavar="EXPR",
              help="Only runs whose results and params meet EXPR: 'accuracy > 0.9 and depth == 3'.")
@click.option("--sort", metavar="[-]RESULT", help="Sort by a result (descending with '-').")
@click.option("--all", "unfold", is_flag=True, help="Each run's trials and steps under it.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="At most this many top-level runs.")
@click.option("--json", "as_json", is_flag=True,
              help="The records of the runs listed (with --all, their children's too).")
def list_(project_dir: Path, branch: str | None, job: str | None, state: str | None,
          where: str | None, sort: str | None, unfold: bool, limit: int, as_json: bool) -> None:
    """The newest top-level runs first, their trials and steps folded."""
    from runner.cli.render import print_table
    from runner.views.runs import (
        HEADERS,
        Query,
        SortKey,
        cells,
        list_runs,
        parse_where,
        target_warning,
    )

    query = Query(job, state, parse_where(where) if where else None,
                  SortKey.parse(sort) if sort else None, limit, unfold)
    results = open_results(project_dir, branch)
    listing = results.listing(children=unfold)
    for problem in [*listing.problems, *filter(None, [target_warning(query, listing.rows)])]:
        click.echo(f"warning: {printable(problem)}", err=True)
    lines = list_runs(listing.rows, query, results.short_prefixes)
    if as_json:
        echo_json([results.read(line.run.uid).to_dict() for line in lines])
        return
    print_table(HEADERS, [cells(line) for line in lines], HEADERS.index("STATE"))


@runs.command()
@results_options
@click.argument("uid")
@click.option("--code", is_flag=True,
              help="Print the definition and code of the function the run used, at its revision.")
@click.option("--json", "as_json", is_flag=True, help="Print the record (or, with --code, "
              "the files) as JSON.")
def show(project_dir: Path, branch: str | None, uid: str, code: bool, as_json: bool) -> None:
    """Exactly what ran: revision and tree, function and handler, image, environment hash,
    code, inputs with their hashes, params by level and resolved, trigger, host, times,
    results, artifacts, and a parent's trials or steps with their uids. UID may be any
    unique prefix. A broken record exits 1, saying what is wrong with it."""
    from runner.views.show import provenance_lines

    results = open_results(project_dir, branch)
    record = results.read(results.find(uid))
    if code:
        _show_code(project_dir, record, as_json)
        return
    if as_json:
        echo_json(record.to_dict())
        return
    echo_lines(provenance_lines(record, results.branch))


def _show_code(project_dir: Path, record: RunRecord, as_json: bool) -> None:
    from runner.cli.functions import print_code, project_at
    from runner.views.functions import function_code

    function, revision = record.spec.function, record.spec.revision
    if not function:
        raise RunyardError(f"run {record.metadata.uid} ran no function of its own (a pipeline "
                           "run): its steps' runs name theirs")
    project, source = project_at(project_dir, revision)
    print_code(function_code(project, source, function), as_json)


@runs.command()
@results_options
@click.argument("uid")
@click.option("--follow", "-f", is_flag=True, help="Wait for the run to end, printing as it goes.")
def logs(project_dir: Path, branch: str | None, uid: str, follow: bool) -> None:
    """The log of a run."""
    from runner.cli.follow import follow_log, live_dir, log_output

    results = open_results(project_dir, branch)
    out = log_output(sys.stdout.buffer)
    if follow:
        follow_log(results, uid, live_dir(project_dir), out)
        return
    out.write(results.log(results.find(uid)))
    out.flush()


@runs.command()
@results_options
@click.argument("uid")
@click.argument("key")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write it here.")
def artifact(project_dir: Path, branch: str | None, uid: str, key: str,
             output: Path | None) -> None:
    """Fetch artifact KEY of a run from the artifact store."""
    from runner.record.artifacts import ArtifactStore

    results = open_results(project_dir, branch)
    record = results.read(results.find(uid))
    found = [a.hash for a in record.status.artifacts if a.key == key and a.hash]
    if not found:
        keys = ", ".join(sorted({a.key for a in record.status.artifacts})) or "none"
        raise RunyardError(f"run {record.metadata.uid} has no artifact {key!r} "
                           f"(its artifacts: {keys})")
    store_root = _store(project_dir)
    path = ArtifactStore(store_root[0], store_root[1]).path_of(found[0])
    if not path.is_file():
        raise RunyardError(f"artifact {key!r} ({found[0]}) is not in the store at {path}")
    if output is None:
        from runner.cli.follow import log_output

        out = log_output(sys.stdout.buffer)  # on a terminal: shown, never obeyed
        out.write(path.read_bytes())
        out.flush()
    else:
        try:
            shutil.copyfile(path, output)
        except OSError as error:
            raise RunyardError(f"cannot write artifact {key!r} to {output}: "
                               f"{error.strerror or error}") from None
        click.echo(f"wrote {output}")


@runs.command()
@results_options
@click.argument("uids", nargs=-1, required=True)
def compare(project_dir: Path, branch: str | None, uids: tuple[str, ...]) -> None:
    """Params and results of runs side by side; '*' marks the rows that differ."""
    results = open_results(project_dir, branch)
    echo_lines(compare_lines([results.read(results.find(uid)) for uid in uids]))


@runs.command()
@results_options
def reindex(project_dir: Path, branch: str | None) -> None:
    """Write the index of the results branch anew from its records (for a branch an older
    runyard wrote, or an index edited by hand); one commit."""
    results = open_results(project_dir, branch)
    listing = results.reindex()
    for problem in listing.problems:
        click.echo(f"warning: {problem} (left out)", err=True)
    click.echo(f"indexed {len(listing.rows)} runs on branch {results.branch}")


def _store(project_dir: Path) -> tuple[str, Path]:
    from runner.project.loader import find_project_root, read_settings
    from runner.project.source import DirectorySource

    root = find_project_root(project_dir)
    return read_settings(DirectorySource(root)).artifact_store, root
