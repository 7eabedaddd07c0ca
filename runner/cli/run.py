"""`runyard run`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from runner.cli.common import echo_json, project_options
from runner.errors import RunyardError
from runner.view import summary_lines


def _pairs(values: tuple[str, ...], what: str, parse: bool) -> dict[str, Any]:
    pairs: dict[str, Any] = {}
    for value in values:
        name, sep, raw = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r} is not NAME=VALUE", param_hint=what)
        pairs[name] = yaml.safe_load(raw) if parse and raw else raw
    return pairs


@click.command()
@click.argument("target")
@project_options
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A parameter (YAML value: 3 is a number, '3' a string); overrides the job's.")
@click.option("-i", "--input", "inputs", multiple=True, metavar="NAME=URI",
              help="An input: a repo path, file://, http(s)://, artifact://KEY[@UID].")
@click.option("--handler", help="Call this handler instead of the default one.")
@click.option("--backend", type=click.Choice(["docker", "local"]),
              help="docker (default) or local: a subprocess on this machine, for debugging.")
@click.option("--local-changes", is_flag=True,
              help="Run the working tree as it is, uncommitted changes included.")
@click.option("--detach", is_flag=True, help="Start the run in the background; print its uid.")
@click.option("--uid", hidden=True)
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON at the end.")
def run(target: str, project_dir: Path, revision: str | None, params: tuple[str, ...],
        inputs: tuple[str, ...], handler: str | None, backend: str | None,
        local_changes: bool, detach: bool, uid: str | None, as_json: bool) -> None:
    """Run TARGET, a job or a function, and record the run on the results branch.

    The code is the committed revision (HEAD unless --revision), never the
    working tree, unless --local-changes says so.
    """
    from runner.record.results import new_uid
    from runner.run.launch import run_target
    from runner.run.session import session_for

    if detach:
        _detach(new_uid())
        return
    options = {"handler": handler, "params": _pairs(params, "--param", True),
               "inputs": _pairs(inputs, "--input", False)}
    with session_for(project_dir, revision, local_changes=local_changes, backend=backend,
                     on_line=_print_line(as_json)) as session:
        record = run_target(session, target, uid, **options)
        branch = session.results.branch
    if as_json:
        echo_json(record)
    else:
        for line in summary_lines(record, branch):
            click.echo(line)
    if record["status"]["state"] != "completed":
        raise RunyardError(f"run {record['metadata']['uid']} {record['status']['state']}")


def _print_line(quiet: bool) -> Any:
    def emit(name: str, line: str) -> None:
        if not quiet:
            click.echo(f"{name} | {line}")
    return emit


def _detach(uid: str) -> None:
    argv = [a for a in sys.argv[1:] if a != "--detach"]
    subprocess.Popen([sys.executable, "-m", "runner", *argv, "--uid", uid],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     stdin=subprocess.DEVNULL, start_new_session=True)
    click.echo(uid)
