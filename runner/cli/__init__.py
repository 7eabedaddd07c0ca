"""The `runyard` command line: a thin layer over the package.

Commands are imported only when called, so `runyard validate` never loads the
engine's client or anything of building and running. Errors leave through one exit:
a user's error prints its message and exits 1, a bug exits 3.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import os
import sys
import threading
from typing import Any, NoReturn

import click

from runner.errors import RunyardError
from runner.views.terminal import printable

COMMANDS = {
    "init": "runner.cli.scaffold:init",
    "validate": "runner.cli.validate:validate",
    "schema": "runner.cli.validate:schema",
    "setup": "runner.cli.images:setup",
    "build": "runner.cli.images:build",
    "images": "runner.cli.images:images",
    "run": "runner.cli.run:run",
    "runs": "runner.cli.runs:runs",
    "rerun": "runner.cli.rerun:rerun",
    "pushes": "runner.cli.pushes:pushes",
    "diff": "runner.cli.diff:diff",
    "report": "runner.cli.report:report",
    "ui": "runner.cli.report:ui",
    "functions": "runner.cli.functions:functions",
    "hub": "runner.cli.hub:hub",
    "plan": "runner.cli.gitops:plan",
    "on-push": "runner.cli.gitops:on_push",
    "hook": "runner.cli.gitops:hook",
    "status": "runner.cli.gitops:status",
    "schedule": "runner.cli.gitops:schedule",
    "watch": "runner.cli.gitops:watch",
}

EXIT_USER_ERROR = 1
EXIT_INTERNAL_ERROR = 3


class LazyGroup(click.Group):
    """A group whose commands live in modules imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, name = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), name)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runyard")
def cli() -> None:
    """runyard: YAML in git becomes runs in Docker, recorded back in git."""


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="runyard", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except RunyardError as error:
        click.echo(printable(str(error)), err=True)  # it may quote a record or a log
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as error:
        if os.environ.get("RUNYARD_DEBUG"):
            raise
        click.echo(f"runyard: internal error (a bug, please report it): "
                   f"{type(error).__name__}: {error}\n"
                   "Set RUNYARD_DEBUG=1 to see the traceback.", err=True)
        sys.exit(EXIT_INTERNAL_ERROR)


def run() -> NoReturn:
    """The `runyard` process: `sys.exit(main())`, collecting cyclic garbage less often,
    and leaving without the interpreter's teardown, which frees every object one by one
    (20 to 50 ms a command) for a process that is about to end anyway."""
    # Python's collector runs every 700 allocations: while a command imports its modules
    # and makes their classes, all of them alive, some 50 times (about 6 ms of `runyard
    # run`). Long commands (on-push, watch, ui) still collect, every 50,000.
    gc.set_threshold(50_000, 10, 10)
    try:
        code: str | int | None = main()
    except SystemExit as end:
        code = end.code
    if sys.getprofile() or sys.gettrace() or any(
            thread.is_alive() and not thread.daemon for thread in threading.enumerate()
            if thread is not threading.main_thread()):
        # a profiler or coverage writes its data at the interpreter's end, and the
        # interpreter waits for a thread still at work
        sys.exit(code)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code or 0)
