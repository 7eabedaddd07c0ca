"""`runyard run`."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml

from runner.cli.common import (
    echo_json,
    echo_lines,
    echo_log_line,
    fancy,
    interrupt_on_sigterm,
    project_options,
)
from runner.errors import RunyardError
from runner.project.loader import load_project, open_project
from runner.record.model import RunRecord
from runner.views.tables import step_lines, summary_lines, trial_lines

if TYPE_CHECKING:
    from runner.project.model import Project
    from runner.project.source import ProjectSource


def _pairs(values: tuple[str, ...], what: str, parse: bool) -> dict[str, Any]:
    pairs: dict[str, Any] = {}
    for value in values:
        name, sep, raw = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r} is not NAME=VALUE", param_hint=what)
        pairs[name] = _yaml_value(raw, value, what) if parse and raw else raw
    return pairs


def _hyper(values: tuple[str, ...]) -> dict[str, list[Any]]:
    return {name: [_yaml_value(v, f"{name}={raw}", "--hyper") for v in raw.split(",")]
            for name, raw in _pairs(values, "--hyper", False).items()}


def _yaml_value(raw: str, given: str, what: str) -> Any:
    """A value written on the command line, read as YAML (3 a number, '3' a string)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or "not YAML"
        raise click.BadParameter(f"{given!r}: {raw!r} is not a YAML value ({problem}); "
                                 "quote it to pass it as text", param_hint=what) from None


@click.command()
@click.argument("target")
@project_options
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A parameter (YAML value: 3 is a number, '3' a string); overrides the job's.")
@click.option("-i", "--input", "inputs", multiple=True, metavar="NAME=URI",
              help="An input: a repo path, file://, http(s)://, artifact://KEY[@UID].")
@click.option("--hyper", "hyper", multiple=True, metavar="NAME=V1,V2,...",
              help="Try these values (a grid with the job's other hyper-parameters).")
@click.option("--selector", metavar="min.KEY|max.KEY", help="Pick the best trial by this result.")
@click.option("--handler", help="Call this handler instead of the default one.")
@click.option("--backend", type=click.Choice(["docker", "local", "swarm"]),
              help="docker (default); local: a subprocess on this machine, for debugging; "
                   "swarm: a service of the Docker Swarm this engine manages.")
@click.option("--local-changes", is_flag=True,
              help="Run the working tree as it is, uncommitted changes included.")
@click.option("--detach", is_flag=True, help="Start the run in the background; print its uid.")
@click.option("--uid", hidden=True)
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON at the end.")
def run(target: str, project_dir: Path, revision: str | None, params: tuple[str, ...],
        inputs: tuple[str, ...], hyper: tuple[str, ...], selector: str | None,
        handler: str | None, backend: str | None, local_changes: bool, detach: bool,
        uid: str | None, as_json: bool) -> None:
    """Run TARGET, a job or a function, and record the run on the results branch.

    The code is the committed revision (HEAD unless --revision), never the
    working tree, unless --local-changes says so. Ctrl-C stops the runs and
    records them as aborted.
    """
    from runner.project.source import DirectorySource
    from runner.record.results import new_uid

    if revision is not None and local_changes:
        raise click.UsageError("--revision runs a commit and --local-changes the working tree: "
                               "give one of them")
    if uid is not None and not re.fullmatch(r"[0-9a-f]{6,64}", uid):
        raise RunyardError(f"--uid {uid!r}: a uid is 6 to 64 lower-case hexadecimal digits")
    uid = uid or new_uid()
    if selector and not (selector.startswith(("min.", "max.")) and len(selector) > 4):
        raise click.BadParameter(f"{selector!r} is not min.KEY or max.KEY", param_hint="--selector")
    given_params, given_inputs = _pairs(params, "--param", True), _pairs(inputs, "--input", False)
    given_hyper = _hyper(hyper)
    if detach:
        # what would fail at once fails here, not in a process nobody watches
        _check_target(project_dir, revision, local_changes, target, handler, given_inputs,
                      [*given_params, *given_hyper])
        _detach(uid, project_dir)
        return
    progress = _Progress(uid, quiet=as_json)
    interrupt_on_sigterm()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="runyard-open") as early:
        # git opens the project, in processes of its own, while the run's modules load
        opening = early.submit(open_project, project_dir, revision, local_changes)
        from runner.run.launch import run_interruptibly, run_target
        from runner.run.session import session_for
    with session_for(*opening.result(), backend=backend, on_line=progress.line, job=target,
                     handler=handler, inputs=given_inputs) as session:
        session.on_record = progress.record
        _warn_of_ignored(session.project, DirectorySource(session.code), target, handler,
                         [*given_params, *given_hyper])
        record = run_interruptibly(session, lambda: run_target(
            session, target, uid, handler=handler, params=given_params,
            inputs=given_inputs, hyper=given_hyper, selector=selector))
        branch = session.results.branch
    if as_json:
        echo_json(record.to_dict())
    else:
        echo_lines([*step_lines(record), *trial_lines(record), *summary_lines(record, branch)])
    if record.status.state != "completed":
        raise RunyardError(f"run {record.metadata.uid} {record.status.state}")


class _Progress:
    """Log lines as they come, and a line per finished trial with the best so far."""

    def __init__(self, parent: str, quiet: bool) -> None:
        self.parent, self.quiet = parent, quiet
        self.trials: list[RunRecord] = []
        self.many = False

    def line(self, name: str, text: str) -> None:
        if not self.quiet and not (self.many and fancy()):
            echo_log_line(name, text)

    def record(self, record: RunRecord) -> None:
        meta, status = record.metadata, record.status
        if self.quiet or meta.parent != self.parent or not meta.iteration \
                or status.state == "running":
            return
        self.many = True
        self.trials.append(record)
        failed = sum(r.status.state == "failed" for r in self.trials)
        results = " ".join(f"{k}={v}" for k, v in list(status.results.items())[:3])
        why = f" ({status.reason})" if status.reason else ""
        echo_lines([f"trial {meta.iteration}: {status.state}{why} {results}"
                    f"  [{len(self.trials)} done, {failed} failed]"])


def _check_target(project_dir: Path, revision: str | None, local_changes: bool,
                  target: str, handler: str | None, inputs: dict[str, str],
                  params: list[str]) -> None:
    """The project loads as the run would load it, and `target`, `handler` and `inputs`
    can run in it."""
    from runner.run.session import require_runnable

    source, _ = open_project(project_dir, revision, local_changes)
    with closing(source):
        project = load_project(source)
        require_runnable(project, source, target, handler, inputs)
        _warn_of_ignored(project, source, target, handler, params)


def _warn_of_ignored(project: Project, source: ProjectSource, target: str, handler: str | None,
                     params: Iterable[str]) -> None:
    from runner.project.checks import ignored_params

    for warning in ignored_params(project, source, target, handler, params):
        click.echo(f"warning: {warning}", err=True)


def _detach(uid: str, project_dir: Path) -> None:
    """Start the run in a process of its own; `runs logs --follow` finds it by its files
    in the live folder: what it prints, and which process it is."""
    from runner.cli.follow import live_dir
    from runner.record.owner import Owner

    live = live_dir(project_dir)
    live.mkdir(parents=True, exist_ok=True)
    argv = [a for a in sys.argv[1:] if a != "--detach"]
    with (live / f"{uid}.detached").open("wb") as output:
        child = subprocess.Popen([sys.executable, "-m", "runner", *argv, "--uid", uid],
                                 stdout=output, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    (live / f"{uid}.runner").write_text(str(Owner.of_process(child.pid)))
    click.echo(uid)
