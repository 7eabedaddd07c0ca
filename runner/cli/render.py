"""Printing a view's table: rich on a terminal, plain text when piped or NO_COLOR is set."""

from __future__ import annotations

from collections.abc import Sequence

import click

from runner.cli.common import fancy
from runner.views.render import rich_table
from runner.views.tables import table


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
                state_column: int | None = None) -> None:
    if not fancy():
        for line in table(headers, rows):
            click.echo(line)
        return
    from rich.console import Console

    Console().print(rich_table(headers, rows, state_column))
