"""The Python API, as MLRun users know it: load a project, run a function or a
task, and get a `RunObject` back (seed 002)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.errors import RunyardError
from runner.project.loader import find_project_root
from runner.project.loader import load_project as load
from runner.project.model import Project
from runner.project.source import DirectorySource
from runner.record.artifacts import ArtifactStore
from runner.record.model import Metadata, Params, RunRecord, Spec, Status
from runner.record.results import ResultsBranch, new_uid
from runner.run.launch import run_target
from runner.run.session import open_project, session_for, workspace_of
from runner.views.tables import step_lines, summary_lines, trial_lines


@dataclass(frozen=True)
class TaskTemplate:
    """A reusable task: name, handler, params and inputs (MLRun's `new_task`)."""

    name: str | None = None
    handler: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, str] = field(default_factory=dict)
    hyperparams: Mapping[str, list[Any]] = field(default_factory=dict)
    selector: str | None = None

    def with_params(self, **params: Any) -> TaskTemplate:
        return replace(self, params={**self.params, **params})

    def with_hyper_params(self, hyperparams: Mapping[str, list[Any]],
                          selector: str | None = None) -> TaskTemplate:
        return replace(self, hyperparams=dict(hyperparams), selector=selector)


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
        """What `runyard runs show` prints: steps or trials, then the summary."""
        record = self.record()
        print("\n".join([*step_lines(record), *trial_lines(record),
                         *summary_lines(record, self._results.branch)]))

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
    """A project on disk, as `load_project` returns it."""

    def __init__(self, path: Path, project: Project) -> None:
        self.path = path
        self.spec = project
        self.name = project.name

    def run_function(self, function: str | TaskTemplate, handler: str | None = None,
                     params: Mapping[str, Any] | None = None,
                     inputs: Mapping[str, str] | None = None, *, task: TaskTemplate | None = None,
                     local: bool = False, watch: bool = True, local_changes: bool = False,
                     revision: str | None = None) -> RunObject:
        """Run a function of the project (by name) with a handler, params and inputs."""

        template = task or (function if isinstance(function, TaskTemplate) else TaskTemplate())
        name = function if isinstance(function, str) else (template.name or "")
        uid = new_uid()
        done: list[RunObject] = []

        def work() -> None:
            with session_for(self.path, revision, local_changes=local_changes,
                             backend="local" if local else None,
                             on_line=lambda n, line: print(f"{n} | {line}") if watch else None
                             ) as session:
                record = run_target(
                    session, name, uid, handler=handler or template.handler,
                    params={**template.params, **(params or {})},
                    inputs={**template.inputs, **(inputs or {})},
                    hyper=template.hyperparams or None, selector=template.selector)
                done.append(RunObject(session.results, session.store, uid, record))

        if watch:
            work()
            return done[0]

        source, git_dir = open_project(self.path, revision, local_changes)
        source.close()  # only its folders are wanted here: the session reads it again
        store = ArtifactStore(self.spec.artifact_store, workspace_of(source))
        background = Background(work, lambda error: not_started(uid, name, self.name, error))
        return RunObject(ResultsBranch(git_dir, self.spec.results_branch), store, uid, None,
                         background, source.state_dir / "live" / f"{uid}.log")


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


def load_project(path: str | Path = ".") -> ProjectHandle:
    """The project at `path` (its working tree), checked."""

    root = find_project_root(Path(path))
    return ProjectHandle(root, load(DirectorySource(root)))
