"""Run a job or a function by name: one run, a pipeline, or hyper-parameter trials.

This is the entry point of `runyard run` and of the Python API. The work runs in
a worker thread while the calling thread waits, so that Ctrl-C or SIGTERM
becomes an orderly abort: no new run starts, the running containers are
stopped, and every unfinished run is recorded `aborted`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import Any

from runner.errors import RunyardError
from runner.frozen import frozen
from runner.project.condition import ConditionError, parse_condition
from runner.project.model import Hyper, Job, Project
from runner.project.trials import check_hyper
from runner.record.model import RunRecord
from runner.run.execute import Session, execute, new_record, task_record
from runner.run.hyper import run_trials
from runner.run.pipeline import PipelineRun
from runner.run.task import ParamLevels, Task, function_task, job_task


@frozen
class HyperOptions:
    """How trials run, given from outside (the API) over the job's own settings."""

    strategy: str | None = None
    stop_condition: str | None = None
    max_errors: int | None = None
    parallel: int | None = None
    isolation: str | None = None

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def run_target(session: Session, target: str, uid: str | None = None, *,
               handler: str | None = None, params: Mapping[str, Any] | None = None,
               inputs: Mapping[str, str] | None = None,
               hyper: Mapping[str, list[Any]] | None = None,
               selector: str | None = None, options: HyperOptions = HyperOptions(),
               name: str | None = None) -> RunRecord:
    """Run TARGET (a job, else a function) and return its record (the parent's, for
    trials); `name` names the run (default: TARGET)."""
    project = session.project
    project.require_target(target)
    job = project.jobs.get(target)
    chosen = with_overrides(job.hyper if job else None, hyper, selector, options)
    if job is not None and job.run.pipeline is not None:
        if handler:
            raise RunyardError(f"job {job.name!r} runs a pipeline: each step names its handler")
        return _pipeline_job(session, job, chosen, dict(params or {}),
                             {**job.inputs, **(inputs or {})}, uid, name or job.name)
    base = (job_task(project, job, handler=handler, params=params, inputs=inputs) if job
            else function_task(project, target, handler=handler, params=params, inputs=inputs))
    base = dataclasses.replace(base, name=name or base.name)
    if chosen is None:
        return execute(session, base, uid)
    return run_trials(
        session, chosen, name=base.name, job=base.job, labels=base.labels, params=base.params,
        run_trial=lambda i, values, parent, trial_uid: execute(
            session, _trial(base, i, values, parent), trial_uid),
        never_started=lambda i, values, parent, trial_uid: task_record(
            session, _trial(base, i, values, parent), trial_uid),
        uid=uid, one_run_each=True)


def run_interruptibly(session: Session, work: Callable[[], RunRecord]) -> RunRecord:
    """Run `work` in a worker thread; an interruption here aborts the session's runs."""
    outcome: list[RunRecord | BaseException] = []
    finished = threading.Event()

    def worker() -> None:
        try:
            outcome.append(work())
        except BaseException as error:  # handed to the waiting thread below
            outcome.append(error)
        finally:
            finished.set()

    threading.Thread(target=worker, name="runyard-run").start()
    # Wait on an event, not with Thread.join: on Python 3.11 a KeyboardInterrupt that
    # lands inside join() marks the still running thread as stopped (is_alive() turns
    # False), and the records the worker has yet to write would be lost at exit.
    while not finished.is_set():
        try:
            finished.wait(0.2)
        except KeyboardInterrupt:
            session.abort.set()
            session.backend.stop_all()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def with_overrides(hyper: Hyper | None, values: Mapping[str, list[Any]] | None,
                   selector: str | None, options: HyperOptions = HyperOptions()) -> Hyper | None:
    """The job's hyper-parameters with those given from outside (CLI, API) on top."""
    if not values and not selector and not options.given():
        return hyper
    if hyper is None and not values:
        raise RunyardError("a selector or trial options need hyper-parameters (--hyper "
                           "NAME=v1,v2, with_hyper_params(...) or the job's)")
    base = hyper or Hyper(params={}, parallel=4)
    merged = {**base.params, **{k: tuple(v) for k, v in (values or {}).items()}}
    chosen = dataclasses.replace(base, params=merged, selector=selector or base.selector,
                                 **options.given())
    _check(chosen)
    return chosen


def _check(hyper: Hyper) -> None:
    """What a job's checks would refuse in its YAML, refused when given from outside."""
    problems = check_hyper(hyper.strategy, hyper.params, hyper.exclude, hyper.max_trials)
    if hyper.selector and hyper.selector.partition(".")[0] not in ("min", "max"):
        problems.append(f"selector {hyper.selector!r}: use min.RESULT or max.RESULT")
    if hyper.parallel < 1 or (hyper.max_errors is not None and hyper.max_errors < 0):
        problems.append("parallel must be at least 1 and max_errors at least 0")
    if hyper.isolation not in (None, "process", "container"):
        problems.append(f"isolation {hyper.isolation!r}: use process or container")
    try:
        if hyper.stop_condition:
            parse_condition(hyper.stop_condition)
    except ConditionError as error:
        problems.append(f"stop_condition, column {error.column}: {error.message}")
    if problems:
        raise RunyardError("; ".join(problems))


def _trial(base: Task, iteration: int, values: Mapping[str, Any], parent: str) -> Task:
    params = dataclasses.replace(base.params, trial=dict(values))
    return dataclasses.replace(base, params=params, iteration=iteration, parent=parent)


def _pipeline_job(session: Session, job: Job, hyper: Hyper | None,
                  override: dict[str, Any], inputs: Mapping[str, str],
                  uid: str | None, name: str) -> RunRecord:
    project: Project = session.project
    pipeline = project.pipelines[job.run.pipeline or ""]
    levels = ParamLevels(project=project.params, pipeline=pipeline.params, job=job.params,
                         override=override)

    def one(iteration: int, values: Mapping[str, Any], parent: str | None,
            run_uid: str | None) -> PipelineRun:
        params = dataclasses.replace(levels, trial=dict(values))
        return PipelineRun(session, pipeline, params, name=name, job=job.name,
                           labels=job.labels, parent=parent, iteration=iteration,
                           parallel=job.parallel, retries=job.retries, inputs=inputs,
                           uid=run_uid)

    if hyper is None:
        return one(0, {}, None, uid).run()

    def never_started(i: int, values: Mapping[str, Any], parent: str, run_uid: str) -> RunRecord:
        params = dataclasses.replace(levels, trial=dict(values))
        record = new_record(session, uid=run_uid, name=name, job=job.name, iteration=i,
                            parent=parent, labels=job.labels, params=params)
        return dataclasses.replace(record, spec=dataclasses.replace(record.spec, pipeline=pipeline.name))

    return run_trials(session, hyper, name=name, job=job.name, labels=job.labels,
                      params=levels, run_trial=lambda i, v, p, u: one(i, v, p, u).run(),
                      never_started=never_started, uid=uid)
