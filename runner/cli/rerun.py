"""`runyard rerun`."""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli.common import echo_json, echo_lines, echo_log_line, interrupt_on_sigterm
from runner.errors import RunyardError


@click.command()
@click.argument("uid")
@click.option("-C", "--project", "project_dir", type=click.Path(path_type=Path),
              default=Path("."), show_default=True, help="The project folder.")
@click.option("--exact", is_flag=True,
              help="Refuse to run unless the image, inputs and revision are as recorded.")
@click.option("--backend", type=click.Choice(["docker", "local", "swarm"]),
              help="Where to run (default: the backend the run used).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the comparison and the new record as JSON at the end.")
def rerun(uid: str, project_dir: Path, exact: bool, backend: str | None, as_json: bool) -> None:
    """Run the recorded run UID (a prefix will do) again as it was, and compare the two.

    Same revision, handler, params and inputs (by content hash, from the artifact
    store), and the same image while the engine has it. Exits 1 when a run that
    completed does not reproduce its results and artifact hashes.
    """
    from runner.run.rerun import rerun as rerun_run
    from runner.views.rerun import comparison_dict, comparison_lines

    interrupt_on_sigterm()
    comparison = rerun_run(project_dir, uid, exact=exact, backend=backend,
                           on_line=lambda name, line: None if as_json
                           else echo_log_line(name, line))
    if as_json:
        echo_json(comparison_dict(comparison))
    else:
        echo_lines(comparison_lines(comparison))
    if comparison.should_reproduce and not comparison.reproduced:
        raise RunyardError(f"run {comparison.new.metadata.uid} did not reproduce run "
                           f"{comparison.old.metadata.uid}")
