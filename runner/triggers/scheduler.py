"""`runyard schedule`: run the jobs whose `triggers.schedule` is due.

The jobs come from the newest revision of a branch. Each job's schedule state
(when it was last checked, what ran) lives on the results branch, so a
restarted scheduler neither repeats nor loses a run: each run claimed names its
runner and its uid until it ends, and the runs a killed scheduler claimed and
never ended are due again. After downtime a missed
cron run runs once (its record says how late), or once per missed time with
`catchup: true`. A tick claims what is due under a lock of the repository, and
the time a job was checked never moves backwards, so a due time runs once even
with two schedulers or a clock that goes back. The clock is passed in, so tests
never sleep.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from dataclasses import field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from runner.errors import RunyardError
from runner.frozen import frozen
from runner.git import open_repository
from runner.project.loader import load_project
from runner.project.model import Job, Project
from runner.project.policy import operator_policy
from runner.project.schedule import due_times, next_time
from runner.project.source import GitSource
from runner.project.when import parse_at
from runner.record.gitstore import AtCommit
from runner.record.model import RunRecord, Trigger, dump
from runner.record.owner import Owner
from runner.record.results import ResultsBranch, new_uid
from runner.run.execute import OnLine
from runner.run.launch import run_target
from runner.run.reconcile import LOST
from runner.run.session import open_session
from runner.triggers.locks import exclusive, lock_path

LATE_AFTER = timedelta(minutes=1)


@frozen
class Due:
    job: str
    at: datetime
    late: timedelta
    uid: str = field(default_factory=new_uid, compare=False)  # of the run, claimed with it


def due_runs(job: Job, state: dict[str, Any], now: datetime) -> list[Due]:
    """The runs of `job` due at `now`, given its schedule state."""
    when = job.triggers.schedule if job.triggers else None
    if when is None:
        return []
    if when.at is not None:
        at = parse_at(when.at)
        # done for this time only: a job moved to another `at` runs again
        done = state.get("done") and state.get("at", when.at) == when.at
        return [] if done or at > now else [Due(job.name, at, now - at)]
    assert when.cron is not None
    last = state.get("checked")
    times = due_times(when.cron, when.timezone, datetime.fromisoformat(last) if last else None, now)
    if not when.catchup:
        times = times[-1:]
    return [Due(job.name, t, now - t) for t in times]


class Scheduler:
    """One branch of one repository; `tick(now)` runs what is due."""

    def __init__(self, git_dir: Path, branch: str, prefix: str = "",
                 backend: str | None = None, on_line: OnLine = lambda name, line: None) -> None:
        self.git_dir, self.branch, self.prefix = git_dir, branch, prefix
        self.backend, self.on_line = backend, on_line

    def source(self) -> GitSource:
        """The branch's newest revision (to be closed by the caller)."""
        return GitSource(open_repository(self.git_dir), f"refs/heads/{self.branch}", self.prefix)

    def tick(self, now: datetime) -> list[RunRecord]:
        with closing(self.source()) as source:
            project = load_project(source)
            # Claim before running, one scheduler at a time: no due time runs twice.
            with closing(ResultsBranch(self.git_dir, project.results_branch)) as results:
                with exclusive(lock_path(self.git_dir, "schedule")):
                    due = _claim(project, results, now)
                records = []
                for item in due:
                    try:
                        records.append(self._run(project, source, item))
                    finally:  # ended (or failed before it was recorded): no longer claimed
                        _settle(results, item)
                return records

    def next_wake(self, now: datetime) -> datetime:
        with closing(self.source()) as source:
            project = load_project(source)
        times = [now + timedelta(minutes=1)]
        for job in project.jobs.values():
            when = job.triggers.schedule if job.triggers else None
            if when is not None and when.cron is not None:
                times.append(next_time(when.cron, when.timezone, now))
        return min(times)

    def _run(self, project: Project, source: GitSource, due: Due) -> RunRecord:

        late = due.late > LATE_AFTER
        detail = f"due {due.at.isoformat()}" + (f", late by {_minutes(due.late)}" if late else "")
        self.on_line("schedule", f"job {due.job}: {detail}")
        trigger = Trigger("schedule", ref=f"refs/heads/{self.branch}", detail=detail)
        with open_session(source, self.git_dir, project, operator_policy(self.git_dir, self.backend),
                          backend=self.backend, trigger=trigger,
                          on_line=self.on_line, job=due.job) as session:
            record = run_target(session, due.job, due.uid)
        self.on_line("schedule", f"job {due.job}: {record.status.state}")
        return record


def run_forever(scheduler: Scheduler, clock: Callable[[], datetime],
                sleep: Callable[[float], None]) -> None:
    while True:
        scheduler.tick(clock())
        wake = scheduler.next_wake(clock())
        sleep(max(1.0, (wake - clock()).total_seconds()))


def _claim(project: Project, results: ResultsBranch, now: datetime) -> list[Due]:
    """What is due at `now`, saved as claimed (in one commit) before any of it runs."""
    due: list[Due] = []
    claims: dict[str, bytes] = {}
    for job in sorted(project.jobs.values(), key=lambda j: j.name):
        if job.triggers is None or job.triggers.schedule is None:
            continue
        state = _state(results, job.name)
        found = _lost_claims(job, state, results, now) + due_runs(job, state, now)
        claims[_state_path(job.name)] = dump(_claimed(job, state, found, now))
        due += found
    if claims:
        results.store.commit(claims, f"schedule: {len(due)} due at {now.isoformat()}")
    return due


def _settle(results: ResultsBranch, due: Due) -> None:
    """Take the run of `due` out of its job's claims (in a commit of its own, made again
    on top of what other schedulers write meanwhile)."""
    path = _state_path(due.job)

    def settled(base: AtCommit) -> dict[str, bytes | None]:
        state = _parsed_state(base.read(path))
        claims = [claim for claim in _claims(state) if claim.get("uid") != due.uid]
        return {path: dump({**state, "claims": claims})}

    results.store.commit({}, f"schedule: job {due.job} run {due.uid} ended", derived=settled)


def _state_path(job: str) -> str:
    return f"index/schedule/{job}.yaml"


def _state(results: ResultsBranch, job: str) -> dict[str, Any]:
    return _parsed_state(results.store.read(_state_path(job)))


def _parsed_state(raw: bytes | None) -> dict[str, Any]:
    data = yaml.safe_load(raw) if raw else None
    return data if isinstance(data, dict) else {}


def _lost_claims(job: Job, state: dict[str, Any], results: ResultsBranch,
                 now: datetime) -> list[Due]:
    """The runs that schedulers now lost claimed and never settled (killed before they
    ended) and that have no record, or one their loss left `running` or `aborted`: due
    again, so that a killed scheduler loses none."""
    again = []
    for claim in _claims(state):
        owner = Owner.parse(str(claim.get("runner") or ""))
        if owner is None or not owner.is_lost():
            continue
        try:
            record: RunRecord | None = results.read(str(claim["uid"]))
        except RunyardError:
            record = None
        status = record.status if record is not None else None
        if status is None or status.state == "running" or (status.state, status.reason) == (
                "aborted", LOST):
            at = datetime.fromisoformat(str(claim["at"]))
            again.append(Due(job.name, at, now - at))
    return again


def _claims(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs claimed and not yet settled: the time each is for, its uid and its runner."""
    claims = state.get("claims")
    return [claim for claim in claims if isinstance(claim, dict)] if isinstance(claims, list) \
        else []


def _claimed(job: Job, state: dict[str, Any], found: list[Due], now: datetime) -> dict[str, Any]:
    """The state saved before the due runs start: the runs this runner claims, added to the
    claims of live runners (a lost runner's are claimed again, or ended); a one-off
    remembers which `at` it ran."""
    due = bool(found)
    runner = str(Owner.current())
    live = [claim for claim in _claims(state)
            if (owner := Owner.parse(str(claim.get("runner") or ""))) is None
            or not owner.is_lost()]
    claims = live + [{"at": item.at.isoformat(), "uid": item.uid, "runner": runner}
                     for item in found]
    state = {**state, "claims": claims} if claims or "claims" in state else state
    at = job.triggers.schedule.at if job.triggers and job.triggers.schedule else None
    checked = _checked(state, now)
    if at is None:
        return {**state, "checked": checked, "done": due or state.get("done", False)}
    done = due or bool(state.get("done") and state.get("at", at) == at)
    return {**state, "checked": checked, "done": done, "at": at}


def _checked(state: dict[str, Any], now: datetime) -> str:
    """When the job was last checked: never earlier than before (a clock may go back)."""
    last = state.get("checked")
    return last if last and datetime.fromisoformat(last) > now else now.isoformat()


def _minutes(delta: timedelta) -> str:
    return f"{int(delta.total_seconds() // 60)} min"
