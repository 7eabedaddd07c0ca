"""The command line as a whole: every command and option says what it is for."""

from __future__ import annotations

from collections.abc import Iterator

import click

from runner.cli import cli


def commands(group: click.Group, ctx: click.Context, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from commands(command, ctx, f"{prefix}{name} ")


def test_every_command_and_option_has_help() -> None:
    """`--help` is the reference a user reads first: no option left bare."""
    ctx = click.Context(cli)
    bare = [f"{name}: no help" for name, command in commands(cli, ctx) if not command.help]
    bare += [f"{name} {param.opts[0]}" for name, command in commands(cli, ctx)
             for param in command.params
             if isinstance(param, click.Option) and not param.hidden and not param.help]
    assert bare == []
