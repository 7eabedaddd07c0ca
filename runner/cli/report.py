"""`runyard report` (a static site of the results branch) and `runyard ui` (the same
pages, served live as the branch changes)."""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli.runs import open_results, results_options
from runner.errors import RunyardError
from runner.git import find_repository
from runner.record.artifacts import ArtifactStore
from runner.record.results import ResultsBranch
from runner.views.site import Readers, readers_for


def _readers(project_dir: Path, results: ResultsBranch) -> Readers:
    """Readers of the project's artifact store and history; without a project (a clone of
    the results branch alone) the report shows no previews and no `after` edges."""
    from runner.project.loader import find_project_root, read_settings
    from runner.project.source import DirectorySource

    found = find_repository(project_dir)
    try:
        root = find_project_root(project_dir)
        store: ArtifactStore | None = ArtifactStore(
            read_settings(DirectorySource(root)).artifact_store, root)
    except RunyardError:
        store = None
    return readers_for(results, store, found.repository if found else None,
                       found.prefix if found else "")


@click.command()
@results_options
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("report"),
              show_default=True, help="The folder to write the site into.")
def report(project_dir: Path, branch: str | None, output: Path) -> None:
    """Write the results branch as a static HTML site (works offline, from file://)."""
    from runner.views.report import read_snapshot
    from runner.views.site import Site, write_site

    results = open_results(project_dir, branch)
    snapshot = read_snapshot(results)
    count = write_site(Site(snapshot, _readers(project_dir, results)), output)
    click.echo(f"wrote {count} files of {len(snapshot.runs)} runs and {len(snapshot.pushes)} pushes "
               f"to {output}; open {output / 'index.html'}")
    for problem in snapshot.problems:
        click.echo(f"could not read {results.branch}:{problem.where}: {problem.message}", err=True)


@click.command()
@results_options
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="The port to listen on (0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on (only this machine by default).")
def ui(project_dir: Path, branch: str | None, port: int, host: str) -> None:
    """Serve the report live, read-only: new runs appear, a running run's log follows."""
    from runner.cli.follow import live_dir
    from runner.views.live import LiveSite, make_server

    results = open_results(project_dir, branch)
    site = LiveSite(results, _readers(project_dir, results), live_dir(project_dir))
    try:
        server = make_server(site, host, port)
    except OSError as error:
        raise RunyardError(f"cannot listen on {host}:{port}: {error.strerror}") from error
    click.echo(f"serving {results.branch} at http://{host}:{server.server_address[1]}/ "
               "(Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
