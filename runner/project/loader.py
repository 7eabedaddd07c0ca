"""Load a project: read every file, check it against its schema, build the model,
then check what crosses files. All problems are collected and raised at once."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from runner.errors import Problem, ProjectInvalid, RunyardError
from runner.git import commit_of, find_repository
from runner.project import refs, units
from runner.project.checks import check_project
from runner.project.model import (
    DEFAULT_ARTIFACT_STORE,
    DEFAULT_RESULTS_BRANCH,
    Environment,
    Function,
    Hyper,
    Job,
    Limits,
    Pipeline,
    Project,
    Resources,
    RunTarget,
    Schedule,
    Step,
    Triggers,
)
from runner.project.schema import SchemaSet
from runner.project.source import DirectorySource, GitSource, ProjectSource, SourceError
from runner.project.yamlread import MAX_BYTES, Document, read_document
from runner.project.yamlread import Path as DocPath

PROJECT_FILE = "project.yaml"
KIND_FOLDERS = {"function": "functions", "pipeline": "pipelines", "job": "jobs"}
YAML_SUFFIXES = (".yaml", ".yml")

T = TypeVar("T")


def open_project(project_dir: Path, revision: str | None,
                 local_changes: bool) -> tuple[ProjectSource, Path]:
    """The project's source and the git directory its records go to.

    By default a run uses a committed revision (HEAD), never the working tree;
    `local_changes` runs the working tree as it is, and the record says so.
    """
    root = project_dir if revision else find_project_root(project_dir)
    found = find_repository(root)
    if found is None:
        raise RunyardError(f"{root} is not in a git repository: runs are recorded in git "
                           "(run `git init` and commit the project first)")
    git_dir = found.repository.git_dir
    if local_changes:
        return DirectorySource(root), git_dir
    try:
        return GitSource(found.repository, revision or "HEAD", found.prefix), git_dir
    except RunyardError:
        if revision is None and commit_of(git_dir, "HEAD") is None:
            raise RunyardError(f"{root}: the repository has no commit yet; commit the project, "
                               "or run with --local-changes") from None
        raise


def find_project_root(path: Path) -> Path:
    """The nearest folder at or above `path` that holds a project.yaml (maybe a broken one).

    A link is not followed to look for it: a project file that links out of the
    project belongs to the project it is in."""
    start = Path(os.path.abspath(path))
    for folder in [start, *start.parents] if start.is_dir() else list(start.parents):
        if os.path.lexists(folder / PROJECT_FILE):
            return folder
    raise RunyardError(
        f"no {PROJECT_FILE} in {path} or any folder above it: "
        "is this a runyard project? (`runyard init DIR` makes one)"
    )


def project_files(source: ProjectSource) -> tuple[list[tuple[str, str]], list[Problem]]:
    """(kind, path) of every project file: project.yaml, then each kind's folder; and
    the problems of folders that cannot be listed."""
    found, problems = [("project", PROJECT_FILE)], []
    for kind, folder in KIND_FOLDERS.items():
        try:
            found += [(kind, p) for p in source.files(folder) if p.endswith(YAML_SUFFIXES)]
        except SourceError as error:
            problems.append(Problem(folder, 1, 1, error.reason))
    return found, problems


class Settings(NamedTuple):
    """What commands that only read records need of project.yaml."""

    results_branch: str = DEFAULT_RESULTS_BRANCH
    artifact_store: str = DEFAULT_ARTIFACT_STORE
    branches: tuple[str, ...] = ()


def read_settings(source: ProjectSource) -> Settings:
    """project.yaml's settings, read leniently: defaults for what is missing or broken,
    so an invalid revision still gets its records where the project says."""
    try:
        data = read_document(PROJECT_FILE, source.read(PROJECT_FILE)).data
    except (RunyardError, OSError):
        return Settings()
    data = data if isinstance(data, dict) else {}
    results, artifacts, branches = (data.get(key) for key in ("results", "artifacts", "branches"))
    branch = results.get("branch") if isinstance(results, dict) else None
    store = artifacts.get("store") if isinstance(artifacts, dict) else None
    return Settings(  # an invalid branch name is the checks' to report; the records go to the default
        results_branch=branch if isinstance(branch, str) and refs.branch_problem(branch) is None
        else DEFAULT_RESULTS_BRANCH,
        artifact_store=store if isinstance(store, str) else DEFAULT_ARTIFACT_STORE,
        branches=tuple(b for b in branches if isinstance(b, str))
        if isinstance(branches, list) else (),
    )


def load_project(source: ProjectSource, *, check: bool = True) -> Project:
    """The checked project, or ProjectInvalid with every problem found.

    `check=False` skips the checks across files: for an old revision that is
    only compared against, never run.
    """

    if not source.lexists(PROJECT_FILE):
        raise RunyardError(
            f"no {PROJECT_FILE} in {source.label}: is this a runyard project? "
            "(`runyard init DIR` makes one)"
        )
    builder = _Builder()
    schemas = SchemaSet()
    unchecked: set[str] = set()
    files, builder.problems = project_files(source)
    for kind, path in files:
        doc = builder.read(source, path)
        checked = schemas.check(kind, doc) if doc is not None else None
        if checked is not None:
            builder.problems += checked.problems
        if checked is None or checked.usable is None:
            unchecked.add(_claimed_name(path, doc))
        else:
            builder.add(kind, checked.usable)
    project = builder.finish(source.revision)
    problems = builder.problems
    if check:
        problems = problems + check_project(project, source, frozenset(unchecked))
    if problems:
        raise ProjectInvalid(problems)
    return project


def _claimed_name(path: str, doc: Document | None) -> str:
    """The name an unusable file gives its object, else the likely one: its file name."""
    name = doc.data.get("name") if doc is not None and isinstance(doc.data, dict) else None
    return name if isinstance(name, str) else path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


class _Builder:
    """Builds model objects from schema-valid documents, collecting value problems."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.project: Project | None = None
        self.functions: list[Function] = []
        self.pipelines: list[Pipeline] = []
        self.jobs: list[Job] = []

    def read(self, source: ProjectSource, path: str) -> Document | None:
        try:
            return read_document(path, source.read(path, MAX_BYTES))
        except SourceError as error:
            self.problems.append(Problem(path, 1, 1, error.reason))
        except ProjectInvalid as error:
            self.problems += error.problems
        return None

    def add(self, kind: str, doc: Document) -> None:
        if kind == "project":
            self.project = self.project_of(doc)
        elif kind == "function":
            self.functions.append(self.function_of(doc))
        elif kind == "pipeline":
            self.pipelines.append(self.pipeline_of(doc))
        else:
            self.jobs.append(self.job_of(doc))

    def finish(self, revision: str | None) -> Project:
        # Without a usable project.yaml (a problem is reported), the other files are checked
        # against a stand-in, and the project is never returned.
        project = self.project or Project(name="", file=PROJECT_FILE)
        return dataclasses.replace(
            project,
            functions=_by_name("function", self.functions, self.problems),
            pipelines=_by_name("pipeline", self.pipelines, self.problems),
            jobs=_by_name("job", self.jobs, self.problems),
            revision=revision,
        )

    def parsed(self, doc: Document, path: DocPath, value: Any, parse: Callable[[Any], T]) -> T | None:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as error:
            self.problems.append(doc.problem(path, str(error)))
            return None

    def resources(self, doc: Document, path: DocPath, data: Mapping[str, Any] | None) -> Resources:
        data = data or {}
        return Resources(
            cpu=self.parsed(doc, (*path, "cpu"), data.get("cpu"), units.parse_cpu),
            memory=self.parsed(doc, (*path, "memory"), data.get("memory"), units.parse_run_memory),
            timeout=self.parsed(doc, (*path, "timeout"), data.get("timeout"), units.parse_duration),
            gpus=data.get("gpus", 0),
        )

    def limits(self, doc: Document, data: Mapping[str, Any] | None) -> Limits:
        given = {key: self.parsed(doc, ("limits", key), value,
                                  functools.partial(units.parse_memory, what=f"limits.{key}"))
                 for key, value in (data or {}).items()}
        return Limits(**{key: value for key, value in given.items() if value is not None})

    def project_of(self, doc: Document) -> Project:
        data = doc.data
        defaults = data.get("defaults", {})
        results = data.get("results", {})
        extra: dict[str, Any] = {}
        for key, value in (
            ("base_image", defaults.get("base_image")),
            ("backend", data.get("execution", {}).get("backend", defaults.get("backend"))),
            ("registry", data.get("execution", {}).get("registry")),
            ("shared", data.get("execution", {}).get("shared")),
            ("results_branch", results.get("branch")),
            ("log_limit", results.get("log_limit")),
            ("artifact_store", data.get("artifacts", {}).get("store")),
        ):
            if value is not None:
                extra[key] = value
        return Project(
            name=data["name"],
            file=doc.file,
            description=data.get("description", ""),
            params=data.get("params", {}),
            resources=self.resources(doc, ("defaults", "resources"), defaults.get("resources")),
            env=_env(defaults.get("env")),
            secrets=tuple(data.get("secrets", ())),
            branches=tuple(data.get("branches", ())),
            limits=self.limits(doc, data.get("limits")),
            doc=doc,
            **extra,
        )

    def function_of(self, doc: Document) -> Function:
        data = doc.data
        env = data.get("environment", {})
        command = data.get("command")
        return Function(
            name=data["name"],
            file=doc.file,
            description=data.get("description", ""),
            code=data.get("code"),
            handler=data.get("handler"),
            command=tuple(command) if command is not None else None,
            environment=Environment(
                base_image=env.get("base_image", ""),
                requirements=tuple(env.get("requirements", ())),
                requirements_file=env.get("requirements_file"),
                system_packages=tuple(env.get("system_packages", ())),
                setup=tuple(env.get("setup", ())),
                env=_env(env.get("env")),
            ),
            resources=self.resources(doc, ("resources",), data.get("resources")),
            network=data.get("network", "bridge"),
            labels=data.get("labels", {}),
            secrets=tuple(data.get("secrets", ())),
            placement=tuple(data.get("placement", ())),
            doc=doc,
        )

    def pipeline_of(self, doc: Document) -> Pipeline:
        data = doc.data
        steps = tuple(self.step_of(doc, i, step) for i, step in enumerate(data.get("steps", ()))
                      if "name" in step and "function" in step)  # else lost to a schema error
        return Pipeline(
            name=data["name"],
            file=doc.file,
            steps=steps,
            description=data.get("description", ""),
            params=data.get("params", {}),
            doc=doc,
        )

    def step_of(self, doc: Document, index: int, data: Mapping[str, Any]) -> Step:
        path: DocPath = ("steps", index)
        resources = self.resources(doc, (*path, "resources"), data.get("resources"))
        timeout = self.parsed(doc, (*path, "timeout"), data.get("timeout"), units.parse_duration)
        return Step(
            name=data["name"],
            function=data["function"],
            handler=data.get("handler"),
            params=data.get("params", {}),
            inputs=data.get("inputs", {}),
            outputs=tuple(data.get("outputs", ())),
            after=tuple(data.get("after", ())),
            retries=data.get("retries"),
            resources=Resources(timeout=timeout).over(resources),
            index=index,
        )

    def job_of(self, doc: Document) -> Job:
        data = doc.data
        run = data.get("run", {})
        hyper = data.get("hyper")
        triggers = data.get("triggers")
        timeout = self.parsed(doc, ("timeout",), data.get("timeout"), units.parse_duration)
        return Job(
            name=data["name"],
            file=doc.file,
            run=RunTarget(run.get("function"), run.get("pipeline"), run.get("handler")),
            description=data.get("description", ""),
            labels=data.get("labels", {}),
            params=data.get("params", {}),
            inputs=data.get("inputs", {}),
            hyper=_hyper(hyper) if hyper is not None else None,
            triggers=_triggers(triggers) if triggers is not None else None,
            retries=data.get("retries", 0),
            timeout=timeout,
            parallel=data.get("parallel", 4),
            backend=data.get("backend"),
            placement=tuple(data.get("placement", ())),
            doc=doc,
        )


def _hyper(data: Mapping[str, Any]) -> Hyper:
    return Hyper(
        params={name: tuple(values) for name, values in data.get("params", {}).items()},
        strategy=data.get("strategy", "grid"),
        exclude=tuple(data.get("exclude", ())),
        max_trials=data.get("max_trials"),
        parallel=data.get("parallel", 1),
        selector=data.get("selector"),
        stop_condition=data.get("stop_condition"),
        max_errors=data.get("max_errors"),
        isolation=data.get("isolation"),
    )


def _triggers(data: Mapping[str, Any]) -> Triggers:
    push = data.get("push", False)
    schedule = data.get("schedule")
    if isinstance(schedule, str):
        schedule = {"cron": schedule}
    return Triggers(
        push=push is not False and push is not None,
        paths=tuple(push["paths"]) if isinstance(push, dict) and "paths" in push else None,
        schedule=Schedule(**schedule) if schedule is not None else None,
    )


def _env(data: Mapping[str, Any] | None) -> dict[str, str]:
    return {key: _env_value(value) for key, value in (data or {}).items()}


def _env_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


_Named = TypeVar("_Named", Function, Pipeline, Job)


def _by_name(kind: str, items: list[_Named], problems: list[Problem]) -> dict[str, _Named]:
    """The items by name; a second item of the same name is a problem."""
    named: dict[str, _Named] = {}
    for item in items:
        first = named.setdefault(item.name, item)
        if first is not item and item.doc is not None:
            problems.append(
                item.doc.problem(("name",), f"{kind} name {item.name!r} is already used by {first.file}")
            )
    return named
