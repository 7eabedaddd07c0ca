"""`runyard init`."""

from __future__ import annotations

from pathlib import Path

import click

from runner.project.scaffold import TEMPLATES, init_git, init_project


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="The project's name (default: the folder's name).")
@click.option("--template", type=click.Choice(TEMPLATES),
              help="What to start with: one function and job (basic, the default), or a "
                   "pipeline tuned by a job.")
@click.option("--from", "baseline", metavar="PATH-OR-GIT-URL",
              help="Start from an existing project (a folder or a git URL) under the new name.")
@click.option("--init-git", "make_repo", is_flag=True,
              help="Make the folder a git repository with a first commit.")
@click.option("--force", is_flag=True, help="Write into a folder that is not empty.")
def init(directory: Path, name: str | None, template: str | None, baseline: str | None,
         make_repo: bool, force: bool) -> None:
    """Make a new project in DIRECTORY, from a template or from another project."""
    if template is not None and baseline is not None:
        raise click.UsageError("--template and --from both say what to start from: give one")
    made = init_project(directory, name, template or "basic", baseline, force)
    if make_repo:
        init_git(directory)
    click.echo(f"made project {made!r} in {directory}")
    click.echo(f"next: runyard validate {directory}")
