"""Run a function or a job by name: the entry point of `runyard run` and the Python API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.errors import RunyardError
from runner.run.execute import Session, execute
from runner.run.task import Task, function_task, job_task


def task_for(session: Session, target: str, *, handler: str | None = None,
             params: Mapping[str, Any] | None = None,
             inputs: Mapping[str, str] | None = None) -> Task:
    """The task for TARGET: a job of that name, else a function of that name."""
    project = session.project
    job = project.jobs.get(target)
    if job is not None:
        return job_task(project, job, handler=handler, params=params, inputs=inputs)
    if target in project.functions:
        return function_task(project, target, handler=handler, params=params, inputs=inputs)
    jobs = ", ".join(sorted(project.jobs)) or "none"
    functions = ", ".join(sorted(project.functions)) or "none"
    raise RunyardError(f"no job or function named {target!r} (jobs: {jobs}; functions: {functions})")


def run_target(session: Session, target: str, uid: str | None = None,
               **options: Any) -> dict[str, Any]:
    return execute(session, task_for(session, target, **options), uid)
