"""What several commands share: the project option, loading, and terminal output."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

import click

from runner.project.loader import find_project_root, load_project
from runner.project.model import Project
from runner.project.source import ProjectSource, open_source
from runner.views.terminal import printable

F = TypeVar("F", bound=Callable[..., Any])


def project_options(command: F) -> F:
    """`-C DIR` and `--revision REV`, as every command that reads a project takes them."""
    command = click.option("--revision", "-r", metavar="REV",
                           help="Use the project as committed at REV (works in bare repositories).")(command)
    return click.option("-C", "--project", "project_dir", type=click.Path(path_type=Path),
                        default=Path("."), show_default=True,
                        help="The project folder, or the repository with --revision.")(command)


def load(project_dir: Path, revision: str | None) -> tuple[Project, ProjectSource]:
    root = project_dir if revision else find_project_root(project_dir)
    source = closed_at_end(open_source(root, revision))
    return load_project(source), source


class Closeable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closeable)


def closed_at_end(thing: C) -> C:
    """`thing` (a source or a store, holding a git process open), closed when the command ends."""
    click.get_current_context().call_on_close(thing.close)
    return thing


def fancy() -> bool:
    """Live displays and colour only for a person at a terminal."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def echo_lines(lines: Iterable[str], err: bool = False) -> None:
    """A view's lines, what came from a record shown and never obeyed (views/terminal.py)."""
    for line in lines:
        click.echo(printable(line), err=err)


def echo_file(text: str) -> None:
    """A file's text (of a pushed project, say): as it is when piped or redirected; on a
    terminal, shown and never obeyed, as a view's lines."""
    if sys.stdout.isatty():
        click.echo(printable(text), nl=not text.endswith("\n"))
    else:  # click would drop what looks like a colour, unless told not to
        click.echo(text, nl=not text.endswith("\n"), color=True)


def echo_log_line(name: str, line: str, err: bool = False) -> None:
    """A line a run (or a build) printed, its colours kept, under the name of what printed it."""
    click.echo(printable(f"{name} | {line}", colours=True), err=err)


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@contextmanager
def live_lines(title: str) -> Iterator[Callable[[str, str], None]]:
    """A sink for (topic, line) pairs: a one-line live status on a terminal, plain lines else."""
    if not fancy():
        yield echo_log_line
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    with console.status(title) as status:
        yield lambda topic, line: status.update(
            f"{title} [dim]{escape(topic)}[/]: {escape(printable(line[:100]))}")


def interrupt_on_sigterm() -> None:
    """SIGTERM as Ctrl-C: the runs stop and are recorded aborted."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
