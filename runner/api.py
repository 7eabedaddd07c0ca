"""The Python API, as MLRun users know it: load a project, run a function or a
task, and get a `RunObject` back (seed 002)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.errors import RunyardError
from runner.frozen import frozen
from runner.project import scaffold
from runner.project.condition import Condition, ConditionError, parse_condition
from runner.project.loader import find_project_root, open_project
from runner.project.loader import load_project as load
from runner.project.model import Project
from runner.project.source import DirectorySource
from runner.record.artifacts import ArtifactStore
from runner.record.model import Metadata, Params, RunRecord, Spec, Status
from runner.record.results import ResultsBranch, new_uid
from runner.run.launch import HyperOptions, run_target
from runner.run.session import session_for, workspace_of
from runner.views.show import provenance_lines


@frozen
class TaskTemplate:
    """A reusable task (MLRun's `new_task`): `name` names the run; handler, params,
    inputs and hyper-parameters are what it runs with."""

    name: str | None = None
    handler: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, str] = field(default_factory=dict)
    hyperparams: Mapping[str, list[Any]] = field(default_factory=dict)
    selector: str | None = None
    options: HyperOptions = field(default_factory=HyperOptions)

    def with_params(self, **params: Any) -> TaskTemplate:
        return replace(self, params={**self.params, **params})

    def with_hyper_params(self, hyperparams: Mapping[str, list[Any]],
                          selector: str | None = None, strategy: str | None = None,
                          stop_condition: str | None = None, max_errors: int | None = None,
                          parallel: int | None = None) -> TaskTemplate:
        options = HyperOptions(strategy, stop_condition, max_errors, parallel)
        return replace(self, hyperparams=dict(hyperparams), selector=selector, options=options)


def new_task(name: str | None = None, handler: str | None = None,
             params: Mapping[str, Any] | None = None,
             inputs: Mapping[str, str] | None = None) -> TaskTemplate:
    return TaskTemplate(name, handler, dict(params or {}), dict(inputs or {}))


class DataItem:
    """An artifact in the store: `local_path()`, `get()`, `as_df()`, `url`."""

    def __init__(self, url: str, path: Path) -> None:
        self.url = url
        self.path = path

    def local_path(self) -> str:
        return str(self.path)

    def get(self) -> bytes:
        return self.path.read_bytes()

    def as_df(self, **options: Any) -> Any:
        import importlib

        return importlib.import_module("pandas").read_csv(self.path, **options)

    def __str__(self) -> str:
        return self.url


class Background:
    """A run's work in a daemon thread; what it raised is kept for its RunObject."""

    def __init__(self, work: Callable[[], None],
                 failed: Callable[[RunyardError], RunRecord]) -> None:
        self.error: BaseException | None = None
        self.failed = failed  # the record of the run when the work failed before recording it
        self.thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self.thread.start()

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as error:  # handed to the RunObject: see failure()
            self.error = error

    def failure(self) -> RunRecord | None:
        """The failed record once the work ended in a user's error; a bug is raised again."""
        if self.thread.is_alive() or self.error is None:
            return None
        if not isinstance(self.error, RunyardError):
            raise self.error
        return self.failed(self.error)


class RunObject:
    """A run: its record on the results branch, refreshed on demand. A run started in
    the background that fails before it is recorded becomes `failed` with its error;
    a bug there is raised again by the next call that looks."""

    def __init__(self, results: ResultsBranch, store: ArtifactStore, uid: str,
                 record: RunRecord | None = None, background: Background | None = None,
                 live_log: Path | None = None) -> None:
        self._results, self._store, self._uid = results, store, uid
        self._record = record
        self._background = background
        self._live_log = live_log  # where the log grows while the run runs

    def uid(self) -> str:
        return self._uid

    def state(self) -> str:
        return self.record().status.state if self._known() else "running"

    def refresh(self) -> RunObject:
        try:  # a RunObject is never closed: no git process outlives a look
            with contextlib.closing(self._results):
                self._record = self._results.read(self._uid)
        except RunyardError:
            self._record = self._background.failure() if self._background else None
        return self

    def wait_for_completion(self, timeout: float | None = None) -> RunObject:
        if self._background is not None:
            self._background.thread.join(timeout)
        return self.refresh()

    @property
    def outputs(self) -> dict[str, Any]:
        status = self.record().status
        return {**status.results, **{a.key: a.uri for a in status.artifacts}}

    def output(self, key: str) -> Any:
        return self.outputs.get(key)

    def artifact(self, key: str) -> DataItem:
        for item in self.record().status.artifacts:
            if item.key == key and item.hash is not None:
                return DataItem(f"artifact://{key}@{self._uid}", self._store.path_of(item.hash))
        raise RunyardError(f"run {self._uid} has no artifact {key!r}")

    def logs(self, watch: bool = True) -> str:
        """The run's log (printed too): once it ends with `watch`, else as far as it got."""
        if watch:
            self.wait_for_completion()
        text = self._log().decode("utf-8", "replace")
        print(text, end="")
        return text

    def _log(self) -> bytes:
        if not self._known() and self._live_log is not None:
            with contextlib.suppress(FileNotFoundError):  # not started, or just recorded
                return self._live_log.read_bytes()
        with contextlib.closing(self._results):
            return self._results.log(self._uid)

    def show(self) -> None:
        """What `runyard runs show` prints: what ran, and what came of it."""
        print("\n".join(provenance_lines(self.record(), self._results.branch)))

    def record(self) -> RunRecord:
        """The run's record, typed (runner.record.model)."""
        if not self._known():
            raise RunyardError(f"run {self._uid} has no record yet: wait_for_completion() first")
        assert self._record is not None
        return self._record

    def to_dict(self) -> dict[str, Any]:
        return self.record().to_dict()

    def to_yaml(self) -> str:
        return self.record().to_yaml().decode()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def _known(self) -> bool:
        if self._record is None:
            self.refresh()
        return self._record is not None

    def __repr__(self) -> str:
        return f"RunObject(uid={self._uid!r}, state={self.state()!r})"


class ProjectHandle:
    """A project on disk, as `load_project` and `new_project` return it."""

    def __init__(self, path: Path, project: Project) -> None:
        self.path = path
        self.spec = project
        self.name = project.name

    def run_function(self, function: str, handler: str | None = None,
                     params: Mapping[str, Any] | None = None,
                     inputs: Mapping[str, str] | None = None, *, task: TaskTemplate | None = None,
                     name: str | None = None, local: bool = False, watch: bool = True,
                     local_changes: bool = False, revision: str | None = None) -> RunObject:
        """Run a job or function of the project (by name) with a handler, params and
        inputs; the run is named `name`, else after the task, else after `function`."""
        template = task or TaskTemplate()
        name = name or template.name or function
        uid = new_uid()
        done: list[RunObject] = []

        def work() -> None:
            with session_for(*open_project(self.path, revision, local_changes),
                             backend="local" if local else None,
                             on_line=lambda n, line: print(f"{n} | {line}") if watch else None
                             ) as session:
                record = run_target(
                    session, function, uid, handler=handler or template.handler,
                    params={**template.params, **(params or {})},
                    inputs={**template.inputs, **(inputs or {})},
                    hyper=template.hyperparams or None, selector=template.selector,
                    options=template.options, name=name)
                done.append(RunObject(session.results, session.store, uid, record))

        if watch:
            work()
            return done[0]

        results, store, live = self._records(revision, local_changes)
        background = Background(work, lambda error: not_started(uid, name, self.name, error))
        return RunObject(results, store, uid, None, background, live / f"{uid}.log")

    def list_runs(self, job: str | None = None, where: str | None = None) -> list[RunObject]:
        """The recorded runs, newest first: of `job` only, and only those whose results
        meet `where` (the stop_condition language: `accuracy >= 0.9 and loss < 0.2`)."""
        condition = _condition(where)
        results, store, _ = self._records()
        with contextlib.closing(results):
            rows = [row for row in results.listing(children=True).rows
                    if (job is None or row.job == job)
                    and (condition is None or condition.evaluate(row.results))]
            return [RunObject(results, store, row.uid, results.read(row.uid)) for row in rows]

    def get_run(self, uid: str) -> RunObject:
        """The run whose uid is, or starts with, `uid`."""
        results, store, _ = self._records()
        with contextlib.closing(results):
            full = results.find(uid)
            return RunObject(results, store, full, results.read(full))

    def _records(self, revision: str | None = None, local_changes: bool = True
                 ) -> tuple[ResultsBranch, ArtifactStore, Path]:
        """The results branch, the artifact store and the folder of live logs."""
        source, git_dir = open_project(self.path, revision, local_changes)
        source.close()  # only its folders are wanted here: a session reads it again
        store = ArtifactStore(self.spec.artifact_store, workspace_of(source))
        return (ResultsBranch(git_dir, self.spec.results_branch), store,
                source.state_dir / "live")


def _condition(where: str | None) -> Condition | None:
    try:
        return parse_condition(where) if where else None
    except ConditionError as error:
        raise RunyardError(f"where {where!r}: {error}") from None


def not_started(uid: str, name: str, project: str, error: RunyardError) -> RunRecord:
    """The record of a background run that failed before it was recorded (not on the
    results branch: it never started)."""
    return RunRecord(
        Metadata(uid=uid, name=name, project=project),
        Spec.sparse(params=Params.sparse()),
        Status.sparse(state="failed", reason="not_started", start=None,
                      end=datetime.now(UTC).isoformat(timespec="seconds"), duration=None,
                      exit_code=None, results={}, artifacts=(), error=str(error),
                      best_iteration=None, trials=(), logs=None))


class _Current:
    """The project the module-level calls (`run_function`, `list_runs`, `get_run`) act
    on: the last one loaded or made in this process, as MLRun's `get_current_project`.
    One instance lives in this module because those calls take no project argument."""

    def __init__(self) -> None:
        self._project: ProjectHandle | None = None

    def set(self, project: ProjectHandle) -> ProjectHandle:
        self._project = project
        return project

    def get(self) -> ProjectHandle:
        if self._project is None:
            raise RunyardError("no current project: call load_project() or new_project() first")
        return self._project


_current = _Current()


def get_current_project() -> ProjectHandle:
    return _current.get()


def new_project(name: str, context: str | Path = "./", init_git: bool = True) -> ProjectHandle:
    """A new project `name` in the folder `context` (as `runyard init`), with a git
    repository and a first commit when `init_git`; it becomes the current project."""
    target = Path(context)
    scaffold.init_project(target, name)
    if init_git:
        scaffold.init_git(target)
    return load_project(target)


def load_project(source: str | Path = ".", name: str | None = None,
                 context: str | Path | None = None, init_git: bool = True) -> ProjectHandle:
    """The project at `source`, checked; it becomes the current project.

    `source` is a project's folder, or a git URL or repository cloned into `context`
    (default: a folder named after it). With `name`, `source` is a baseline instead:
    it is copied into `context` (default: `./NAME`) as a new project of that name, as
    `runyard init --from`, with a git repository when `init_git`.
    """
    if name is not None:
        target = Path(context or name)
        scaffold.init_project(target, name, baseline=str(source))
        if init_git:
            scaffold.init_git(target)
        source = target
    elif not _is_folder(source):
        target = Path(context or _folder_of(str(source)))
        scaffold.clone_repository(str(source), target)
        source = target
    root = find_project_root(Path(source))
    return _current.set(ProjectHandle(root, load(DirectorySource(root))))


def _is_folder(source: str | Path) -> bool:
    """A working folder to load in place, not a bare repository or a URL to clone."""
    folder = Path(source)
    return folder.is_dir() and not ((folder / "HEAD").is_file() and (folder / "objects").is_dir())


def _folder_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git") or "project"


def run_function(function: str, handler: str | None = None,
                 params: Mapping[str, Any] | None = None,
                 inputs: Mapping[str, str] | None = None, *, task: TaskTemplate | None = None,
                 name: str | None = None, local: bool = False, watch: bool = True,
                 local_changes: bool = False, revision: str | None = None) -> RunObject:
    """`run_function` on the current project (see ProjectHandle.run_function)."""
    return _current.get().run_function(function, handler, params, inputs, task=task, name=name,
                                       local=local, watch=watch, local_changes=local_changes,
                                       revision=revision)


def list_runs(job: str | None = None, where: str | None = None) -> list[RunObject]:
    """`list_runs` on the current project."""
    return _current.get().list_runs(job, where)


def get_run(uid: str) -> RunObject:
    """`get_run` on the current project."""
    return _current.get().get_run(uid)
