"""`runyard pushes [list|show REV]`: the push records on the results branch."""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli.common import echo_json, echo_lines
from runner.cli.render import print_table
from runner.cli.runs import open_results, results_options
from runner.views.pushes import HEADERS, cells, push_lines, push_rows, pushes_of


@click.group(invoke_without_command=True)
@click.pass_context
def pushes(ctx: click.Context) -> None:
    """The pushes the runner processed: their plan, runs and status (default: list)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_)


@pushes.command("list")
@results_options
@click.option("--json", "as_json", is_flag=True, help="Print the push records as JSON.")
def list_(project_dir: Path, branch: str | None, as_json: bool) -> None:
    """Every push record, the newest received first."""
    found = open_results(project_dir, branch).pushes()
    if as_json:
        echo_json([push.to_dict() for push in found])
        return
    print_table(HEADERS, [cells(row) for row in push_rows(found)], HEADERS.index("STATUS"))


@pushes.command()
@results_options
@click.argument("revision")
@click.option("--json", "as_json", is_flag=True, help="Print the push records as JSON.")
def show(project_dir: Path, branch: str | None, revision: str, as_json: bool) -> None:
    """The records of a pushed REVISION (a prefix), one per ref it was pushed to."""
    found = pushes_of(open_results(project_dir, branch).pushes(), revision)
    if as_json:
        echo_json([push.to_dict() for push in found])
        return
    for push in found:
        echo_lines(push_lines(push))
