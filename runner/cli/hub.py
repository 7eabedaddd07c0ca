"""`runyard hub list|show|add|update`: ready-made functions, copied into the project."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from runner.cli.common import echo_file, echo_json
from runner.errors import RunyardError
from runner.hub.catalog import DEFAULT_HUB, DEFINITION, open_hub, valid_name
from runner.hub.install import (
    add_function,
    apply_update,
    code_folder,
    diff_text,
    hub_origin,
    load_checked,
    update_changes,
)
from runner.project.loader import find_project_root
from runner.views.tables import table

_hub_option = click.option(
    "--hub", "location", metavar="URL-OR-PATH", envvar="RUNYARD_HUB",
    help="A hub: a git repository laid out as functions/NAME/ (default: the one runyard ships; "
         "also $RUNYARD_HUB).")
_project_option = click.option(
    "-C", "--project", "project_dir", type=click.Path(path_type=Path), default=Path("."),
    show_default=True, help="The project folder.")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _split(spec: str) -> tuple[str, str | None]:
    """NAME[@VERSION]."""
    name, at, version = spec.partition("@")
    if at and not version:
        raise click.BadParameter(f"{spec!r}: give a version after '@', or none", param_hint="NAME")
    return name, version or None


@click.group()
def hub() -> None:
    """The function hub: ready-made functions to copy into the project."""


@hub.command("list")
@_hub_option
@_json_option
def hub_list(location: str | None, as_json: bool) -> None:
    """The hub's functions: name, version, description."""
    with open_hub(location) as found:
        functions = [found.function(name) for name in found.names()]
    if as_json:
        echo_json([{"name": f.name, "version": f.version, "description": f.description,
                    "revision": f.revision, "hub": f.hub} for f in functions])
        return
    for line in table(["NAME", "VERSION", "DESCRIPTION"],
                      [[f.name, f.version, f.description] for f in functions]):
        click.echo(line)  # (table writes out what a terminal would obey)


@hub.command("show")
@click.argument("spec", metavar="NAME[@VERSION]")
@_hub_option
@_json_option
def hub_show(spec: str, location: str | None, as_json: bool) -> None:
    """A hub function: its README, definition and files."""
    name, version = _split(spec)
    with open_hub(location) as found:
        function = found.function(name, version)
    if as_json:
        echo_json({"name": function.name, "version": function.version, "hub": function.hub,
                   "revision": function.revision, "description": function.description,
                   "definition": dict(function.definition), "readme": function.readme,
                   "files": {path: len(data) for path, data in sorted(function.files.items())}})
        return
    echo_file(f"{function.name} {function.version} (hub {function.hub}, {function.revision})\n\n"
              f"{function.readme.rstrip()}\n\n{DEFINITION}:\n"
              + yaml.safe_dump(dict(function.definition), sort_keys=False, width=4096).rstrip()
              + "\n\nfiles: " + ", ".join(f"{path} ({len(data)} bytes)"
                                         for path, data in sorted(function.files.items())) + "\n")
    click.echo(f"add it: runyard hub add {function.name}"
               + ("" if function.hub == DEFAULT_HUB else f" --hub {function.hub}"))


@hub.command("add")
@click.argument("spec", metavar="NAME[@VERSION]")
@click.option("--as", "new_name", metavar="NEW-NAME", help="The function's name in the project.")
@_hub_option
@_project_option
def hub_add(spec: str, new_name: str | None, location: str | None, project_dir: Path) -> None:
    """Copy a hub function (definition and code) into the project, as NAME or NEW-NAME."""
    name, version = _split(spec)
    target = name if new_name is None else new_name  # `--as ""` is refused, not ignored
    _check_name(target)
    root = find_project_root(project_dir)
    with open_hub(location) as found:
        function = found.function(name, version)
    written = add_function(root, function, target)
    click.echo(f"added {function.name} {function.version} from hub {function.hub} as {target!r}:")
    for path in written:
        click.echo(f"  {path}")
    click.echo(f"its README: {code_folder(target)}/README.md; commit the files to run it on push")


@hub.command("update")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Apply the changes (without it, they are only shown).")
@click.option("--hub", "location", metavar="URL-OR-PATH",
              help="Update from this hub (default: the one it was added from, its label hub-source).")
@_project_option
def hub_update(name: str, yes: bool, location: str | None, project_dir: Path) -> None:
    """Show how the project's function NAME differs from its hub's newest version; apply it
    with --yes."""
    root = find_project_root(project_dir)
    hub_location, origin = hub_origin(load_checked(root), name)
    with open_hub(location or hub_location) as found:
        newest = found.function(origin)
    changes = update_changes(root, name, newest)
    if not changes:
        click.echo(f"{name} is up to date with {origin} {newest.version} of hub {newest.hub}")
        return
    click.echo(diff_text(changes), nl=False)
    if not yes:
        click.echo(f"{_files(len(changes))} would change to {origin} {newest.version}; "
                   f"apply with: runyard hub update {name} --yes")
        return
    apply_update(root, name, changes)
    click.echo(f"updated {name} to {origin} {newest.version} ({_files(len(changes))} changed)")


def _check_name(name: str) -> None:
    if not valid_name(name):
        raise RunyardError(f"{name!r} is not a valid function name: lower-case letters, digits "
                           "and '-', starting with a letter, at most 63 characters")


def _files(count: int) -> str:
    return f"{count} file" + ("" if count == 1 else "s")
