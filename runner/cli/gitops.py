"""`runyard plan`, `on-push`, `hook install` and `status`: the GitOps loop."""

from __future__ import annotations

import dataclasses
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import click

from runner.cli.common import closed_at_end, echo_json, echo_lines, echo_log_line
from runner.errors import RunyardError
from runner.git import Location, find_repository
from runner.project.source import commit_named
from runner.record.model import PushRecord

BACKEND_HELP = "Where the runs go (default: the job's backend, else the project's)."
NO_ENGINE = ("no Docker engine answered: environment hashes leave out the base image ids, "
             "so they may differ from the images `build` makes")


def _repo(path: Path) -> Location:
    found = find_repository(path)
    if found is None:
        raise RunyardError(f"{path} is not in a git repository")
    return found


@click.command()
@click.argument("revisions", required=False, metavar="[OLD..NEW]")
@click.option("-C", "--project", "project_dir", type=click.Path(path_type=Path),
              default=Path("."), show_default=True, help="The project folder (or repository).")
@click.option("--path", "prefix", help="The project's folder inside the repository.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(revisions: str | None, project_dir: Path, prefix: str | None, as_json: bool) -> None:
    """What a push from OLD to NEW would build and run, and why.

    By default from the newest revision the results branch has records for,
    to HEAD.
    """
    from runner.build.builder import reachable_image_ids
    from runner.plan import make_plan, plan_lines
    from runner.project.loader import load_project
    from runner.project.source import GitSource

    found = _repo(project_dir)
    git_dir = found.repository.git_dir
    old, _, new = (revisions or "").rpartition("..") if revisions else ("", "", "HEAD")
    source = closed_at_end(GitSource(found.repository, new or "HEAD",
                                     prefix if prefix is not None else found.prefix))
    project = load_project(source)
    base = _revision(git_dir, old) if revisions else _last_processed(git_dir, project.results_branch)
    ids = reachable_image_ids()
    made = make_plan(project, source, base, ids)
    if ids is None:
        made = dataclasses.replace(made, notes=(*made.notes, NO_ENGINE))
    if as_json:
        echo_json(made.to_dict())
        return
    echo_lines(plan_lines(made))


def _revision(git_dir: Path, revision: str) -> str | None:
    """The commit a revision the user named is (None for none); a typo is their error."""
    return commit_named(git_dir, revision) if revision else None



@click.command("on-push")
@click.option("-C", "--repo", "repo_dir", type=click.Path(path_type=Path), default=Path("."),
              show_default=True, help="The repository that was pushed to (bare or not).")
@click.option("--path", "prefix", default="", help="The project's folder inside the repository.")
@click.option("--before", metavar="OLD", help="The revision before the push (CI systems).")
@click.option("--after", metavar="NEW", help="The pushed revision (CI systems).")
@click.option("--ref", default=None, help="The pushed ref, e.g. refs/heads/main.")
@click.option("--force", is_flag=True, help="Run again what already ran (no memoization).")
@click.option("--backend", type=click.Choice(["docker", "local", "swarm"]), help=BACKEND_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the push records as JSON.")
def on_push(repo_dir: Path, prefix: str, before: str | None, after: str | None,
            ref: str | None, force: bool, backend: str | None, as_json: bool) -> None:
    """Process a push: validate, plan, build, run and record it.

    Reads `OLD NEW REF` lines on standard input, as git's post-receive hook
    gives them, or takes --before/--after/--ref as CI systems give them.
    """
    from runner.triggers.hooks import RefUpdate, parse_updates
    from runner.triggers.push import PushOptions, default_branch, process_pushes

    git_dir = _repo(repo_dir).repository.git_dir
    if after:
        old = None if not before or set(before) == {"0"} else before
        updates = [RefUpdate(old, commit_named(git_dir, after),
                             ref or f"refs/heads/{default_branch(git_dir)}")]
    else:
        updates = parse_updates(sys.stdin.read())
    options = PushOptions(prefix, force, backend,
                          on_line=lambda name, line: echo_log_line(name, line, err=as_json),
                          on_error=lambda text: echo_lines([text], err=True))
    pushes = process_pushes(git_dir, updates, options)
    if as_json:
        echo_json([push.to_dict() for push in pushes])
    _exit_for(pushes)


def _exit_for(pushes: list[PushRecord]) -> None:
    """Exit 3 when runyard broke on a push, 1 when a push failed or was invalid."""
    from runner.cli import EXIT_INTERNAL_ERROR

    broken = [p for p in pushes if p.status == "error"]
    if broken:
        click.echo(f"runyard: internal error (a bug, please report it) in {len(broken)} of "
                   f"{len(pushes)} pushes; the traceback is above", err=True)
        sys.exit(EXIT_INTERNAL_ERROR)
    bad = [p for p in pushes if p.status in ("failed", "invalid", "refused")]
    if bad:
        raise RunyardError(f"{len(bad)} of {len(pushes)} pushes {bad[0].status}")


@click.group()
def hook() -> None:
    """Git hooks that run runyard on push."""


@hook.command("install")
@click.argument("repo", type=click.Path(path_type=Path, file_okay=False))
@click.option("--path", "prefix", default="", help="The project's folder inside the repository.")
@click.option("--allow-secret", multiple=True, metavar="NAME",
              help="An environment variable of the runner that runs may get as a secret.")
@click.option("--allow-host-network", is_flag=True, default=None,
              help="Functions may ask for the host's network.")
@click.option("--allow-files", multiple=True, metavar="DIR",
              help="A host folder that file:// inputs may come from.")
@click.option("--allow-private-urls", is_flag=True, default=None,
              help="URL inputs may reach loopback, link-local and private addresses.")
@click.option("--allow-private-network", is_flag=True, default=None,
              help="Runs may reach this host's services and its private networks.")
@click.option("--allow-image", multiple=True, metavar="PATTERN",
              help="Allowed base images (shell patterns); by default any but runyard's own.")
@click.option("--allow-local-backend", is_flag=True, default=None,
              help="Runs may use the local backend: on this host, outside any container.")
@click.option("--artifact-store", metavar="LOCATION", help="The artifact store runs use.")
@click.option("--registry", metavar="HOST:PORT",
              help="The registry runs on the swarm backend may push code to (none: no swarm).")
@click.option("--shared", metavar="DIR",
              help="The folder every swarm node mounts that runs on the swarm backend may use.")
@click.option("--build-timeout", metavar="DURATION", help="The longest an image build may take.")
@click.option("--build-memory", metavar="SIZE", help="The memory an image build may use.")
@click.option("--max-results", metavar="SIZE", help="The most a run's results may weigh.")
@click.option("--max-artifact", metavar="SIZE", help="The most one artifact or input may weigh.")
@click.option("--max-disk", metavar="SIZE", help="The scratch disk of a run, at most.")
@click.option("--max-log", metavar="SIZE", help="The log kept of a run, at most.")
@click.option("--max-runs", metavar="N", help="Runs of a push at once, at most (16).")
def hook_install(repo: Path, prefix: str, allow_secret: tuple[str, ...],
                 allow_host_network: bool | None, allow_files: tuple[str, ...],
                 allow_private_urls: bool | None, allow_private_network: bool | None,
                 allow_image: tuple[str, ...],
                 allow_local_backend: bool | None, artifact_store: str | None,
                 registry: str | None, shared: str | None, build_timeout: str | None,
                 build_memory: str | None, max_results: str | None,
                 max_artifact: str | None, max_disk: str | None, max_log: str | None,
                 max_runs: str | None) -> None:
    """Install runyard's hooks into the bare repository REPO: post-receive runs what a push
    asks for, pre-receive refuses a push that would write a results branch.

    What runs started by a push may touch beyond their containers is the
    operator's to say, with the options below; they go to REPO's git config
    (`runyard.*`), where a push cannot change them. Given again, an option
    replaces its earlier values.
    """
    from runner.triggers.hooks import configure, install_hooks

    def flag(value: bool | None) -> list[str]:
        return [] if value is None else [str(value).lower()]

    def one(value: str | None) -> list[str]:
        return [] if value is None else [value]

    policy = configure(repo, {
        "allowSecret": allow_secret, "allowHostNetwork": flag(allow_host_network),
        "allowFiles": [str(Path(folder).resolve()) for folder in allow_files],
        "allowPrivateUrls": flag(allow_private_urls),
        "allowPrivateNetwork": flag(allow_private_network), "allowImage": allow_image,
        "allowLocalBackend": flag(allow_local_backend), "artifactStore": one(artifact_store),
        "registry": one(registry), "shared": one(shared),
        "buildTimeout": one(build_timeout), "buildMemory": one(build_memory),
        "maxResults": one(max_results), "maxArtifact": one(max_artifact),
        "maxDisk": one(max_disk), "maxLog": one(max_log), "maxRuns": one(max_runs)})
    for installed in install_hooks(repo, prefix):
        click.echo(f"installed {installed}")
    click.echo(f"runs started by a push get: {policy.describe()}")


@hook.command("check-push")
@click.option("-C", "repo_dir", type=click.Path(path_type=Path), default=Path("."),
              show_default=True, help="The bare repository pushed to.")
def check_push(repo_dir: Path) -> None:
    """What the pre-receive hook runs: reads `OLD NEW REF` lines and exits 1, saying why,
    when one would make, change or delete a results branch."""
    from runner.triggers.hooks import parse_updates, record_writes

    refused = record_writes(_repo(repo_dir).repository.git_dir, parse_updates(sys.stdin.read()))
    if refused:
        raise RunyardError("runyard refuses this push:\n  " + "\n  ".join(refused))


@click.command()
@click.option("-C", "--project", "project_dir", type=click.Path(path_type=Path),
              default=Path("."), show_default=True, help="The project folder.")
@click.option("--json", "as_json", is_flag=True, help="Print each job's state as JSON.")
def status(project_dir: Path, as_json: bool) -> None:
    """Which jobs' newest results are stale against HEAD, and why."""
    from runner.plan import make_plan
    from runner.project.loader import load_project
    from runner.project.source import GitSource
    from runner.record.results import ResultsBranch

    found = _repo(project_dir)
    source = closed_at_end(GitSource(found.repository, "HEAD", found.prefix))
    project = load_project(source)
    results = closed_at_end(ResultsBranch(found.repository.git_dir, project.results_branch))
    rows: list[dict[str, Any]] = []
    for name in sorted(project.jobs):
        newest = results.newest_of_job(name)
        if newest is None:
            rows.append({"job": name, "stale": True, "why": ["never run"], "newest": None})
            continue
        decision = next(j for j in make_plan(project, source, newest.revision).jobs
                        if j.name == name)
        # a top-level `skipped` run was memoized: an earlier run had the same key
        changed = decision.runs or newest.state not in ("completed", "skipped")
        why = list(decision.reasons) if decision.runs else (
            [f"newest run {newest.state}"] if changed else [])
        rows.append({"job": name, "stale": changed, "why": why, "newest": newest.to_dict()})
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        newest = row["newest"]
        at = f"{newest['uid']} at {newest['revision'][:12]}" if newest else "-"
        verdict = "stale" if row["stale"] else "up to date"
        echo_lines([f"{row['job']:<20} {verdict:<11} {at}  {'; '.join(row['why'])}"])  # paths pushed


def _last_processed(git_dir: Path, branch: str) -> str | None:
    """What the next push would be planned from: the last push that ran its plan (or
    the newest run's revision when there are no push records)."""
    from runner.record.results import ResultsBranch
    from runner.triggers.push import plan_base

    with closing(ResultsBranch(git_dir, branch)) as results:
        last = results.last_push()
        if last:
            return plan_base(results, git_dir, last.revision, last.ref)
        newest = next(results.records(limit=1), None)
        return newest.spec.revision if newest else None


@click.command()
@click.option("-C", "--repo", "repo_dir", type=click.Path(path_type=Path), default=Path("."),
              show_default=True, help="The repository (bare or not).")
@click.option("--branch", help="Whose newest revision to take the jobs from (default: the "
              "repository's default branch).")
@click.option("--path", "prefix", default="", help="The project's folder inside the repository.")
@click.option("--once", is_flag=True, help="Run what is due now, then stop.")
@click.option("--now", "now_text", metavar="ISO-TIME", help="Pretend it is this time (with --once).")
@click.option("--backend", type=click.Choice(["docker", "local", "swarm"]), help=BACKEND_HELP)
def schedule(repo_dir: Path, branch: str | None, prefix: str, once: bool,
             now_text: str | None, backend: str | None) -> None:
    """Run the jobs with `triggers.schedule` when they are due (cron, UTC unless the
    job sets a timezone, or a one-off `at`)."""
    import time
    from datetime import UTC, datetime

    from runner.project.when import parse_at
    from runner.triggers.push import default_branch
    from runner.triggers.scheduler import Scheduler, run_forever

    git_dir = _repo(repo_dir).repository.git_dir
    scheduler = Scheduler(git_dir, branch or default_branch(git_dir), prefix, backend,
                          on_line=echo_log_line)
    if now_text and not once:
        raise click.UsageError("--now goes with --once")
    if once:
        try:
            now = parse_at(now_text) if now_text else datetime.now(UTC)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--now") from error
        records = scheduler.tick(now)
        click.echo(f"{len(records)} scheduled run{'s' if len(records) != 1 else ''}")
        return
    run_forever(scheduler, lambda: datetime.now(UTC), time.sleep)


@click.command()
@click.argument("path", required=False, type=click.Path(path_type=Path), default=Path("."))
@click.option("--run", "rerun", is_flag=True,
              help="Rerun the affected jobs on the working tree with the local backend.")
def watch(path: Path, rerun: bool) -> None:
    """On every change to the project's YAML or code: check it again, and print
    the errors or what a push would run."""
    from runner.project.loader import find_project_root
    from runner.triggers.watch import watch as watch_project

    watch_project(find_project_root(path), lambda line: echo_lines([line]), rerun)
