"""What one run is asked to do, resolved from the project: a task (as MLRun's)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Any

from runner.errors import RunyardError
from runner.frozen import frozen
from runner.project.model import Function, Job, Project, Resources

LEVELS = ("project", "pipeline", "job", "override", "step")  # as runtime/spec.py has them
RECORDED = ("project", "pipeline", "job", "override", "trial", "step")  # as the record has them


@frozen
class ParamLevels:
    """Parameters by level, kept apart; `resolved` is what the handler's arguments get.
    A trial's own values are a level of the record; the runtime sees them as overrides."""

    project: Mapping[str, Any] = field(default_factory=dict)
    pipeline: Mapping[str, Any] = field(default_factory=dict)
    job: Mapping[str, Any] = field(default_factory=dict)
    override: Mapping[str, Any] = field(default_factory=dict)
    trial: Mapping[str, Any] = field(default_factory=dict)
    step: Mapping[str, Any] = field(default_factory=dict)

    def resolved(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for level in RECORDED:  # later levels win: step, trial, overrides, job, pipeline, project
            merged.update(getattr(self, level))
        return merged

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The levels as the runtime reads them."""
        levels = {level: dict(getattr(self, level)) for level in LEVELS}
        return {**levels, "override": {**self.override, **self.trial}}


@frozen
class Task:
    """One run of one function's handler, with its parameters and inputs."""

    name: str
    function: Function
    handler: str | None
    params: ParamLevels
    inputs: Mapping[str, str] = field(default_factory=dict)
    job: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    retries: int = 0
    resources: Resources = field(default_factory=Resources)
    iteration: int = 0
    parent: str | None = None
    placement: tuple[str, ...] = ()  # the job's constraints, over its function's


def function_task(project: Project, name: str, *, handler: str | None = None,
                  params: Mapping[str, Any] | None = None,
                  inputs: Mapping[str, str] | None = None) -> Task:
    """A run of a function by hand (`runyard run FUNCTION`, `run_function`)."""
    function = project.functions.get(name)
    if function is None:
        known = ", ".join(sorted(project.functions)) or "none"
        raise RunyardError(f"no function named {name!r} (functions: {known})")
    chosen = _handler(function, handler or function.handler)
    if chosen is None and function.command is None and not function.is_notebook:
        raise RunyardError(f"function {name!r} has no default handler: pass --handler")
    return Task(name=name, function=function, handler=chosen,
                params=ParamLevels(project=project.params, override=dict(params or {})),
                inputs=dict(inputs or {}),
                resources=function.resources.over(project.resources))


def job_task(project: Project, job: Job, *, handler: str | None = None,
             params: Mapping[str, Any] | None = None,
             inputs: Mapping[str, str] | None = None) -> Task:
    """A function job's run; pipeline jobs are made of step tasks instead."""
    assert job.run.function is not None, "a pipeline job runs as a PipelineRun"
    function = project.functions[job.run.function]
    chosen = _handler(function, handler or job.run.handler or function.handler)
    resources = function.resources.over(project.resources)
    if job.timeout is not None:
        resources = Resources(timeout=job.timeout).over(resources)
    return Task(name=job.name, function=function, handler=chosen,
                params=ParamLevels(project=project.params, job=job.params,
                                   override=dict(params or {})),
                inputs={**job.inputs, **(inputs or {})}, job=job.name, labels=job.labels,
                retries=job.retries, resources=resources, placement=job.placement)


def _handler(function: Function, handler: str | None) -> str | None:
    """The handler a run of `function` calls: none for a command, and a notebook has none."""
    if function.is_notebook and handler is not None:
        raise RunyardError(f"function {function.name!r} runs the notebook {function.code}, "
                           f"top to bottom: it has no handler {handler!r} to call")
    return handler if function.command is None else None
