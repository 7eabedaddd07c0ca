"""`runyard diff [A..B]`: each job's newest results at revision A against those at B."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from pathlib import Path
from typing import TYPE_CHECKING

import click

from runner.cli.common import echo_json, echo_lines, fancy
from runner.cli.runs import open_results, results_options
from runner.errors import RunyardError
from runner.git import log
from runner.project.source import commit_named

if TYPE_CHECKING:
    from runner.project.model import Project
    from runner.project.source import GitSource
    from runner.views.diff import Diff


@click.command()
@results_options
@click.argument("revisions", metavar="[A..B]", required=False)
@click.option("--job", help="Only this job.")
@click.option("--better", "better", multiple=True, metavar="max.X|min.X",
              help="Which way result X is better (repeatable); default: the job's selector.")
@click.option("--fail-if", "fail_if", metavar="EXPR",
              help="Exit 1 when a change crosses EXPR: the stop_condition language, evaluated on "
                   "each pair of runs (the run, each trial, each step) with every result that is a "
                   "number at both revisions standing for its change, B minus A. "
                   "'accuracy < -0.01' fails when accuracy fell by more than 0.01; a name no pair "
                   "has as a number at both revisions is an error.")
@click.option("--md", "as_markdown", is_flag=True, help="A Markdown report, for a pull request.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def diff(project_dir: Path, branch: str | None, revisions: str | None, job: str | None,
         better: Sequence[str], fail_if: str | None, as_markdown: bool, as_json: bool) -> None:
    """Each job's newest results at revision A against those at B: trials joined by their
    params, steps by name, each result with both values, its change and percentage, and
    what else changed between the runs (params, inputs, code, environment).

    A..B defaults to the previous revision with results against HEAD; `A` alone is A..HEAD,
    `..B` the revision with results before B against B.
    """
    from runner.views.diff import (
        diff_runs,
        needed,
        parse_better,
        parse_fail_if,
        revisions_with_results,
    )

    directions = parse_better(better)
    if fail_if:
        parse_fail_if(fail_if)  # a malformed gate is refused before anything is read
    results = open_results(project_dir, branch)
    listing = results.listing(children=True)
    for problem in listing.problems:
        click.echo(f"warning: {problem}", err=True)
    old, new = _revisions(results.store.git_dir, revisions, revisions_with_results(listing.rows))
    records = []
    for uid in needed(listing.rows, {old, new}, job):
        try:
            records.append(results.read(uid))
        except RunyardError as error:  # compared without it, and said so
            click.echo(f"warning: left out: {error}", err=True)
    found = diff_runs(records, old, new, job=job, better=directions, fail_if=fail_if,
                      code_at=_CodeAt(project_dir))
    _print(found, as_markdown, as_json)
    if found.crossings:
        from runner.views.diff_render import crossing_lines

        raise RunyardError("\n".join(crossing_lines(found)))


def _print(found: Diff, as_markdown: bool, as_json: bool) -> None:
    from runner.views.diff_render import diff_dict, markdown, plain_lines, rich_diff

    if as_json:
        echo_json(diff_dict(found))
    elif as_markdown:
        click.echo(markdown(found), nl=False)
    elif fancy():
        from rich.console import Console

        Console().print(rich_diff(found))
    else:
        echo_lines(plain_lines(found))


def _revisions(git_dir: Path, text: str | None, with_results: Set[str]) -> tuple[str, str]:
    """(A, B) as full commit ids, from `A..B`, `A`, `..B` or nothing."""
    old_text, dots, new_text = (text or "").partition("..")
    new = commit_named(git_dir, new_text if dots and new_text else "HEAD")
    if old_text:
        return commit_named(git_dir, old_text), new
    earlier = [c.commit for c in log(git_dir, new)[1:] if c.commit in with_results]
    if not earlier:
        raise RunyardError(f"no revision before {new[:12]} has results to compare with: "
                           "name one, as in `runyard diff A..B`")
    return earlier[0], new



class _CodeAt:
    """A function's files at a revision and their object ids, for records that lack them;
    the project read once per revision (None where it cannot be read)."""

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = project_dir
        self.projects: dict[str, tuple[Project, GitSource] | None] = {}

    def __call__(self, revision: str, function: str) -> Mapping[str, str | None] | None:
        from runner.cli.functions import project_at
        from runner.project.environment import function_files

        if revision not in self.projects:
            try:
                self.projects[revision] = project_at(self.project_dir, revision)
            except RunyardError:
                self.projects[revision] = None
        found = self.projects[revision]
        definition = found[0].functions.get(function) if found else None
        if found is None or definition is None:
            return None
        return {path: found[1].object_id(path) for path in function_files(definition, found[1])}
