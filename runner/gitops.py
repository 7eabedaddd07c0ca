"""The runner started on push: validate, plan, build, run, and record the push.

Every push gets a push record on the results branch, also when it is invalid
or nothing needed to run, so no push is left without a status. Runs started by
a push are memoized; a lock in the repository keeps the same job of the same
revision from running twice at once.
"""

from __future__ import annotations

import fcntl
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from runner.errors import ProjectInvalid, RunyardError
from runner.loader import load_project, read_settings
from runner.model import Project
from runner.plan import make_plan
from runner.policy import Policy, operator_policy, refusals
from runner.record.results import RECORD_VERSION, ResultsBranch
from runner.run.execute import OnLine
from runner.source import GitSource

ZERO = "0" * 40


class RefUpdate(NamedTuple):
    old: str | None
    new: str
    ref: str


def parse_updates(text: str) -> list[RefUpdate]:
    """`OLD NEW REF` lines, as git's post-receive hook gives them."""
    updates = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise RunyardError(f"line {number} of the input is not `OLD NEW REF`: {line!r}")
        old, new, ref = parts
        updates.append(RefUpdate(None if old == ZERO else old, new, ref))
    return updates


def default_branch(git_dir: Path) -> str:
    done = subprocess.run(["git", "--git-dir", str(git_dir), "symbolic-ref", "--short", "HEAD"],
                          capture_output=True, text=True)
    return done.stdout.strip() or "main"


def process_pushes(git_dir: Path, updates: Sequence[RefUpdate], *, prefix: str = "",
                   force: bool = False, backend: str | None = None,
                   on_line: OnLine = lambda name, line: None) -> list[dict[str, Any]]:
    """Process each pushed branch; return the push records written (or found)."""
    import git

    repo = git.Repo(git_dir)
    main = default_branch(Path(repo.git_dir))
    pushes = []
    for update in updates:
        if update.new == ZERO or not update.ref.startswith("refs/heads/"):
            continue  # a deleted ref, or a tag
        push = _process(repo, update, prefix, main, force, backend, on_line)
        if push is not None:
            pushes.append(push)
    return pushes


def _process(repo: Any, update: RefUpdate, prefix: str, main: str, force: bool,
             backend: str | None, on_line: OnLine) -> dict[str, Any] | None:
    git_dir = Path(repo.git_dir)
    source = GitSource(repo, update.new, prefix)
    push = _push_record(update)
    try:
        project = load_project(source)
    except ProjectInvalid as error:
        results = ResultsBranch(git_dir, read_settings(source).results_branch)
        if _in_scope(update, read_settings(source).branches, main):
            push.update(status="invalid", problems=[str(p) for p in error.problems])
            return _finish(results, push, on_line)
        return None
    if not _in_scope(update, project.branches, main):
        on_line("push", f"{update.ref}: not a branch that triggers runs; ignored")
        return None
    results = ResultsBranch(git_dir, project.results_branch)
    earlier = results.push(source.revision or update.new)
    if earlier is not None and earlier.get("status") != "running" and not force:
        on_line("push", f"{update.new[:12]} was processed already ({earlier['status']})")
        return earlier
    base = _plan_base(results, update.old)
    old_source = GitSource(repo, base, prefix) if base else None
    plan = make_plan(project, source, base, old_source)
    push["plan"] = plan.to_dict()
    policy = operator_policy(git_dir, backend)
    refused = refusals(project, policy, plan.to_run)
    if refused:  # the project asks for more than the operator allows: nothing runs
        push.update(status="refused", problems=[str(p) for p in refused])
        return _finish(results, push, on_line)
    push["runs"] = _run_jobs(project, source, git_dir, plan.to_run, update, force, backend,
                             policy, on_line)
    failed = [run for run in push["runs"] if run["state"] not in ("completed", "skipped")]
    push["status"] = "failed" if failed else ("completed" if plan.to_run else "nothing-to-run")
    return _finish(results, push, on_line)


def _run_jobs(project: Project, source: GitSource, git_dir: Path, jobs: Sequence[str],
              update: RefUpdate, force: bool, backend: str | None, policy: Policy,
              on_line: OnLine) -> list[dict[str, Any]]:
    if not jobs:
        return []
    from runner.run.launch import run_target
    from runner.run.session import open_session

    trigger = {"kind": "push", "ref": update.ref,
               "detail": f"{(update.old or '')[:12]}..{update.new[:12]}"}
    runs = []
    with open_session(source, git_dir, project, policy, backend=backend, functions=_functions_of(
            project, jobs), trigger=trigger, memoize=not force, on_line=on_line) as session:
        for job in jobs:
            with job_lock(git_dir, job, update.new):
                record = run_target(session, job)
            runs.append({"job": job, "uid": record["metadata"]["uid"],
                         "state": record["status"]["state"]})
            on_line("push", f"job {job}: {record['status']['state']}")
    return runs


@contextmanager
def job_lock(git_dir: Path, job: str, revision: str) -> Iterator[None]:
    """Held while a job of a revision runs, across processes; released if one dies."""
    folder = git_dir / "runyard" / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{job}@{revision}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _functions_of(project: Project, jobs: Sequence[str]) -> list[str]:
    names: list[str] = []
    for name in jobs:
        job = project.jobs[name]
        if job.run.function:
            names.append(job.run.function)
        if job.run.pipeline:
            names += [s.function for s in project.pipelines[job.run.pipeline].steps]
    return sorted(set(names))


def _plan_base(results: ResultsBranch, old: str | None) -> str | None:
    """The revision a push is planned from: its old revision, unless that was pushed
    invalid (so nothing of it ran): then the base that push had, and so on back."""
    seen: set[str] = set()
    while old is not None and old not in seen:
        seen.add(old)
        earlier = results.push(old)
        if earlier is None or earlier.get("status") != "invalid":
            return old
        old = earlier.get("old")
    return old


def _push_record(update: RefUpdate) -> dict[str, Any]:
    return {"apiVersion": RECORD_VERSION, "kind": "push", "revision": update.new,
            "old": update.old, "ref": update.ref, "received": _now(), "finished": None,
            "status": "running", "problems": [], "plan": None, "runs": []}


def _finish(results: ResultsBranch, push: dict[str, Any], on_line: OnLine) -> dict[str, Any]:
    push["finished"] = _now()
    results.write_push(push)
    on_line("push", f"{push['revision'][:12]} on {push['ref']}: {push['status']}")
    return push


def _in_scope(update: RefUpdate, branches: Sequence[str], main: str) -> bool:
    return update.ref.removeprefix("refs/heads/") in (branches or (main,))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
