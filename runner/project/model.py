"""The typed, frozen model of a project, built only from files that passed the schema.

Every object keeps the `Document` it came from, so a later check can point at
the file, line and column of any of its values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from runner.errors import RunyardError, did_you_mean
from runner.frozen import frozen
from runner.project.yamlread import Document

DEFAULT_BASE_IMAGE = "python:3.11-slim"
DEFAULT_RESULTS_BRANCH = "runyard/results"
DEFAULT_ARTIFACT_STORE = ".runyard/artifacts"
DEFAULT_LOG_LIMIT = 1024 * 1024
NOTEBOOK_SUFFIX = ".ipynb"  # as runner/runtime/spec.py has it

Params = Mapping[str, Any]
MiB = 1 << 20
GiB = 1 << 30


@frozen
class Limits:
    """How much a run may leave behind; a project may set lower ones (`limits:`)."""

    results: int = MiB  # results.json, artifacts.json and error.json, each
    artifact: int = GiB  # one artifact, or one input fetched or copied in
    disk: int = 2 * GiB  # a run's scratch: its working folder, outputs and temporary files
    log: int = 16 * MiB  # the log kept of a run (the project's `results.log_limit`, at most)

    def within(self, maximum: Limits) -> Limits:
        return Limits(*(min(mine, most) for mine, most in
                        zip(dataclasses.astuple(self), dataclasses.astuple(maximum), strict=True)))


@frozen
class Resources:
    """What a run may use: cpus, memory (bytes), a timeout (seconds) and GPUs; None is unset."""

    cpu: float | None = None
    memory: int | None = None
    timeout: float | None = None
    gpus: int = 0

    def over(self, base: Resources) -> Resources:
        """These resources, falling back to `base` for what is not set here."""
        return Resources(
            cpu=self.cpu if self.cpu is not None else base.cpu,
            memory=self.memory if self.memory is not None else base.memory,
            timeout=self.timeout if self.timeout is not None else base.timeout,
            gpus=self.gpus or base.gpus,
        )


@frozen
class Environment:
    """Everything that shapes a function's image; the code is never part of it."""

    base_image: str
    requirements: tuple[str, ...] = ()
    requirements_file: str | None = None
    system_packages: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


@frozen
class Function:
    """A function: its code and handler (or a command), the environment of its image, its resources."""

    name: str
    file: str
    environment: Environment
    resources: Resources
    description: str = ""
    code: str | None = None
    handler: str | None = None
    command: tuple[str, ...] | None = None
    network: str = "bridge"
    labels: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()  # the project's secrets its runs may read
    placement: tuple[str, ...] = ()  # swarm constraints, as `docker service create` takes them
    doc: Document | None = field(default=None, compare=False, repr=False)

    @property
    def is_notebook(self) -> bool:
        """Whether its code is a Jupyter notebook, run top to bottom instead of a handler."""
        return self.command is None and self.code is not None and self.code.endswith(NOTEBOOK_SUFFIX)


@frozen
class Step:
    """One step of a pipeline: the function it calls, its params, inputs and outputs, what it waits for."""

    name: str
    function: str
    handler: str | None = None
    params: Params = field(default_factory=dict)
    inputs: Mapping[str, str] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    retries: int | None = None
    resources: Resources = Resources()
    index: int = 0

    def upstream(self) -> tuple[str, ...]:
        """The steps this one waits for: by `after`, and by `step://` inputs."""
        names = list(self.after)
        for uri in self.inputs.values():
            ref = step_ref(uri)
            if ref and ref[0] not in names:
                names.append(ref[0])
        return tuple(names)


@frozen
class Pipeline:
    """A DAG of steps, in the order they are written."""

    name: str
    file: str
    steps: tuple[Step, ...]
    description: str = ""
    params: Params = field(default_factory=dict)
    doc: Document | None = field(default=None, compare=False, repr=False)

    def step(self, name: str) -> Step | None:
        return next((step for step in self.steps if step.name == name), None)


@frozen
class Hyper:
    """A job's hyper-parameter search: the values to try, how, and how to pick the best trial."""

    params: Mapping[str, tuple[Any, ...]]
    strategy: str = "grid"
    exclude: tuple[Mapping[str, Any], ...] = ()
    max_trials: int | None = None
    parallel: int = 1
    selector: str | None = None
    stop_condition: str | None = None
    max_errors: int | None = None
    isolation: str | None = None  # process | container; None: the backend's default


@frozen
class Schedule:
    """When a job runs by the clock: a cron string or a moment (`at`), in a time zone."""

    cron: str | None = None
    at: str | None = None
    timezone: str = "UTC"
    catchup: bool = False


@frozen
class Triggers:
    """What starts a job: a push (touching `paths`, when given) and a schedule."""

    push: bool = False
    paths: tuple[str, ...] | None = None
    schedule: Schedule | None = None


@frozen
class RunTarget:
    """What a job runs: a function (and handler) or a pipeline."""

    function: str | None = None
    pipeline: str | None = None
    handler: str | None = None


@frozen
class Job:
    """A job: what it runs, with which params and inputs, its trials, triggers and retries."""

    name: str
    file: str
    run: RunTarget
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    params: Params = field(default_factory=dict)
    inputs: Mapping[str, str] = field(default_factory=dict)
    hyper: Hyper | None = None
    triggers: Triggers | None = None
    retries: int = 0
    timeout: float | None = None
    parallel: int = 4
    backend: str | None = None
    placement: tuple[str, ...] = ()
    doc: Document | None = field(default=None, compare=False, repr=False)

    @property
    def runs_on_push(self) -> bool:
        return self.triggers is None or self.triggers.push


@frozen
class Project:
    """The whole project: its settings, and its functions, pipelines and jobs by name."""

    name: str
    file: str
    description: str = ""
    params: Params = field(default_factory=dict)
    base_image: str = DEFAULT_BASE_IMAGE
    resources: Resources = Resources()
    env: Mapping[str, str] = field(default_factory=dict)
    backend: str = "docker"
    registry: str | None = None  # execution.registry: where the swarm backend pushes images
    shared: str | None = None  # execution.shared: a folder every swarm node mounts there
    results_branch: str = DEFAULT_RESULTS_BRANCH
    log_limit: int = DEFAULT_LOG_LIMIT
    artifact_store: str = DEFAULT_ARTIFACT_STORE
    secrets: tuple[str, ...] = ()
    branches: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    functions: Mapping[str, Function] = field(default_factory=dict)
    pipelines: Mapping[str, Pipeline] = field(default_factory=dict)
    jobs: Mapping[str, Job] = field(default_factory=dict)
    revision: str | None = None
    doc: Document | None = field(default=None, compare=False, repr=False)

    def require_target(self, target: str) -> None:
        """Refuse a `target` that is neither a job nor a function of the project, naming
        the nearest names, before anything is built or run."""
        if target in self.jobs or target in self.functions:
            return
        if target in self.pipelines:
            through = [job.name for job in self.jobs.values() if job.run.pipeline == target]
            hint = (f"run a job that runs it: {', '.join(sorted(through))}" if through else
                    f"a job runs it: add one with run: {{pipeline: {target}}}")
            raise RunyardError(f"{target!r} is a pipeline, not a job or function; {hint}")
        hint = did_you_mean(target, [*self.jobs, *self.functions])
        jobs = ", ".join(sorted(self.jobs)) or "none"
        functions = ", ".join(sorted(self.functions)) or "none"
        raise RunyardError(f"no job or function named {target!r}{hint} "
                           f"(jobs: {jobs}; functions: {functions})")


STEP_SCHEME = "step://"


def step_ref(uri: str) -> tuple[str, str | None] | None:
    """`step://STEP/OUTPUT` as (STEP, OUTPUT); (STEP, None) without an output; else None."""
    if not uri.startswith(STEP_SCHEME):
        return None
    step, _, output = uri.removeprefix(STEP_SCHEME).partition("/")
    return step, output or None


def is_repo_path(uri: str) -> bool:
    """A plain relative path names a file of the repository at the run's revision."""
    return "://" not in uri
