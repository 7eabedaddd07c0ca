"""The runner started on push: validate, plan, build, run, and record the push.

Every ref update of a push gets a push record on the results branch, one per
branch and revision, whatever happens: also when the revision is invalid,
nothing needed to run, the engine or a build failed (`failed`, with the reason),
or runyard itself broke (`error`, its traceback in the runner's log); one update
that fails never keeps the others from being processed. Runs started by a push
are memoized; a lock in the repository keeps the same job of the same revision
from running twice at once.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, closing
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from runner.build.builder import reachable_image_ids
from runner.errors import ProjectInvalid, RunyardError
from runner.frozen import frozen
from runner.git import ZERO, Repository, ancestors, author_of, open_repository, symbolic_ref
from runner.plan import make_plan
from runner.project.loader import PROJECT_FILE, Settings, load_project, read_settings
from runner.project.model import DEFAULT_RESULTS_BRANCH, Project
from runner.project.policy import Policy, operator_policy, refusals
from runner.project.source import GitSource
from runner.record.artifacts import ArtifactStore
from runner.record.model import PushRecord, PushRun, Trigger
from runner.record.owner import Owner
from runner.record.results import ResultsBranch
from runner.run.execute import OnLine
from runner.run.launch import run_target
from runner.run.reconcile import reconcile_pushes
from runner.run.secrets import Secrets
from runner.run.session import backend_of, open_session, workspace_of
from runner.triggers.hooks import RefUpdate
from runner.triggers.locks import exclusive, lock_path
from runner.views.report import read_snapshot
from runner.views.site import Site, readers_for


@frozen
class PushOptions:
    """How to process pushes; `on_error` gets the traceback of a bug, for the runner's log."""

    prefix: str = ""
    force: bool = False
    backend: str | None = None
    on_line: OnLine = lambda name, line: None
    on_error: Callable[[str], None] = lambda text: None


def default_branch(git_dir: Path) -> str:
    return (symbolic_ref(git_dir) or "").removeprefix("refs/heads/") or "main"


def process_pushes(git_dir: Path, updates: Sequence[RefUpdate],
                   options: PushOptions = PushOptions()) -> list[PushRecord]:
    """Process each pushed branch; return the push records written (or found)."""
    repo = open_repository(git_dir)
    main = default_branch(repo.git_dir)
    pushes = []
    for update in updates:
        if update.new == ZERO or not update.ref.startswith("refs/heads/"):
            continue  # a deleted ref, or a tag
        push = _process(repo, update, main, options)
        if push is not None:
            pushes.append(push)
    return pushes


def _process(repo: Repository, update: RefUpdate, main: str,
             options: PushOptions) -> PushRecord | None:
    """One ref update: its push record, whatever fails (None when it is not in scope)."""
    with ExitStack() as opened:
        source = _source(repo, update.new, options.prefix)
        if isinstance(source, GitSource):
            opened.enter_context(closing(source))
        settings = read_settings(source) if isinstance(source, GitSource) else Settings()
        if not _in_scope(update, settings.branches, main):
            options.on_line("push", f"{update.ref}: not a branch that triggers runs; ignored")
            return None
        results = opened.enter_context(closing(ResultsBranch(repo.git_dir, settings.results_branch)))
        strangers = results.store.strangers()
        if strangers:  # another branch's files (the code's, a site's): the push is recorded aside
            source = RunyardError(
                f"{PROJECT_FILE}: results branch {results.branch} holds {', '.join(strangers[:5])}, "
                "which runyard does not write: it is not a results branch, and runyard writes "
                f"nothing there (this push is recorded on {DEFAULT_RESULTS_BRANCH})")
            results = opened.enter_context(closing(ResultsBranch(repo.git_dir, DEFAULT_RESULTS_BRANCH)))
        _indexed(results, options.on_line)
        reconcile_pushes(results, lambda line: options.on_line("push", line))
        return _record(repo, source, update, results, options)


def _indexed(results: ResultsBranch, on_line: OnLine) -> None:
    """A branch an older runyard wrote gets its index, once, before more runs land on it."""
    if results.store.head() is None or results.indexed():
        return
    listing = results.reindex()
    on_line("push", f"indexed the {len(listing.rows)} runs of branch {results.branch}"
                    + (f" ({len(listing.problems)} records could not be read)"
                       if listing.problems else ""))


def _record(repo: Repository, source: GitSource | RunyardError, update: RefUpdate,
            results: ResultsBranch, options: PushOptions) -> PushRecord:
    """The push record of an update in scope: an earlier one, or a new one."""
    earlier = _earlier(results, update, options)
    if earlier is not None and _done(earlier) and not options.force:
        options.on_line("push", f"{update.ref}: {update.new[:12]} was processed already "
                                f"({earlier.status})")
        return earlier
    progress = _Progress(_push_record(update))
    secrets = _secrets(repo.git_dir, options.backend)
    try:
        if not isinstance(source, GitSource):
            raise source
        # Taken: if this runner is killed, the push is known not to be processed.
        results.write_push(progress.push, newest=False)
        _run_push(repo, source, update, results, progress, options)
    except ProjectInvalid as error:
        progress.push = replace(progress.push, status="invalid", reason=error.message,
                                problems=tuple(str(p) for p in error.problems))
    except RunyardError as error:
        progress.push = replace(progress.push, status="failed", reason=str(error))
    except Exception as error:  # the one place a bug is caught: recorded, its traceback logged
        options.on_error(secrets.mask(f"runyard on-push: internal error in {update.ref} "
                                      f"{update.new[:12]}:\n{traceback.format_exc()}"))
        progress.push = replace(progress.push, status="error",
                                reason=f"internal error: {type(error).__name__}: {error}")
    return _finish(results, progress.push.masked(secrets.mask), progress.store, repo, options)


@dataclass
class _Progress:
    """The push record as far as the push got: what a failure keeps of it."""

    push: PushRecord
    store: ArtifactStore | None = None  # where its runs' artifacts are, once known


REPORT = "report"
LOST_PUSH_DEPTH = 10_000  # commits looked back through for the last recorded push


def report_files(results: ResultsBranch, push: PushRecord, store: ArtifactStore | None,
                 repo: Repository, options: PushOptions) -> dict[str, bytes | None]:
    """The report, made again with `push`, as files under `report/` of the results branch
    (written with the push record, so any git host that serves a branch as pages shows
    it): pages no longer made go; copies of artifacts, named by their content, stay. A
    report that cannot be made never fails the push: the runner's log says why."""
    try:
        snapshot = read_snapshot(results)
        others = tuple(p for p in snapshot.pushes if (p.revision, p.ref) != (push.revision, push.ref))
        site = Site(replace(snapshot, pushes=(push, *others)),
                    readers_for(results, store, repo, options.prefix))
        files: dict[str, bytes | None] = {f"{REPORT}/{path}": data for path, data in site.files()}
    except (RunyardError, OSError) as error:
        options.on_line("push", f"the report could not be made: {error}")
        return {}
    gone = {f"{REPORT}/{path}": None for path in results.store.files(REPORT)
            if f"{REPORT}/{path}" not in files and not path.startswith("objects/")}
    return {**gone, **files}


def _earlier(results: ResultsBranch, update: RefUpdate, options: PushOptions) -> PushRecord | None:
    """The record of this push made before, if any; a broken one is made again."""
    try:
        return results.push(update.new, update.ref)
    except RunyardError as error:
        options.on_line("push", f"{update.ref}: {error}; processing the push again")
        return None


def _secrets(git_dir: Path, backend: str | None) -> Secrets:
    """Every secret this runner may hand to runs: masked in push records and the log too."""
    policy = operator_policy(git_dir, backend)
    return Secrets.available(policy.secrets or (), policy, os.environ)


def _source(repo: Repository, revision: str, prefix: str) -> GitSource | RunyardError:
    """The pushed revision's project files, or why they cannot be read."""
    try:
        return GitSource(repo, revision, prefix)
    except RunyardError as error:
        return error


def _run_push(repo: Repository, source: GitSource, update: RefUpdate, results: ResultsBranch,
              progress: _Progress, options: PushOptions) -> None:
    """Load, plan and run; `progress` is kept up to date, so a failure keeps what was done."""
    project = load_project(source)
    progress.store = _artifact_store(project, source, repo.git_dir, options)
    backend = options.backend or project.backend
    plan = make_plan(project, source, plan_base(results, repo.git_dir, update.old, update.ref),
                     _base_image_ids(backend))
    progress.push = replace(progress.push, plan=plan.to_dict())
    policy = operator_policy(repo.git_dir, options.backend)
    refused = refusals(project, policy, plan.to_run)
    if refused:  # the project asks for more than the operator allows: nothing runs
        progress.push = replace(
            progress.push, status="refused", problems=tuple(str(p) for p in refused),
            reason="the project asks for what this runner's operator does not allow")
        return
    _run_jobs(project, source, repo.git_dir, plan.to_run, update, options, policy, progress)
    runs = progress.push.runs
    failed = [f"{run.job} {run.state}" for run in runs if run.state not in ("completed", "skipped")]
    progress.push = replace(
        progress.push,
        status="failed" if failed else ("completed" if plan.to_run else "nothing-to-run"),
        reason=f"{len(failed)} of {len(runs)} jobs did not complete: {', '.join(failed)}"
        if failed else None)


def _artifact_store(project: Project, source: GitSource, git_dir: Path,
                    options: PushOptions) -> ArtifactStore | None:
    try:
        return ArtifactStore(operator_policy(git_dir, options.backend).store_for(project),
                             workspace_of(source))
    except RunyardError:  # refused: the runs will say so; the report shows no previews
        return None


def _base_image_ids(backend: str) -> dict[str, str] | None:
    """For images: the engine's image ids, so the plan's hashes are those built."""
    if backend not in ("docker", "swarm"):
        return None

    return reachable_image_ids()


def _run_jobs(project: Project, source: GitSource, git_dir: Path, jobs: Sequence[str],
              update: RefUpdate, options: PushOptions, policy: Policy,
              progress: _Progress) -> None:
    """Run the jobs, adding each one's outcome to the push record as it ends."""
    if not jobs:
        return

    trigger = Trigger("push", ref=update.ref,
                      detail=f"{(update.old or '')[:12]}..{update.new[:12]}",
                      by=author_of(git_dir, update.new))
    by_backend: dict[str, list[str]] = {}  # a job may name its own backend
    for job in jobs:
        by_backend.setdefault(backend_of(project, job, options.backend), []).append(job)
    for backend, group in by_backend.items():
        with open_session(source, git_dir, project, policy, backend=backend,
                          functions=_functions_of(project, group), trigger=trigger,
                          memoize=not options.force, on_line=options.on_line) as session:
            for job in group:
                with job_lock(git_dir, job, update.new):
                    record = run_target(session, job)
                ran = PushRun(job=job, uid=record.metadata.uid, state=record.status.state)
                progress.push = replace(progress.push, runs=(*progress.push.runs, ran))
                options.on_line("push", f"job {job}: {record.status.state}")


def job_lock(git_dir: Path, job: str, revision: str) -> AbstractContextManager[None]:
    """Held while a job of a revision runs, across processes; released if one dies."""
    return exclusive(lock_path(git_dir, f"{job}@{revision}"))


def _functions_of(project: Project, jobs: Sequence[str]) -> list[str]:
    names: list[str] = []
    for name in jobs:
        job = project.jobs[name]
        if job.run.function:
            names.append(job.run.function)
        if job.run.pipeline:
            names += [s.function for s in project.pipelines[job.run.pipeline].steps]
    return sorted(set(names))


def plan_base(results: ResultsBranch, git_dir: Path, old: str | None, ref: str) -> str | None:
    """The revision a push is planned from: its old revision, unless that push did not run
    its plan (invalid, or failed before its jobs ran): then the base that push had, and
    so on back. An old revision pushed but never recorded (its runner was killed before
    it took the push) is planned past too, from the newest revision it descends from that
    a push was recorded at; before any push is recorded, runyard starts from `old`."""
    seen: set[str] = set()
    while old is not None and old not in seen:
        seen.add(old)
        earlier = results.push(old, ref) or next(iter(results.pushes_of(old)), None)
        if earlier is None:
            taken = _last_recorded_ancestor(results, git_dir, old)
            if taken is None:
                return old
            old = taken
        elif _ran_its_plan(earlier) or _being_processed(earlier):
            return old
        else:
            old = earlier.old
    return old


def _last_recorded_ancestor(results: ResultsBranch, git_dir: Path, revision: str) -> str | None:
    """The newest revision `revision` descends from that a push was recorded at, if any."""
    recorded = results.pushed_revisions()
    if not recorded:
        return None
    return next((found for found in ancestors(git_dir, revision, LOST_PUSH_DEPTH)
                 if found in recorded), None)


def _ran_its_plan(push: PushRecord) -> bool:
    """Every job its plan named was run (whatever came of the runs)."""
    return push.plan is not None and len(push.runs) >= len(push.plan.get("to_run") or [])


def _being_processed(push: PushRecord) -> bool:
    """Taken by a runner that is still there (elsewhere, or not known to be lost): its plan
    is its runner's to run."""
    owner = Owner.parse(push.runner or "")
    return push.status == "running" and owner is not None and not owner.is_lost()


def _done(push: PushRecord) -> bool:
    """Processed for good: replaying it changes nothing (a failure before the runs is retried)."""
    return push.status == "invalid" or _ran_its_plan(push)


def _push_record(update: RefUpdate) -> PushRecord:
    return PushRecord(revision=update.new, old=update.old, ref=update.ref, received=_now(),
                      runner=str(Owner.current()))


def _finish(results: ResultsBranch, push: PushRecord, store: ArtifactStore | None,
            repo: Repository, options: PushOptions) -> PushRecord:
    push = replace(push, finished=_now())
    results.write_push(push, extra=report_files(results, push, store, repo, options))
    reason = f": {push.reason}" if push.reason else ""
    options.on_line("push", f"{push.revision[:12]} on {push.ref}: {push.status}{reason}")
    return push


def _in_scope(update: RefUpdate, branches: Sequence[str], main: str) -> bool:
    return update.ref.removeprefix("refs/heads/") in (branches or (main,))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
