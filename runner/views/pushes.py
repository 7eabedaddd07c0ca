"""`runyard pushes`: every push record as a row, and one revision's records in detail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from runner.errors import RunyardError
from runner.record.model import PushRecord


class PushRow(NamedTuple):
    revision: str
    ref: str
    received: str
    status: str
    reason: str
    jobs: int  # the runs it started


HEADERS = ("REVISION", "REF", "RECEIVED", "STATUS", "REASON", "JOBS RUN")


def push_rows(pushes: Sequence[PushRecord]) -> list[PushRow]:
    return [PushRow(push.revision[:12], push.ref.removeprefix("refs/heads/"),
                    (push.received or "")[:19].replace("T", " "), push.status, push.reason or "",
                    len(push.runs)) for push in pushes]


def cells(row: PushRow) -> tuple[str, ...]:
    return (*row[:5], str(row.jobs))


def pushes_of(pushes: Sequence[PushRecord], prefix: str) -> list[PushRecord]:
    """The records of the one revision starting with `prefix` (one per ref it was pushed to)."""
    revisions = sorted({push.revision for push in pushes if push.revision.startswith(prefix)})
    if len(revisions) != 1:
        what = "no pushed revision" if not revisions else f"{len(revisions)} pushed revisions"
        raise RunyardError(f"{what} starting {prefix!r}")
    return [push for push in pushes if push.revision == revisions[0]]


def push_lines(push: PushRecord) -> list[str]:
    """One push: its status, the plan's decisions, the runs it started and its problems."""
    lines = [f"push {push.revision} to {push.ref.removeprefix('refs/heads/')}: {push.status}"
             + (f" ({push.reason})" if push.reason else ""),
             f"  old      {push.old or '-'}",
             f"  received {push.received or '-'}   finished {push.finished or '-'}"]
    lines += [f"  problem  {problem}" for problem in push.problems]
    lines += _plan_lines(push.plan)
    lines += [f"  run      {run.job} {run.uid} {run.state}" for run in push.runs]
    return lines


def _plan_lines(plan: Any) -> list[str]:
    if not isinstance(plan, dict):
        return ["  plan     none"]
    lines = []
    for job in plan.get("jobs") or []:
        if isinstance(job, dict):
            verb = "run" if job.get("runs") else "skip"
            reasons = ", ".join(str(r) for r in job.get("reasons") or [])
            lines.append(f"  plan     {verb} {job.get('name')}" + (f": {reasons}" if reasons else ""))
    lines += [f"  note     {note}" for note in plan.get("notes") or []]
    return lines or ["  plan     no jobs"]
