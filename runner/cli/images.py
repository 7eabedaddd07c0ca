"""`runyard setup`, `runyard build` and `runyard images`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from runner.cli.common import echo_json, live_lines, load, project_options
from runner.errors import RunyardError
from runner.project.model import DEFAULT_BASE_IMAGE

if TYPE_CHECKING:
    from runner.build.engine import DockerEngine


@click.command()
@click.argument("project_dir", required=False, type=click.Path(path_type=Path))
@click.option("--swarm", is_flag=True,
              help="Also check the swarm backend: this engine a swarm manager, the project's "
                   "registry (execution.registry) answering.")
def setup(project_dir: Path | None, swarm: bool) -> None:
    """Make this machine ready: a running Docker engine and the base images.

    Where no registry can be reached, `python:3.11*` base images are built
    locally from Debian packages (debootstrap), with this machine's CA bundle.
    """
    from runner.build.base_images import ensure_base_images
    from runner.build.engine import connect

    engine = connect(click.echo)
    images = {DEFAULT_BASE_IMAGE}
    if project_dir is not None:
        project, _ = load(project_dir, None)
        images |= {f.environment.base_image or project.base_image for f in project.functions.values()}
    ensure_base_images(engine, sorted(images), click.echo)  # reports each image as it goes
    if swarm:
        _check_swarm(engine, project.registry if project_dir is not None else None)
    click.echo("ready")


def _check_swarm(engine: DockerEngine, registry: str | None) -> None:
    from runner.build.registry import registry_problem
    from runner.run.swarm import swarm_problem

    problems = [swarm_problem(engine)]
    if registry is None:
        problems.append("no registry to check: give the project folder, whose project.yaml "
                        "names it (execution.registry: HOST:PORT)")
    else:
        problems.append(registry_problem(registry))
    found = [problem for problem in problems if problem]
    if found:
        raise RunyardError("\n".join(found))
    click.echo(f"swarm: this engine is a manager; registry {registry} answers")


@click.command()
@click.argument("functions", nargs=-1)
@project_options
@click.option("--force", is_flag=True, help="Rebuild even the images that exist.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
def build(functions: tuple[str, ...], project_dir: Path, revision: str | None, force: bool,
          as_json: bool) -> None:
    """Build the images of the project's functions (or of FUNCTIONS) that are missing."""
    from runner.build.builder import build_images, needs_and_images
    from runner.build.engine import connect
    from runner.project.source import prepare_state_dir

    project, source = load(project_dir, revision)
    engine = connect(click.echo)
    needs, local = needs_and_images(engine, project, source, functions)
    with live_lines("building") as on_line:
        state = prepare_state_dir(source.state_dir)
        outcomes = build_images(engine, project, needs, local, state / "builds",
                                on_line if not as_json else _quiet, force)
    if as_json:
        echo_json([{"image": o.need.spec.tag, "functions": list(o.need.functions),
                    "env_hash": o.need.spec.env_hash, "action": o.action,
                    "seconds": round(o.seconds, 2), "error": o.error,
                    "log": str(o.log) if o.log else None} for o in outcomes])
    else:
        for o in outcomes:
            took = f" in {o.seconds:.1f}s" if o.action == "built" else ""
            click.echo(f"{o.action:>7}  {o.need.spec.tag}  ({', '.join(o.need.functions)}){took}")
    failed = [o.error for o in outcomes if o.error]
    if failed:
        raise RunyardError("\n".join([*failed, f"{len(failed)} of {len(outcomes)} images failed"]))


@click.command()
@project_options
@click.option("--prune", is_flag=True,
              help="Remove the images no function here uses, and the swarm backend's run "
                   "images but the newest of each environment, here and from the project's "
                   "registry (execution.registry).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
def images(project_dir: Path, revision: str | None, prune: bool, as_json: bool) -> None:
    """List the project's images: functions, environment hashes, sizes; run images
    (the swarm backend's code layers) with their tree."""
    from runner.build.engine import connect
    from runner.build.inventory import project_images, prune_images, prune_registry
    from runner.build.registry import Registry

    project, source = load(project_dir, revision)
    engine = connect(click.echo)
    found = project_images(engine, project, source)
    if prune:
        removed = prune_images(engine, found)
        for image in removed:
            click.echo(f"removed {image.tag}")
        found = [image for image in found if image not in removed]
        if project.registry:
            for deleted in prune_registry(engine, Registry(project.registry), project.name,
                                          [image for image in found if image.layer]):
                click.echo(f"deleted {deleted} from the registry")
    if as_json:
        echo_json([image._asdict() for image in found])
        return
    for image in found:
        used = ", ".join(image.functions) or "(unused)"
        kind = f"  run image, tree {image.layer}" if image.layer else ""
        click.echo(f"{image.tag}  {image.env_hash[:12]}  {image.size / 2**20:8.1f} MiB  "
                   f"{used}{kind}")


def _quiet(topic: str, line: str) -> None:
    return None
